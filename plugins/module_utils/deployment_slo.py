# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""SLOs of deployment records: their contract, and the Prometheus rules made from them.

A record may declare objectives (docs/deployments.md, "SLOs"):

    slos:
      - {name: availability, objective: 99.9}                   # window: 30d by default
      - {name: fast-predict, objective: 99, threshold_seconds: 0.5, window: 7d}

An SLO without ``threshold_seconds`` is an availability SLO (the share of requests that
did not answer 5xx); with it, a latency SLO (the share of requests faster than the
threshold, read from the latency histogram's bucket at that boundary). Both are measured
on the series of the metric contract (prometheus_ml_metrics, prometheus_ml_labels and
prometheus_ml_latency_buckets of the prometheus role) selected by the record's service and
environment labels.

check_slos() is the record contract (called by deployment_records.check_record); what only
a Prometheus host knows (its contract's histogram buckets, its retention) is checked by
check_against(), in the record store module, before any file is written. render_rules()
makes the one rule file of a service: recording rules for the error ratio over the
standard windows and the SLO window, and the SRE workbook's multi-window, multi-burn-rate
alerts (SLOErrorBudgetBurn, labels service, environment, slo, severity page or ticket).

Pure functions, standard library only (it also runs on managed hosts).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import expected, fail, show

SLO_MAX = 10
SLO_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
SLO_NAME_MAX_LEN = 64
SLO_KEYS = ("name", "objective", "window", "threshold_seconds")
DEFAULT_WINDOW = "30d"
WINDOW_RE = re.compile(r"([1-9][0-9]{0,2})d|([1-9][0-9]?)w")
THRESHOLD_MAX = 3600.0

# The windows every SLO gets a recorded error ratio for, in seconds.
STANDARD_WINDOWS = (("5m", 300), ("30m", 1800), ("1h", 3600), ("2h", 7200), ("6h", 21600),
                    ("1d", 86400), ("3d", 259200))
# The SRE workbook's pairs (long window, short window, burn rate) and the severity they raise.
BURN_ALERTS = (
    ("page", "2m", (("1h", "5m", 14.4), ("6h", "30m", 6.0))),
    ("ticket", "15m", (("1d", "2h", 3.0), ("3d", "6h", 1.0))),
)
ALERT = "SLOErrorBudgetBurn"
RECORD_PREFIX = "monstack_slo"
RULES_SUFFIX = ".yml"
METRIC_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DURATION_RE = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
DEFAULT_RETENTION = "15d"  # Prometheus' own default


class SloError(Exception):
    """The metric contract or retention given to the rule maker is unusable (names the variable)."""


# --------------------------------------------------------------------------
# The record contract
# --------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def window_seconds(window: str) -> int:
    """'30d' / '4w' (the normalized or given form) -> seconds."""
    match = WINDOW_RE.fullmatch(window)
    if not match:
        raise ValueError(window)
    return int(match.group(1)) * 86400 if match.group(1) else int(match.group(2)) * 604800


def check_window(who: str, field: str, value: Any) -> str:
    """-> the window in days ('4w' -> '28d')."""
    if value is None:
        return DEFAULT_WINDOW
    if not isinstance(value, str) or not WINDOW_RE.fullmatch(value):
        expected(who, field, "a window in days or weeks such as '30d', '28d' or '4w' (at most 999d or 99w)", value)
    return f"{window_seconds(value) // 86400}d"


def check_slo(who: str, field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        expected(who, field, "a mapping such as {name: availability, objective: 99.9}", value)
    for key in value:
        if key not in SLO_KEYS:
            fail(who, f"{field}.{key}", f"unknown key; an SLO has {', '.join(SLO_KEYS)}")
    name = value.get("name")
    if name is None:
        fail(who, f"{field}.name", "is required (a name such as 'availability')")
    if not isinstance(name, str) or not SLO_NAME_RE.fullmatch(name) or len(name) > SLO_NAME_MAX_LEN:
        expected(who, f"{field}.name", f"a name matching ^[a-z0-9][a-z0-9_.-]*$ (at most {SLO_NAME_MAX_LEN} "
                                       f"characters)", name)
    objective = value.get("objective")
    number = _number(objective)
    if objective is None:
        fail(who, f"{field}.objective", "is required (a percentage between 0 and 100, such as 99.9)")
    if number is None or not 0 < number < 100:
        hint = "write the number unquoted" if isinstance(objective, str) else ""
        expected(who, f"{field}.objective", "a percentage greater than 0 and less than 100, such as 99.9",
                 objective, hint)
    out: dict[str, Any] = {"name": str(name), "objective": objective,
                           "window": check_window(who, f"{field}.window", value.get("window"))}
    threshold = value.get("threshold_seconds")
    if threshold is not None:
        seconds = _number(threshold)
        if seconds is None or not 0 < seconds <= THRESHOLD_MAX:
            expected(who, f"{field}.threshold_seconds",
                     f"a number of seconds greater than 0 (at most {THRESHOLD_MAX:g}), a bucket boundary of the "
                     f"latency histogram such as 0.5", threshold)
        out["threshold_seconds"] = threshold
    return out


def check_slos(who: str, value: Any) -> list[dict[str, Any]]:
    """The record's ``slos`` -> normalized list (window in days); raises RecordError naming the field."""
    if not isinstance(value, (list, tuple)):
        expected(who, "slos", "a list of SLOs such as [{name: availability, objective: 99.9}]", value)
    if len(value) > SLO_MAX:
        fail(who, "slos", f"{len(value)} SLOs, more than {SLO_MAX}")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        slo = check_slo(who, f"slos[{index}]", item)
        if slo["name"] in seen:
            fail(who, f"slos[{index}].name", f"{slo['name']!r} is the name of an earlier SLO of this record; "
                                             f"each SLO needs its own name (it is the alerts' slo label)")
        seen.add(slo["name"])
        out.append(slo)
    return out


# --------------------------------------------------------------------------
# What a Prometheus host knows: the metric contract and the retention
# --------------------------------------------------------------------------
def parse_duration(text: Any, variable: str) -> float:
    """A Prometheus duration ('15d', '1y', '720h', '2w3d') -> seconds."""
    if text is None or text == "":
        text = DEFAULT_RETENTION
    text = str(text).strip()
    parts = DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SloError(f"{variable}: expected a Prometheus duration such as '15d' or '720h', got {show(text)}")
    return sum(int(n) * UNIT_SECONDS[u] for n, u in parts)


def check_contract(contract: Any) -> dict[str, Any]:
    """{requests_total, request_duration_seconds, status_label, buckets (floats), retention_seconds}."""
    if not isinstance(contract, Mapping):
        raise SloError(f"slo contract: expected a mapping, got {show(contract)}")
    out: dict[str, Any] = {}
    for key, variable, pattern in (
            ("requests_total", "prometheus_ml_metrics.requests_total", METRIC_RE),
            ("request_duration_seconds", "prometheus_ml_metrics.request_duration_seconds", METRIC_RE),
            ("status_label", "prometheus_ml_labels.status", LABEL_RE)):
        value = contract.get(key) or ""
        if not isinstance(value, str) or (value and not pattern.fullmatch(value)):
            raise SloError(f"{variable}: expected a Prometheus name or '', got {show(value)}")
        out[key] = value
    buckets = contract.get("buckets") or []
    if not isinstance(buckets, (list, tuple)) or any(_number(b) is None or _number(b) <= 0 for b in buckets):
        raise SloError(f"prometheus_ml_latency_buckets: expected a list of positive numbers (the upper bounds of "
                       f"the latency histogram's buckets), got {show(buckets)}")
    out["buckets"] = sorted(float(b) for b in buckets)
    out["retention_seconds"] = parse_duration(contract.get("retention"), "prometheus_retention_time")
    return out


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g}d"


def check_against(who: str, slos: list[dict[str, Any]], contract: dict[str, Any]) -> None:
    """Refuse SLOs this host would compute wrongly or not at all (``contract`` from check_contract)."""
    retention = contract["retention_seconds"]
    for index, slo in enumerate(slos):
        field = f"slos[{index}]"
        threshold = slo.get("threshold_seconds")
        if threshold is None:
            if not contract["requests_total"] or not contract["status_label"]:
                fail(who, field, "an availability SLO needs the request counter and its status label of the metric "
                                 "contract (prometheus_ml_metrics.requests_total, prometheus_ml_labels.status), "
                                 "which are not set")
        else:
            histogram = contract["request_duration_seconds"]
            if not histogram:
                fail(who, field, "a latency SLO needs the latency histogram of the metric contract "
                                 "(prometheus_ml_metrics.request_duration_seconds), which is not set")
            buckets = contract["buckets"]
            if not any(math.isclose(float(threshold), b, rel_tol=1e-9) for b in buckets):
                shown = ", ".join(f"{b:g}" for b in buckets) or "none listed"
                fail(who, f"{field}.threshold_seconds",
                     f"{threshold:g} s is not a bucket boundary of the latency histogram {histogram} "
                     f"(prometheus_ml_latency_buckets: {shown}); the share of requests faster than it cannot be "
                     f"counted, only guessed. Use one of the boundaries")
        needed = max(window_seconds(slo["window"]), STANDARD_WINDOWS[-1][1])
        if needed > retention:
            fail(who, f"{field}.window",
                 f"the SLO needs {_days(needed)} of data, more than this Prometheus keeps "
                 f"(prometheus_retention_time {_days(retention)}); shorten the window or raise the retention")


# --------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------
def rules_file_name(environment: str, service: str) -> str:
    return f"{environment}--{service}{RULES_SUFFIX}"


def _g(value: float) -> str:
    return format(value, ".12g")


def le_pattern(threshold: float) -> str:
    """A regular expression matching the le label of the bucket at ``threshold`` however the client
    wrote it (0.5, 0.50, 1, 1.0)."""
    text = repr(float(threshold))
    if "e" in text or "E" in text:
        return re.escape(text).replace("\\.", "[.]")
    whole, _dot, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    return f"{whole}[.]{fraction}0*" if fraction else f"{whole}([.]0*)?"


def error_ratio_expr(slo: dict[str, Any], selector: str, window: str, contract: dict[str, Any]) -> str:
    if slo.get("threshold_seconds") is None:
        requests = contract["requests_total"]
        status = contract["status_label"]
        total = f"sum by (service, environment) (rate({requests}{{{selector}}}[{window}]))"
        # no 5xx series yet: 0 errors (not an empty ratio) while there are requests
        return (f'(\n  sum by (service, environment) (rate({requests}{{{selector},{status}=~"5.."}}[{window}]))\n'
                f"  or\n  0 * {total}\n)\n/\n{total}")
    histogram = contract["request_duration_seconds"]
    le = le_pattern(float(slo["threshold_seconds"]))
    return (f"1 - (\n  sum by (service, environment) (rate({histogram}_bucket{{{selector},le=~\"{le}\"}}[{window}]))"
            f"\n  /\n  sum by (service, environment) (rate({histogram}_count{{{selector}}}[{window}]))\n)")


def _block(text: str, indent: int) -> str:
    pad = " " * indent
    return "|-\n" + "\n".join(pad + line for line in text.splitlines())


def _labels(pairs: list[tuple[str, str]], indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}labels:"] + [f"{pad}  {k}: {json.dumps(v)}" for k, v in pairs]


def slo_rules(service: str, environment: str, slo: dict[str, Any], contract: dict[str, Any]) -> list[str]:
    """The rule lines (YAML, 6 spaces in) of one SLO."""
    name = slo["name"]
    budget = 1 - float(slo["objective"]) / 100
    labels = [("service", service), ("environment", environment), ("slo", name)]
    selector = f'service="{service}",environment="{environment}"'
    series = f'{selector},slo="{name}"'
    kind = "latency" if slo.get("threshold_seconds") is not None else "availability"
    lines: list[str] = []

    def record(metric: str, expr: str) -> None:
        lines.append(f"      - record: {metric}")
        lines.append(f"        expr: {_block(expr, 10)}" if "\n" in expr else f"        expr: {expr}")
        lines.extend(_labels(labels, 8))

    record(f"{RECORD_PREFIX}:objective:ratio", f"vector({_g(float(slo['objective']) / 100)})")
    record(f"{RECORD_PREFIX}:window:seconds", f"vector({window_seconds(slo['window'])})")
    for window, _seconds in STANDARD_WINDOWS:
        record(f"{RECORD_PREFIX}:error_ratio:rate{window}", error_ratio_expr(slo, selector, window, contract))
    # the SLO window (one name whatever the window, for the dashboard): the mean of the 5m ratios
    record(f"{RECORD_PREFIX}:error_ratio:slo_window",
           f"avg_over_time({RECORD_PREFIX}:error_ratio:rate5m{{{series}}}[{slo['window']}])")
    what = (f"requests slower than {_g(float(slo['threshold_seconds']))} s" if kind == "latency"
            else "requests answered with a 5xx status")
    for severity, wait, pairs in BURN_ALERTS:
        terms = []
        for long_window, short_window, rate in pairs:
            limit = _g(rate * budget)
            terms.append(f"(\n  {RECORD_PREFIX}:error_ratio:rate{long_window}{{{series}}} > {limit}\n  and\n"
                         f"  {RECORD_PREFIX}:error_ratio:rate{short_window}{{{series}}} > {limit}\n)")
        windows = " or ".join(f"{lw}/{sw} above {_g(rate)}x" for lw, sw, rate in pairs)
        lines.append(f"      - alert: {ALERT}")
        lines.append(f"        expr: {_block(chr(10).join([terms[0], 'or', terms[1]]), 10)}")
        lines.append(f"        for: {wait}")
        lines.extend(_labels(labels + [("severity", severity)], 8))
        lines.append("        annotations:")
        lines.append("          summary: " + json.dumps(
            f"{service} in {environment} burns the error budget of SLO {name} too fast ({severity})"))
        lines.append("          description: " + json.dumps(
            f"SLO {name} ({kind}, objective {_g(float(slo['objective']))}% over {slo['window']}): the share of "
            f"{what} ({{{{ $value | humanizePercentage }}}} over the long window) burns the error budget at "
            f"{windows} the sustainable rate. Dashboard: Inference / SLO error budgets."))
    return lines


def render_rules(service: str, environment: str, slos: list[dict[str, Any]], contract: dict[str, Any]) -> str:
    """The rule file (YAML text) of one service's SLOs; ``contract`` from check_contract."""
    lines = [
        "# Generated by monstack (playbooks/deployments.yml) from the deployment record of",
        f"# service {service} in environment {environment}; rewritten on every run, do not edit.",
        "groups:",
        f"  - name: {json.dumps(f'monstack-slo-{environment}--{service}')}",
        "    rules:",
    ]
    for slo in slos:
        lines.extend(slo_rules(service, environment, slo, contract))
    return "\n".join(lines) + "\n"


def entry_rules(entry: Mapping[str, Any], contract: dict[str, Any], who: str) -> tuple[str, str] | None:
    """(file name, text) of a deployed store entry with SLOs, None without; check_against first."""
    record = entry.get("record") or {}
    slos = record.get("slos")
    if not slos or entry.get("status") == "removed":
        return None
    check_against(who, slos, contract)
    service, environment = record["service"], record["environment"]
    return rules_file_name(environment, service), render_rules(service, environment, slos, contract)
