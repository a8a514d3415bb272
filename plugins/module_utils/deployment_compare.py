# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""The comparing gate of monstack: a new version against the previous one, from Prometheus.

After the post-deploy gate saw the new version's targets up, playbooks/deployments.yml
(deployment_compare) watches the new version for ``window`` seconds and compares it with
the previous version over the same length of time before the deployment: requests, error
ratio (5xx share) and the p95 latency of the metric contract, per service, by the
``version`` target label. Pure functions, standard library only (they run on the
Prometheus host): settings(), queries() (PromQL built from the contract's names, each
one validated), verdict(), table(), annotation() and rollback_record().
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import CONTROL_RE, NAME_RE, show


class CompareError(Exception):
    """A setting or an input of the comparison is not what it expects (the message names it)."""


METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# A version label value as the records allow it, minus anything a PromQL string would have to escape
# beyond \ and " (escaped below): no control characters.
VERSION_MAX_LEN = 128

# The settings of deployment_compare and their defaults (docs/deployments.md, "Comparing gate").
DEFAULTS: dict[str, Any] = {
    # seconds the new version is watched (and the length of the previous version's window before the deployment)
    "window": 300,
    # requests each version needs in its window for a verdict on numbers
    "min_requests": 100,
    # what too little traffic (or no latency data) means: fail (default) or pass, said either way
    "on_low_traffic": "fail",
    # error ratio (5xx share, 0-1): worse when new - previous > error_ratio_margin (absolute)
    # and new > previous * (1 + error_ratio_margin_relative); null leaves a margin out
    "error_ratio_margin": 0.01,
    "error_ratio_margin_relative": None,
    # latency quantile (0.95: p95): worse when new - previous > latency_margin_seconds
    # and new > previous * (1 + latency_margin_relative); both null: latency is not compared
    "quantile": 0.95,
    "latency_margin_seconds": 0.05,
    "latency_margin_relative": 0.2,
    # a directory on the controller where a failed comparison writes the previous version's record
    # (a new deployed_at) for the pipeline to apply; empty: no rollback record (the default)
    "rollback_dir": "",
    # a Grafana annotation of each verdict (with deployment_annotate)
    "annotate": True,
}
LOW_TRAFFIC = ("fail", "pass")
MARGINS = ("error_ratio_margin", "error_ratio_margin_relative", "latency_margin_seconds", "latency_margin_relative")
MAX_WINDOW = 86400


