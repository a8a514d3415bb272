# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Per-alert control of the prometheus role's shipped alert rules (prometheus_alert_overrides).

The inventory names an alert and says what to change::

    prometheus_alert_overrides:
      TargetDown: {for: 10m, severity: critical, labels: {team: ops}}
      InferenceHighLatency: {thresholds: {ml_latency_seconds: 1.5}}
      NodeClockSkew: {enabled: false}

Fields: ``enabled`` (false: the alert is left out), ``for`` (a Prometheus duration),
``severity`` (the severity label), ``labels`` (more labels, merged over
prometheus_alert_extra_labels) and ``thresholds`` (keys of prometheus_alert_thresholds that
this alert's rule uses, for this alert only).

Three parts, used by the rule templates (filters alert_thresholds and alert_overrides, see
plugins/filter/alert_overrides.py) and by the preflight:

* ``catalogue(templates)``: the shipped alerts, their group and the threshold keys each rule
  uses, read from the templates' text (every rule starts with its own ``{% set t = ... |
  monstack.stack.alert_thresholds(prometheus_alert_overrides, 'Name') %}``);
* ``problems(overrides, catalogue, thresholds)``: every error of the variable, with the alert
  and field it is about (unknown alert, unknown field, bad value);
* ``thresholds_for`` and ``apply``: the thresholds of one alert, and the rewriting of a
  rendered rule file (left out, ``for``, severity, labels); a file with no overridden alert
  comes back unchanged, byte for byte.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import yaml

