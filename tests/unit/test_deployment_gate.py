"""The post-deploy gate of playbooks/deployments.yml against a real Prometheus.

Prometheus (the mirror's binary, $PROMETHEUS_BIN or /var/cache/monstack/bin/prometheus;
the tests skip without it) runs on loopback with a 1 s scrape interval and reads the
file_sd directory that the playbook writes; the playbook runs with localhost (local
connection) as the Prometheus host. The services are small HTTP servers in this
process. Also the pure parts: deployment_gate_pending, deployment_store_entries,
local_endpoint.
"""
from __future__ import annotations

import base64
import datetime as dt
import grp
import http.server
import importlib.util
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import bcrypt
import pytest
import yaml
from ansible.errors import AnsibleFilterError

import deployment_api as dc
from helpers import QuietHandler, ansible_playbook, record_file_args
from ansible_collections.monstack.stack.plugins.filter.hostport import monstack_local_endpoint

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = Path(os.environ.get("PROMETHEUS_BIN", "/var/cache/monstack/bin/prometheus"))
MY_GROUP = grp.getgrgid(os.getgid()).gr_name
STARTING = 3.0  # seconds /probe/metrics answers 503 after probe-api's file appears


# --------------------------------------------------------------------------
# deployment_gate_pending (pure)

GROUP = {"targets": ["app1:8000"], "labels": {"service": "api", "environment": "prod", "version": "2.0.0",
                                              "__metrics_path__": "/metrics", "__scheme__": "http"}}


def active(address="app1:8000", health="up", scraped="2026-11-20T10:00:10.123456789Z", job="deployments",
           error="", **labels):
    found = {"__address__": address, "__metrics_path__": "/metrics", "__scheme__": "http", "job": job,
             "service": "api", "environment": "prod", "version": "2.0.0", **labels}
    return {"discoveredLabels": found, "scrapePool": job, "health": health, "lastScrape": scraped,
            "lastError": error, "scrapeUrl": f"http://{address}/metrics", "labels": {}}


WRITTEN = dt.datetime(2026, 11, 20, 10, 0, 5, tzinfo=dt.timezone.utc).timestamp()


def pending(targets, files=None, since=WRITTEN):
    return dc.deployment_gate_pending(targets, files or {"prod--api.json": [GROUP]}, since)


def test_gate_counts_only_its_own_target_scraped_up_after_the_write():
    assert pending([active()]) == []
    # scraped before the write: not yet
    [item] = pending([active(scraped="2026-11-20T10:00:04.9Z")])
    assert item["state"] == "not scraped yet" and "not scraped since its file was written" in item["message"]
    # the previous version up at the same address does not count
    [item] = pending([active(version="1.0.0")])
    assert item["state"] == "not discovered"
    assert item["message"].startswith("prod--api.json: app1:8000 (service api, environment prod, version 2.0.0): ")
    # neither does another service at the same address, nor another job, nor another path
    assert pending([active(service="other")])[0]["state"] == "not discovered"
    assert pending([active(job="node")])[0]["state"] == "not discovered"
    assert pending([active(__metrics_path__="/v2/metrics")])[0]["state"] == "not discovered"
    # extra discovered labels (file path, intervals) are fine
    assert pending([active(__meta_filepath="/x/prod--api.json", __scrape_interval__="15s")]) == []
    # one of two candidates up is enough (a duplicate in another file)
    assert pending([active(health="down"), active()]) == []


def test_gate_reports_down_targets_with_their_last_error():
    [item] = pending([active(health="down", error="server returned HTTP status 404 Not Found")])
    assert item["state"] == "down" and item["last_error"] == "HTTP status 404"
    assert item["message"] == ("prod--api.json: app1:8000 (service api, environment prod, version 2.0.0): down at "
                               "http://app1:8000/metrics, last error: HTTP status 404")
    assert item["labels"] == {"service": "api", "environment": "prod", "version": "2.0.0"}


SECRET = "s3cr3t-t0ken"


