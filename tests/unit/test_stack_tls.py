"""Encrypted and authenticated links between the stack's own servers (issue 24, row 12).

VictoriaMetrics with TLS and basic auth, Prometheus' remote_write and scrape job and
Grafana's "Global" data source following it (service_endpoint), and the
Alertmanager cluster gossiping over mutual TLS. The roles' variables are rendered by
ansible-playbook as the roles do (a certificate per host from common's certificates
entry point, the CA the journal role uses too), then run for real on loopback:
VictoriaMetrics with the rendered flags, Prometheus with the rendered prometheus.yml
(promtool first) writing to it, two Alertmanagers with the rendered --cluster.tls-config.
Binaries: the artifact mirror ($MONSTACK_CACHE); each check that needs one is skipped,
with the reason, without it.
"""
from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from helpers import ansible_playbook

from ansible_collections.monstack.stack.plugins.filter.hostport import monstack_service_clients, monstack_service_endpoint
from test_dashboards import Processes, free_port

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack"))
VM_ARCHIVE = CACHE / "mirror/VictoriaMetrics/VictoriaMetrics/releases/download/v1.145.0/" \
                     "victoria-metrics-linux-amd64-v1.145.0.tar.gz"
PASSWORD = "vm-Pa55;word$DO-NOT-LOG"
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def _binary(name: str, env: str) -> Path:
    path = Path(os.environ.get(env, CACHE / "bin" / name))
    if not os.access(path, os.X_OK):
        pytest.skip(f"no {name} binary at {path} (run scripts/setup.sh, or set {env})")
    return path


