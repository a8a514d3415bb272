"""Filter plugin: set a Grafana dashboard to the ML metric contract.

The bundled Inference dashboards do not name metrics or labels of the ML
services directly: their queries use hidden constant template variables,
``${ml_metric_<key>}`` for the metric names and ``${ml_label_<key>}`` for the
label names, whose values in the files are the sample app's contract. This
filter gives those constants the values of ``grafana_ml_metrics`` and
``grafana_ml_labels`` and drops what the contract cannot serve, the way the
prometheus role leaves out alerts whose metrics a contract lacks.

tools/dashboard_queries.py applies the same function (``apply_contract``)
before it extracts queries, so the tests run exactly what Grafana gets.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # used outside Ansible by tools/dashboard_queries.py
    AnsibleFilterError = ValueError  # type: ignore[assignment,misc]

DOCUMENTATION = r"""
name: ml_dashboard
short_description: Set a Grafana dashboard's ML metric-contract constants
description:
  - Takes the text of a Grafana dashboard (JSON) and returns it with every hidden constant
    template variable named C(ml_metric_<key>) set to O(metrics[key]) and every one named
    C(ml_label_<key>) set to O(labels[key]). A key missing from the mapping counts as empty.
  - An empty metric name, or an empty C(status) label, means the services do not have it. Queries
    that use it are removed, then panels left without a query, rows left without a panel, and
    annotations that use it. A query variable that uses it becomes a hidden constant C(.*). A
    dashboard left without any panel gets a text panel saying so.
  - An empty C(endpoint), C(model_name) or C(model_version) label keeps its key as the label name.
    The series lack a label of that name, so selections of it match everything and groupings by
    it give one group.
  - Legends and annotation texts (C({{endpoint}}), C(tagKeys)) follow the label names.
  - A dashboard without such constants is returned unchanged, byte for byte; any other is
    returned as JSON indented by two spaces with a final newline (the format of the bundled files).
