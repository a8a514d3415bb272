"""Checks against a real Grafana server, run only when a Grafana release is given.

No Grafana binary exists in any registry this project can reach, so these
checks need one supplied:

    GRAFANA_ARTIFACT=/path/to/grafana-12.4.6.linux-amd64.tar.gz  (or a .deb)
    GRAFANA_ARTIFACT=http://127.0.0.1:8000/grafana_12.4.6_amd64.deb (loopback mirror)
    pytest tests/integration/test_grafana_server.py

Without it every check is reported as skipped, with the reason; none passes.

1. Server checks (TestGrafanaServer), on any machine: the release is unpacked
   into a temporary directory (tarball, or `dpkg-deb -x` for a .deb), the
   role's own templates render grafana.ini and the provisioning files (via
   ansible-playbook), the bundled dashboards are copied, and Grafana runs as
   the role's unit runs it (`bin/grafana server --homepath ... --config ...`)
   on a loopback port, with a real Prometheus (the project's artifact cache)
   as the provisioned data source. Checked over HTTP: /api/health, the data
   sources (uids, default, health, a query through Grafana), every dashboard
   (uid, folder, provisioned, not savable from the UI), every dashboard query
   through Grafana's /api/ds/query, and the admin password change exactly as
   the role applies it (grafana cli admin reset-admin-password from stdin).

2. Role checks (TestGrafanaRole), only on a disposable host with systemd as
   PID 1 and GRAFANA_TEST_INSTALL_LOCALHOST=1: playbooks/grafana.yml installs
   the artifact on this host (install_method local), then: grafana-server
   active, /api/health ok, data sources and dashboards present, a second run
   changes nothing, a changed grafana_admin_password is applied.

Every process listens on 127.0.0.1 only and is stopped at the end.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
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

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "grafana"
DASHBOARDS = ROLE / "files" / "dashboards"
CACHE = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack"))
SKIP_REASON = ("no Grafana binary available here: set GRAFANA_ARTIFACT=<.deb or .tar.gz> "
               "to run the Grafana server checks")

sys.path.insert(0, str(ROOT / "tools"))
import dashboard_queries as dq  # noqa: E402
from helpers import ansible_playbook  # noqa: E402  (tests/conftest.py puts tests/ on the path)

PASSWORD = "first-Passw0rd#1"
SECRET_KEY = "integration-test-secret-key-0123456789abcdef"
NEW_PASSWORD = "second;Passw0rd"
BUNDLED = {  # uid -> folder
    "monstack-hosts": "Infrastructure", "monstack-containers": "Infrastructure", "monstack-stack": "Monitoring",
    "monstack-inference-api": "Inference", "monstack-model-performance": "Inference", "monstack-drift": "Inference",
    "monstack-slo": "Inference",
}


# ------------------------------------------------------------------ helpers
def artifact_path(tmp: Path) -> Path:
    value = os.environ.get("GRAFANA_ARTIFACT", "").strip()
    if not value:
        pytest.skip(SKIP_REASON)
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme in ("http", "https"):
        host = parsed.hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            pytest.fail(f"GRAFANA_ARTIFACT {value}: tests only talk to loopback; serve the file from a local mirror "
                        "or give a path")
        dest = tmp / Path(parsed.path).name
        with urllib.request.urlopen(value, timeout=120) as resp, dest.open("wb") as out:  # noqa: S310
            shutil.copyfileobj(resp, out)
        return dest
    path = Path(parsed.path if parsed.scheme == "file" else value)
    if not path.is_file():
        pytest.fail(f"GRAFANA_ARTIFACT {value}: no such file")
    if not (path.name.endswith((".tar.gz", ".tgz", ".deb"))):
        pytest.fail(f"GRAFANA_ARTIFACT {value}: expected a .deb or a release .tar.gz")
    return path


def unpack(artifact: Path, dest: Path) -> Path:
    """Grafana's home directory (bin/grafana, conf/, public/) from a tarball or .deb."""
    if artifact.name.endswith(".deb"):
        subprocess.run(["dpkg-deb", "-x", str(artifact), str(dest)], check=True, timeout=300)
        home = dest / "usr" / "share" / "grafana"
    else:
        with tarfile.open(artifact) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) < 2:
                    continue
                member.name = str(Path(*parts[1:]))  # --strip-components=1, as the role does
                tar.extract(member, dest, filter="tar")
        home = dest
    if not (home / "bin" / "grafana").exists():
        pytest.fail(f"{artifact.name} holds no bin/grafana (Grafana 10 or later is needed)")
    return home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(argv, log: Path, **kwargs) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def stop(proc: subprocess.Popen):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def api(base: str, path: str, user: str | None = "admin", password: str | None = PASSWORD,
        method: str = "GET", body=None, timeout: float = 20):
    """(status, parsed JSON or text) of a Grafana API call with basic auth."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (loopback)
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_healthy(base: str, proc: subprocess.Popen | None, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"grafana exited with {proc.returncode}")
        try:
            status, body = api(base, "/api/health", user=None, timeout=5)
            if status == 200 and isinstance(body, dict) and body.get("database") == "ok":
                return body
            last = body
        except OSError as err:
            last = err
        time.sleep(1)
    raise TimeoutError(f"/api/health not ok after {timeout}s: {last}")


def render_config(tmp: Path, extra: dict, groups: dict) -> None:
    """Render the role's grafana.ini and provisioning files with these settings."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    inventory = {"all": {"hosts": {"graf1": local}, "children": {"grafana": {"hosts": {"graf1": {}}}, **groups}}}
    renders = {"grafana.ini.j2": "{{ grafana_config_file }}",
               "datasources.yml.j2": "{{ grafana_provisioning_dir }}/datasources/monstack.yml",
               "dashboards.yml.j2": "{{ grafana_provisioning_dir }}/dashboards/monstack.yml"}
    play = [{"name": "Render", "hosts": "grafana", "gather_facts": False, "tasks": [
        {"name": "Role defaults", "ansible.builtin.include_vars": str(ROLE / "defaults" / "main.yml")},
        {"name": "Role vars", "ansible.builtin.include_vars": str(ROLE / "vars" / "main.yml")},
        {"name": "Directories", "ansible.builtin.file": {"path": "{{ item }}", "state": "directory", "mode": "0750"},
         "loop": ["{{ grafana_provisioning_dir }}/" + d for d in ("datasources", "dashboards", "plugins", "alerting")]
         + ["{{ grafana_data_dir }}", "{{ grafana_logs_dir }}", "{{ grafana_plugins_dir }}"]},
        {"name": "Templates", "ansible.builtin.template": {"src": str(ROLE / "templates") + "/{{ item.key }}",
                                                           "dest": "{{ item.value }}", "mode": "0640"},
         "loop": "{{ renders | dict2items }}", "vars": {"renders": renders}}]}]
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    (tmp / "render.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (tmp / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOCAL_TEMP=str(tmp / ".ansible-tmp"))
    proc = subprocess.run([ansible_playbook(), "-i", str(tmp / "inventory.yml"), str(tmp / "render.yml"),
                           "-e", f"@{tmp / 'extra.json'}"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def reset_admin_password(home: Path, config: Path, password: str) -> subprocess.CompletedProcess:
    """The command the role runs (tasks/run.yml), with the password on stdin."""
    return subprocess.run([str(home / "bin" / "grafana"), "cli", "--homepath", str(home), "--config", str(config),
                           "admin", "reset-admin-password", "--password-from-stdin"],
                          input=password + "\n", capture_output=True, text=True, timeout=120, cwd=home)


# ---------------------------------------------------------- server checks
@pytest.fixture(scope="module")
def grafana(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grafana-server")
    artifact = artifact_path(tmp)
    home = unpack(artifact, tmp / "release")
    prometheus_bin = CACHE / "bin" / "prometheus"
    if not os.access(prometheus_bin, os.X_OK):
        pytest.skip(f"no Prometheus binary at {prometheus_bin} for the data source (run scripts/setup.sh)")
    procs = []
    try:
        prom_port = free_port()
        (tmp / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [{"job_name": "prometheus", "static_configs": [
                {"targets": [f"127.0.0.1:{prom_port}"], "labels": {"instance": "prom-test", "host": "prom-test"}}]}]}))
        procs.append(start([str(prometheus_bin), f"--config.file={tmp / 'prometheus.yml'}",
                            f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                            f"--web.listen-address=127.0.0.1:{prom_port}"], tmp / "prometheus.log"))

        port = free_port()
        etc = tmp / "etc"
        extra = {"grafana_admin_password": PASSWORD, "grafana_secret_key": SECRET_KEY,
                 "grafana_http_addr": "127.0.0.1", "grafana_http_port": port,
                 "grafana_config_dir": str(etc), "grafana_data_dir": str(tmp / "data"),
                 "grafana_logs_dir": str(tmp / "log"), "grafana_dashboards_dir": str(tmp / "dashboards"),
                 "grafana_install_method": "archive"}
        groups = {"prometheus": {"hosts": {"prom-test": {"monstack_scrape_address": "127.0.0.1",
                                                          "prometheus_port": prom_port}}}}
        render_config(tmp, extra, groups)
        dq.render_dashboards(DASHBOARDS, tmp / "dashboards")  # set to the metric contract, as the role does
        config = etc / "grafana.ini"
        argv = [str(home / "bin" / "grafana"), "server", f"--homepath={home}", f"--config={config}"]
        proc = start(argv, tmp / "grafana.log", cwd=home)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        health = wait_healthy(base, proc)
        yield {"base": base, "home": home, "config": config, "argv": argv, "tmp": tmp, "procs": procs,
               "health": health, "extra": extra, "groups": groups, "prometheus_port": prom_port}
    finally:
        for proc in reversed(procs):
            stop(proc)


class TestGrafanaServer:
    def test_health_reports_the_database_ok(self, grafana):
        assert grafana["health"]["database"] == "ok"
        assert grafana["health"].get("version")

    def test_admin_login_with_the_configured_password(self, grafana):
        status, user = api(grafana["base"], "/api/user")
        assert status == 200 and user["login"] == "admin" and user["isGrafanaAdmin"] is True
        assert api(grafana["base"], "/api/user", password="wrong")[0] == 401

    def test_anonymous_access_is_off(self, grafana):
        assert api(grafana["base"], "/api/dashboards/uid/monstack-hosts", user=None)[0] == 401

    def test_prometheus_datasource_is_provisioned_and_default(self, grafana):
        status, ds = api(grafana["base"], "/api/datasources/uid/monstack-prometheus")
        assert status == 200, ds
        assert ds["type"] == "prometheus" and ds["isDefault"] is True and ds["readOnly"] is True
        assert ds["url"] == f"http://127.0.0.1:{grafana['prometheus_port']}"
        status, health = api(grafana["base"], "/api/datasources/uid/monstack-prometheus/health")
        assert status == 200 and health.get("status") == "OK", health

    def test_query_through_grafana(self, grafana):
        status, body = api(grafana["base"], "/api/ds/query", method="POST", body={
            "from": "now-5m", "to": "now",
            "queries": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "monstack-prometheus"},
                         "expr": 'up{job="prometheus"}', "instant": True, "range": False}]})
        assert status == 200, body
        assert body["results"]["A"].get("frames"), body

    @pytest.mark.parametrize("uid", sorted(BUNDLED))
    def test_dashboard_provisioned_in_its_folder(self, grafana, uid):
        status, body = api(grafana["base"], f"/api/dashboards/uid/{uid}")
        assert status == 200, body
        assert body["meta"]["provisioned"] is True
        assert body["meta"]["folderTitle"] == BUNDLED[uid]
        assert body["dashboard"]["uid"] == uid

    def test_provisioned_dashboards_cannot_be_saved_from_the_ui(self, grafana):
        _, body = api(grafana["base"], "/api/dashboards/uid/monstack-hosts")
        dashboard = body["dashboard"]
        dashboard["title"] = "changed in the UI"
        status, answer = api(grafana["base"], "/api/dashboards/db", method="POST",
                             body={"dashboard": dashboard, "overwrite": True})
        assert status == 400, answer  # allowUiUpdates: false

    def test_every_dashboard_query_runs_through_grafana(self, grafana):
        errors = []
        for query in dq.extract_queries(DASHBOARDS):
            status, body = api(grafana["base"], "/api/ds/query", method="POST", body={
                "from": "now-15m", "to": "now",
                "queries": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "monstack-prometheus"},
                             "expr": query["expr"], "instant": True, "range": False, "intervalMs": 60000}]})
            result = body.get("results", {}).get("A", {}) if isinstance(body, dict) else {}
            if status != 200 or result.get("error"):
                errors.append(f"{query['dashboard']}/{query['panel']}: {status} {result.get('error', body)}")
        assert not errors, "\n".join(errors)

    def test_admin_password_change_is_applied_with_the_cli(self, grafana):
        # The ini password counts only when the database is created: a restart does not apply it ...
        extra = dict(grafana["extra"], grafana_admin_password=NEW_PASSWORD)
        render_config(grafana["tmp"], extra, grafana["groups"])
        server = grafana["procs"].pop()
        stop(server)
        server = start(grafana["argv"], grafana["tmp"] / "grafana-2.log", cwd=grafana["home"])
        grafana["procs"].append(server)
        wait_healthy(grafana["base"], server)
        assert api(grafana["base"], "/api/user", password=NEW_PASSWORD)[0] == 401
        assert api(grafana["base"], "/api/user", password=PASSWORD)[0] == 200
        # ... the role's reset command does, with the server running.
        done = reset_admin_password(grafana["home"], grafana["config"], NEW_PASSWORD)
        assert done.returncode == 0, done.stdout + done.stderr
        assert NEW_PASSWORD not in done.stdout + done.stderr
        assert api(grafana["base"], "/api/user", password=NEW_PASSWORD)[0] == 200
        assert api(grafana["base"], "/api/user", password=PASSWORD)[0] == 401

    def test_backup_and_restore_of_the_live_database(self, grafana):
        """What backup.yml and restore.yml do to Grafana (the module backup's engine,
        plugins/module_utils/monstack_backup.py): SQLite's online backup of the running server's
        database, then stop, swap, start, check."""
        import importlib.util

        def load(name: str, path: Path):
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module

        mb = load("monstack_backup", ROOT / "plugins" / "module_utils" / "monstack_backup.py")
        # programs and HTTP as the scheduled backups reach them (subprocess, urllib)
        scheduled = load("monstack_backup_scheduled", ROOT / "roles" / "backup" / "files" / "monstack_backup_scheduled.py")
        system = mb.System(scheduled.run, scheduled.request)
        base, tmp = grafana["base"], grafana["tmp"]
        password = NEW_PASSWORD if api(base, "/api/user", password=NEW_PASSWORD)[0] == 200 else PASSWORD
        status, made = api(base, "/api/annotations", password=password, method="POST",
                           body={"time": int(time.time() * 1000), "tags": ["backup-test"], "text": "before the backup"})
        assert status == 200, made
        source = {"db_path": str(Path(grafana["extra"]["grafana_data_dir"]) / "grafana.db"),
                  "binary": str(grafana["home"] / "bin" / "grafana"), "config_paths": [str(grafana["config"].parent)],
                  "url": base}
        params = {"component": "grafana", "host": "graf1", "name": "20261130T000000Z", "source": source,
                  "spool_dir": str(tmp / "backup-spool"), "compression": "gzip", "compression_level": 6,
                  "fetch_owner": "", "freeze_timeout": 30, "allow_older": False, "force": False,
                  "restore_config": False, "keep_aside": True, "without_service": True}
        backup = mb.create(system, params)
        manifest = backup["manifest"]
        assert manifest["program"]["version"] and grafana["health"]["version"].startswith(manifest["program"]["version"][:4])
        assert manifest["checks"]["sqlite"]["integrity"] == "ok"
        assert manifest["checks"]["sqlite"]["tables"]["annotation"] >= 1
        # Lost after the backup ...
        assert api(base, f"/api/annotations/{made['id']}", password=password, method="DELETE")[0] == 200
        # ... and back with the restore, as restore.yml runs it.
        restore = dict(params, manifest=manifest, archive=backup["archive"])
        assert mb.inspect(system, restore)["problems"] == []
        assert mb.stage(system, restore)["problems"] == []
        stop(grafana["procs"].pop())
        mb.swap(system, restore)
        server = start(grafana["argv"], tmp / "grafana-3.log", cwd=grafana["home"])
        grafana["procs"].append(server)
        wait_healthy(base, server)
        source["pid"] = server.pid
        checked = mb.check(system, restore)
        assert checked["problems"] == [] and "Grafana /api/health: database ok" in checked["checked"], checked
        mb.commit(system, restore)
        status, found = api(base, "/api/annotations?tags=backup-test", password=password)
        assert status == 200 and [a["text"] for a in found] == ["before the backup"], found


