"""The comparing gate (plugins/module_utils/deployment_compare.py): settings, PromQL, verdicts, table.

Pure parts here; the gate against a real Prometheus and the real sample app is
molecule/default/tests/test_6c_compare.py.
"""
from __future__ import annotations

import math

import pytest

from ansible_collections.monstack.stack.plugins.module_utils import deployment_compare as dc
from ansible_collections.monstack.stack.plugins.modules import deployment_compare as module
from ansible_collections.monstack.stack.plugins.modules.deployment_store import replaced

NAMES = {"requests": "inference_requests_total", "duration": "inference_request_duration_seconds",
         "status": "status"}
OPTIONS = dc.settings({"window": 60, "min_requests": 50})


def side(requests=1000.0, error_ratio=0.001, latency=0.05):
    return {"requests": requests, "error_ratio": error_ratio, "latency": latency}


# ---------------------------------------------------------------- settings
def test_defaults_are_documented_values():
    got = dc.settings(None)
    assert got == dc.DEFAULTS
    assert got["on_low_traffic"] == "fail" and got["rollback_dir"] == "" and got["window"] == 300


@pytest.mark.parametrize("given, words", [
    ("120", "expected a mapping"),
    ({"windw": 60}, "unknown setting(s) windw"),
    ({"window": 5}, "deployment_compare.window"),
    ({"window": True}, "deployment_compare.window"),
    ({"window": "60"}, "deployment_compare.window"),
    ({"min_requests": 0}, "min_requests"),
    ({"on_low_traffic": "ignore"}, "on_low_traffic: expected one of fail, pass"),
    ({"error_ratio_margin": -0.1}, "error_ratio_margin"),
    ({"latency_margin_relative": float("nan")}, "latency_margin_relative"),
    ({"error_ratio_margin": None}, "both null"),
    ({"quantile": 1}, "quantile"),
    ({"rollback_dir": "/tmp/x\n"}, "rollback_dir"),
    ({"annotate": "yes"}, "annotate"),
])
def test_bad_settings_are_refused_by_name(given, words):
    with pytest.raises(dc.CompareError, match=None) as info:
        dc.settings(given)
    assert words in str(info.value)


# ---------------------------------------------------------------- PromQL from validated names only
def test_queries_use_the_contract_names_and_quoted_labels():
    sel = dc.selector("deployments", "api", "prod", '1.0"} or vector(1) #')
    assert sel == 'job="deployments",service="api",environment="prod",version="1.0\\"} or vector(1) #"'
    got = dc.queries(NAMES, sel, 60, 0.95)
    assert got["requests"] == f"sum(increase(inference_requests_total{{{sel}}}[60s]))"
    assert 'status=~"5.."' in got["error_ratio"] and "or vector(0)" in got["error_ratio"]
    assert got["latency"].startswith("histogram_quantile(0.95, sum by (le) (rate(inference_request_duration_seconds_bucket{")
    assert "latency" not in dc.queries(dict(NAMES, duration=""), sel, 60, 0.95)


@pytest.mark.parametrize("metrics, labels, words", [
    ({"requests_total": "x{job=\"a\"}"}, {"status": "status"}, "prometheus_ml_metrics.requests_total"),
    ({"requests_total": "req", "request_duration_seconds": "d) or vector(1"}, {"status": "status"},
     "request_duration_seconds"),
    ({"requests_total": "req"}, {"status": "st=~\".*\""}, "prometheus_ml_labels.status"),
    ({"requests_total": ""}, {"status": "status"}, "are empty"),
    ({"requests_total": "req"}, {}, "are empty"),
])
def test_contract_names_that_are_not_prometheus_names_are_refused(metrics, labels, words):
    with pytest.raises(dc.CompareError) as info:
        dc.contract(metrics, labels)
    assert words in str(info.value)


@pytest.mark.parametrize("service, environment, version", [
    ("API", "prod", "1"), ("api", 'prod"}', "1"), ("api", "prod", ""), ("api", "prod", "1\n2"),
    ("api", "prod", "v" * 129), ("api", "prod", None), (None, "prod", "1"),
])
def test_record_values_that_could_escape_the_selector_are_refused(service, environment, version):
    with pytest.raises(dc.CompareError):
        dc.selector("deployments", service, environment, version)


# ---------------------------------------------------------------- answers
@pytest.mark.parametrize("result, expected", [
    ([], None), (None, None), ([{"value": [1, "12.5"]}], 12.5), ([{"value": [1, "NaN"]}], "nan"),
    ([{"value": [1, "+Inf"]}], math.inf), ([{"value": "x"}], None), ([{"value": [1, "abc"]}], None),
])
def test_sample_value(result, expected):
    got = dc.sample_value(result)
    if expected == "nan":
        assert math.isnan(got)
    else:
        assert got == expected


