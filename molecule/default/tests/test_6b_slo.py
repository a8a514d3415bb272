"""SLOs of a deployment record on the live stack, with the real sample app.

A record with an availability and a latency SLO, registered by playbooks/deployments.yml,
makes its rule file appear in Prometheus' /api/v1/rules (the run reloads Prometheus and
checks its answer); the same run again reloads nothing. The sample app
(tests/sample_app/inference_app.py, its own traffic of 20 requests a second) is then
restarted with its error switch (--error-rate 0.5): the page alert of the availability SLO
must be pending within PENDING_WITHIN seconds. Finally the record is removed and its rules
go. The app runs as a transient unit on the app host and is stopped at the end.

Traffic stays on the test containers; every wait is bounded.
"""
import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from conftest import HOSTS, MONITOR, dump, playbook, sh

APP = next((h for h in HOSTS if h != MONITOR), MONITOR)
PORT, SERVICE, UNIT = 8031, "slo-api", "monstack-slo-test-app"
GROUP = f"monstack-slo-test--{SERVICE}"
PENDING_WITHIN = 180  # seconds after the error switch
SLOS = [{"name": "availability", "objective": 99.9, "window": "7d"},
        {"name": "fast-predict", "objective": 99, "threshold_seconds": 0.5, "window": "7d"}]


def start_app(error_rate: float) -> None:
    sh(APP, f"systemctl stop {UNIT}; systemctl reset-failed {UNIT}", check=False)
    sh(APP, f"systemd-run --unit={UNIT} /usr/bin/python3 /opt/inference-app/inference_app.py --port {PORT} "
            f"--self-traffic 20 --error-rate {error_rate} --request-log off")
    for _ in range(30):
        if sh(APP, f"curl -sf 127.0.0.1:{PORT}/metrics", check=False).returncode == 0:
            return
        time.sleep(1)
    pytest.fail(f"the sample app did not answer on {APP}:{PORT}: "
                + sh(APP, f"journalctl -u {UNIT} --no-pager | tail -5", check=False).stdout)


def register(tmp_path, at: str, status: str = "deployed", slos=None):
    body = {"service": SERVICE, "environment": "test", "version": "1.0.0", "deployed_at": at, "status": status}
    if status == "deployed":
        body.update(targets=[f"{APP}:{PORT}"], slos=slos if slos is not None else SLOS)
    path = tmp_path / f"{SERVICE}-{at[:19].replace(':', '')}.json"
    path.write_text(json.dumps(body))
    run = playbook("playbooks/deployments.yml", "-e", f"deployment_record_file={path}", "-e", "deployment_gate=false",
                   "-e", "deployment_annotate=false")
    assert run.returncode == 0, run.stdout[-3000:]
    return run


def slo_rules(prom) -> dict:
    return {g["name"]: g["rules"] for g in prom.get("/api/v1/rules")["groups"] if g["name"] == GROUP}


def last_reload(prom) -> float:
    """Prometheus' own answer now (its /metrics, not a scraped sample that may be a scrape old)."""
    text = requests.get(prom.base + "/metrics", timeout=10).text
    assert re.search(r"(?m)^prometheus_config_last_reload_successful 1$", text), "the last reload failed"
    return float(re.search(r"(?m)^prometheus_config_last_reload_success_timestamp_seconds (\S+)$", text).group(1))


@pytest.fixture(scope="module")
def slo_app():
    if sh(APP, "test -f /opt/inference-app/inference_app.py", check=False).returncode != 0:
        run = playbook("playbooks/demo_app.yml")
        assert run.returncode == 0, run.stdout[-3000:]
    start_app(0)
    yield
    sh(APP, f"systemctl stop {UNIT}", check=False)


def test_record_slos_become_rules_and_the_error_switch_makes_the_page_alert_pend(prom, slo_app, tmp_path):
    # times of this run: the test can run again (a later record wins over the last removal)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    deployed, removed = [(now - timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ") for s in (120, 60)]
    before = last_reload(prom)
    register(tmp_path, deployed)
    try:
        rules = slo_rules(prom).get(GROUP)
        assert rules, dump(prom.get("/api/v1/rules"))
        alerts = [(r["labels"]["slo"], r["labels"]["severity"]) for r in rules if r["type"] == "alerting"]
        assert sorted(alerts) == [("availability", "page"), ("availability", "ticket"),
                                  ("fast-predict", "page"), ("fast-predict", "ticket")], dump(rules)
        assert last_reload(prom) > before
        # the same record again: nothing to write, no reload
        reloaded = last_reload(prom)
        register(tmp_path, deployed)
        assert last_reload(prom) == reloaded

        assert prom.wait_for(lambda: prom.query(
            f'monstack_slo:error_ratio:rate5m{{service="{SERVICE}",slo="availability"}}'), timeout=90, interval=3), \
            "no error ratio recorded for the service"
        start_app(0.5)
        started = time.monotonic()

        def page():
            return [a for a in prom.get("/api/v1/alerts")["alerts"]
                    if a["labels"].get("alertname") == "SLOErrorBudgetBurn" and a["labels"].get("service") == SERVICE
                    and a["labels"].get("slo") == "availability" and a["labels"].get("severity") == "page"
                    and a["state"] in ("pending", "firing")]

        found = prom.wait_for(page, timeout=PENDING_WITHIN, interval=3)
        assert found, f"no page within {PENDING_WITHIN} s: " + dump(prom.get("/api/v1/alerts"))
        assert found[0]["labels"]["environment"] == "test"
        print(f"page alert {found[0]['state']} {time.monotonic() - started:.0f} s after the error switch")
    finally:
        register(tmp_path, removed, status="removed")
    assert not slo_rules(prom), "the removed record's rules are gone"