VARIABLE = "prometheus_alert_overrides"
FIELDS = ("enabled", "for", "severity", "labels", "thresholds")
# Prometheus' duration syntax (model.ParseDuration): units from largest to smallest.
DURATION = re.compile(r"^(?:0|(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?)$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Labels an override may not set: the name is the rule's, severity has its own field.
RESERVED_LABELS = ("alertname", "severity")
MAX_LABELS = 32
MAX_VALUE_LENGTH = 1024
_MARKER = re.compile(r"monstack\.stack\.alert_thresholds\(\s*prometheus_alert_overrides\s*,\s*'([A-Za-z0-9_]+)'\s*\)")
_ALERT = re.compile(r"^\s*- alert: ([A-Za-z0-9_]+)\s*$", re.M)
_THRESHOLD = re.compile(r"\bt\.([a-z0-9_]+)")


class AlertOverrideError(ValueError):
    """A bad prometheus_alert_overrides (the message names the alert and field)."""


def is_duration(value) -> bool:
    return isinstance(value, str) and value != "" and bool(DURATION.match(value))


def catalogue(templates: Mapping) -> dict:
    """{group: template text} -> {alert: {"group": group, "thresholds": [keys its rule uses]}}.

    A rule's part of a template runs from its alert_thresholds marker to the next marker.
    Raises AlertOverrideError when a rule has no marker or a marker names another alert."""
    found = {}
    for group, text in sorted(templates.items()):
        markers = list(_MARKER.finditer(text))
        alerts = _ALERT.findall(text)
        if [m.group(1) for m in markers] != alerts:
            raise AlertOverrideError(
                f"rule template {group}: every rule must start with its own alert_thresholds(prometheus_alert_overrides, "
                f"'<alert>') line; markers {[m.group(1) for m in markers]}, alerts {alerts}")
        for index, marker in enumerate(markers):
            end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
            part = text[marker.end():end]
            name = marker.group(1)
            keys = set(_THRESHOLD.findall(part))
            if name in found:
                # one group may hold variants of a rule, of which one is rendered (if/elif)
                if found[name]["group"] != group:
                    raise AlertOverrideError(f"alert {name} is defined in rule groups {found[name]['group']} "
                                             f"and {group}")
                keys |= set(found[name]["thresholds"])
            found[name] = {"group": group, "thresholds": sorted(keys)}
    return found


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label_value(value) -> bool:
    return (isinstance(value, str) or _number(value)) and len(str(value)) <= MAX_VALUE_LENGTH


def _threshold_problems(where, value, known, defaults) -> list:
    if not isinstance(value, Mapping):
        return [f"{where}: must be a mapping of threshold name to value, got {type(value).__name__}"]
    out = []
    for key, new in value.items():
        if key not in known:
            out.append(f"{where}.{key}: this alert's rule uses no such threshold; it uses "
                       f"{', '.join(known) or 'none'}")
            continue
        default = defaults.get(key)
        if key not in defaults:
            if not (is_duration(new) or _number(new)):
                out.append(f"{where}.{key}: must be a number or a Prometheus duration, got {new!r}")
        elif isinstance(default, str):
            if not is_duration(new):
                out.append(f"{where}.{key}: must be a Prometheus duration like {default!r}, got {new!r}")
        elif not _number(new):
            out.append(f"{where}.{key}: must be a number like {default!r}, got {new!r}")
    return out


def problems(overrides, alerts: Mapping, defaults: Mapping | None = None) -> list:
    """Every problem of prometheus_alert_overrides, given catalogue() of the shipped alerts and
    the thresholds (prometheus_alert_thresholds, for the type of each threshold)."""
    defaults = defaults or {}
    if overrides is None:
        return []
    if not isinstance(overrides, Mapping):
        return [f"{VARIABLE}: must be a mapping of alert name to changes, got {type(overrides).__name__}"]
    out = []
    for name, change in overrides.items():
        where = f"{VARIABLE}.{name}"
        if name not in alerts:
            close = [a for a in alerts if a.lower() == str(name).lower()]
            hint = f" (did you mean {close[0]}?)" if close else ""
            out.append(f"{where}: no shipped alert has this name{hint}. The shipped alerts: {', '.join(sorted(alerts))}")
            continue
        if not isinstance(change, Mapping):
            out.append(f"{where}: must be a mapping with some of {', '.join(FIELDS)}, got {type(change).__name__}")
            continue
        for field in change:
            if field not in FIELDS:
                out.append(f"{where}.{field}: unknown field; the fields are {', '.join(FIELDS)}")
        if "enabled" in change and not isinstance(change["enabled"], bool):
            out.append(f"{where}.enabled: must be true or false, got {change['enabled']!r}")
        if "for" in change and not is_duration(change["for"]):
            out.append(f"{where}.for: must be a Prometheus duration such as 5m or 1h30m, got {change['for']!r}")
        severity = change.get("severity")
        if "severity" in change and not (isinstance(severity, str) and 0 < len(severity) <= MAX_VALUE_LENGTH):
            out.append(f"{where}.severity: must be a non-empty string (e.g. critical, warning, info), "
                       f"got {change['severity']!r}")
        if "labels" in change:
            out += _label_problems(f"{where}.labels", change["labels"])
        if "thresholds" in change:
            out += _threshold_problems(f"{where}.thresholds", change["thresholds"], alerts[name]["thresholds"],
                                       defaults)
    return out


def _label_problems(where, labels) -> list:
    if not isinstance(labels, Mapping):
        return [f"{where}: must be a mapping of label name to value, got {type(labels).__name__}"]
    out = []
    if len(labels) > MAX_LABELS:
        out.append(f"{where}: at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_NAME.match(key) or key.startswith("__"):
            out.append(f"{where}.{key}: not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)")
        elif key in RESERVED_LABELS:
            out.append(f"{where}.{key}: set by the rule itself"
                       + ("; use the severity field" if key == "severity" else ""))
        elif not _label_value(value):
            out.append(f"{where}.{key}: the value must be a string or number of at most {MAX_VALUE_LENGTH} "
                       f"characters, got {value!r}")
    return out


def _check_one(name, change, defaults=None) -> Mapping:
    """The override of one alert, checked on its own (no catalogue): raises AlertOverrideError."""
    keys = (change or {}).get("thresholds") if isinstance(change, Mapping) else None
    alerts = {name: {"group": "", "thresholds": list(keys) if isinstance(keys, Mapping) else []}}
    found = problems({name: change}, alerts, defaults)
    if found:
        raise AlertOverrideError("; ".join(found))
    return change


def thresholds_for(thresholds: Mapping, overrides, name: str) -> dict:
    """The thresholds of alert `name`: `thresholds` with the alert's own `thresholds` override merged over."""
    change = (overrides or {}).get(name)
    if not change:
        return dict(thresholds)
    _check_one(name, change, thresholds)
    return dict(thresholds, **dict(change.get("thresholds") or {}))


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", str.__str__(value), style=style)


_Dumper.add_multi_representer(str, _str)  # also the tagged strings of Ansible's variables


def apply(text: str, overrides) -> str:
    """A rendered rule file with the overrides of its alerts applied: a disabled alert left
    out, ``for``, severity and labels changed. Unchanged text when none of its alerts has an
    override of those fields."""
    overrides = overrides or {}
    if not isinstance(overrides, Mapping):
        raise AlertOverrideError(f"{VARIABLE}: must be a mapping of alert name to changes, "
                                 f"got {type(overrides).__name__}")
    doc = yaml.safe_load(text) or {}
    touched = False
    for group in doc.get("groups") or []:
        kept = []
        for rule in group.get("rules") or []:
            change = overrides.get(rule.get("alert")) if "alert" in rule else None
            if not change or not any(key in change for key in ("enabled", "for", "severity", "labels")):
                kept.append(rule)
                continue
            _check_one(rule["alert"], change)
            touched = True
            if change.get("enabled", True) is False:
                continue
            if "for" in change:
                rule["for"] = change["for"]
            labels = dict(rule.get("labels") or {})
            labels.update({str(k): str(v) for k, v in (change.get("labels") or {}).items()})
            if "severity" in change:
                labels["severity"] = change["severity"]
            if labels:
                rule["labels"] = labels
            kept.append(rule)
        if "rules" in group:
            group["rules"] = kept
    if not touched:
        return text
    return "# Changed by prometheus_alert_overrides.\n" + yaml.dump(
        doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