# ---------------------------------------------------------------- verdicts
def test_no_previous_version_passes_and_says_so():
    got = dc.verdict(side(), None, OPTIONS)
    assert got["state"] == "pass" and got["reason"] == "no previous version to compare with"


def test_same_numbers_pass():
    assert dc.verdict(side(), side(), OPTIONS)["state"] == "pass"


def test_errors_beyond_the_margin_fail():
    got = dc.verdict(side(error_ratio=0.05), side(error_ratio=0.001), OPTIONS)
    assert got["state"] == "fail"
    assert got["reason"] == "error ratio 5.00% against 0.10%, worse beyond the margins (+1 percentage points)"


def test_errors_within_the_absolute_margin_pass():
    assert dc.verdict(side(error_ratio=0.008), side(error_ratio=0.0), OPTIONS)["state"] == "pass"


def test_both_margins_must_be_exceeded():
    options = dc.settings({"error_ratio_margin": 0.01, "error_ratio_margin_relative": 1.0})
    # +1.5 points but only +50 %: within the relative margin
    assert dc.verdict(side(error_ratio=0.045), side(error_ratio=0.03), options)["state"] == "pass"
    assert dc.verdict(side(error_ratio=0.07), side(error_ratio=0.03), options)["state"] == "fail"
    relative_only = dc.settings({"error_ratio_margin": None, "error_ratio_margin_relative": 0.5})
    assert dc.verdict(side(error_ratio=0.0016), side(error_ratio=0.001), relative_only)["state"] == "fail"


def test_latency_beyond_both_margins_fails():
    got = dc.verdict(side(latency=0.3), side(latency=0.1), OPTIONS)
    assert got["state"] == "fail"
    assert got["reason"] == "p95 0.300s against 0.100s, worse beyond the margins (+0.05s and +20%)"
    # +20 % but only +0.02 s: within the absolute margin
    assert dc.verdict(side(latency=0.12), side(latency=0.1), OPTIONS)["state"] == "pass"
    # +0.06 s but only +6 %: within the relative margin
    assert dc.verdict(side(latency=1.06), side(latency=1.0), OPTIONS)["state"] == "pass"


def test_latency_not_compared_when_both_margins_are_null():
    options = dc.settings({"latency_margin_seconds": None, "latency_margin_relative": None})
    assert dc.verdict(side(latency=9.0), side(latency=0.1), options)["state"] == "pass"


def test_infinite_latency_is_worse_unless_both_are():
    assert dc.verdict(side(latency=math.inf), side(latency=0.1), OPTIONS)["state"] == "fail"
    assert dc.verdict(side(latency=math.inf), side(latency=math.inf), OPTIONS)["state"] == "pass"


@pytest.mark.parametrize("policy", ["fail", "pass"])
@pytest.mark.parametrize("new, old", [
    (side(requests=10.0), side()), (side(), side(requests=0.0)), (side(requests=None), side()),
    (side(requests=float("nan")), side()),
])
def test_too_little_traffic_is_a_verdict_of_its_own(policy, new, old):
    options = dict(OPTIONS, on_low_traffic=policy)
    got = dc.verdict(new, old, options)
    assert got["state"] == policy and got["low_traffic"] is True
    assert got["reason"].startswith("too little traffic to compare (")
    assert f"min_requests 50): on_low_traffic {policy}" in got["reason"]


@pytest.mark.parametrize("field", ["latency", "error_ratio"])
def test_nan_with_traffic_follows_the_low_traffic_setting(field):
    got = dc.verdict(side(**{field: float("nan")}), side(), OPTIONS)
    assert got["state"] == "fail" and got["low_traffic"] is True
    assert "to compare: on_low_traffic fail" in got["reason"]
    got = dc.verdict(side(**{field: float("nan")}), side(), dict(OPTIONS, on_low_traffic="pass"))
    assert got["state"] == "pass" and got["low_traffic"] is True


def test_errors_are_judged_before_missing_latency():
    got = dc.verdict(side(error_ratio=0.5, latency=float("nan")), side(), OPTIONS)
    assert got["state"] == "fail" and got["reason"].startswith("error ratio")


# ---------------------------------------------------------------- table, annotation, rollback
def result(**extra):
    new, old = side(error_ratio=0.052, latency=0.043), side(requests=2400.0, latency=0.041)
    found = dc.verdict(new, old, OPTIONS)
    return {**found, "service": "api", "environment": "prod", "version": "2.0.0", "previous_version": "1.0.0",
            "new": new, "previous": old, **extra}