def number(value: Any) -> float | None:
    """A finite number, or None for anything else (bool, text, NaN, infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def settings(given: Any) -> dict[str, Any]:
    """deployment_compare (a mapping, keys of DEFAULTS) with the defaults filled in, checked."""
    where = "deployment_compare"
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise CompareError(f"{where}: expected a mapping of settings ({', '.join(DEFAULTS)}), got {show(given)}")
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise CompareError(f"{where}: unknown setting(s) {', '.join(map(str, unknown))}; "
                           f"known: {', '.join(DEFAULTS)}")
    out = dict(DEFAULTS, **given)
    window = out["window"]
    if isinstance(window, bool) or not isinstance(window, int) or not 10 <= window <= MAX_WINDOW:
        raise CompareError(f"{where}.window: expected whole seconds from 10 to {MAX_WINDOW}, got {show(window)}")
    requests = out["min_requests"]
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise CompareError(f"{where}.min_requests: expected a whole number >= 1, got {show(requests)}")
    if out["on_low_traffic"] not in LOW_TRAFFIC:
        raise CompareError(f"{where}.on_low_traffic: expected one of {', '.join(LOW_TRAFFIC)}, "
                           f"got {show(out['on_low_traffic'])}")
    for key in MARGINS:
        if out[key] is not None and (number(out[key]) is None or out[key] < 0):
            raise CompareError(f"{where}.{key}: expected a number >= 0 or null (no such margin), got {show(out[key])}")
    if out["error_ratio_margin"] is None and out["error_ratio_margin_relative"] is None:
        raise CompareError(f"{where}: error_ratio_margin and error_ratio_margin_relative are both null: "
                           f"the error ratio would not be compared")
    quantile = number(out["quantile"])
    if quantile is None or not 0 < quantile < 1:
        raise CompareError(f"{where}.quantile: expected a number between 0 and 1 (0.95: p95), "
                           f"got {show(out['quantile'])}")
    if not isinstance(out["rollback_dir"], str) or CONTROL_RE.search(out["rollback_dir"]):
        raise CompareError(f"{where}.rollback_dir: expected a directory path (or empty), got {show(out['rollback_dir'])}")
    if not isinstance(out["annotate"], bool):
        raise CompareError(f"{where}.annotate: expected true or false, got {show(out['annotate'])}")
    return out


def contract(metrics: Any, labels: Any) -> dict[str, str]:
    """The names the comparison needs from the metric contract (prometheus_ml_metrics, prometheus_ml_labels)."""
    metrics = metrics if isinstance(metrics, Mapping) else {}
    labels = labels if isinstance(labels, Mapping) else {}
    names = {"requests": metrics.get("requests_total") or "",
             "duration": metrics.get("request_duration_seconds") or "",
             "status": labels.get("status") or ""}
    if not names["requests"] or not names["status"]:
        raise CompareError("deployment_compare needs the metric contract's requests_total and its status label "
                           "(prometheus_ml_metrics.requests_total, prometheus_ml_labels.status); they are empty")
    for key, pattern, variable in (("requests", METRIC_NAME_RE, "prometheus_ml_metrics.requests_total"),
                                   ("duration", METRIC_NAME_RE, "prometheus_ml_metrics.request_duration_seconds"),
                                   ("status", LABEL_NAME_RE, "prometheus_ml_labels.status")):
        value = names[key]
        if value and (not isinstance(value, str) or not pattern.fullmatch(value)):
            raise CompareError(f"{variable}: {show(value)} is not a Prometheus {'label' if key == 'status' else 'metric'} name")
    return names


def promql_string(value: str) -> str:
    """A PromQL double-quoted string of ``value`` (backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selector(job: str, service: str, environment: str, version: str) -> str:
    """The label matchers of one version of one service (every value checked, then quoted)."""
    for what, value in (("service", service), ("environment", environment)):
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            raise CompareError(f"deployment_compare: {what} {show(value)} is not a record name")
    if (not isinstance(version, str) or not version or len(version) > VERSION_MAX_LEN
            or CONTROL_RE.search(version)):
        raise CompareError(f"deployment_compare: version {show(version)} of service {service}: not a record version")
    if not isinstance(job, str) or not job or CONTROL_RE.search(job):
        raise CompareError(f"deployment_compare: job {show(job)}: not a scrape job name")
    return ",".join(f"{name}={promql_string(value)}" for name, value in
                    (("job", job), ("service", service), ("environment", environment), ("version", version)))


def queries(names: Mapping[str, str], matchers: str, window: int, quantile: float) -> dict[str, str]:
    """PromQL of one version's requests, error ratio and latency quantile over ``window`` seconds."""
    req, status = names["requests"], names["status"]
    out = {
        "requests": f"sum(increase({req}{{{matchers}}}[{window}s]))",
        # no 5xx series at all is no errors, not no answer
        "error_ratio": (f"(sum(rate({req}{{{matchers},{status}=~\"5..\"}}[{window}s])) or vector(0))"
                        f" / sum(rate({req}{{{matchers}}}[{window}s]))"),
    }
    if names.get("duration"):
        out["latency"] = (f"histogram_quantile({quantile:g}, sum by (le) "
                          f"(rate({names['duration']}_bucket{{{matchers}}}[{window}s])))")
    return out


def sample_value(result: Any) -> float | None:
    """The value of an instant vector query's only sample; None when empty; NaN and ±Inf kept as floats."""
    if not isinstance(result, list) or not result:
        return None
    value = result[0].get("value") if isinstance(result[0], Mapping) else None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    try:
        return float(value[1])
    except (TypeError, ValueError):
        return None


def measured(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def worse(new: float, old: float, absolute: float | None, relative: float | None) -> bool:
    """new is worse than old by more than every margin that is set (at least one is)."""
    if new == old:
        return False
    if math.isinf(new) and new > 0:
        return not (math.isinf(old) and old > 0)
    if absolute is not None and not new - old > absolute:
        return False
    if relative is not None and not new > old * (1 + relative):
        return False
    return absolute is not None or relative is not None


def margin_text(absolute: float | None, relative: float | None, unit: str) -> str:
    parts = []
    if absolute is not None:
        parts.append(f"+{absolute:g}{unit}")
    if relative is not None:
        parts.append(f"+{relative * 100:g}%")
    return " and ".join(parts)


def verdict(new: Mapping[str, Any], old: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict of one service: {state: pass|fail, reason, low_traffic}.

    ``new`` and ``old`` hold requests, error_ratio, latency (floats, None for no answer, NaN kept);
    ``old`` is None when there is no previous version (nothing to compare: pass, said so)."""
    if old is None:
        return {"state": "pass", "reason": "no previous version to compare with", "low_traffic": False}
    low = [role for role, one in (("previous", old), ("new", new))
           if not measured(one.get("requests")) or one["requests"] < options["min_requests"]]
    if low:
        counts = ", ".join(f"{role} {fmt_requests((old if role == 'previous' else new).get('requests'))}"
                           for role in low)
        reason = (f"too little traffic to compare ({counts} requests in {options['window']}s; "
                  f"min_requests {options['min_requests']}): on_low_traffic {options['on_low_traffic']}")
        return {"state": options["on_low_traffic"], "reason": reason, "low_traffic": True}
    checks = [("error_ratio", "error ratio", fmt_ratio, options["error_ratio_margin"],
               options["error_ratio_margin_relative"], pct(options["error_ratio_margin"]), " percentage points")]
    if "latency" in new and (options["latency_margin_seconds"] is not None
                             or options["latency_margin_relative"] is not None):
        checks.append(("latency", f"p{options['quantile'] * 100:g}", fmt_seconds, options["latency_margin_seconds"],
                       options["latency_margin_relative"], options["latency_margin_seconds"], "s"))
    problems = []
    for key, what, fmt, absolute, relative, shown, unit in checks:
        if not measured(new.get(key)) or not measured(old.get(key)):
            problems.append(f"no {what} data")
        elif worse(new[key], old[key], absolute, relative):
            return {"state": "fail", "low_traffic": False,
                    "reason": (f"{what} {fmt(new[key])} against {fmt(old[key])}, worse beyond the margins "
                               f"({margin_text(shown, relative, unit)})")}
    if problems:
        return {"state": options["on_low_traffic"], "low_traffic": True,
                "reason": f"{' and '.join(problems)} to compare: on_low_traffic {options['on_low_traffic']}"}
    return {"state": "pass", "reason": "not worse than the previous version beyond the margins", "low_traffic": False}


def pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 6)


def fmt_requests(value: Any) -> str:
    return f"{value:.0f}" if measured(value) and not math.isinf(value) else "-"


def fmt_ratio(value: Any) -> str:
    return f"{value * 100:.2f}%" if measured(value) and not math.isinf(value) else "-"


def fmt_seconds(value: Any) -> str:
    if not measured(value):
        return "-"
    return "+Inf" if math.isinf(value) else f"{value:.3f}s"


def table(rows: list[Mapping[str, Any]], quantile: float = 0.95) -> str:
    """A side-by-side text table: version, role, requests, error ratio, p95, verdict (one line per version)."""
    head = ["service", "environment", "version", "role", "requests", "error ratio", f"p{quantile * 100:g}", "verdict"]
    lines = [head]
    for row in rows:
        lines.append([row["service"], row["environment"], row["version"], row["role"],
                      fmt_requests(row.get("requests")), fmt_ratio(row.get("error_ratio")),
                      fmt_seconds(row.get("latency")) if "latency" in row else "n/a", row.get("verdict", "")])
    lines = [[CONTROL_RE.sub("?", str(cell)) for cell in line] for line in lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1]
                     for line in lines)


def rows_of(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The table rows of one service's comparison (previous first, when there is one)."""
    rows = []
    base = {"service": result["service"], "environment": result["environment"]}
    if result.get("previous") is not None:
        rows.append(dict(base, version=result["previous_version"], role="previous",
                         verdict="(baseline)", **result["previous"]))
    word = result["state"].upper() + (" (low traffic)" if result.get("low_traffic") else "")
    rows.append(dict(base, version=result["version"], role="new", verdict=f"{word}: {result['reason']}",
                     **result["new"]))
    return rows


def annotation(result: Mapping[str, Any], time_ms: int) -> dict[str, Any]:
    """A Grafana annotation of a verdict, tagged like the deployment's own (deployment_render.annotation)."""
    text = (f"Comparison {result['state']}: {result['service']} {result['version']} in {result['environment']}"
            + (f" against {result['previous_version']}" if result.get("previous_version") else "")
            + f": {result['reason']}")
    tags = ["deployment", "comparison", result["state"], result["service"], result["environment"], result["version"]]
    return {"time": int(time_ms), "tags": tags, "text": text}


def rollback_record(previous: Any, now: float | None = None) -> dict[str, Any] | None:
    """The previous version's record with deployed_at now (so the store takes it as the latest)."""
    if not isinstance(previous, Mapping) or not previous.get("service"):
        return None
    stamp = datetime.fromtimestamp(now, timezone.utc) if now is not None else datetime.now(timezone.utc)
    record = {key: value for key, value in previous.items() if not str(key).startswith("_")}
    record["deployed_at"] = stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return record
