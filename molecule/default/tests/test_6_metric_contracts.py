"""A FastAPI service with the real prometheus-fastapi-instrumentator on the live stack.

The service (tests/fastapi_app, prometheus-fastapi-instrumentator 8.1.0 from PyPI,
library defaults) runs on monstack-app1:8001 and is registered through a deployment
record. The stack gets the ML metric contract from
examples/metric-contracts/fastapi-instrumentator.yml alone (`-e @file`, as if copied into
group_vars). With traffic of which 10 % is answered 5xx and 10 % is slow,
InferenceHighErrorRate and InferenceHighLatency must be pending within two minutes, and
the Inference dashboards, set to the same file, must get data. Afterwards the scenario's
contract (the defaults) is put back and the service deregistered.

Traffic goes from this controller to the test container only, bounded in count and time.
"""
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import ROOT, container_ip, dump, playbook, sh

sys.path.insert(0, str(ROOT / "tools"))
import dashboard_queries  # noqa: E402

CONTRACT = ROOT / "examples" / "metric-contracts" / "fastapi-instrumentator.yml"
DASHBOARDS = ROOT / "roles" / "grafana" / "files" / "dashboards"
WHEELS = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack")) / "wheels" / "fastapi-app-py3.11"
HOST, PORT, SERVICE = "monstack-app1", 8001, "shop-api"
ALERTS = {"InferenceHighErrorRate", "InferenceHighLatency"}
PENDING_WITHIN = 120  # seconds after the traffic starts


class Traffic:
    """GET /predict at `rate` per second from a small thread pool: every 10th request fails
    (500), every 10th is slow (0.8 s). Stops by itself after `limit` seconds."""

    def __init__(self, base: str, rate: float = 10, limit: float = 240):
        self.base, self.rate, self.limit = base, rate, limit
        self.stopped = threading.Event()
        self.sent = 0
        self.statuses: dict[int, int] = {}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def one(self, params: dict):
        try:
            status = requests.get(f"{self.base}/predict", params=params, timeout=5).status_code
        except requests.RequestException:
            status = 0
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def run(self):
        deadline = time.monotonic() + self.limit
        with ThreadPoolExecutor(max_workers=4) as pool:
            while not self.stopped.is_set() and time.monotonic() < deadline:
                self.sent += 1
                step = self.sent % 10
                params = {"fail": "true"} if step == 0 else {"delay": "0.8"} if step == 5 else {"x": step}
                pool.submit(self.one, params)
                self.stopped.wait(1 / self.rate)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(timeout=15)


def record_file(tmp: Path, status: str = "deployed") -> Path:
    body = {"service": SERVICE, "environment": "test", "version": "1.0.0", "status": status,
            "deployed_at": "2026-11-20T15:00:00Z" if status == "deployed" else "2026-11-20T16:00:00Z",
            "commit": "9c1d2e3"}
    if status == "deployed":
        body["targets"] = [f"{HOST}:{PORT}"]
    path = tmp / f"{SERVICE}-{status}.json"
    path.write_text(json.dumps(body))
    return path


def ml_alerts(prom) -> set[str]:
    rules = prom.get("/api/v1/rules", type="alert")["groups"]
    return {r["name"] for g in rules if g["name"] == "ml_inference" for r in g["rules"]}


@pytest.fixture(scope="module")
def instrumented(prom, tmp_path_factory):
    """The service deployed and registered, the stack on the instrumentator's contract."""
    if not list(WHEELS.glob("prometheus_fastapi_instrumentator-8.1.0-*.whl")):
        pytest.skip(f"no prometheus-fastapi-instrumentator wheels in {WHEELS} (run scripts/setup.sh)")
    tmp = tmp_path_factory.mktemp("contract")
    started = time.monotonic()
    try:
        # The service on app1 and the contract on the monitoring server: other hosts, at once.
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = [pool.submit(playbook, "tests/fastapi_app/deploy.yml"),
                    pool.submit(playbook, "playbooks/prometheus.yml", "-e", f"@{CONTRACT}")]
        for run in (future.result() for future in runs):
            assert run.returncode == 0, run.stdout[-3000:]
        assert prom.wait_for(lambda: ml_alerts(prom) == ALERTS | {"InferenceMetricsMissing"}, timeout=30), \
            dump(ml_alerts(prom))
        run = playbook("playbooks/deployments.yml", "-e", f"deployment_record_file={record_file(tmp)}")
        assert run.returncode == 0, run.stdout[-3000:]
        yield {"base": f"http://{container_ip(HOST)}:{PORT}", "setup_seconds": round(time.monotonic() - started, 1)}
    finally:
        started = time.monotonic()
        playbook("playbooks/deployments.yml", "-e", f"deployment_record_file={record_file(tmp, 'removed')}")
        back = playbook("playbooks/prometheus.yml")
        sh(HOST, "systemctl disable --now fastapi-app", check=False)
        print(f"contract teardown: {time.monotonic() - started:.1f} s")
        assert back.returncode == 0, back.stdout[-3000:]
        assert "InferenceDataDrift" in ml_alerts(prom), "the scenario's contract is back"