def test_table_is_side_by_side():
    text = dc.table(dc.rows_of(result()))
    lines = text.splitlines()
    assert lines[0].split() == ["service", "environment", "version", "role", "requests", "error", "ratio", "p95",
                                "verdict"]
    assert lines[1].split()[:8] == ["api", "prod", "1.0.0", "previous", "2400", "0.10%", "0.041s", "(baseline)"]
    assert lines[2].split()[:8] == ["api", "prod", "2.0.0", "new", "1000", "5.20%", "0.043s", "FAIL:"]
    assert len({line.index("verdict" if i == 0 else line.split()[7]) for i, line in enumerate(lines)}) == 1


def test_table_of_a_new_service_and_of_nan():
    found = dict(dc.verdict(side(latency=float("nan")), None, OPTIONS), service="api", environment="prod",
                 version="1.0.0", previous_version=None, new=side(latency=float("nan")), previous=None)
    lines = dc.table(dc.rows_of(found)).splitlines()
    assert len(lines) == 2 and lines[1].split()[3:7] == ["new", "1000", "0.10%", "-"]
    assert "PASS: no previous version" in lines[1]


def test_table_cells_have_no_control_characters():
    found = result(version="2.0\x1b[31m")
    assert "\x1b" not in dc.table(dc.rows_of(found))


def test_annotation_is_tagged_like_deployments():
    got = dc.annotation(result(), 1_700_000_000_000)
    assert got["time"] == 1_700_000_000_000
    assert got["tags"] == ["deployment", "comparison", "fail", "api", "prod", "2.0.0"]
    assert got["text"].startswith("Comparison fail: api 2.0.0 in prod against 1.0.0: error ratio 5.20%")


def test_rollback_record_is_the_previous_record_deployed_now():
    previous = {"service": "api", "environment": "prod", "version": "1.0.0", "deployed_at": "2026-01-01T00:00:00Z",
                "targets": ["app1:8000"], "_source": "/x"}
    got = dc.rollback_record(previous, 1_800_000_000.5)
    assert got["deployed_at"] == "2027-01-15T08:00:00.500000Z" and "_source" not in got
    assert {k: v for k, v in got.items() if k != "deployed_at"} == {k: v for k, v in previous.items()
                                                                   if k not in ("deployed_at", "_source")}
    assert dc.rollback_record(None) is None


# ---------------------------------------------------------------- the store says what was replaced
def test_store_reports_replaced_versions():
    stored = {"prod--api.json": {"service": "api", "environment": "prod", "version": "1", "record": {"v": 1}},
              "prod--web.json": {"service": "web", "environment": "prod", "version": "3", "record": {}},
              "prod--old.json": {"service": "old", "environment": "prod", "version": "1", "status": "removed"}}
    entries = {"prod--api.json": {"service": "api", "environment": "prod", "version": "2", "record": {"v": 2}},
               "prod--web.json": {"service": "web", "environment": "prod", "version": "3", "record": {}},
               "prod--old.json": {"service": "old", "environment": "prod", "version": "2"},
               "prod--new.json": {"service": "new", "environment": "prod", "version": "1"}}
    got = {one["name"]: one for one in replaced(stored, entries, sorted(entries))}
    assert set(got) == {"prod--api.json", "prod--old.json", "prod--new.json"}
    assert got["prod--api.json"]["previous_version"] == "1" and got["prod--api.json"]["previous_record"] == {"v": 1}
    assert got["prod--old.json"]["previous_version"] is None and got["prod--new.json"]["previous_record"] is None


# ---------------------------------------------------------------- the module's flow, Prometheus answers stubbed
def test_compare_flow_without_a_previous_version_does_not_wait(monkeypatch):
    asked = []
    monkeypatch.setattr(module, "query", lambda params, promql, at: asked.append((promql, at)) or 500.0)
    params = {"settings": {"window": 60, "min_requests": 10}, "metrics": {"requests_total": "req"},
              "labels": {"status": "status"}, "job": "deployments", "since": 100.0,
              "services": [{"service": "api", "environment": "prod", "version": "1"}]}
    slept = []
    got = module.compare(params, clock=lambda: 1000.0, sleep=slept.append)
    assert slept == [] and got["passed"] and got["annotations"] == [] and got["rollback"] == []
    assert all(at == 1000.0 for _, at in asked)


def test_compare_flow_fails_writes_rollback_and_annotates(monkeypatch):
    def answer(params, promql, at):
        if promql.startswith("sum(increase"):
            return 500.0
        if "version=\"2\"" in promql:
            return 0.2
        return 0.0
    monkeypatch.setattr(module, "query", answer)
    previous = {"service": "api", "environment": "prod", "version": "1", "deployed_at": "2026-01-01T00:00:00Z"}
    params = {"settings": {"window": 60, "min_requests": 10, "rollback_dir": "/srv/rollback"},
              "metrics": {"requests_total": "req"}, "labels": {"status": "status"}, "job": "deployments",
              "since": 100.0, "services": [{"service": "api", "environment": "prod", "version": "2",
                                            "previous_version": "1", "previous_record": previous}]}
    slept = []
    got = module.compare(params, clock=lambda: 1000.0, sleep=slept.append)
    assert slept == [60] and not got["passed"]
    assert got["rollback"][0]["name"] == "prod--api.json" and got["rollback"][0]["record"]["version"] == "1"
    assert got["annotations"][0]["tags"][:3] == ["deployment", "comparison", "fail"]
    assert "previous_record" not in got["results"][0]
    assert "FAIL" in got["table"] and "20.00%" in got["table"]


