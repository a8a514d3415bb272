"""plugins/filter/ml_dashboard.py: dashboards set to an ML metric contract."""
from __future__ import annotations

import copy
import json

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.monstack.stack.plugins.filter.ml_dashboard import FilterModule, apply_contract, monstack_ml_dashboard

DS = {"type": "prometheus", "uid": "monstack-prometheus"}
METRICS = {"requests_total": "req_total", "model_info": "model_info", "drift_ratio": ""}
LABELS = {"status": "code", "endpoint": "route", "model_name": "", "model_version": "version"}


def constant(name: str, value: str) -> dict:
    return {"name": name, "type": "constant", "query": value, "hide": 2, "skipUrlSync": True}


def board() -> dict:
    """A small dashboard in the style of the bundled Inference ones."""
    return {
        "title": "t", "uid": "u",
        "templating": {"list": [
            {"name": "endpoint", "type": "query", "datasource": DS, "allValue": ".*",
             "definition": "label_values(${ml_metric_requests_total}, ${ml_label_endpoint})",
             "query": {"query": "label_values(${ml_metric_requests_total}, ${ml_label_endpoint})"}},
            {"name": "drifting", "type": "query", "datasource": DS, "allValue": ".*",
             "definition": "label_values(${ml_metric_drift_ratio}, service)",
             "query": {"query": "label_values(${ml_metric_drift_ratio}, service)"}},
            constant("ml_metric_requests_total", "inference_requests_total"),
            constant("ml_metric_model_info", "inference_model_info"),
            constant("ml_metric_drift_ratio", "inference_drift_ratio"),
            constant("ml_label_status", "status"),
            constant("ml_label_endpoint", "endpoint"),
            constant("ml_label_model_name", "model_name"),
            constant("ml_label_model_version", "model_version"),
        ]},
        "annotations": {"list": [
            {"datasource": DS, "name": "model", "expr": "changes(${ml_metric_model_info}[5m]) > 0",
             "titleFormat": "{{model_name}} {{ model_version }}", "tagKeys": "service,model_version"},
            {"datasource": DS, "name": "drift", "expr": "$ml_metric_drift_ratio > 0.3"},
        ]},
        "panels": [
            {"type": "row", "id": 1, "title": "Requests", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}},
            {"type": "timeseries", "id": 2, "title": "by endpoint", "datasource": DS, "targets": [
                {"refId": "A", "legendFormat": "{{endpoint}} {{status}}",
                 "expr": 'sum by (${ml_label_endpoint}, ${ml_label_status}) '
                         '(rate(${ml_metric_requests_total}{${ml_label_endpoint}=~"$endpoint"}[5m]))'}]},
            {"type": "row", "id": 3, "title": "Drift", "gridPos": {"x": 0, "y": 9, "w": 24, "h": 1}},
            {"type": "stat", "id": 4, "title": "drift", "datasource": DS, "targets": [
                {"refId": "A", "expr": "avg(${ml_metric_drift_ratio})"},
                {"refId": "B", "expr": "avg([[ml_metric_drift_ratio]])"}]},
            {"type": "row", "id": 5, "title": "Model", "gridPos": {"x": 0, "y": 18, "w": 24, "h": 1}},
            {"type": "table", "id": 6, "title": "models", "datasource": DS, "targets": [
                {"refId": "A", "legendFormat": "{{model_name}} {{model_version}}",
                 "expr": "max by (${ml_label_model_name}, ${ml_label_model_version}) (${ml_metric_model_info})"}]},
            {"type": "text", "id": 7, "title": "note", "options": {"content": "hi"}},
        ],
    }


def constants(result: dict) -> dict[str, str]:
    return {v["name"]: v["query"] for v in result["templating"]["list"] if v["type"] == "constant"}