@pytest.mark.parametrize("error,short", [
    ("server returned HTTP status 500 Internal Server Error", "HTTP status 500"),
    ('Get "http://app1:8000/metrics": dial tcp 10.0.0.5:8000: connect: connection refused', "connection refused"),
    ('Get "http://app1:8000/metrics": context deadline exceeded', "timeout"),
    ('Get "http://app1:8000/metrics": dial tcp: lookup app1 on 10.0.0.2:53: no such host', "name not resolved"),
    ('Get "https://app1:8000/metrics": tls: failed to verify certificate: x509: unknown authority', "TLS error"),
    (f'expected a valid start token, got "{SECRET}" ("INVALID") while parsing: "{SECRET}"',
     "not a metrics exposition"),
    (f'Get "http://user:{SECRET}@evil.example.com/": stopped after 10 redirects', "redirected"),
    (f"something new: {SECRET} " * 50, "other error (see the target on Prometheus' targets page)"),
    ("", "none given"),
])
def test_gate_never_echoes_the_targets_last_error(error, short):
    """Issue 24 row 3: the CI log gets the error's class or status, never the target's text."""
    [item] = pending([active(health="down", error=error)])
    assert item["last_error"] == short
    assert SECRET not in item["message"] and SECRET not in json.dumps(item)
    assert len(item["message"]) < 300


def test_gate_scrape_url_without_user_info_or_query():
    target = dict(active(health="down", error="x"), scrapeUrl=f"http://u:{SECRET}@app1:8000/metrics?k={SECRET}")
    [item] = pending([target])
    assert item["scrape_url"] == "http://app1:8000/metrics" and SECRET not in item["message"]


def test_gate_time_parsing_and_input_errors():
    assert dc.scrape_time("2026-11-20T11:00:05.5+01:00") == WRITTEN + 0.5
    assert dc.scrape_time("0001-01-01T00:00:00Z") < 0  # never scraped
    assert dc.scrape_time("soon") is None and dc.scrape_time(None) is None
    assert pending([active(scraped="0001-01-01T00:00:00Z", health="unknown")])[0]["state"] == "not scraped yet"
    assert pending(None)[0]["state"] == "not discovered"
    assert pending([active()], since=str(WRITTEN)) == []
    with pytest.raises(AnsibleFilterError, match="since: expected"):
        pending([active()], since=None)
    with pytest.raises(AnsibleFilterError, match="files: expected a mapping"):
        dc.deployment_gate_pending([], ["prod--api.json"], WRITTEN)
    with pytest.raises(AnsibleFilterError, match="file prod--api.json: expected target groups"):
        dc.deployment_gate_pending([], {"prod--api.json": [{"labels": {}}]}, WRITTEN)
    with pytest.raises(AnsibleFilterError, match="activeTargets"):
        dc.deployment_gate_pending({"data": {}}, {}, WRITTEN)


# --------------------------------------------------------------------------
# deployment_store_entries (pure)

def record(service, version="1.0.0", at="2026-11-20T10:15:00Z", **extra):
    return {"service": service, "environment": "production", "version": version, "deployed_at": at, **extra}


def test_store_entries_hold_the_latest_record_with_its_file_contents():
    records = [record("api", targets=["app1:8000"], _source="a.json"),
               record("api", "1.1.0", "2026-11-21T10:15:00Z", targets=["app1:8000"]),
               record("gone", targets=["app2:8000"]), record("gone", at="2026-11-22T10:00:00Z", status="removed")]
    entries = dc.deployment_store_entries(records)
    assert list(entries) == ["production--api.json", "production--gone.json"]
    api, gone = entries["production--api.json"], entries["production--gone.json"]
    assert api["version"] == "1.1.0" and api["status"] == "deployed" and api["epoch_us"] == 1_795_256_100 * 10**6
    assert "_source" not in api["record"]
    # the entry is data (its target group); the store module renders its files with the library:
    # the same bytes as the playbook's to_nice_json(indent=2) of deployment_files, plus a newline
    assert [api["group"]] == dc.deployment_files(records)["production--api.json"]
    api_files = dc.store_files(api)
    assert json.loads(api_files["file_sd"]) == dc.deployment_files(records)["production--api.json"]
    assert api_files["file_sd"].startswith('[\n  {\n    "labels": {\n') and api_files["file_sd"].endswith("]\n")
    assert api_files["textfile"] == dc.deployment_info_metrics(records[1:2])
    assert gone["status"] == "removed" and "group" not in gone and "file_sd" not in gone and "textfile" not in gone
    no_info = dc.deployment_store_entries(records, info_labels=False)["production--api.json"]
    assert '"version"' not in dc.store_files(no_info)["file_sd"]
    with pytest.raises(AnsibleFilterError, match="would both be written to file_sd file 'a--b--c.json'"):
        dc.deployment_store_entries([{**record("b--c", targets=["x:1"]), "environment": "a"},
                                     {**record("c", targets=["x:1"]), "environment": "a--b"}])


# --------------------------------------------------------------------------
# local_endpoint (pure)