# ---------------------------------------------------------------- the playbook, a real Prometheus, the real sample app
# (loopback only; the harness of test_deployment_gate.py: localhost is the Prometheus host)
WINDOW = 15  # seconds of each comparison window; the sample app sends itself 20 requests a second


class SampleApp:
    """tests/sample_app/inference_app.py on a loopback port, with its own traffic."""

    def __init__(self, *args: str):
        import subprocess
        import sys
        from pathlib import Path

        from test_deployment_gate import free_port
        self.port = free_port()
        app = Path(__file__).resolve().parents[1] / "sample_app" / "inference_app.py"
        self.proc = subprocess.Popen([sys.executable, str(app), "--listen", "127.0.0.1", "--port", str(self.port),
                                      "--self-traffic", "20", "--request-log", "off", "--seed", "1", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.address = f"127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def compare_prom(tmp_path_factory):
    import test_deployment_gate as gate
    gate.need_prometheus()
    server = gate.Prometheus(tmp_path_factory.mktemp("compare-prometheus"))
    yield server
    server.stop()


def test_playbook_fails_a_worse_version_with_a_table_and_passes_a_good_one(compare_prom, tmp_path):
    import json
    import time

    import test_deployment_gate as gate
    prom = compare_prom
    settings = json.dumps({"deployment_compare": {"window": WINDOW, "min_requests": 100,
                                                  "rollback_dir": str(tmp_path)}})
    apps = [SampleApp()]
    try:
        first = gate.run(prom, gate.record("scoring", "1.0.0", "2026-11-20T10:00:00Z", targets=[apps[0].address]),
                         "-e", settings)
        assert first.returncode == 0, first.stdout[-3000:]
        assert "Comparing gate failed" not in first.stdout
        assert "PASS: no previous version to compare with" in first.stdout, first.stdout[-3000:]
        time.sleep(WINDOW + 2)  # the baseline: 1.0.0's traffic before the next write
        apps.append(SampleApp("--error-rate", "0.5"))
        apps[0].stop()
        bad = gate.run(prom, gate.record("scoring", "2.0.0", "2026-11-20T11:00:00Z", targets=[apps[1].address]),
                       "-e", settings)
        out = bad.stdout
        assert bad.returncode != 0, out[-4000:]
        assert "Comparing gate failed" in out, out[-4000:]
        rows = [line for line in out.splitlines() if "scoring" in line and "production" in line and "%" in line]
        assert any("1.0.0" in row and "previous" in row and "(baseline)" in row for row in rows), out[-4000:]
        assert any("2.0.0" in row and " new " in row and "FAIL: error ratio" in row for row in rows), out[-4000:]
        rollback = json.loads((tmp_path / "production--scoring.json").read_text())
        assert rollback["version"] == "1.0.0" and rollback["targets"] == [apps[0].address]
        assert rollback["deployed_at"] > "2026-11-20T11:00:00Z"

        # a good version after the bad one: better than its baseline, passes, table shown
        apps.append(SampleApp())
        apps[1].stop()
        good = gate.run(prom, gate.record("scoring", "3.0.0", "2026-11-20T12:00:00Z", targets=[apps[2].address]),
                        "-e", settings)
        assert good.returncode == 0, good.stdout[-4000:]
        assert "PASS: not worse than the previous version" in good.stdout, good.stdout[-4000:]
    finally:
        for app in apps:
            if app.proc.poll() is None:
                app.stop()


def test_playbook_says_too_little_traffic(compare_prom, tmp_path):
    import json

    import test_deployment_gate as gate
    prom = compare_prom
    quiet = SampleApp("--self-traffic", "0")
    try:
        first = gate.run(prom, gate.record("quiet", "1.0.0", "2026-11-20T10:00:00Z", targets=[quiet.address]))
        assert first.returncode == 0, first.stdout[-3000:]
        again = gate.run(prom, gate.record("quiet", "1.1.0", "2026-11-20T11:00:00Z", targets=[quiet.address]),
                         "-e", json.dumps({"deployment_compare": {"window": 10, "on_low_traffic": "pass"}}))
        assert again.returncode == 0, again.stdout[-3000:]
        assert "PASS (low traffic): too little traffic to compare (previous 0, new 0 requests in 10s" in again.stdout, \
            again.stdout[-3000:]
    finally:
        quiet.stop()
