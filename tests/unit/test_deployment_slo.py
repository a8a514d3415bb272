"""SLOs of deployment records (plugins/module_utils/deployment_slo.py): the record contract,
the host-side refusals, and the generated rules run by the real promtool.

promtool: $PROMTOOL or /var/cache/monstack/bin/promtool (tools/build_mirror.py); the
promtool tests are skipped, with the reason, when it is missing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))
# pylint: disable=wrong-import-position
from ansible_collections.monstack.stack.plugins.module_utils import deployment_records as dr  # noqa: E402
from ansible_collections.monstack.stack.plugins.module_utils import deployment_slo as ds  # noqa: E402


def find_promtool() -> str | None:
    for candidate in (os.environ.get("PROMTOOL"), "/var/cache/monstack/bin/promtool"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


PROMTOOL = find_promtool()
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not found at $PROMTOOL or "
                                                             "/var/cache/monstack/bin/promtool (tools/build_mirror.py)")
SAMPLE_APP = yaml.safe_load((ROOT / "examples" / "metric-contracts" / "sample-app.yml").read_text())
CONTRACT = ds.check_contract({
    "requests_total": SAMPLE_APP["prometheus_ml_metrics"]["requests_total"],
    "request_duration_seconds": SAMPLE_APP["prometheus_ml_metrics"]["request_duration_seconds"],
    "status_label": SAMPLE_APP["prometheus_ml_labels"]["status"],
    "buckets": SAMPLE_APP["prometheus_ml_latency_buckets"],
    "retention": "30d",
})
AVAILABILITY = {"name": "availability", "objective": 99.9}
LATENCY = {"name": "fast-predict", "objective": 99.9, "threshold_seconds": 0.5}


def record(**extra) -> dict:
    return {"service": "api", "environment": "prod", "version": "1.0", "deployed_at": "2026-11-20T10:15:00Z",
            "targets": ["app1.example.com:8000"], "_source": "/records/api.json", **extra}


def normalized(slos) -> list[dict]:
    return dr.check_record(record(slos=slos), 1).record["slos"]


def rules(slos, contract=CONTRACT) -> str:
    return ds.render_rules("api", "prod", normalized(slos), contract)


# ------------------------------------------------------------------ contract
def test_record_shape_of_the_issue_is_accepted_and_normalized():
    assert normalized([{"name": "availability", "objective": 99.9},
                       {"name": "fast-predict", "objective": 99, "threshold_seconds": 0.5, "window": "7d"}]) == [
        {"name": "availability", "objective": 99.9, "window": "30d"},
        {"name": "fast-predict", "objective": 99, "window": "7d", "threshold_seconds": 0.5}]
    assert normalized([{"name": "a", "objective": 99, "window": "4w"}])[0]["window"] == "28d"


def test_a_record_without_slos_is_unchanged():
    assert "slos" not in dr.check_record(record(), 1).record
    assert "slos" not in dr.check_record(record(slos=[]), 1).record


@pytest.mark.parametrize("slos,field,needle", [
    ("availability", "slos", "expected a list of SLOs"),
    ([{"name": f"s{i}", "objective": 99} for i in range(11)], "slos", "11 SLOs, more than 10"),
    ([{"objective": 99}], "slos[0].name", "is required"),
    ([{"name": "Availability", "objective": 99}], "slos[0].name", "^[a-z0-9][a-z0-9_.-]*$"),
    ([{"name": "a" * 65, "objective": 99}], "slos[0].name", "at most 64"),
    ([{"name": "a\"}) or vector(1", "objective": 99}], "slos[0].name", "expected a name"),
    ([{"name": "a", "objective": 99}, {"name": "a", "objective": 98}], "slos[1].name", "earlier SLO"),
    ([{"name": "a"}], "slos[0].objective", "is required"),
    ([{"name": "a", "objective": 100}], "slos[0].objective", "less than 100"),
    ([{"name": "a", "objective": 0}], "slos[0].objective", "greater than 0"),
    ([{"name": "a", "objective": -5}], "slos[0].objective", "greater than 0"),
    ([{"name": "a", "objective": "99.9"}], "slos[0].objective", "write the number unquoted"),
    ([{"name": "a", "objective": True}], "slos[0].objective", "boolean true"),
    ([{"name": "a", "objective": float("nan")}], "slos[0].objective", "percentage"),
    ([{"name": "a", "objective": 99, "window": "30"}], "slos[0].window", "'30d'"),
    ([{"name": "a", "objective": 99, "window": "12h"}], "slos[0].window", "days or weeks"),
    ([{"name": "a", "objective": 99, "window": 30}], "slos[0].window", "integer 30"),
    ([{"name": "a", "objective": 99, "threshold_seconds": 0}], "slos[0].threshold_seconds", "greater than 0"),
    ([{"name": "a", "objective": 99, "threshold_seconds": "0.5"}], "slos[0].threshold_seconds", "'0.5'"),
    ([{"name": "a", "objective": 99, "latency": 0.5}], "slos[0].latency", "unknown key"),
])
def test_bad_slos_are_refused_naming_file_record_and_field(slos, field, needle):
    with pytest.raises(dr.RecordError) as err:
        normalized(slos)
    message = str(err.value)
    assert message.startswith(f"/records/api.json (service 'api'): field '{field}': "), message
    assert needle in message, message


@pytest.mark.parametrize("slo,contract,field,needle", [
    (LATENCY | {"threshold_seconds": 0.3}, {}, "slos[0].threshold_seconds",
     "0.3 s is not a bucket boundary of the latency histogram inference_request_duration_seconds "
     "(prometheus_ml_latency_buckets: 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)"),
    (LATENCY, {"buckets": []}, "slos[0].threshold_seconds", "(prometheus_ml_latency_buckets: none listed)"),
    (AVAILABILITY, {"retention": "15d"}, "slos[0].window",
     "needs 30d of data, more than this Prometheus keeps (prometheus_retention_time 15d)"),
    (AVAILABILITY, {"retention": ""}, "slos[0].window", "prometheus_retention_time 15d"),
    (AVAILABILITY | {"window": "1d"}, {"retention": "2d"}, "slos[0].window", "needs 3d of data"),
    (AVAILABILITY, {"status_label": ""}, "slos[0]", "prometheus_ml_labels.status"),
    (LATENCY, {"request_duration_seconds": ""}, "slos[0]", "prometheus_ml_metrics.request_duration_seconds"),
])
def test_what_the_prometheus_host_cannot_compute_is_refused(slo, contract, field, needle):
    given = {"requests_total": "inference_requests_total", "request_duration_seconds":
             "inference_request_duration_seconds", "status_label": "status",
             "buckets": SAMPLE_APP["prometheus_ml_latency_buckets"], "retention": "30d"} | contract
    with pytest.raises(dr.RecordError) as err:
        ds.check_against("/records/api.json (service 'api')", normalized([slo]), ds.check_contract(given))
    message = str(err.value)
    assert message.startswith(f"/records/api.json (service 'api'): field '{field}': "), message
    assert needle in message, message


def test_a_threshold_on_a_bucket_boundary_and_a_covered_window_pass():
    ds.check_against("x", normalized([AVAILABILITY, LATENCY | {"threshold_seconds": 1}]), CONTRACT)


@pytest.mark.parametrize("contract,needle", [
    ({"retention": "two weeks"}, "prometheus_retention_time"),
    ({"buckets": "0.5"}, "prometheus_ml_latency_buckets"),
    ({"buckets": [0.5, -1]}, "prometheus_ml_latency_buckets"),
    ({"requests_total": "bad name"}, "prometheus_ml_metrics.requests_total"),
])
def test_a_bad_contract_names_its_variable(contract, needle):
    with pytest.raises(ds.SloError, match=needle):
        ds.check_contract(contract)


@pytest.mark.parametrize("text,seconds", [("15d", 15 * 86400), ("1y", 365 * 86400), ("720h", 30 * 86400),
                                          ("2w3d", 17 * 86400)])
def test_retention_durations(text, seconds):
    assert ds.parse_duration(text, "v") == seconds


@pytest.mark.parametrize("threshold,matches,misses", [
    (0.5, ["0.5", "0.50"], ["0.05", "0.25", "5"]),
    (1, ["1", "1.0", "1.00"], ["10", "0.1", "1.5"]),
    (2.5, ["2.5"], ["2.55", "25"]),
])
def test_le_pattern_matches_every_spelling_of_the_boundary(threshold, matches, misses):
    import re
    pattern = re.compile(ds.le_pattern(threshold))
    assert all(pattern.fullmatch(m) for m in matches)
    assert not any(pattern.fullmatch(m) for m in misses)


# -------------------------------------------------------------------- rules
def test_rules_have_the_standard_windows_the_slo_window_and_the_four_burn_rate_pairs():
    doc = yaml.safe_load(rules([AVAILABILITY, LATENCY | {"window": "7d"}]))
    [group] = doc["groups"]
    records = [r["record"] for r in group["rules"] if "record" in r]
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert records.count(f"monstack_slo:error_ratio:rate{window}") == 2
    assert records.count("monstack_slo:error_ratio:slo_window") == 2
    windows = [r["expr"] for r in group["rules"] if r.get("record") == "monstack_slo:error_ratio:slo_window"]
    assert "[30d]" in windows[0] and "[7d]" in windows[1]
    alerts = [r for r in group["rules"] if "alert" in r]
    assert [(a["labels"]["slo"], a["labels"]["severity"]) for a in alerts] == [
        ("availability", "page"), ("availability", "ticket"), ("fast-predict", "page"), ("fast-predict", "ticket")]
    for alert in alerts:
        assert set(alert["labels"]) == {"service", "environment", "slo", "severity"}
        assert alert["labels"]["service"] == "api" and alert["labels"]["environment"] == "prod"
    page = alerts[0]["expr"]
    assert "rate1h" in page and "rate5m" in page and "rate6h" in page and "rate30m" in page and "> 0.0144" in page
    ticket = alerts[1]["expr"]
    assert "rate1d" in ticket and "rate2h" in ticket and "rate3d" in ticket and "> 0.003" in ticket
    assert 'inference_request_duration_seconds_bucket{service="api",environment="prod",le=~"0[.]50*"}' in rules([LATENCY])


@needs_promtool
def test_the_rule_file_of_a_service_with_two_slos_passes_promtool_check(tmp_path):
    path = tmp_path / "prod--api.yml"
    path.write_text(rules([{"name": "availability", "objective": 99.9},
                           {"name": "fast-predict", "objective": 99, "threshold_seconds": 0.5, "window": "7d"}]))
    proc = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 24 rules found" in proc.stdout


# --------------------------------------------------- promtool test rules
SERIES = 'inference_requests_total{service="api",environment="prod",instance="app1:8000",endpoint="/predict",'
HISTOGRAM = 'inference_request_duration_seconds_%s{service="api",environment="prod",instance="app1:8000"%s}'


def traffic(errors_per_10000: int, slow_per_10000: int) -> list[dict]:
    """10,000 requests a minute for 7 hours, with that many 5xx answers and that many slower than 0.5 s."""
    steps = 7 * 60
    return [
        {"series": SERIES + 'status="200"}', "values": f"0+{10000 - errors_per_10000}x{steps}"},
        {"series": SERIES + 'status="500"}', "values": f"0+{errors_per_10000}x{steps}"},
        {"series": HISTOGRAM % ("bucket", ',le="0.25"'), "values": f"0+{10000 - slow_per_10000}x{steps}"},
        {"series": HISTOGRAM % ("bucket", ',le="0.5"'), "values": f"0+{10000 - slow_per_10000}x{steps}"},
        {"series": HISTOGRAM % ("bucket", ',le="+Inf"'), "values": f"0+10000x{steps}"},
        {"series": HISTOGRAM % ("count", ""), "values": f"0+10000x{steps}"},
    ]


def firing(eval_time: str, *alerts: tuple[str, str], state: str = "firing") -> dict:
    return {"expr": f'ALERTS{{alertname="SLOErrorBudgetBurn",alertstate="{state}"}}', "eval_time": eval_time,
            "exp_samples": [{"labels": (f'ALERTS{{alertname="SLOErrorBudgetBurn",alertstate="{state}",'
                                        f'environment="prod",service="api",severity="{severity}",slo="{slo}"}}'),
                             "value": 1} for slo, severity in alerts]}


# (name, SLO under test, its bad share per 10,000 requests, the expectations at eval times)
def scenarios(slo: str) -> list[tuple[str, int, list[dict]]]:
    return [
        ("2% bad pages within 5 minutes", 200, [
            firing("1m", (slo, "page"), (slo, "ticket"), state="pending"),
            firing("5m", (slo, "page")),
            firing("5m", (slo, "ticket"), state="pending")]),
        ("0.5% bad raises a ticket and no page", 50, [
            firing("5m"), firing("30m", (slo, "ticket")), firing("2h", (slo, "ticket")),
            firing("6h", (slo, "ticket")), firing("6h", state="pending")]),
        ("0.05% bad raises nothing over 6 hours", 5, [
            firing(t) for t in ("5m", "30m", "1h", "2h", "3h", "6h")] + [
            firing(t, state="pending") for t in ("5m", "1h", "6h")]),
    ]


CASES = [(slo, name, bad, expect) for slo in ("availability", "fast-predict") for name, bad, expect in scenarios(slo)]


@needs_promtool
@pytest.mark.parametrize("slo,name,bad,expect", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_burn_rate_alerts_with_a_99_9_objective(tmp_path, slo, name, bad, expect):
    rule_file = tmp_path / "prod--api.yml"
    rule_file.write_text(rules([AVAILABILITY, LATENCY]))
    errors, slow = (bad, 0) if slo == "availability" else (0, bad)
    test = {"rule_files": [str(rule_file)], "evaluation_interval": "1m",
            "tests": [{"name": name, "interval": "1m", "input_series": traffic(errors, slow),
                       "promql_expr_test": expect}]}
    test_file = tmp_path / "slo.test.yml"
    test_file.write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------- the record store module, real Prometheus
import grp  # noqa: E402
import importlib.util  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "unit"))
import deployment_api as dc  # noqa: E402

_spec = importlib.util.spec_from_file_location("deployment_store", ROOT / "plugins" / "modules" / "deployment_store.py")
store = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(store)
PROMETHEUS = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack")) / "bin" / "prometheus"
needs_prometheus = pytest.mark.skipif(
    PROMTOOL is None or not os.access(PROMETHEUS, os.X_OK),
    reason=f"prometheus or promtool not found ({PROMETHEUS}, $PROMTOOL; tools/build_mirror.py)")


@pytest.fixture(name="prometheus")
def fixture_prometheus(tmp_path):
    """A real Prometheus on 127.0.0.1 that loads tmp_path/rules/*.yml; stopped at the end."""
    rules_dir = tmp_path / "rules"
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global: {{evaluation_interval: 1s}}\nrule_files: [{json.dumps(str(rules_dir / '*.yml'))}]\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("Prometheus did not start")
        yield {"proc": proc, "url": url, "rules_dir": rules_dir}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def store_params(tmp_path, prom, records, token="t1"):
    for sub in ("sd", "tf"):
        (tmp_path / sub).mkdir(exist_ok=True)
    return {"path": str(tmp_path / "state"), "entries": dc.deployment_store_entries(records),
            "owner": "directory", "prune": True, "untracked_owner": "directory", "file_sd_dir": str(tmp_path / "sd"),
            "textfile_dir": str(tmp_path / "tf"), "write": True, "file_sd_group": grp.getgrgid(os.getgid()).gr_name,
            "lock_token": token, "lock_holder": "test", "lock_timeout": 2, "lock_lease": 60,
            "rules_dir": str(prom["rules_dir"]), "promtool": PROMTOOL,
            "slo_contract": {"requests_total": "inference_requests_total",
                             "request_duration_seconds": "inference_request_duration_seconds",
                             "status_label": "status", "buckets": [0.1, 0.5, 1], "retention": "30d"},
            "reload": {"service": "prometheus", "metrics_url": prom["url"] + "/metrics", "api_url": prom["url"]}}


def update(params, run):
    """One call of the module with release: always (the lock is given back)."""
    try:
        return store.update(params, False, run=run)
    finally:
        store.release(params["path"], params["lock_token"])


def runner(prom, calls):
    """The module's commands: promtool for real; 'systemctl reload' is the SIGHUP systemd's ExecReload sends."""
    def run(argv):
        calls.append(argv[:2])
        if argv[:2] == ["systemctl", "reload"]:
            prom["proc"].send_signal(signal.SIGHUP)
            return 0, "", ""
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr
    return run


def groups(prom):
    body = json.loads(urllib.request.urlopen(prom["url"] + "/api/v1/rules", timeout=5).read())
    return {g["name"]: [r["name"] for r in g["rules"]] for g in body["data"]["groups"]}


def svc(name, at="2026-11-20T10:15:00Z", **extra):
    return {"service": name, "environment": "prod", "version": "1.0", "deployed_at": at,
            "targets": [f"{name}.example.com:8000"], "_source": f"/records/{name}.json", **extra}


@needs_prometheus
def test_store_writes_checks_and_loads_the_rules_and_reloads_only_for_a_rule_change(tmp_path, prometheus):
    calls = []
    run = runner(prometheus, calls)
    first = update(store_params(tmp_path, prometheus, [svc("api", slos=[AVAILABILITY, LATENCY]), svc("web")]), run)
    assert first["rules"] == {"written": ["prod--api.yml"], "removed": [], "reloaded": True}
    assert ["systemctl", "reload"] in calls and [PROMTOOL, "check"] in calls
    assert "monstack-slo-prod--api" in groups(prometheus)
    assert groups(prometheus)["monstack-slo-prod--api"].count("SLOErrorBudgetBurn") == 4
    # a target change only: no rule written, no reload
    calls.clear()
    moved = svc("api", "2026-11-21T00:00:00Z", slos=[AVAILABILITY, LATENCY])
    moved["targets"] = ["api2.example.com:8000"]
    again = update(store_params(tmp_path, prometheus, [moved, svc("web")], "t2"), run)
    assert again["rules"] == {"written": [], "removed": [], "reloaded": False} and again["written"]
    assert ["systemctl", "reload"] not in calls
    # one SLO removed: the file is rewritten; the record removed: its rules go
    one = update(store_params(tmp_path, prometheus, [svc("api", "2026-11-22T00:00:00Z", slos=[AVAILABILITY]),
                                                     svc("web")], "t3"), run)
    assert one["rules"]["written"] == ["prod--api.yml"] and one["rules"]["reloaded"]
    assert groups(prometheus)["monstack-slo-prod--api"].count("SLOErrorBudgetBurn") == 2
    gone = update(store_params(tmp_path, prometheus, [svc("web")], "t4"), run)
    assert gone["rules"] == {"written": [], "removed": ["prod--api.yml"], "reloaded": True}
    assert "monstack-slo-prod--api" not in groups(prometheus)
    assert sorted(os.listdir(prometheus["rules_dir"])) == []


@needs_prometheus
def test_store_refuses_a_record_this_host_cannot_compute_before_writing(tmp_path, prometheus):
    calls = []
    params = store_params(tmp_path, prometheus, [svc("api", slos=[LATENCY | {"threshold_seconds": 0.25}])])
    with pytest.raises(store.StoreError) as err:
        store.update(params, False, run=runner(prometheus, calls))
    message = str(err.value)
    assert message.startswith("Not applied, nothing written: ")
    assert "(service 'api'): field 'slos[0].threshold_seconds': 0.25 s is not a bucket" in message
    assert "(prometheus_ml_latency_buckets: 0.1, 0.5, 1)" in message
    assert calls == [] and not os.listdir(tmp_path / "sd") and not (tmp_path / "state" / "store.json").exists()


@needs_prometheus
def test_store_reports_rules_prometheus_does_not_load(tmp_path, prometheus):
    params = store_params(tmp_path, prometheus, [svc("api", slos=[AVAILABILITY])])
    params["rules_dir"] = str(tmp_path / "elsewhere")  # not in this Prometheus' rule_files
    with pytest.raises(store.StoreError, match="does not run the SLO rule groups monstack-slo-prod--api"):
        store.update(params, False, run=runner(prometheus, []))