def test_local_endpoint_follows_the_roles_settings():
    plain = monstack_local_endpoint("0.0.0.0", 9090)
    assert plain == {"url": "http://127.0.0.1:9090", "user": "", "password": "", "validate_certs": False,
                     "ca_path": ""}
    full = monstack_local_endpoint("10.0.0.5", "9090", tls="/etc/prometheus/tls/cert.pem",
                                   external_url="https://mon.example.com/prometheus/",
                                   basic_auth_users={"zed": "z", "ops": "s3cret"}, ca_path="/etc/ssl/ca.pem")
    assert full == {"url": "https://10.0.0.5:9090/prometheus", "user": "ops", "password": "s3cret",
                    "validate_certs": True, "ca_path": "/etc/ssl/ca.pem"}
    assert monstack_local_endpoint("::", 9093)["url"] == "http://[::1]:9093"
    assert monstack_local_endpoint("fd00::5", 9093)["url"] == "http://[fd00::5]:9093"
    assert monstack_local_endpoint("", 3000, tls=True)["url"] == "https://127.0.0.1:3000"
    # --web.route-prefix wins over the external URL's path
    assert monstack_local_endpoint("0.0.0.0", 9090, external_url="https://x/prom/",
                                   flags=["--web.route-prefix=/"])["url"] == "http://127.0.0.1:9090"
    assert monstack_local_endpoint("0.0.0.0", 9090, flags=["--web.route-prefix=/p/"])["url"].endswith(":9090/p")
    # an explicit user (Grafana's admin), or one of the users with its password
    assert monstack_local_endpoint("", 3000, user="admin", password="pw")["user"] == "admin"
    assert monstack_local_endpoint("", 9090, basic_auth_users={"a": "1", "b": "2"}, user="b")["password"] == "2"


@pytest.mark.parametrize("args, kwargs, message", [
    (("0.0.0.0", 0), {}, "port: the port must be a number 1-65535"),
    (("0.0.0.0", "http"), {}, "port: the port must be a number 1-65535"),
    (("mon1:9090", 9090), {}, "listen address: 'mon1:9090' is not an IPv6 address"),
    ((5, 9090), {}, "listen address: expected"),
    (("", 3000), {"user": "admin"}, "user 'admin' has no password"),
    (("", 9090), {"basic_auth_users": ["ops"]}, "basic auth users: expected a mapping"),
    (("", 9090), {"ca_path": "/ca.pem"}, "does not serve TLS"),
    (("", 9090), {"flags": "--web.route-prefix=/x"}, "flags: expected a list"),
])
def test_local_endpoint_errors_name_the_component_and_setting(args, kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message) as err:
        monstack_local_endpoint(*args, name="prometheus", **kwargs)
    assert str(err.value).startswith("local_endpoint (prometheus): ")


# --------------------------------------------------------------------------
# The gate module (plugins/modules/deployment_gate.py) against a fake Prometheus answer

spec = importlib.util.spec_from_file_location("deployment_gate_module", REPO / "plugins" / "modules" / "deployment_gate.py")
gate_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gate_module)


class FakeTargets(QuietHandler):
    """GET /api/v1/targets: the answers of FakeTargets.answers in turn (status, activeTargets), the last one kept."""

    answers: list = []
    seen: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        FakeTargets.seen.append((self.path, self.headers.get("Authorization")))
        status, targets = FakeTargets.answers[0] if len(FakeTargets.answers) == 1 else FakeTargets.answers.pop(0)
        self.answer(status, json.dumps({"status": "success", "data": {"activeTargets": targets}}).encode())


@pytest.fixture
def fake_targets():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeTargets)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeTargets.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/prom"
    server.shutdown()


def gate_params(url, **extra):
    return {"url": url, "user": "", "password": "", "validate_certs": False, "ca_path": None,
            "files": {"prod--api.json": [GROUP], "prod--other.json": [dict(GROUP, targets=["app9:1"])]},
            "names": ["prod--api.json"], "since": WRITTEN, "job": "deployments", "timeout": 3, "interval": 1,
            "request_timeout": 5, **extra}


def test_gate_module_waits_for_the_named_files_and_passes_when_up(fake_targets):
    secret = "body of the app: password=hunter2"
    FakeTargets.answers = [(200, [active(health="down", error=secret)]), (200, [active()])]
    left, looks, _waited, problem = gate_module.wait(gate_params(fake_targets, user="ops", password="pw"),
                                                     sleep=lambda s: None)
    assert left == [] and looks == 2 and problem is None  # prod--other.json is not this run's: not waited for
    path, auth = FakeTargets.seen[0]
    assert path == "/prom/api/v1/targets?state=active" and auth == "Basic " + base64.b64encode(b"ops:pw").decode()