# ------------------------------------------------------------ role checks
def systemd_host() -> bool:
    return Path("/run/systemd/system").is_dir()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grafana-role")
    artifact = artifact_path(tmp)
    if os.environ.get("GRAFANA_TEST_INSTALL_LOCALHOST") != "1":
        pytest.skip("the role checks install Grafana on this host: set GRAFANA_TEST_INSTALL_LOCALHOST=1 on a "
                    "disposable host with systemd")
    if not systemd_host() or os.geteuid() != 0:
        pytest.skip("the role checks need root and systemd as PID 1")
    port = free_port()

    def converge(password: str) -> subprocess.CompletedProcess:
        local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        inventory = {"all": {"hosts": {"localhost": local}, "children": {
            "grafana": {"hosts": {"localhost": {}}},
            "prometheus": {"hosts": {"localhost": {"monstack_scrape_address": "127.0.0.1"}}}}}}
        (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
        (tmp / "extra.json").write_text(json.dumps({
            "grafana_install_method": "local", "grafana_local_package": str(artifact),
            "grafana_version": os.environ.get("GRAFANA_VERSION", "12.4.6"),
            "grafana_admin_password": password, "grafana_secret_key": SECRET_KEY,
            "grafana_http_addr": "127.0.0.1", "grafana_http_port": port}))
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
        return subprocess.run([ansible_playbook(), "-i", str(tmp / "inventory.yml"),
                               str(ROOT / "playbooks" / "grafana.yml"), "-e", f"@{tmp / 'extra.json'}"],
                              env=env, capture_output=True, text=True, timeout=1200)

    first = converge(PASSWORD)
    assert first.returncode == 0, first.stdout + first.stderr
    return {"converge": converge, "base": f"http://127.0.0.1:{port}", "first": first}


def changed(proc: subprocess.CompletedProcess) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", proc.stdout))


class TestGrafanaRole:
    def test_service_active(self, installed):
        state = subprocess.run(["systemctl", "is-active", "grafana-server"], capture_output=True, text=True)
        assert state.stdout.strip() == "active"

    def test_health_datasources_dashboards(self, installed):
        assert wait_healthy(installed["base"], None, 60)["database"] == "ok"
        status, ds = api(installed["base"], "/api/datasources/uid/monstack-prometheus")
        assert status == 200 and ds["isDefault"] is True
        status, found = api(installed["base"], "/api/search?type=dash-db&tag=monstack")
        assert status == 200 and {d["uid"] for d in found} >= set(BUNDLED)

    def test_second_run_changes_nothing(self, installed):
        again = installed["converge"](PASSWORD)
        assert again.returncode == 0 and changed(again) == 0, again.stdout

    def test_admin_password_change_applied(self, installed):
        run = installed["converge"](NEW_PASSWORD)
        assert run.returncode == 0, run.stdout + run.stderr
        assert NEW_PASSWORD not in run.stdout + run.stderr
        assert api(installed["base"], "/api/user", password=NEW_PASSWORD)[0] == 200
        assert api(installed["base"], "/api/user", password=PASSWORD)[0] == 401
        again = installed["converge"](NEW_PASSWORD)
        assert changed(again) == 0, again.stdout