def test_constants_get_the_contract_and_what_it_lacks_is_left_out():
    result = apply_contract(board(), METRICS, LABELS)
    assert constants(result) == {
        "ml_metric_requests_total": "req_total", "ml_metric_model_info": "model_info",
        "ml_metric_drift_ratio": "", "ml_label_status": "code", "ml_label_endpoint": "route",
        "ml_label_model_name": "model_name",  # empty: the key, a label the series lack
        "ml_label_model_version": "version", "drifting": ".*"}
    # The drift stat lost both its queries (${name} and [[name]] forms), and its row went with it.
    assert [p["title"] for p in result["panels"]] == ["Requests", "by endpoint", "Model", "models", "note"]
    # The variable that needs the drift gauge matches everything instead.
    drifting = next(v for v in result["templating"]["list"] if v["name"] == "drifting")
    assert drifting["type"] == "constant" and drifting["query"] == ".*" and drifting["hide"] == 2
    # Annotations: the drift one ($name form) is gone; texts follow the label names.
    assert result["annotations"]["list"] == [
        {"datasource": DS, "name": "model", "expr": "changes(${ml_metric_model_info}[5m]) > 0",
         "titleFormat": "{{model_name}} {{version}}", "tagKeys": "service,version"}]
    assert result["panels"][1]["targets"][0]["legendFormat"] == "{{route}} {{code}}"
    assert result["panels"][3]["targets"][0]["legendFormat"] == "{{model_name}} {{version}}"
    # The input is not changed.
    assert board() == board() and constants(board())["ml_label_status"] == "status"


def test_missing_keys_count_as_empty_and_status_is_required():
    result = apply_contract(board(), {"model_info": "m"}, {})
    assert constants(result)["ml_metric_requests_total"] == ""
    assert constants(result)["ml_label_status"] == ""
    assert constants(result)["ml_label_endpoint"] == "endpoint"
    assert [p["title"] for p in result["panels"]] == ["Model", "models", "note"]
    variables = {v["name"]: v for v in result["templating"]["list"]}
    assert variables["endpoint"]["type"] == "constant"


def test_a_dashboard_left_without_panels_says_so():
    bare = board()
    bare["panels"] = [p for p in bare["panels"] if p["type"] != "text"]
    result = apply_contract(bare, {}, {})
    assert [p["type"] for p in result["panels"]] == ["text"]
    assert result["panels"][0]["id"] == 1
    assert "grafana_ml_metrics" in result["panels"][0]["options"]["content"]


def test_without_a_contract_the_files_values_stay():
    result = apply_contract(board())
    assert constants(result)["ml_metric_requests_total"] == "inference_requests_total"
    assert len(result["panels"]) == len(board()["panels"])


def test_collapsed_rows_keep_their_panels_or_go():
    collapsed = board()
    inner = collapsed["panels"][3]
    collapsed["panels"] = [{"type": "row", "id": 10, "title": "c", "collapsed": True, "panels": [inner]},
                           collapsed["panels"][1]]
    result = apply_contract(collapsed, METRICS, LABELS)
    assert [p["title"] for p in result["panels"]] == ["by endpoint"]
    kept = apply_contract(collapsed, METRICS | {"drift_ratio": "drift"}, LABELS)
    assert [p["title"] for p in kept["panels"]] == ["c", "by endpoint"]
    assert [len(p["targets"]) for p in kept["panels"][0]["panels"]] == [2]


def test_filter_text_in_text_out():
    text = json.dumps(board(), indent=2) + "\n"
    out = monstack_ml_dashboard(text, METRICS, LABELS)
    assert json.loads(out) == apply_contract(board(), METRICS, LABELS)
    assert out.endswith("}\n") and out.startswith("{\n  ")
    # Nothing to change: the very same text (also its formatting).
    same = {"requests_total": "inference_requests_total", "model_info": "inference_model_info",
            "drift_ratio": "inference_drift_ratio"}
    labels = {k: k for k in ("status", "endpoint", "model_name", "model_version")}
    odd = json.dumps(board(), indent=4)
    assert monstack_ml_dashboard(odd, same, labels) == odd
    # A dashboard without contract constants is never parsed.
    assert monstack_ml_dashboard('{"title": "mine"} ', METRICS, LABELS) == '{"title": "mine"} '
    assert monstack_ml_dashboard("not json at all", METRICS, LABELS) == "not json at all"
    assert FilterModule().filters()["ml_dashboard"] is monstack_ml_dashboard


@pytest.mark.parametrize("metrics, labels, message", [
    ({"requests_total": "bad name"}, {}, "no Prometheus name"),
    ({}, {"status": 'x"}'}, "no Prometheus name"),
    ([], {}, "mappings"),
])
def test_bad_input_is_refused(metrics, labels, message):
    with pytest.raises(AnsibleFilterError, match=message):
        monstack_ml_dashboard(json.dumps(board()), metrics, labels)


def test_broken_json_with_constants_is_refused():
    with pytest.raises(AnsibleFilterError, match="no JSON"):
        monstack_ml_dashboard('{"x": "${ml_metric_requests_total}"', METRICS, LABELS)
    with pytest.raises(AnsibleFilterError, match="JSON text"):
        monstack_ml_dashboard(copy.deepcopy(board()), METRICS, LABELS)