def _run(tmp: Path, inventory: dict, play: list, extra: dict) -> subprocess.CompletedProcess:
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    (tmp / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (tmp / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_LOCAL_TEMP=str(tmp / ".ansible-tmp"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([ansible_playbook(), "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"),
                           "-e", f"@{tmp / 'extra.json'}"], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=300)


# ---------------------------------------------------------------------------
# service_endpoint

def test_endpoint_plain_by_default():
    ep = monstack_service_endpoint("vm1", {}, "victoriametrics")
    assert ep == {"url": "http://vm1:8428", "scheme": "http", "address": "vm1:8428", "tls": False,
                  "user": "", "password": "", "ca_cert": ""}


def test_endpoint_victoriametrics_tls_and_auth():
    ep = monstack_service_endpoint("vm1", {"monstack_scrape_address": "fd00::9", "victoriametrics_port": "8429",
                                           "victoriametrics_tls_cert": "CERT", "victoriametrics_tls_ca_cert": "CA",
                                           "victoriametrics_http_auth_username": "prom",
                                           "victoriametrics_http_auth_password": "pw"}, "victoriametrics")
    assert ep == {"url": "https://[fd00::9]:8429", "scheme": "https", "address": "[fd00::9]:8429", "tls": True,
                  "user": "prom", "password": "pw", "ca_cert": "CA"}


def test_endpoint_prometheus_and_alertmanager_follow_their_web_settings():
    ep = monstack_service_endpoint("p2", {"prometheus_port": 9091, "prometheus_web_tls_cert_file": "/c.pem",
                                          "prometheus_basic_auth_users": {"zed": "z", "bob": "b"},
                                          "prometheus_external_url": "https://p.example.com/prom/"}, "prometheus")
    assert (ep["url"], ep["user"], ep["password"]) == ("https://p2:9091/prom", "bob", "b")
    ep = monstack_service_endpoint("am1", {"alertmanager_extra_flags": ["--web.route-prefix=/am"]}, "alertmanager",
                                   user="grafana", password="g")
    assert (ep["url"], ep["user"], ep["password"]) == ("http://am1:9093/am", "grafana", "g")


@pytest.mark.parametrize("args, message", [
    (("vm1", {}, "thanos"), "unknown service 'thanos'"),
    (("vm1", {"victoriametrics_port": 0}, "victoriametrics"), "victoriametrics_port"),
    (("vm1", {"monstack_scrape_address": "http://x"}, "victoriametrics"), "monstack_scrape_address"),
    (("", {}, "victoriametrics"), "inventory host name"),
])
def test_endpoint_refuses_bad_input(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        monstack_service_endpoint(*args)


def test_clients_keep_secrets_in_files():
    hostvars = {"vm 1": {"monstack_scrape_address": "10.0.0.9", "victoriametrics_tls_cert": "C", "victoriametrics_tls_ca_cert": "CA",
                         "victoriametrics_http_auth_username": "p", "victoriametrics_http_auth_password": "pw"},
                "vm2": {}}
    clients = monstack_service_clients(["vm 1", "vm2"], hostvars, "victoriametrics", "/etc/prometheus/gs/")
    assert clients["vm 1"]["http"] == {"basic_auth": {"username": "p", "password_file": "/etc/prometheus/gs/vm_1.password"},
                                       "tls_config": {"ca_file": "/etc/prometheus/gs/vm_1.ca.pem"}}
    assert clients["vm 1"]["files"] == {"vm_1.password": "pw", "vm_1.ca.pem": "CA"}
    assert clients["vm2"]["http"] == {} and clients["vm2"]["files"] == {} and clients["vm2"]["scheme"] == "http"
    with pytest.raises(AnsibleFilterError, match="absolute path"):
        monstack_service_clients(["vm2"], hostvars, "victoriametrics", "gs")


def test_no_stack_url_hard_codes_http():
    """Every URL of a stack server goes through service_endpoint / local_endpoint."""
    found = []
    for path in [*sorted((REPO / "roles").rglob("*.j2")), *sorted((REPO / "roles").rglob("vars/*.yml"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ("'http://'" in line or "http://{{" in line) and "journal" not in str(path):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


# ---------------------------------------------------------------------------
# Certificates (common's certificates entry point) and the rendered roles

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Render VictoriaMetrics (vm1), Prometheus (prom1), Grafana (graf1) and two Alertmanagers with TLS."""
    tmp = tmp_path_factory.mktemp("stack-tls")
    out, ca = tmp / "out", tmp / "ca"
    out.mkdir()
    vm_port, am_ports = free_port(), [free_port(), free_port()]
    cert_play = {"name": "Certificates", "hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "CA and host certificates", "ansible.builtin.include_role": {
            "name": "monstack.stack.common", "tasks_from": "certificates"},
        "vars": {"common_ca_dir": str(ca), "common_ca_common_name": "monstack test CA",
                 "common_ca_hosts": [{"name": h, "sans": ["DNS:" + h, "IP:127.0.0.1"]} for h in ("vm1", "am1", "am2")]}}]}
    pem = "{{ lookup('ansible.builtin.file', '%s/' ~ %s) }}"
    vm_vars = {"monstack_scrape_address": "127.0.0.1", "victoriametrics_port": vm_port,
               "victoriametrics_tls_cert": pem % (ca / "hosts", "'vm1.pem'"),
               "victoriametrics_tls_key": pem % (ca / "hosts", "'vm1.key'"),
               "victoriametrics_tls_ca_cert": pem % (ca, "'ca.pem'"),
               "victoriametrics_http_auth_username": "prometheus",
               "victoriametrics_http_auth_password": PASSWORD}
    am_vars = {"alertmanager_cluster_tls_cert": pem % (ca / "hosts", "inventory_hostname ~ '.pem'"),
               "alertmanager_cluster_tls_key": pem % (ca / "hosts", "inventory_hostname ~ '.key'"),
               "alertmanager_cluster_tls_ca_cert": pem % (ca, "'ca.pem'")}
    inventory = {"all": {"hosts": {"localhost": LOCAL}, "children": {
        "victoriametrics": {"hosts": {"vm1": {**LOCAL, **vm_vars}}},
        "prometheus": {"hosts": {"prom1": LOCAL}},
        "grafana": {"hosts": {"graf1": LOCAL}},
        "alertmanager": {"hosts": {f"am{i + 1}": {**LOCAL, **am_vars, "alertmanager_cluster_port": port,
                                                   "alertmanager_port": free_port(),
                                                   "monstack_scrape_address": "127.0.0.1"}
                                   for i, port in enumerate(am_ports)}}}}}
    # The roles' defaults below the inventory (as role defaults are), their vars above it.
    (tmp / "group_vars").mkdir()
    defaults = {}
    for name in ("victoriametrics", "alertmanager", "grafana"):
        defaults.update(yaml.safe_load((REPO / "roles" / name / "defaults/main.yml").read_text()))
    for name in ("main", "alert_rules"):
        defaults.update(yaml.safe_load((REPO / f"roles/prometheus/defaults/main/{name}.yml").read_text()))
    (tmp / "group_vars" / "all.yml").write_text(yaml.safe_dump(defaults))
    # the roles' template lookups (cluster-tls.yml.j2) look beside the playbook too
    (tmp / "templates").symlink_to(REPO / "roles" / "alertmanager" / "templates")

    def dump(what: str, dest: str) -> dict:
        return {"name": dest, "ansible.builtin.copy": {"content": "{{ %s | to_json }}" % what,
                                                       "dest": str(out / dest), "mode": "0600"}}

    plays = [cert_play, {
        "name": "VictoriaMetrics", "hosts": "vm1", "gather_facts": False,
        "vars_files": [str(REPO / "roles/victoriametrics/vars/main.yml")],
        "tasks": [dump("victoriametrics_flags", "vm_flags.json"),
                  dump("victoriametrics_file_sets.secrets.files", "vm_secrets.json"),
                  dump("victoriametrics_local_url", "vm_local_url.json")]}, {
        "name": "Prometheus", "hosts": "prom1", "gather_facts": False,
        "vars_files": [str(REPO / "roles/prometheus/vars/main.yml")],
        "tasks": [{"name": "prometheus.yml", "ansible.builtin.template": {
                      "src": str(REPO / "roles/prometheus/templates/prometheus.yml.j2"),
                      "dest": str(out / "prometheus.yml"), "mode": "0600"}},
                  dump("prometheus_global_store_files", "prom_store_files.json"),
                  dump("prometheus_target_files", "prom_targets.json")]}, {
        "name": "Grafana", "hosts": "graf1", "gather_facts": False,
        "vars_files": [str(REPO / "roles/grafana/vars/main.yml")],
        "tasks": [{"name": "datasources.yml", "ansible.builtin.template": {
            "src": str(REPO / "roles/grafana/templates/datasources.yml.j2"),
            "dest": str(out / "datasources.yml"), "mode": "0600"}}]}, {
        "name": "Alertmanager", "hosts": "alertmanager", "gather_facts": False,
        "vars_files": [str(REPO / "roles/alertmanager/vars/main.yml")],
        "tasks": [{"name": "Advertise address", "ansible.builtin.set_fact": {
                      "alertmanager_cluster_advertise_ip": "127.0.0.1"}},
                  dump("alertmanager_flags", "{{ inventory_hostname }}_flags.json"),
                  dump("alertmanager_file_sets.cluster_tls.files", "{{ inventory_hostname }}_tls.json"),
                  # its {template: cluster-tls.yml.j2} entry, rendered as the component action renders it
                  {"name": "cluster-tls.yml", "ansible.builtin.template": {
                      "src": str(REPO / "roles/alertmanager/templates/cluster-tls.yml.j2"),
                      "dest": str(out / "{{ inventory_hostname }}_cluster-tls.yml"), "mode": "0600"}}]}]
    extra = {"prometheus_config_dir": str(tmp / "prom"), "victoriametrics_config_dir": str(tmp / "vm"),
             "victoriametrics_data_dir": str(tmp / "vm-data"), "victoriametrics_listen_address": "127.0.0.1",
             "alertmanager_config_dir": "{{ '%s/' ~ inventory_hostname }}" % tmp,
             "alertmanager_data_dir": "{{ '%s/data-' ~ inventory_hostname }}" % tmp,
             "alertmanager_listen_address": "127.0.0.1", "alertmanager_cluster_listen_address": "127.0.0.1",
             "prometheus_scrape_interval": "1s", "prometheus_scrape_timeout": "1s",
             "prometheus_evaluation_interval": "1s"}
    proc = _run(tmp, inventory, plays, extra)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert PASSWORD not in proc.stdout + proc.stderr, "the password is in the output"
    return {"tmp": tmp, "out": out, "ca": ca, "vm_port": vm_port, "am_ports": am_ports, "log": proc.stdout}


def load(stack, name):
    return json.loads((stack["out"] / name).read_text())


def tls_files(stack, host):
    """The cluster_tls file set of an Alertmanager host, its template entry rendered."""
    files = load(stack, f"{host}_tls.json")
    assert files["cluster-tls.yml"] == {"template": "cluster-tls.yml.j2"}
    return dict(files, **{"cluster-tls.yml": (stack["out"] / f"{host}_cluster-tls.yml").read_text()})


def test_victoriametrics_flags_turn_on_tls_and_auth_without_the_password(stack):
    flags = load(stack, "vm_flags.json")
    secrets = str(stack["tmp"] / "vm" / "secrets")
    assert "-tls" in flags
    assert f"-tlsCertFile={secrets}/tls.crt" in flags and f"-tlsKeyFile={secrets}/tls.key" in flags
    assert "-httpAuth.username=prometheus" in flags
    assert f"-httpAuth.password=file://{secrets}/http_auth_password" in flags
    assert PASSWORD not in json.dumps(flags)
    files = load(stack, "vm_secrets.json")
    assert sorted(files) == ["http_auth_password", "tls.crt", "tls.key"]
    assert files["http_auth_password"] == PASSWORD
    assert load(stack, "vm_local_url.json") == f"https://127.0.0.1:{stack['vm_port']}"


def test_remote_write_and_scrape_job_use_https_basic_auth_and_the_ca(stack):
    config = yaml.safe_load((stack["out"] / "prometheus.yml").read_text())
    store = str(stack["tmp"] / "prom" / "global_store")
    (write,) = config["remote_write"]
    assert write["url"] == f"https://127.0.0.1:{stack['vm_port']}/api/v1/write"
    assert write["basic_auth"] == {"username": "prometheus", "password_file": f"{store}/vm1.password"}
    assert write["tls_config"] == {"ca_file": f"{store}/vm1.ca.pem"}
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "victoriametrics")
    assert job["scheme"] == "https" and job["basic_auth"] == write["basic_auth"]
    assert job["tls_config"] == write["tls_config"]
    assert PASSWORD not in (stack["out"] / "prometheus.yml").read_text()
    files = load(stack, "prom_store_files.json")
    assert sorted(files) == ["vm1.ca.pem", "vm1.password"] and files["vm1.password"] == PASSWORD


def test_grafana_global_data_source_uses_https_basic_auth_and_the_ca(stack):
    sources = yaml.safe_load((stack["out"] / "datasources.yml").read_text())["datasources"]
    (glob,) = [s for s in sources if s["name"] == "Global"]
    assert glob["url"] == f"https://127.0.0.1:{stack['vm_port']}"
    assert glob["basicAuth"] is True and glob["basicAuthUser"] == "prometheus"
    assert glob["jsonData"]["tlsAuthWithCACert"] is True
    ca = (stack["ca"] / "ca.pem").read_text()
    assert glob["secureJsonData"]["basicAuthPassword"] == PASSWORD.replace("$", "$$")
    assert glob["secureJsonData"]["tlsCACert"].strip() == ca.strip()


def test_alertmanager_cluster_tls_flag_and_file(stack):
    for i, host in enumerate(("am1", "am2")):
        flags = load(stack, f"{host}_flags.json")
        tls_dir = stack["tmp"] / host / "cluster-tls"
        assert f"--cluster.tls-config={tls_dir}/cluster-tls.yml" in flags
        files = tls_files(stack, host)
        assert sorted(files) == ["ca.crt", "cluster-tls.yml", "tls.crt", "tls.key"]
        conf = yaml.safe_load(files["cluster-tls.yml"])
        assert conf["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"
        assert conf["tls_server_config"]["client_ca_file"] == f"{tls_dir}/ca.crt"
        assert conf["tls_client_config"]["ca_file"] == f"{tls_dir}/ca.crt"
        assert conf["tls_client_config"]["cert_file"] == f"{tls_dir}/tls.crt"


def _write_files(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o640)


def _https(url: str, ca: Path | None = None, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()  # noqa: S323
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:  # noqa: S310 (loopback)
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def running(stack, tmp_path_factory):
    """VictoriaMetrics with the rendered flags; Prometheus with the rendered config writing to it."""
    if not VM_ARCHIVE.exists():
        pytest.skip(f"no VictoriaMetrics release at {VM_ARCHIVE} (run tools/build_mirror.py)")
    promtool, prometheus = _binary("promtool", "PROMTOOL"), _binary("prometheus", "PROMETHEUS")
    tmp = stack["tmp"]
    with tarfile.open(VM_ARCHIVE) as archive:
        archive.extract("victoria-metrics-prod", tmp / "bin", filter="data")
    _write_files(tmp / "vm" / "secrets", load(stack, "vm_secrets.json"))
    _write_files(tmp / "prom" / "global_store", load(stack, "prom_store_files.json"))
    _write_files(tmp / "prom" / "file_sd", load(stack, "prom_targets.json"))
    (tmp / "prom" / "rules").mkdir(exist_ok=True)
    check = subprocess.run([str(promtool), "check", "config", str(stack["out"] / "prometheus.yml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    procs = Processes(tmp_path_factory.mktemp("logs"))
    vm = procs.start("victoriametrics", [str(tmp / "bin" / "victoria-metrics-prod"), *load(stack, "vm_flags.json")])
    prom_port = free_port()
    procs.start("prometheus", [str(prometheus), f"--config.file={stack['out'] / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp / 'prom-data'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}"])
    base = f"https://127.0.0.1:{stack['vm_port']}"
    try:
        deadline = time.monotonic() + 30
        while _https_or_none(base + "/health") != 200:
            assert vm.poll() is None and time.monotonic() < deadline, "VictoriaMetrics did not start"
            time.sleep(0.3)
        yield {"base": base, "vm": vm, "ca": stack["ca"] / "ca.pem", "procs": procs}
    finally:
        procs.stop()


def _https_or_none(url):
    try:
        return _https(url)[0]
    except OSError:
        return None


def test_victoriametrics_plain_http_is_refused(running):
    port = running["base"].rsplit(":", 1)[1]
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query=up", timeout=5)  # noqa: S310
        pytest.fail("plain HTTP was answered")
    except urllib.error.HTTPError as err:
        assert err.code == 400  # "client sent an HTTP request to an HTTPS server"
    status, _ = _https(running["base"] + "/api/v1/query?query=up", ca=running["ca"])
    assert status == 401, "a query without the password"
    status, _ = _https(running["base"] + "/api/v1/query?query=up", ca=running["ca"], auth=("prometheus", "wrong"))
    assert status == 401
    cmdline = Path(f"/proc/{running['vm'].pid}/cmdline").read_bytes().decode()
    assert PASSWORD not in cmdline and "-httpAuth.password=file://" in cmdline


def test_remote_write_samples_arrive_and_the_store_is_scraped_over_tls(running):
    """Prometheus scrapes VictoriaMetrics (https, basic auth, CA) and writes the samples to it."""
    deadline, result = time.monotonic() + 60, []
    query = urllib.parse.urlencode({"query": 'up{job="victoriametrics"} == 1'})
    while time.monotonic() < deadline:
        status, body = _https(f"{running['base']}/api/v1/query?{query}", ca=running["ca"],
                              auth=("prometheus", PASSWORD))
        assert status == 200, body
        result = json.loads(body)["data"]["result"]
        if result:
            break
        time.sleep(1)
    assert result, "no sample of up{job=victoriametrics} reached VictoriaMetrics"


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return None
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")), None)


def test_alertmanager_cluster_gossips_over_mutual_tls_and_keeps_a_plain_peer_out(stack, tmp_path):
    """Two Alertmanagers with the rendered flags and files form a cluster over TLS; a third
    one without certificates that names them as peer never joins."""
    alertmanager = _binary("alertmanager", "ALERTMANAGER")
    tmp = stack["tmp"]
    procs = Processes(tmp_path)
    web = []
    try:
        for host in ("am1", "am2"):
            _write_files(tmp / host / "cluster-tls", tls_files(stack, host))
            (tmp / host / "alertmanager.yml").write_text("route: {receiver: default}\nreceivers: [{name: default}]\n")
            flags = load(stack, f"{host}_flags.json")
            web.append(int(next(f for f in flags if f.startswith("--web.listen-address=")).rsplit(":", 1)[1]))
            procs.start(host, [str(alertmanager), *flags])
        deadline = time.monotonic() + 60
        while [_metric(port, "alertmanager_cluster_members") for port in web] != [2.0, 2.0]:
            assert time.monotonic() < deadline, [_metric(port, "alertmanager_cluster_members") for port in web]
            time.sleep(0.5)
        # a peer without certificates
        plain_web = free_port()
        procs.start("plain", [str(alertmanager), f"--config.file={tmp / 'am1' / 'alertmanager.yml'}",
                              f"--storage.path={tmp_path / 'plain-data'}", f"--web.listen-address=127.0.0.1:{plain_web}",
                              f"--cluster.listen-address=127.0.0.1:{free_port()}",
                              "--cluster.advertise-address=127.0.0.1:1",
                              f"--cluster.peer=127.0.0.1:{stack['am_ports'][0]}"])
        time.sleep(8)
        assert _metric(plain_web, "alertmanager_cluster_members") == 1.0, "the plain peer joined"
        assert [_metric(port, "alertmanager_cluster_members") for port in web] == [2.0, 2.0]
    finally:
        procs.stop()


# ---------------------------------------------------------------------------
# Preflight refusals

def _preflight(tmp: Path, role: str, hostvars: dict, group: str) -> subprocess.CompletedProcess:
    inventory = {"all": {"children": {group: {"hosts": {"h1": {**LOCAL, **hostvars}, "h2": LOCAL}}}}}
    play = [{"name": "Preflight", "hosts": "h1", "gather_facts": False, "tasks": [{
        "name": "Preflight", "ansible.builtin.include_role": {"name": f"monstack.stack.{role}",
                                                               "tasks_from": "preflight"}}]}]
    return _run(tmp, inventory, play, {})


CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize("hostvars, message", [
    ({"victoriametrics_http_auth_username": "p", "victoriametrics_http_auth_password": PASSWORD},
     "the password would cross the network in clear"),
    ({"victoriametrics_tls_cert": CERT}, "victoriametrics_tls_cert / victoriametrics_tls_key: only one is set"),
    ({"victoriametrics_tls_cert": "/etc/ssl/vm.pem", "victoriametrics_tls_key": "/etc/ssl/vm.key"}, "not PEM text"),
    ({"victoriametrics_http_auth_username": "p"}, "only one is set"),
    ({"victoriametrics_extra_flags": ["-httpAuth.password=x"]}, "set by the role already"),
])
def test_victoriametrics_preflight_refuses(tmp_path, hostvars, message):
    proc = _preflight(tmp_path, "victoriametrics", hostvars, "victoriametrics")
    assert proc.returncode != 0 and message in " ".join((proc.stdout + proc.stderr).split()), proc.stdout[-3000:]
    assert PASSWORD not in proc.stdout + proc.stderr


def test_victoriametrics_preflight_accepts_tls_and_auth(tmp_path):
    proc = _preflight(tmp_path, "victoriametrics", {
        "victoriametrics_tls_cert": CERT, "victoriametrics_tls_key": KEY, "victoriametrics_tls_ca_cert": CERT,
        "victoriametrics_http_auth_username": "p", "victoriametrics_http_auth_password": PASSWORD}, "victoriametrics")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert PASSWORD not in proc.stdout + proc.stderr and "MIIB" not in proc.stdout


AM_OK = {"alertmanager_allow_no_receivers": True}


@pytest.mark.parametrize("hostvars, message", [
    ({"alertmanager_cluster_tls": "required"}, "but this host is one of 2 members of the Alertmanager cluster"),
    ({"alertmanager_cluster_tls_cert": CERT}, "only some are set"),
    ({"alertmanager_cluster_tls": "maybe"}, "is not auto, required or off"),
])
def test_alertmanager_preflight_refuses(tmp_path, hostvars, message):
    proc = _preflight(tmp_path, "alertmanager", {**AM_OK, **hostvars}, "alertmanager")
    assert proc.returncode != 0 and message in " ".join((proc.stdout + proc.stderr).split()), proc.stdout[-3000:]


def test_alertmanager_plain_gossip_is_warned(tmp_path):
    inventory = {"all": {"children": {"alertmanager": {"hosts": {
        "h1": {**LOCAL, **AM_OK, "alertmanager_cluster_advertise_address": "192.0.2.1"}, "h2": LOCAL}}}}}
    play = [{"name": "Cluster", "hosts": "h1", "gather_facts": False, "tasks": [{
        "name": "Cluster", "ansible.builtin.include_role": {"name": "monstack.stack.alertmanager",
                                                             "tasks_from": "cluster"}}]}]
    proc = _run(tmp_path, inventory, play, {})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "WARNING: h1 gossips with its 1 Alertmanager peer(s) in plain text" in proc.stdout


def test_alerts_go_over_https_to_alertmanagers_that_serve_tls(tmp_path):
    """prometheus.yml's alerting block takes the scheme from the Alertmanagers' own TLS variable."""
    role = REPO / "roles" / "prometheus"
    (tmp_path / "group_vars").mkdir()
    defaults = {}
    for name in ("main", "alert_rules"):
        defaults.update(yaml.safe_load((role / f"defaults/main/{name}.yml").read_text()))
    (tmp_path / "group_vars" / "all.yml").write_text(yaml.safe_dump(defaults))
    inventory = {"all": {"children": {"prometheus": {"hosts": {"prom1": LOCAL}},
                                      "alertmanager": {"hosts": {"am1": {**LOCAL, "alertmanager_web_tls_cert_file":
                                                                         "/etc/alertmanager/tls/cert.pem"},
                                                                 "am2": LOCAL}}}}}
    play = [{"name": "Render", "hosts": "prom1", "gather_facts": False, "vars_files": [str(role / "vars/main.yml")],
             "tasks": [{"name": "prometheus.yml", "ansible.builtin.template": {
                 "src": str(role / "templates/prometheus.yml.j2"), "dest": str(tmp_path / "prometheus.yml"),
                 "mode": "0600"}}]}]
    proc = _run(tmp_path, inventory, play, {"prometheus_config_dir": str(tmp_path / "prom")})
    assert proc.returncode == 0, proc.stdout[-3000:]
    (alerting,) = yaml.safe_load((tmp_path / "prometheus.yml").read_text())["alerting"]["alertmanagers"]
    assert alerting["scheme"] == "https"
    proc = _run(tmp_path, inventory, play, {"prometheus_config_dir": str(tmp_path / "prom"),
                                            "prometheus_job_settings": {"alertmanager": {"scheme": "http"}}})
    assert proc.returncode == 0, proc.stdout[-3000:]
    (alerting,) = yaml.safe_load((tmp_path / "prometheus.yml").read_text())["alerting"]["alertmanagers"]
    assert alerting["scheme"] == "http", "prometheus_job_settings.alertmanager wins"
