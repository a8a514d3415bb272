"""A deployment record's health_url, probed by the blackbox exporter beside Prometheus: the sample
app's /health probes as probe_success 1; stopping the app makes DeploymentHealthCheckFailing fire
(its `for:` is 10s in molecule/shared/group_vars); starting it again clears it."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from conftest import MONITOR, dump, playbook, sh

APP = "monstack-app1"
SERVICE = "health-probe-demo"
OTHER = "health-probe-other"
HEALTH_URL = f"http://{APP}:8000/health"
FILE = f"/etc/prometheus/file_sd/deployment_health/test--{SERVICE}.json"


def stamp(offset: int = 0) -> str:
    """deployed_at of now (+ offset seconds): the record store keeps tombstones, so a rerun of this
    test needs records later than its previous run's removal."""
    return (datetime.now(timezone.utc) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(status="deployed", at=None):
    at = at or stamp()
    body = {"service": SERVICE, "environment": "test", "version": "2.1.0", "deployed_at": at, "status": status,
            "labels": {"team": "ml"}, "targets": [f"{APP}:8000"], "health_url": HEALTH_URL}
    if status == "removed":
        body.pop("targets")
    return body


def register(tmp_path, body):
    path = tmp_path / f"{body['status']}.json"
    path.write_text(json.dumps(body))
    run = playbook("playbooks/deployments.yml", "-e", f"deployment_record_file={path}")
    assert run.returncode == 0, run.stdout[-3000:]
    return run


def probes(prom):
    return prom.query(f'probe_success{{job="deployment_health", service="{SERVICE}"}}')


def firing(prom):
    return [a for a in prom.get("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == "DeploymentHealthCheckFailing" and a["labels"].get("service") == SERVICE
            and a["state"] == "firing"]


@pytest.fixture(scope="module")
def sample_app():
    """The sample inference API runs on the app hosts (test_5 started it; started again if not)."""
    if sh(APP, "systemctl is-active inference-app", check=False).stdout.strip() != "active":
        run = playbook("playbooks/demo_app.yml")
        assert run.returncode == 0, run.stdout[-3000:]
    assert sh(APP, "curl -sf 127.0.0.1:8000/health").returncode == 0


def test_the_blackbox_exporter_runs_beside_prometheus_and_is_scraped(prom):
    assert sh(MONITOR, "systemctl is-active blackbox_exporter").stdout.strip() == "active"
    user = sh(MONITOR, "ps -o user= -C blackbox_exporter").stdout.split()
    assert user == ["blackbox_exporter"], user
    health = prom.wait_for(lambda: prom.health().get(("blackbox", MONITOR)) == "up", timeout=60)
    assert health, dump(prom.health())


def test_a_record_health_url_is_probed_and_its_failure_alerts(prom, sample_app, tmp_path):
    register(tmp_path, record())
    try:
        assert sh(MONITOR, f"test -f {FILE}").returncode == 0
        found = prom.wait_for(lambda: [p for p in probes(prom) if p["value"][1] == "1"], timeout=60)
        assert found, dump(probes(prom))
        labels = found[0]["metric"]
        assert (labels["instance"], labels["environment"], labels["version"], labels["team"]) == \
            (HEALTH_URL, "test", "2.1.0", "ml"), dump(labels)
        target = next(t for t in prom.targets() if t["labels"]["job"] == "deployment_health"
                      and t["labels"]["service"] == SERVICE)
        assert "/probe?" in target["scrapeUrl"] and "module=http_2xx" in target["scrapeUrl"], target["scrapeUrl"]

        sh(APP, "systemctl stop inference-app")
        try:
            assert prom.wait_for(lambda: [p for p in probes(prom) if p["value"][1] == "0"], timeout=60), \
                dump(probes(prom))
            alerts = prom.wait_for(lambda: firing(prom), timeout=90)
            assert alerts, dump(prom.get("/api/v1/alerts"))
            assert alerts[0]["labels"]["instance"] == HEALTH_URL and alerts[0]["labels"]["severity"] == "critical"
        finally:
            sh(APP, "systemctl start inference-app")
        assert prom.wait_for(lambda: [p for p in probes(prom) if p["value"][1] == "1"], timeout=60), \
            dump(probes(prom))
        assert prom.wait_for(lambda: not firing(prom), timeout=60), dump(firing(prom))

        # Another pipeline's directory run adds its own check and leaves this registration's alone;
        # emptied, it takes only its own away.
        other_dir = tmp_path / "other"
        other_dir.mkdir()
        other = dict(record(), service=OTHER)
        (other_dir / "other.json").write_text(json.dumps(other))
        directory_run = ("playbooks/deployments.yml", "-e", f"deployment_records_dir={other_dir}",
                         "-e", "deployment_owner=health-probe-test")
        run = playbook(*directory_run)
        assert run.returncode == 0, run.stdout[-3000:]
        listing = sh(MONITOR, f"ls {FILE.rsplit('/', 1)[0]}").stdout.split()
        assert {f"test--{SERVICE}.json", f"test--{OTHER}.json"} <= set(listing), listing
        (other_dir / "other.json").unlink()
        run = playbook(*directory_run)
        assert run.returncode == 0, run.stdout[-3000:]
        listing = sh(MONITOR, f"ls {FILE.rsplit('/', 1)[0]}").stdout.split()
        assert f"test--{SERVICE}.json" in listing and f"test--{OTHER}.json" not in listing, listing
    finally:
        # The record's removal takes the probe away again (the HA test compares targets).
        register(tmp_path, record("removed", at=stamp(1)))
    assert sh(MONITOR, f"test ! -e {FILE}").returncode == 0
    assert prom.wait_for(lambda: not probes(prom), timeout=60), dump(probes(prom))
