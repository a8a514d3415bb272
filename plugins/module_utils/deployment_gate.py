# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""The post-deploy gate of monstack: which of a run's targets Prometheus has not scraped up yet.

pending() compares Prometheus' active targets (GET /api/v1/targets) with the target
groups a run wrote and says, per target, why it does not count yet, in words fit for
a CI log: a short class of the scrape error, never the scraped service's own text,
and a scrape URL without user info or query. The module deployment_gate polls
Prometheus with it; the filter deployment_gate_pending is the same function.
Pure functions, standard library only (it runs on the Prometheus host).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import CONTROL_RE, show


class GateError(Exception):
    """The gate's input is not what it expects (the message says which argument)."""


# Prometheus' lastScrape: RFC 3339 with up to nine fraction digits (Go's time.Time).
SCRAPE_TIME_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def scrape_time(value: Any) -> float | None:
    """Seconds since the epoch of a lastScrape value; None when it is not a time."""
    match = SCRAPE_TIME_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return stamp.timestamp() + (float(fraction) if fraction else 0.0)


# Prometheus' lastError of a target -> what the gate says in the CI log. The target's own
# answer (a body fragment, a redirect's URL with credentials) never gets there.
GATE_ERRORS = (
    (re.compile(r"server returned HTTP status (\d{3})"), "HTTP status {0}"),
    (re.compile(r"connection refused"), "connection refused"),
    (re.compile(r"no such host|server misbehaving|lookup .* on "), "name not resolved"),
    (re.compile(r"i/o timeout|context deadline exceeded|Client\.Timeout|timeout"), "timeout"),
    (re.compile(r"connection reset|broken pipe|EOF"), "connection closed"),
    (re.compile(r"no route to host|network is unreachable"), "host unreachable"),
    (re.compile(r"x509|tls:|certificate"), "TLS error"),
    (re.compile(r"sample limit exceeded"), "sample_limit exceeded"),
    (re.compile(r"label_limit exceeded|label limit|label_name_length_limit|label_value_length_limit"),
     "label limit exceeded"),
    (re.compile(r"body size limit|exceeds.*bytes"), "body size limit exceeded"),
    (re.compile(r"stopped after \d+ redirects|redirect"), "redirected"),
    (re.compile(r"content-type|invalid|unexpected|expected|parse|strconv"), "not a metrics exposition"),
)


def gate_error(text: Any) -> str:
    """A short, fixed description of a scrape error (its class or HTTP status), never its text."""
    if not isinstance(text, str) or not text:
        return "none given"
    for pattern, short in GATE_ERRORS:
        match = pattern.search(text)
        if match:
            return short.format(*match.groups())
    return "other error (see the target on Prometheus' targets page)"


def safe_url(value: Any) -> str:
    """A scrape URL for the CI log: scheme, host, port and path; no user info, query or fragment."""
    if not isinstance(value, str) or not value:
        return "?"
    try:
        parts = urlsplit(value)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "?"
    if ":" in host:
        host = f"[{host}]"
    return CONTROL_RE.sub("?", f"{parts.scheme}://{host}{port}{parts.path}")[:200]


def gate_problem(name: str, address: str, labels: Mapping[str, Any],
                 mine: list[Mapping[str, Any]], since: float) -> dict[str, Any]:
    """Why the target of ``labels`` at ``address`` does not count (yet)."""
    shown = ", ".join(f"{key} {labels[key]}" for key in ("service", "environment", "version") if key in labels)
    found = max(mine, key=lambda t: scrape_time(t.get("lastScrape")) or 0.0, default=None)
    problem = {"file": name, "target": address, "labels": {k: v for k, v in labels.items() if not k.startswith("__")},
               "health": None, "last_error": "", "last_scrape": None, "scrape_url": None}
    if found is None:
        state = "not discovered"
        why = "not discovered yet (Prometheus has no target with all of the record's labels at this address)"
    else:
        problem.update(health=found.get("health"), last_error=gate_error(found.get("lastError")),
                       last_scrape=found.get("lastScrape"), scrape_url=safe_url(found.get("scrapeUrl")))
        if (scrape_time(found.get("lastScrape")) or 0.0) <= since:
            state = "not scraped yet"
            why = f"not scraped since its file was written (health {found.get('health')})"
        else:
            state = "down"
            why = f"{problem['health']} at {problem['scrape_url']}, last error: {problem['last_error']}"
    problem["state"] = state
    problem["message"] = f"{name}: {address} ({shown}): {why}"
    return problem


def pending(active_targets: Any, files: Any, since: Any, job: Any = "deployments") -> list[dict[str, Any]]:
    """The targets of ``files`` that have not been scraped ``up`` after ``since``, with the reason."""
    if isinstance(since, bool) or not isinstance(since, (int, float, str)):
        raise GateError(f"deployment_gate_pending: since: expected the time the files were written "
                        f"(seconds since the epoch), got {show(since)}")
    try:
        written = float(since)
    except ValueError:
        raise GateError(f"deployment_gate_pending: since: expected seconds since the epoch, got {show(since)}")
    if not isinstance(files, Mapping):
        raise GateError(f"deployment_gate_pending: files: expected a mapping of file name to target groups "
                        f"(deployment_files), got {show(files)}")
    if active_targets is not None and not isinstance(active_targets, (list, tuple)):
        raise GateError(f"deployment_gate_pending: expected Prometheus' activeTargets (a list), "
                        f"got {show(active_targets)}")
    by_address: dict[Any, list[Mapping[str, Any]]] = {}
    for target in active_targets or []:
        if isinstance(target, Mapping) and target.get("scrapePool") == job:
            found = target.get("discoveredLabels") or {}
            by_address.setdefault(found.get("__address__"), []).append(target)
    pending = []
    for name in sorted(files):
        groups = files[name]
        if not isinstance(groups, (list, tuple)):
            raise GateError(f"deployment_gate_pending: file {name}: expected a list of target groups, "
                            f"got {show(groups)}")
        for group in groups:
            labels = group.get("labels") or {} if isinstance(group, Mapping) else None
            if labels is None or not isinstance(group.get("targets"), (list, tuple)):
                raise GateError(f"deployment_gate_pending: file {name}: expected target groups "
                                f"{{targets, labels}}, got {show(group)}")
            for address in group["targets"]:
                mine = [t for t in by_address.get(address, [])
                        if all((t.get("discoveredLabels") or {}).get(k) == v for k, v in labels.items())]
                if not any(t.get("health") == "up" and (scrape_time(t.get("lastScrape")) or 0.0) > written
                           for t in mine):
                    pending.append(gate_problem(name, address, labels, mine, written))
    return pending