def test_instrumentator_series_raise_the_alerts_and_fill_the_dashboards(prom, instrumented, record_property):
    assert 'handler="/metrics"' in sh(HOST, f"curl -sf 127.0.0.1:{PORT}/metrics").stdout
    target = [t for t in prom.targets() if t["labels"].get("service") == SERVICE]
    assert [t["health"] for t in target] == ["up"], dump(target)

    record_property("contract_setup_seconds", instrumented["setup_seconds"])
    with Traffic(instrumented["base"]) as traffic:
        started = time.monotonic()

        def pending():
            alerts = prom.get("/api/v1/alerts")["alerts"]
            mine = {a["labels"]["alertname"] for a in alerts
                    if a["labels"].get("service") == SERVICE and a["state"] in ("pending", "firing")}
            return mine if mine >= ALERTS else None

        found = prom.wait_for(pending, timeout=PENDING_WITHIN, interval=2)
        elapsed = round(time.monotonic() - started, 1)
        record_property("instrumentator_alerts_pending_after_seconds", elapsed)
        assert found, f"not pending within {PENDING_WITHIN} s: " + dump(prom.get("/api/v1/alerts"))
        print(f"{sorted(found)} pending {elapsed} s after the traffic started")
        ratio = prom.query(f'sum(rate(http_requests_total{{service="{SERVICE}",status="5xx"}}[5m]))'
                           f' / sum(rate(http_requests_total{{service="{SERVICE}"}}[5m]))')
        assert 0.05 < float(ratio[0]["value"][1]) < 0.15, dump(ratio)

        # The dashboards, set to the same file, have the service's data.
        metrics, labels = dashboard_queries.load_contract(CONTRACT)
        queries = [dict(q, expr=q["expr"].replace('service=~".*"', f'service=~"{SERVICE}"'))
                   for q in dashboard_queries.extract_queries(DASHBOARDS, metrics, labels)
                   if q["dashboard"].startswith("Inference/")]
        results = dashboard_queries.run_queries(prom.base, queries)
        errors = [f"{r['dashboard']}/{r['panel']}: {r['error']}" for r in results if r["status"] != "ok"]
        assert not errors, "\n".join(errors)
        api = [r for r in results if r["dashboard"] == "Inference/inference-api.json"]
        # Health checks come from a record's health_url through the blackbox
        # exporter (test_7_health_probes.py); this service has no record.
        empty = [f"{r['panel']} [{r['ref_id']}]" for r in api if r["series"] == 0 and r["panel"] != "Health checks"]
        assert len(api) > 15 and not empty, f"inference-api.json queries without data: {empty}"
        latency = [r for r in results if r["dashboard"] == "Inference/model-performance.json" and r["kind"] == "panel"]
        assert latency and all(r["series"] > 0 for r in latency), dump(latency)
    assert traffic.statuses.get(500, 0) > 0 and traffic.statuses.get(200, 0) > 0, traffic.statuses
    assert traffic.sent < 10 * 250  # bounded


def test_targets_that_match_no_contract_series_are_found(prom, instrumented):
    """The README's query for services that expose none of the contract's series: under the
    instrumentator's contract the sample app (inference_* names) is one, the FastAPI service is not."""
    query = ('up{service!="",job!="deployment_health"} == 1 unless on (job, environment, service, instance) '
             'group by (job, environment, service, instance) '
             '({__name__=~"http_requests_total|http_request_duration_seconds_count", service!=""})')
    unmatched = {r["metric"]["service"] for r in prom.query(query)}
    assert SERVICE not in unmatched
    sample = {t["labels"]["service"] for t in prom.targets()
              if t["labels"].get("job") == "deployments" and t["health"] == "up"} - {SERVICE}
    assert unmatched == sample, dump({"unmatched": sorted(unmatched), "other services": sorted(sample)})
    # The alert over the same condition is pending for them (15 minutes `for`).
    alerts = prom.get("/api/v1/alerts")["alerts"]
    missing = {a["labels"]["service"] for a in alerts if a["labels"]["alertname"] == "InferenceMetricsMissing"}
    assert missing == sample, dump(alerts)