positional: metrics, labels
options:
  _input:
    description: The dashboard JSON text.
    type: str
    required: true
  metrics:
    description: Metric names by key (C(grafana_ml_metrics)).
    type: dict
    required: true
  labels:
    description: Label names by key (C(grafana_ml_labels)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Copy a dashboard set to the metric contract
  ansible.builtin.copy:
    content: >-
      {{ lookup('ansible.builtin.file', 'inference-api.json', rstrip=false)
         | monstack.stack.ml_dashboard(grafana_ml_metrics, grafana_ml_labels) }}
    dest: /var/lib/grafana/dashboards/Inference/inference-api.json
    mode: "0640"
"""

RETURN = r"""
_value:
  description: The dashboard JSON text.
  type: str
"""

CONSTANT_RE = re.compile(r"ml_(metric|label)_(\w+)")
# Labels whose absence is harmless: without a value the key is used as the
# label name, which the series do not carry.
OPTIONAL_LABELS = ("endpoint", "model_name", "model_version")
TEXT_KEYS = ("legendFormat", "titleFormat", "textFormat")
EMPTY_PANEL = {
    "type": "text",
    "title": "Not in this metric contract",
    "gridPos": {"h": 4, "w": 24, "x": 0, "y": 0},
    "options": {
        "mode": "markdown",
        "content": "The services' metric contract (`grafana_ml_metrics`, `grafana_ml_labels`) has none of "
                   "the metrics this dashboard shows. See README.md, *ML metric contracts*.",
    },
}


def _references(names: set[str]) -> re.Pattern | None:
    """A pattern matching $name, ${name...} and [[name...]] of any of the names."""
    if not names:
        return None
    alternatives = "|".join(sorted(map(re.escape, names)))
    return re.compile(rf"\$\{{(?:{alternatives})[}}:.]|\$(?:{alternatives})\b|\[\[(?:{alternatives})[\]:]")


def _uses(pattern: re.Pattern | None, *texts: Any) -> bool:
    return pattern is not None and any(isinstance(t, str) and pattern.search(t) for t in texts)


def _rename_labels(text: str, renames: dict[str, str]) -> str:
    for key, name in renames.items():
        text = re.sub(r"\{\{\s*" + re.escape(key) + r"\s*\}\}", "{{" + name + "}}", text)
    return text


def _target_expr(target: dict) -> str:
    return target.get("expr") or ""


def _prune_panels(panels: list[dict], empty: re.Pattern | None) -> list[dict]:
    """Panels without the queries that use an empty constant; empty panels and rows removed."""
    kept: list[dict] = []
    for panel in panels:
        if panel.get("type") == "row":
            row = dict(panel)
            if "panels" in row:
                row["panels"] = _prune_panels(row["panels"], empty)
            kept.append(row)
            continue
        targets = panel.get("targets")
        if targets is None:
            kept.append(panel)
            continue
        targets = [t for t in targets if not _uses(empty, _target_expr(t))]
        if targets:
            kept.append({**panel, "targets": targets})
    # A collapsed row stays when it holds panels, an open one when panels
    # follow it before the next row.
    out: list[dict] = []
    for index, panel in enumerate(kept):
        if panel.get("type") == "row":
            following = kept[index + 1] if index + 1 < len(kept) else None
            if panel.get("collapsed"):
                if not panel.get("panels"):
                    continue
            elif following is None or following.get("type") == "row":
                continue
        out.append(panel)
    return out


def apply_contract(board: dict, metrics: dict | None = None, labels: dict | None = None) -> dict:
    """The dashboard with its ml_metric_*/ml_label_* constants set (a copy).

    metrics/labels None: keep the values the dashboard holds (only prune).
    """
    board = copy.deepcopy(board)
    variables = board.get("templating", {}).get("list", [])
    values: dict[str, str] = {}
    renames: dict[str, str] = {}
    for var in variables:
        match = CONSTANT_RE.fullmatch(var.get("name") or "")
        if var.get("type") != "constant" or not match:
            continue
        kind, key = match.groups()
        given = metrics if kind == "metric" else labels
        value = str(var.get("query") or "") if given is None else str(given.get(key) or "")
        if value and not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", value):
            raise AnsibleFilterError(f"ml_dashboard: {kind} {key}: {value!r} is no Prometheus name")
        if kind == "label" and not value and key in OPTIONAL_LABELS:
            value = key
        if kind == "label" and value != key:
            renames[key] = value
        var["query"] = value
        values[var["name"]] = value
    if not values:
        return board
    empty = _references({name for name, value in values.items() if not value})

    for index, var in enumerate(variables):
        if var.get("type", "query") == "query":
            query = var.get("query")
            text = query.get("query", "") if isinstance(query, dict) else query
            if _uses(empty, text, var.get("definition")):
                variables[index] = {"name": var["name"], "type": "constant", "query": ".*", "hide": 2,
                                    "skipUrlSync": True, "label": var.get("label", var["name"]),
                                    "description": "Not in the metric contract: matches every value."}

    annotations = board.get("annotations", {}).get("list")
    if annotations is not None:
        board["annotations"]["list"] = [
            a for a in annotations
            if not _uses(empty, a.get("expr"), (a.get("target") or {}).get("expr"))]
        for annotation in board["annotations"]["list"]:
            for key in TEXT_KEYS:
                if isinstance(annotation.get(key), str):
                    annotation[key] = _rename_labels(annotation[key], renames)
            if isinstance(annotation.get("tagKeys"), str) and renames:
                annotation["tagKeys"] = ",".join(renames.get(k.strip(), k.strip())
                                                 for k in annotation["tagKeys"].split(","))

    panels = _prune_panels(board.get("panels", []), empty)

    def relabel(items: list[dict]) -> None:
        for panel in items:
            for target in panel.get("targets") or []:
                for key in TEXT_KEYS:
                    if isinstance(target.get(key), str):
                        target[key] = _rename_labels(target[key], renames)
            relabel(panel.get("panels") or [])

    relabel(panels)
    if not [p for p in panels if p.get("type") != "row"]:
        used = {p.get("id", 0) for p in panels}
        panels = [{**EMPTY_PANEL, "id": max(used | {0}) + 1}]
    board["panels"] = panels
    return board


def monstack_ml_dashboard(text: str, metrics: dict, labels: dict) -> str:
    """Filter: the dashboard text set to the metric contract (see DOCUMENTATION)."""
    if not isinstance(text, str):
        raise AnsibleFilterError("ml_dashboard: the input must be the dashboard's JSON text")
    if not isinstance(metrics, dict) or not isinstance(labels, dict):
        raise AnsibleFilterError("ml_dashboard: metrics and labels must be mappings")
    if "ml_metric_" not in text and "ml_label_" not in text:
        return text
    try:
        board = json.loads(text)
    except ValueError as err:
        raise AnsibleFilterError(f"ml_dashboard: the dashboard is no JSON: {err}") from err
    if not isinstance(board, dict):
        return text
    result = apply_contract(board, metrics, labels)
    if result == board:
        return text
    return json.dumps(result, indent=2) + "\n"


class FilterModule:
    def filters(self):
        return {"ml_dashboard": monstack_ml_dashboard}
