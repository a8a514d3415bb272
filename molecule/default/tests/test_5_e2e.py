"""End to end on the converged stack: deployments drive discovery, a real alert
travels Prometheus -> Alertmanager cluster -> webhook, dashboards query real data."""
import json
import sys
import time

import pytest
import requests

from conftest import MONITOR, ROOT, container_ip, dump, playbook, recap_changed, sh

sys.path.insert(0, str(ROOT / "tools"))
import dashboard_queries  # noqa: E402

APP_HOSTS = ["monstack-app1", "monstack-app2"]
FILE = "/etc/prometheus/file_sd/deployments/test--inference-api.json"


@pytest.fixture(scope="module")
def sample_app():
    """The sample ML inference API on both app hosts, the webhook receiver on app1."""
    run = playbook("playbooks/demo_app.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    for host in APP_HOSTS:
        assert "inference_predictions_total" in sh(host, "curl -sf 127.0.0.1:8000/metrics").stdout
    return True


def record(service="inference-api", version="1.0.0", at="2026-11-20T10:15:00Z", status="deployed", **extra):
    body = {"service": service, "environment": "test", "version": version, "deployed_at": at,
            "status": status, "commit": "3f2c1ab", "labels": {"team": "ml"},
            "targets": [{"host": "monstack-app1", "port": 8000}, "monstack-app2:8000"],
            "pipeline": {"provider": "gitlab-ci", "run_id": "77", "url": "https://ci.example.com/p/77"}}
    if status == "removed":
        body.pop("targets")
    body.update(extra)
    return body


def deployment_targets(prom):
    return [t for t in prom.targets() if t["labels"]["job"] == "deployments"]


def test_deployment_records_drive_discovery(prom, sample_app, tmp_path, record_property):
    records = tmp_path / "records"
    records.mkdir()
    (records / "api-1.0.0.json").write_text(json.dumps(record()))
    stamp = prom.reload_stamp()

    started = time.monotonic()
    run = playbook("playbooks/deployments.yml", "-e", f"deployment_records_dir={records}")
    elapsed = time.monotonic() - started
    record_property("deployments_playbook_seconds_with_gate", round(elapsed, 1))
    assert run.returncode == 0, run.stdout[-3000:]
    targets = deployment_targets(prom)
    assert sorted(t["labels"]["instance"] for t in targets) == ["monstack-app1:8000", "monstack-app2:8000"]
    for target in targets:  # the gate waited until they were up
        assert target["health"] == "up", dump(target)
        labels = target["labels"]
        assert (labels["service"], labels["environment"], labels["version"], labels["commit"], labels["team"]) == \
            ("inference-api", "test", "1.0.0", "3f2c1ab", "ml")

    started = time.monotonic()
    again = playbook("playbooks/deployments.yml", "-e", f"deployment_records_dir={records}")
    record_property("deployments_playbook_seconds_no_change", round(time.monotonic() - started, 1))
    assert again.returncode == 0 and recap_changed(again.stdout)[MONITOR] == 0, again.stdout[-3000:]
    assert prom.reload_stamp() == stamp, "the deployments playbook must not reload Prometheus for records without SLOs"

    # deployment_info, published through node_exporter's textfile collector
    info = prom.wait_for(lambda: prom.query('deployment_info{service="inference-api"}'), timeout=60)
    assert info and info[0]["metric"]["version"] == "1.0.0"

    # A rollback record to an older version, deployed later, wins.
    (records / "api-0.9.0.json").write_text(json.dumps(record(version="0.9.0", at="2026-11-20T11:00:00Z")))
    run = playbook("playbooks/deployments.yml", "-e", f"deployment_records_dir={records}")
    assert run.returncode == 0, run.stdout[-3000:]
    assert prom.wait_for(lambda: {t["labels"]["version"] for t in deployment_targets(prom)} == {"0.9.0"}, timeout=60)

    # A bad record fails the run, names the file and field, and changes no file.
    before = sh(MONITOR, f"cat {FILE}").stdout
    bad = record(version="2.0.0", at="2026-11-20T12:00:00Z")
    bad["targets"][0]["port"] = "http"
    (records / "api-bad.json").write_text(json.dumps(bad))
    run = playbook("playbooks/deployments.yml", "-e", f"deployment_records_dir={records}")
    assert run.returncode != 0
    assert "api-bad.json" in run.stdout and "targets[0].port" in run.stdout, run.stdout[-3000:]
    assert sh(MONITOR, f"cat {FILE}").stdout == before
    (records / "api-bad.json").unlink()

    # A removal record decommissions the service: its file and targets go away.
    (records / "api-removed.json").write_text(json.dumps(record(at="2026-11-20T13:00:00Z", status="removed")))
    run = playbook("playbooks/deployments.yml", "-e", f"deployment_records_dir={records}")
    assert run.returncode == 0, run.stdout[-3000:]
    assert sh(MONITOR, f"test -e {FILE}", check=False).returncode != 0
    assert prom.wait_for(lambda: not deployment_targets(prom), timeout=60)

    # One record file (-e deployment_record_file=record.json) brings it back.
    single = tmp_path / "record.json"
    single.write_text(json.dumps(record(version="1.1.0", at="2026-11-20T14:00:00Z")))
    run = playbook("playbooks/deployments.yml", "-e", f"deployment_record_file={single}")
    assert run.returncode == 0, run.stdout[-3000:]
    assert prom.wait_for(lambda: {t["labels"]["version"] for t in deployment_targets(prom)} == {"1.1.0"}, timeout=60)
    assert prom.reload_stamp() == stamp


def test_post_deploy_gate_fails_on_unhealthy_targets(prom, sample_app, tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    (records / "api.json").write_text(json.dumps(record(version="1.1.0", at="2026-11-20T14:00:00Z")))
    (records / "broken.json").write_text(json.dumps(record(
        service="broken-api", version="0.1.0", targets=["monstack-app2:8999"])))
    run = playbook("playbooks/deployments.yml", "-e", f"deployment_records_dir={records}",
                   "-e", "deployment_gate_timeout=20")
    try:
        assert run.returncode != 0
        assert "Post-deploy gate" in run.stdout and "monstack-app2:8999" in run.stdout, run.stdout[-3000:]
    finally:
        records.joinpath("broken.json").unlink()
        playbook("playbooks/deployments.yml", "-e", f"deployment_records_dir={records}")


def test_alert_travels_to_the_webhook_exactly_once(prom, sample_app):
    receiver = f"http://{container_ip('monstack-app1')}:9095/notifications"
    requests.delete(receiver, timeout=5).raise_for_status()
    sh("monstack-app2", "systemctl stop node_exporter")
    try:
        def delivered():
            return [n for n in requests.get(receiver, timeout=5).json()
                    if n.get("status") == "firing" and any(
                        a["labels"].get("alertname") == "NodeExporterDown"
                        and a["labels"].get("instance") == "monstack-app2" for a in n.get("alerts", []))]

        first = prom.wait_for(delivered, timeout=180, interval=5)
        assert first, "no NodeExporterDown notification reached the webhook; alerts: " + \
            dump(prom.get("/api/v1/alerts"))
        time.sleep(30)  # both cluster members had time to send a duplicate
        notes = delivered()
        assert len(notes) == 1, dump(notes)
        assert notes[0]["receiver"] == "default"
        alert = notes[0]["alerts"][0]
        assert alert["labels"]["severity"] == "critical"
        assert "monstack-app2" in alert["annotations"]["description"]
        peers = requests.get(f"http://{container_ip(MONITOR)}:9093/api/v2/status", timeout=5).json()
        assert len(peers["cluster"]["peers"]) == 2 and peers["cluster"]["status"] == "ready"
    finally:
        sh("monstack-app2", "systemctl start node_exporter")


def test_amtool_routes_team_alerts():
    cfg = "--config.file=/etc/alertmanager/alertmanager.yml"
    ok = sh(MONITOR, f"amtool config routes test {cfg} --verify.receivers=team-ml-pager severity=critical team=ml",
            check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    warn = sh(MONITOR, f"amtool config routes test {cfg} --verify.receivers=team-ml severity=warning team=ml",
              check=False)
    assert warn.returncode == 0, warn.stdout + warn.stderr
    wrong = sh(MONITOR, f"amtool config routes test {cfg} --verify.receivers=default severity=critical team=ml",
               check=False)
    assert wrong.returncode == 1


def test_every_dashboard_query_runs_and_the_key_ones_return_data(prom, sample_app):
    queries = dashboard_queries.extract_queries(ROOT / "roles/grafana/files/dashboards")
    assert len(queries) > 50
    results = dashboard_queries.run_queries(prom.base, queries)
    errors = [f"{r['dashboard']}/{r['panel']}: {r['error']}" for r in results if r["status"] != "ok"]
    assert not errors, "\n".join(errors)
    with_data = {r["dashboard"].split("/")[-1] for r in results if r["series"] > 0}
    for board in ("hosts.json", "containers.json", "stack.json", "inference-api.json",
                  "model-performance.json", "drift.json"):
        assert board in with_data, f"no query of {board} returned data"
    print(f"{len(results)} dashboard queries, {sum(r['series'] > 0 for r in results)} with data")
