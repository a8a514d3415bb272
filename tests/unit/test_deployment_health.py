"""Health checks from the deployment records: the deployment_health_files filter, and the
whole path with the real programs on loopback: the role's prometheus.yml (rendered by
ansible-playbook from the template, checked by promtool), a real blackbox_exporter with the
role's default modules, a real Prometheus, and a small HTTP service whose /health turns bad.
"""
from __future__ import annotations

import http.server
import importlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

import deployment_api as dc
from helpers import ansible_playbook
from test_dashboards import Processes, free_port, wait_http
from test_deployments import rec as record_of

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack"))
health_files = dc.deployment_health_files


def rec(**overrides):
    """test_deployments' valid record, as service iris in prod with a health_url (None deletes a field)."""
    mine = {"service": "iris", "environment": "prod", "version": "1.2.0", "targets": ["app1.example.com:8000"],
            "health_url": "http://app1.example.com:8000/health", "_source": "records/iris.yml"}
    return record_of(**(mine | overrides))


# ----------------------------------------------------------------- the filter
def test_one_probe_group_per_service_with_the_record_labels():
    out = health_files([rec(), rec(service="api", health_url="https://api.example.com/healthz", labels=None)])
    assert out == {
        "prod--api.json": [{"targets": ["https://api.example.com/healthz"],
                            "labels": {"environment": "prod", "service": "api", "version": "1.2.0"}}],
        "prod--iris.json": [{"targets": ["http://app1.example.com:8000/health"],
                             "labels": {"environment": "prod", "service": "iris", "team": "ml", "version": "1.2.0"}}],
    }
    assert list(out) == sorted(out)
    # the same names as the scrape target files, so a pipeline's removals apply to both
    assert set(out) <= set(dc.deployment_files([rec(), rec(service="api")]))


def test_latest_record_wins_and_records_without_health_url_have_none():
    newer = rec(version="1.3.0", deployed_at="2026-11-21T10:15:00Z", health_url="http://app1.example.com:8000/ready")
    assert health_files([rec(), newer])["prod--iris.json"][0] == {
        "targets": ["http://app1.example.com:8000/ready"],
        "labels": {"environment": "prod", "service": "iris", "team": "ml", "version": "1.3.0"}}
    # a later version without health_url, or a removal, leaves no probe
    assert health_files([rec(), rec(health_url=None, deployed_at="2026-11-21T10:15:00Z")]) == {}
    assert health_files([rec(), rec(status="removed", targets=None, deployed_at="2026-11-21T10:15:00Z")]) == {}
    assert health_files([rec(health_url="")]) == {}
    assert health_files([]) == {}


def test_input_order_does_not_matter_and_validated_records_pass_again():
    records = [rec(service=f"s{n}", environment=env) for n in range(5) for env in ("prod", "dev")]
    assert health_files(records) == health_files(list(reversed(records)))
    assert health_files(dc.deployment_validate(records)) == health_files(records)