def test_gate_module_fails_naming_the_targets_and_what_prometheus_answered(fake_targets):
    secret = "body of the app: password=hunter2"
    FakeTargets.answers = [(200, [active(health="down", error=secret + " server returned HTTP status 500")])]
    clock = [0.0]
    params = gate_params(fake_targets)
    left, looks, waited, problem = gate_module.wait(params, clock=lambda: clock[0],
                                                    sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    assert looks == 4 and waited == 3 and problem is None  # at 0, 1, 2 and 3 s, as the retries did (1 + 3 / 1)
    text = gate_module.message(params, left, problem)
    assert text.startswith("Post-deploy gate: after 3s these targets of this run are not up: prod--api.json: app1:8000 "
                           "(service api, environment prod, version 2.0.0): down at http://app1:8000/metrics, "
                           "last error: HTTP status 500.")
    assert secret not in text and secret not in json.dumps(left)
    FakeTargets.answers = [(401, [])]
    left, _looks, _waited, problem = gate_module.wait(params, clock=lambda: clock[0],
                                                      sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    assert problem == "401 Unauthorized" and left[0]["state"] == "not discovered"
    assert gate_module.message(params, left, problem).endswith(f"Prometheus at {fake_targets} answered: 401 Unauthorized")


# --------------------------------------------------------------------------
# The playbook against a real Prometheus

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class App(QuietHandler):
    """/metrics: 200; /v2/metrics: 404 (a broken new version); /probe/metrics: 503 while starting."""

    probe_ready_at = float("inf")

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/metrics" or (self.path == "/probe/metrics" and time.monotonic() >= App.probe_ready_at):
            status, body = 200, b"app_up 1\n"
        elif self.path == "/probe/metrics":
            status, body = 503, b"starting\n"
        else:
            status, body = 404, b"not found\n"
        self.answer(status, body, "text/plain; version=0.0.4")


class Prometheus:
    """A real Prometheus scraping the deployments file_sd directory every second."""

    def __init__(self, work: Path, web: dict | None = None, external_url: str = ""):
        self.work, self.port = work, free_port()
        self.sd = work / "etc" / "file_sd" / "deployments"
        self.sd.mkdir(parents=True)
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                  "scrape_configs": [{"job_name": "deployments",
                                      "file_sd_configs": [{"files": [str(self.sd / "*.json")]}]}]}
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        argv = [str(PROMETHEUS), f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}"]
        self.base, self.headers, self.context = f"http://127.0.0.1:{self.port}", {}, None
        if web:
            (work / "web.yml").write_text(yaml.safe_dump(web["config"]))
            argv.append(f"--web.config.file={work / 'web.yml'}")
            self.base = f"https://127.0.0.1:{self.port}"
            self.context = ssl.create_default_context(cafile=web["ca"])
            user, password = web["login"]
            self.headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
        if external_url:
            argv.append(f"--web.external-url={external_url}")
            self.base += "/" + external_url.split("/", 3)[3].strip("/")
        self.log = open(work / "prometheus.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/-/ready", raw=True)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("Prometheus did not start: " + (work / "prometheus.log").read_text()[-2000:])
                time.sleep(0.2)

    def get(self, path: str, raw: bool = False):
        request = urllib.request.Request(self.base + path, headers=self.headers)
        with urllib.request.urlopen(request, timeout=5, context=self.context) as resp:
            body = resp.read()
        return body if raw else json.loads(body)["data"]

    def targets(self, service: str) -> list[dict]:
        return [t for t in self.get("/api/v1/targets?state=active")["activeTargets"]
                if t["labels"].get("service") == service]

    def wait_up(self, service: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(t["health"] == "up" for t in self.targets(service)):
            assert time.monotonic() < deadline, f"{service} is not up: {self.targets(service)}"
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def app():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def need_prometheus():
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip(f"no Prometheus binary at {PROMETHEUS} (scripts/setup.sh builds the mirror, or set PROMETHEUS_BIN)")


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    need_prometheus()
    server = Prometheus(tmp_path_factory.mktemp("gate-prometheus"))
    yield server
    server.stop()


def run(prom: Prometheus, record_: dict, *extra: str, host_vars: dict | None = None) -> subprocess.CompletedProcess:
    """playbooks/deployments.yml with one record, localhost as the Prometheus host."""
    work = prom.work
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False,
            "prometheus_config_dir": str(work / "etc"), "node_exporter_textfile_dir": str(work / "no-textfiles"),
            "prometheus_user": MY_GROUP, "prometheus_listen_address": "127.0.0.1", "prometheus_port": prom.port,
            "deployment_store_dir": str(work / "state"), **(host_vars or {})}
    inventory = work / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"prometheus": {"hosts": {"localhost": host}}}}}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([ansible_playbook(), "-i", str(inventory), str(REPO / "playbooks" / "deployments.yml"),
                           *record_file_args(work / "records", record_),
                           # the test's targets are on loopback, which the default policy refuses
                           "-e", json.dumps({"deployment_denied_targets": []}), "-e", "deployment_gate_interval=1",
                           *extra], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def test_broken_new_version_where_the_old_one_is_up_fails_the_gate(prom, app):
    """Issue 11: a version whose metrics path answers 404, registered where the old one is up, passed."""
    old = run(prom, record("inference-api", targets=[app]))
    assert old.returncode == 0, old.stdout[-3000:]
    prom.wait_up("inference-api")
    new = run(prom, record("inference-api", "2.0.0", "2026-11-20T11:00:00Z", targets=[app],
                           metrics_path="/v2/metrics"), "-e", "deployment_gate_timeout=15")
    out = new.stdout
    assert new.returncode != 0, "the gate passed on the previous version's scrape:\n" + out[-3000:]
    assert "Post-deploy gate" in out, out[-3000:]
    assert (f"production--inference-api.json: {app} (service inference-api, environment production, "
            f"version 2.0.0): down at http://{app}/v2/metrics, last error: HTTP status 404") in out


def test_second_service_at_an_address_already_up_waits_for_its_own_scrape(prom, app):
    """Issue 11: probe-api registered at inference-api's address passed while its own target was unknown."""
    first = run(prom, record("inference-api", "3.0.0", "2026-11-20T12:00:00Z", targets=[app]))
    assert first.returncode == 0, first.stdout[-3000:]
    prom.wait_up("inference-api")
    probe_file = prom.sd / "production--probe-api.json"
    stop = threading.Event()

    def start_app_when_registered():  # the new service answers 503 for its first STARTING seconds
        while not stop.is_set() and not probe_file.exists():
            time.sleep(0.05)
        App.probe_ready_at = time.monotonic() + STARTING

    watcher = threading.Thread(target=start_app_when_registered, daemon=True)
    watcher.start()
    try:
        second = run(prom, record("probe-api", targets=[app], metrics_path="/probe/metrics"))
    finally:
        stop.set()
        watcher.join()
    assert second.returncode == 0, second.stdout[-3000:]
    written = probe_file.stat().st_mtime
    mine = prom.targets("probe-api")
    assert mine and all(t["discoveredLabels"]["__address__"] == app for t in mine), mine
    assert any(t["health"] == "up" and dc.scrape_time(t["lastScrape"]) > written + STARTING for t in mine), \
        f"the gate returned before probe-api's own target was scraped up after it started: {mine}"
    assert any(t["health"] == "up" for t in prom.targets("inference-api"))


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "monstack gate test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


def test_gate_uses_the_roles_tls_basic_auth_and_route_prefix(tmp_path, app):
    """Issue 11: the gate called plain http://127.0.0.1 and broke with TLS, basic auth or a route prefix."""
    need_prometheus()
    cert_file, key_file = certificate(tmp_path)
    password = "gate-test-pw"
    web = {"config": {"tls_server_config": {"cert_file": str(cert_file), "key_file": str(key_file)},
                      "basic_auth_users": {"ops": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}},
           "ca": str(cert_file), "login": ("ops", password)}
    external = "https://mon.example.com/prom/"
    prom = Prometheus(tmp_path / "prometheus", web=web, external_url=external)
    try:
        settings = {"prometheus_web_tls_cert_file": str(cert_file), "prometheus_web_tls_key_file": str(key_file),
                    "prometheus_basic_auth_users": {"ops": password}, "prometheus_external_url": external,
                    "deployment_prometheus_ca_path": str(cert_file)}
        result = run(prom, record("secure-api", targets=[app]), host_vars=settings)
        assert result.returncode == 0, result.stdout[-3000:]
        assert any(t["health"] == "up" for t in prom.targets("secure-api"))
        assert password not in result.stdout + result.stderr
        # a wrong password: the gate says what Prometheus answered
        wrong = run(prom, record("secure-api", "1.0.1", "2026-11-20T11:00:00Z", targets=[app]),
                    "-e", "deployment_gate_timeout=2",
                    host_vars={**settings, "prometheus_basic_auth_users": {"ops": "wrong"}})
        assert wrong.returncode != 0 and "answered: 401" in wrong.stdout, wrong.stdout[-3000:]
    finally:
        prom.stop()