@pytest.mark.parametrize("records,message", [
    ([rec(health_url="ftp://app1/health")], "records/iris.yml (service 'iris'): field 'health_url': expected an http(s) URL"),
    ([rec(), rec(version="9", commit="abcd")], "both are the latest deployment of service 'iris'"),
    ([rec(service="a--b", environment="c"), rec(service="b", environment="c--a")],
     "its health check file 'c--a--b.json' is also another service's"),
    ("iris", "expected a list of deployment records"),
])
def test_bad_input_is_named(records, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        health_files(records)


def test_registered_and_documented_for_ansible_doc(tmp_path):
    assert importlib.import_module("ansible_collections.monstack.stack.plugins.filter.deployment_health_files").FilterModule().filters()["deployment_health_files"] is health_files
    sidecar = yaml.safe_load((REPO / "plugins" / "filter" / "deployment_health_files.yml").read_text())
    assert sidecar["DOCUMENTATION"]["name"] == "deployment_health_files" and sidecar["EXAMPLES"].strip()
    doc = Path(sys.executable).with_name("ansible-doc")
    if not doc.exists():
        pytest.skip("ansible-doc is not installed (run scripts/setup.sh)")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)
    result = subprocess.run([str(doc), "-t", "filter", "--json", "monstack.stack.deployment_health_files"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and "WARNING" not in result.stderr, result.stderr
    assert json.loads(result.stdout)["monstack.stack.deployment_health_files"]["doc"]["short_description"]


# ------------------------------------------- real blackbox_exporter + Prometheus
def _binary(name: str, env: str) -> Path:
    path = Path(os.environ.get(env, CACHE / "bin" / name))
    if not os.access(path, os.X_OK):
        pytest.skip(f"no {name} binary at {path} (run scripts/setup.sh or tools/build_mirror.py, or set {env})")
    return path


class Health(http.server.BaseHTTPRequestHandler):
    healthy = True

    def do_GET(self):  # noqa: N802 (http.server's name)
        status = 200 if self.path == "/health" and Health.healthy else 503
        body = b"ok\n" if status == 200 else b"unhealthy\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _query(url: str, expr: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}",  # noqa: S310
                                timeout=5) as resp:
        return json.loads(resp.read())["data"]["result"]


def _wait(predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def _render_prometheus_config(work: Path, blackbox: str) -> Path:
    """prometheus.yml from the role's template and defaults, by ansible-playbook, checked by promtool."""
    promtool = _binary("promtool", "PROMTOOL")
    role = REPO / "roles" / "prometheus"
    overrides = {"prometheus_config_dir": str(work), "prometheus_blackbox_exporter_address": blackbox,
                 "prometheus_scrape_interval": "1s", "prometheus_scrape_timeout": "1s",
                 "prometheus_evaluation_interval": "1s", "ansible_python_interpreter": sys.executable}
    (work / "overrides.json").write_text(json.dumps(overrides))
    (work / "render.yml").write_text(yaml.safe_dump([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(role / "defaults/main/main.yml"), str(role / "defaults/main/alert_rules.yml"),
                       str(role / "vars/main.yml")],
        "tasks": [{"name": "Render prometheus.yml", "ansible.builtin.template": {
            "src": str(role / "templates/prometheus.yml.j2"), "dest": str(work / "prometheus.yml"),
            "mode": "0644", "validate": f"{promtool} check config %s"}}]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    run = subprocess.run([ansible_playbook(), "-i", "localhost,", str(work / "render.yml"),
                          "-e", f"@{work / 'overrides.json'}"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return work / "prometheus.yml"


def test_a_record_health_url_is_probed_through_the_blackbox_exporter(tmp_path):
    blackbox, prometheus = _binary("blackbox_exporter", "BLACKBOX_EXPORTER_BIN"), _binary("prometheus", "PROMETHEUS_BIN")
    modules = yaml.safe_load((REPO / "roles/blackbox_exporter/defaults/main.yml").read_text())["blackbox_exporter_modules"]
    (tmp_path / "blackbox.yml").write_text(yaml.safe_dump({"modules": modules}))
    check = subprocess.run([str(blackbox), "--config.check", f"--config.file={tmp_path / 'blackbox.yml'}"],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr  # the role's default modules load in the real exporter

    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    health_url = f"http://127.0.0.1:{app.server_address[1]}/health"
    bb_port, prom_port = free_port(), free_port()
    config = _render_prometheus_config(tmp_path, f"127.0.0.1:{bb_port}")
    jobs = {j["job_name"]: j for j in yaml.safe_load(config.read_text())["scrape_configs"]}
    job = jobs["deployment_health"]
    assert job["metrics_path"] == "/probe" and job["params"] == {"module": ["http_2xx"]}
    # issue 24: the jobs of untrusted records have limits (promtool checked them, Prometheus loads them below)
    for name in ("deployments", "deployment_health"):
        assert {key: jobs[name][key] for key in ("sample_limit", "label_limit", "label_name_length_limit",
                                                 "label_value_length_limit")} == {
            "sample_limit": 20000, "label_limit": 64, "label_name_length_limit": 128,
            "label_value_length_limit": 2048}, name

    # what playbooks/deployments.yml writes, from a record with this health_url
    sd_dir = tmp_path / "file_sd" / "deployment_health"
    sd_dir.mkdir(parents=True)
    for name, groups in health_files([rec(health_url=health_url)]).items():
        (sd_dir / name).write_text(json.dumps(groups))

    procs = Processes(tmp_path)
    try:
        proc = procs.start("blackbox", [str(blackbox), f"--config.file={tmp_path / 'blackbox.yml'}",
                                        f"--web.listen-address=127.0.0.1:{bb_port}"])
        wait_http(f"http://127.0.0.1:{bb_port}/metrics", 20, proc)
        proc = procs.start("prometheus", [str(prometheus), f"--config.file={config}",
                                          f"--storage.tsdb.path={tmp_path / 'data'}",
                                          f"--web.listen-address=127.0.0.1:{prom_port}"])
        url = f"http://127.0.0.1:{prom_port}"
        wait_http(f"{url}/-/ready", 30, proc)

        def probe(value: str):
            found = _query(url, 'probe_success{job="deployment_health"}')
            return found if found and found[0]["value"][1] == value else None

        found = _wait(lambda: probe("1"))
        assert found, _query(url, "up")
        assert found[0]["metric"] == {"__name__": "probe_success", "job": "deployment_health", "instance": health_url,
                                      "service": "iris", "environment": "prod", "version": "1.2.0", "team": "ml"}
        Health.healthy = False
        assert _wait(lambda: probe("0")), _query(url, "probe_http_status_code")
        # the probe failed, not the scrape of the exporter
        assert _query(url, 'up{job="deployment_health"}')[0]["value"][1] == "1"
        assert _query(url, 'probe_http_status_code{job="deployment_health"}')[0]["value"][1] == "503"
    finally:
        Health.healthy = True
        procs.stop()
        app.shutdown()
        app.server_close()
