"""Backup and restore of the live stack (playbooks/backup.yml, restore.yml).

The last test file of the scenario (pytest sorts the files as strings: test_9z
after test_9_ha, test_9_shards and test_9b_logs, which expect the stack as
converged; this one rebuilds the Prometheus host): it destroys it, makes it
again empty (the same name, network, options and image as molecule does,
from molecule.yml) and brings it back with site.yml and restore.yml; the
stack is converged and healthy afterwards (a further site.yml changes
nothing, every target is up).

  1. known samples (a textfile-collector series whose value the test sets
     over time) are in Prometheus, a silence in Alertmanager, a real SQLite
     database where Grafana keeps its own; backup.yml runs while everything
     runs and ingests (time and sizes are printed);
  2. a backup with one byte changed in an archive (and one whose manifest
     names a newer program) is refused before anything is touched, with
     messages naming the file and the versions; so are hostile archives (a
     configuration file outside the component's configuration directory, a
     symbolic link member, an unsigned manifest when backup_hmac_secret is
     set); a restore whose data fails its check after the start is rolled
     back to the data the host had;
  3. the scheduled local backups (systemd timer) run, publish the age
     metric that Prometheus scrapes, and are removed again;
  4. Grafana's database: backup and restore against the real SQLite file on
     a host (the Grafana-server part is skipped with its reason: no Grafana
     binary exists here);
  5. the Prometheus host is destroyed and recreated empty; site.yml, then
     restore.yml: the series has the same values at the same timestamps
     (over the API), the silence is active again; restore.yml again changes
     nothing.

Names come from the environment, with the scenario's values as defaults, so
the file also runs against other containers (MOLECULE_INVENTORY_FILE names
their inventory):
  MONSTACK_BT_MONITOR   the Prometheus + Alertmanager host  (monstack-monitor)
  MONSTACK_BT_GRAFANA   a host for the SQLite database        (monstack-app2)
  MONSTACK_BT_STORE_HOST  a host to keep a store on           (monstack-app1)
  MONSTACK_BT_PLATFORM  its platform entry in molecule.yml    (monstack-monitor)
  MONSTACK_BT_NETWORK   the Docker network                   (from molecule.yml)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import Prometheus, container_ip, dump, playbook, changed_tasks, recap_changed, sh

SCENARIO = Path(__file__).resolve().parents[1]
MONITOR = os.environ.get("MONSTACK_BT_MONITOR", "monstack-monitor")
GRAFANA_HOST = os.environ.get("MONSTACK_BT_GRAFANA", "monstack-app2")
PLATFORM = os.environ.get("MONSTACK_BT_PLATFORM", "monstack-monitor")
STORE_HOST = os.environ.get("MONSTACK_BT_STORE_HOST", "monstack-app1")
TEXTFILE = "/var/lib/node_exporter/textfile/monstack_backup_test.prom"
SERIES = "monstack_backup_test_value"
GRAFANA_DB = "/var/lib/grafana/grafana.db"
REPORT: dict = {}


def platform() -> dict:
    config = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
    return next(p for p in config["platforms"] if p["name"] == PLATFORM)


def expand(text: str) -> str:
    """molecule.yml's ${VAR:-default} substitution."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), text)


def network() -> str:
    return os.environ.get("MONSTACK_BT_NETWORK") or platform()["networks"][0]["name"]


def recreate_empty(name: str) -> None:
    """Destroy the container and make it again as molecule's docker driver does, empty."""
    spec = platform()
    labels = json.loads(subprocess.run(["docker", "inspect", "-f", "{{json .Config.Labels}}", name],
                                       capture_output=True, text=True).stdout or "{}") or {}
    subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
    argv = ["docker", "run", "-d", "--name", name, "--hostname", spec.get("hostname", name),
            "--network", network(), "--log-driver", "json-file"]
    for cap in spec.get("capabilities", []):
        argv += ["--cap-add", cap]
    for opt in spec.get("security_opts", []):
        argv += ["--security-opt", opt]
    if spec.get("cgroupns_mode"):
        argv += [f"--cgroupns={spec['cgroupns_mode']}"]
    for volume in spec.get("volumes", []):
        argv += ["-v", expand(volume)]
    for path in spec.get("tmpfs", []):
        argv += ["--tmpfs", path]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    argv += [spec["image"], *spec.get("command", "/lib/systemd/systemd").split()]
    subprocess.run(argv, check=True, capture_output=True)
    for _ in range(90):
        state = sh(name, "systemctl is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise AssertionError(f"systemd in the new {name} did not come up: {state}")


def prom() -> Prometheus:
    """The Prometheus of MONITOR (its address changes when the host is made again)."""
    return Prometheus(f"http://{container_ip(MONITOR)}:9090")


def targets() -> list:
    return sorted((t["labels"]["job"], t["labels"]["instance"]) for t in prom().targets())


def prom_api(path: str, **params):
    resp = requests.get(f"http://{container_ip(MONITOR)}:9090{path}", params=params, timeout=15)
    resp.raise_for_status()
    return resp.json()["data"]


def samples(at: float) -> list:
    """The raw samples (timestamp, value) of the test series in the 10 minutes before `at`."""
    result = prom_api("/api/v1/query", query=f"{SERIES}[10m]", time=at)["result"]
    return result[0]["values"] if result else []


def am(path: str, method: str = "GET", body=None):
    resp = requests.request(method, f"http://{container_ip(MONITOR)}:9093{path}", json=body, timeout=15)
    resp.raise_for_status()
    return resp.json() if resp.content else None


def service_started(host: str, service: str) -> str:
    return sh(host, f"systemctl show -p ExecMainStartTimestampMonotonic --value {service}").stdout.strip()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("backups")


@pytest.fixture(scope="module")
def grafana_inventory(tmp_path_factory) -> str:
    """GRAFANA_HOST in the grafana group, for the backup playbooks only (no Grafana runs there)."""
    path = tmp_path_factory.mktemp("inventory") / "grafana.yml"
    path.write_text(textwrap.dedent(f"""\
        grafana:
          hosts:
            {GRAFANA_HOST}:
              ansible_connection: community.docker.docker
        """))
    return str(path)


def make_grafana_database() -> None:
    """A real SQLite database where Grafana keeps its own, in WAL mode as Grafana may run it."""
    script = textwrap.dedent(f"""\
        import os, sqlite3
        os.makedirs("/var/lib/grafana", exist_ok=True)
        os.makedirs("/etc/grafana", exist_ok=True)
        open("/etc/grafana/grafana.ini", "w").write("[server]\\nhttp_port = 3000\\n")
        db = sqlite3.connect("{GRAFANA_DB}")
        db.executescript('''
          PRAGMA journal_mode=WAL;
          CREATE TABLE dashboard (id INTEGER PRIMARY KEY, uid TEXT, title TEXT, data TEXT);
          CREATE TABLE user (id INTEGER PRIMARY KEY, login TEXT, email TEXT);
          CREATE TABLE annotation (id INTEGER PRIMARY KEY, epoch INTEGER, text TEXT);
          INSERT INTO dashboard (uid, title, data) VALUES ('edited-in-ui', 'Edited in the UI', '{{"panels": []}}');
          INSERT INTO user (login, email) VALUES ('alice', 'alice@example.org');
          INSERT INTO annotation (epoch, text) VALUES (1764500000000, 'deployed 1.2.3');
        ''')
        db.commit()
        """)
    sh(GRAFANA_HOST, f"rm -rf /var/lib/grafana /etc/grafana && python3 - <<'EOF'\n{script}EOF")


def grafana_rows() -> list:
    out = sh(GRAFANA_HOST, f"python3 -c \"import sqlite3,json; c=sqlite3.connect('file:{GRAFANA_DB}?mode=ro', uri=True);"
                           "print(json.dumps([r[0] for r in c.execute('SELECT uid FROM dashboard ORDER BY id')]))\"")
    return json.loads(out.stdout)


# --------------------------------------------------------------------------
# 1. the backup, while everything runs

def test_backup_of_the_running_stack(store, grafana_inventory, record_property):
    # The stack as the scenario's inventory makes it, on every host: the tests before this
    # one left the monitor configured as a shard (test_9_shards) and node_exporter on an
    # application host logging JSON (test_9b_logs' ARA run). What the restore brings back,
    # and what the last check expects a further site.yml to leave unchanged.
    run = playbook("site.yml")
    assert run.returncode == 0, run.stdout[-4000:]
    REPORT["targets"] = prom().wait_for(targets, timeout=30)

    # Known samples: a textfile series whose value the test sets to 1, 2, ... 6, each
    # kept until Prometheus has scraped it (node_exporter every 5 s in this scenario).
    prometheus = prom()
    for value in range(1, 7):
        sh(MONITOR, f"printf '{SERIES} {value}\\n' > {TEXTFILE}.tmp && mv {TEXTFILE}.tmp {TEXTFILE}")
        assert prometheus.wait_for(lambda: prometheus.query(f"{SERIES} == {value}"), timeout=90, interval=1), \
            f"Prometheus did not scrape {SERIES} {value}"
    at = time.time()
    REPORT["at"], REPORT["samples"] = at, samples(at)
    assert {v for _, v in REPORT["samples"]} == {str(n) for n in range(1, 7)}, REPORT["samples"]

    silence = {"matchers": [{"name": "alertname", "value": "BackupRestoreTest", "isRegex": False, "isEqual": True}],
               "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400)),
               "createdBy": "test_9z", "comment": f"backup-restore {at}"}
    REPORT["silence"] = am("/api/v2/silences", "POST", silence)["silenceID"]
    make_grafana_database()

    started = {s: service_started(MONITOR, s) for s in ("prometheus", "alertmanager")}
    begin = time.monotonic()
    run = playbook("playbooks/backup.yml", "-e", f"backup_dir={store}", extra_inventory=grafana_inventory)
    REPORT["backup_seconds"] = round(time.monotonic() - begin, 1)
    assert run.returncode == 0, run.stdout[-4000:]
    # taken while running: nothing was restarted
    assert {s: service_started(MONITOR, s) for s in started} == started

    manifests = sorted(store.glob("*/*/*/manifest.json"))
    found = {(m.parents[2].name, m.parents[1].name) for m in manifests}
    assert {(MONITOR, "prometheus"), (MONITOR, "alertmanager"), (GRAFANA_HOST, "grafana")} <= found, found
    sizes = {}
    for path in manifests:
        manifest = json.loads(path.read_text())
        archive = path.parent / manifest["archive"]["name"]
        assert archive.stat().st_size == manifest["archive"]["size"]
        assert manifest["host"] == path.parents[2].name and manifest["component"] == path.parents[1].name
        assert manifest["content"]["files"] and all(len(f["sha256"]) == 64 for f in manifest["content"]["files"])
        sizes[f"{manifest['host']}/{manifest['component']}"] = {
            "archive_bytes": manifest["archive"]["size"], "data_bytes": manifest["content"]["total_size"],
            "files": len(manifest["content"]["files"]), "version": manifest["program"]["version"],
            "seconds_on_host": manifest["duration_seconds"],
            **({"prometheus_paused_seconds": manifest["checks"]["pause_seconds"]}
               if "pause_seconds" in manifest["checks"] else {})}
        assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(archive.stat().st_mode & 0o777) == "0o600"
    prometheus = json.loads(next(m for m in manifests if m.parents[1].name == "prometheus"
                                 and m.parents[2].name == MONITOR).read_text())
    assert prometheus["program"]["version"].startswith("3.5.3")
    assert prometheus["checks"]["method"] == "pause-and-hardlink"
    assert prometheus["checks"]["pause_seconds"] < 5
    REPORT["sizes"] = sizes
    REPORT["total_archive_bytes"] = sum(s["archive_bytes"] for s in sizes.values())
    record_property("backup_seconds", REPORT["backup_seconds"])  # in the junit file
    record_property("backup_total_archive_bytes", REPORT["total_archive_bytes"])
    record_property("backup_sizes", json.dumps(sizes, sort_keys=True))
    print("\nBACKUP REPORT " + json.dumps({k: REPORT[k] for k in ("backup_seconds", "total_archive_bytes", "sizes")},
                                          indent=1))


# --------------------------------------------------------------------------
# 2. a damaged backup is refused before anything is touched

def test_a_damaged_backup_is_refused_before_anything_is_touched(store, tmp_path):
    bad = tmp_path / "store"
    shutil.copytree(store, bad)
    archive = next((bad / MONITOR / "prometheus").glob("*/data.tar.gz"))
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte
    archive.write_bytes(bytes(data))
    manifest_file = next((bad / MONITOR / "alertmanager").glob("*/manifest.json"))
    manifest = json.loads(manifest_file.read_text())
    manifest["program"]["version"] = "99.0.0"  # written by a newer Alertmanager
    manifest_file.write_text(json.dumps(manifest))

    started = {s: service_started(MONITOR, s) for s in ("prometheus", "alertmanager")}
    listing = ("ls -A /var/lib /var/lib/prometheus /var/lib/alertmanager /var/tmp/monstack-backup 2>/dev/null"
               " | grep -e monstack -e restore")
    before = sh(MONITOR, listing, check=False).stdout
    run = playbook("playbooks/restore.yml", "--limit", MONITOR, "-e", f"backup_dir={bad}")
    assert run.returncode != 0
    output = " ".join(run.stdout.split())
    assert f"{archive}: SHA-256" in output and "does not match the manifest" in output, run.stdout[-3000:]
    assert "alertmanager 0.33.1 on this host is older than 99.0.0" in output, run.stdout[-3000:]
    assert "nothing has been changed on any host" in output
    # Nothing touched: no service stopped, no file moved, nothing uploaded.
    assert {s: service_started(MONITOR, s) for s in started} == started
    assert sh(MONITOR, listing, check=False).stdout == before  # no staging, nothing moved aside or uploaded
    assert "monstack.stack.backup : Restore check | Check the backup against this host" in run.stdout
    assert "monstack.stack.backup : Restore | Stop" not in run.stdout
    assert "monstack.stack.backup : Restore | Upload" not in run.stdout


def forge(directory: Path, extra: list, listed: bool) -> None:
    """Rewrite the backup in `directory` as someone who can write the store would: its members
    and `extra` ones (name, tar type, bytes, link target), the manifest made to match (the
    archive's size and SHA-256, and the extra members listed when `listed`)."""
    import hashlib
    import io
    import tarfile
    manifest_file = directory / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    archive = directory / manifest["archive"]["name"]
    forged = directory / "forged.tar.gz"
    with tarfile.open(archive, "r:*") as old, tarfile.open(forged, "w:gz", format=tarfile.PAX_FORMAT) as new:
        for member in old:
            new.addfile(member, old.extractfile(member) if member.isfile() else None)
        for name, kind, data, link in extra:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.size = kind, 0o644, link, len(data) if data else 0
            new.addfile(info, io.BytesIO(data) if data else None)
            if listed:
                manifest["content"]["files"].append({"path": name, "size": len(data or b""), "mode": "0644",
                                                     "sha256": hashlib.sha256(data or b"").hexdigest()})
    archive.unlink()
    archive = directory / "data.tar.gz"
    forged.replace(archive)
    manifest["archive"].update(name=archive.name, size=archive.stat().st_size,
                               sha256=hashlib.sha256(archive.read_bytes()).hexdigest(), compression="gzip")
    manifest_file.write_text(json.dumps(manifest))


def test_a_hostile_archive_is_refused_before_anything_is_touched(store, tmp_path):
    """Backups in a store that someone else could write: a configuration file outside
    Alertmanager's own configuration directory (/etc/sudoers.d) is refused by the check, before
    the upload; a member that is a symbolic link to /etc/shadow is refused when it is unpacked,
    before the service stops; with backup_hmac_secret set, a backup without a valid signature
    is refused. Nothing is written on the host, no service restarts."""
    import tarfile
    started = {s: service_started(MONITOR, s) for s in ("prometheus", "alertmanager")}
    listing = "ls -A /var/lib /var/lib/alertmanager /etc/alertmanager /etc/sudoers.d"
    before = sh(MONITOR, listing, check=False).stdout
    cases = (
        ([("config/etc/sudoers.d/monstack-test", tarfile.REGTYPE, b"ALL ALL=(ALL) NOPASSWD: ALL\n", "")], True,
         ["-e", "backup_restore_config=true"], "/etc/sudoers.d/monstack-test is outside the configuration paths"),
        ([("data/nflog2", tarfile.SYMTYPE, None, "/etc/shadow")], True, [],
         "member 'data/nflog2' refused: it is a symbolic link"),
        ([], False, ["-e", "backup_hmac_secret=molecule-secret-0123456789"],
         "has no HMAC, and backup_hmac_secret is set"),
    )
    for number, (extra, listed, args, says) in enumerate(cases):
        bad = tmp_path / f"store{number}"
        shutil.copytree(store, bad)
        forge(next((bad / MONITOR / "alertmanager").glob("*/manifest.json")).parent, extra, listed)
        run = playbook("playbooks/restore.yml", "--limit", MONITOR, "-e", f"backup_dir={bad}",
                       "-e", "backup_components=alertmanager", *args)
        output = " ".join(run.stdout.split())
        assert run.returncode != 0 and says in output, run.stdout[-3000:]
        assert "monstack.stack.backup : Restore | Stop" not in run.stdout
    assert {s: service_started(MONITOR, s) for s in started} == started
    assert sh(MONITOR, listing, check=False).stdout == before
    assert sh(MONITOR, "test -e /etc/sudoers.d/monstack-test", check=False).returncode != 0


def test_a_restore_that_fails_its_check_puts_the_old_data_back(store, tmp_path):
    """The archive is sound, but the restored data does not answer as the manifest says it
    must (a manifest edited here): the restore stops, puts the data it had back and starts it."""
    bad = tmp_path / "store"
    shutil.copytree(store, bad)
    manifest_file = next((bad / MONITOR / "prometheus").glob("*/manifest.json"))
    manifest = json.loads(manifest_file.read_text())
    manifest["checks"]["queries"]["results"]["count(up)"] = "999"
    manifest_file.write_text(json.dumps(manifest))
    marker = "cat /var/lib/prometheus/.monstack-restored-prometheus.json 2>/dev/null"
    recorded = sh(MONITOR, marker, check=False).stdout
    run = playbook("playbooks/restore.yml", "--limit", MONITOR, "-e", f"backup_dir={bad}",
                   "-e", "backup_components=prometheus")
    assert run.returncode != 0
    output = " ".join(run.stdout.split())
    assert "count(up) at" in output and "999 in the backup" in output, run.stdout[-3000:]
    assert "The data it had before is back in place" in output and "prometheus runs again" in output
    assert sh(MONITOR, "systemctl is-active prometheus").stdout.strip() == "active"
    left = sh(MONITOR, "ls -A /var/lib /var/lib/prometheus").stdout.split()
    assert not [n for n in left if n.startswith(".monstack-restore-")], left  # no staging left (it is in /var/lib)
    assert sh(MONITOR, marker, check=False).stdout == recorded  # the failed restore is not recorded
    prometheus = prom()
    assert prometheus.wait_for(lambda: samples(REPORT["at"]) == REPORT["samples"], timeout=120), \
        "the series is not there any more after the rollback"


# --------------------------------------------------------------------------
# 3. scheduled local backups

def test_scheduled_local_backups_publish_their_age():
    run = playbook("playbooks/backup_schedule.yml", "--limit", MONITOR, "-e", "backup_schedule_state=present",
                   "-e", "backup_schedule_keep=1")
    assert run.returncode == 0, run.stdout[-3000:]
    assert sh(MONITOR, "systemctl is-enabled monstack-backup.timer && systemctl is-active monstack-backup.timer").returncode == 0
    for _ in range(2):  # twice: the retention keeps one per component
        sh(MONITOR, "systemctl start monstack-backup.service")  # oneshot: returns when done
        time.sleep(1.1)
    listing = sh(MONITOR, "ls /var/backups/monstack/prometheus /var/backups/monstack/alertmanager").stdout.split()
    assert len([n for n in listing if re.fullmatch(r"\d{8}T\d{6}Z", n)]) == 2, listing
    assert "kind=\"scheduled\"" in sh(MONITOR, "cat /var/lib/node_exporter/textfile/monstack_backup_scheduled.prom").stdout

    prometheus = prom()

    def scraped():
        result = prometheus.query(f'monstack_backup_last_success_timestamp_seconds{{instance="{MONITOR}",kind="scheduled"}}')
        return result if len(result) == 2 else None

    result = prometheus.wait_for(scraped, timeout=60)
    assert result and all(time.time() - float(r["value"][1]) < 600 for r in result), result
    rules = [r["name"] for g in prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]]
    assert "BackupTooOld" in rules
    alerts = [a for a in prometheus.get("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == "BackupTooOld"]
    assert not alerts, alerts

    run = playbook("playbooks/backup_schedule.yml", "--limit", MONITOR, "-e", "backup_schedule_state=absent")
    assert run.returncode == 0, run.stdout[-3000:]
    assert sh(MONITOR, "ls /etc/systemd/system/monstack-backup.timer /var/lib/node_exporter/textfile/"
                       "monstack_backup_scheduled.prom", check=False).returncode != 0
    assert sh(MONITOR, "systemctl is-active monstack-backup.timer", check=False).stdout.strip() != "active"


# --------------------------------------------------------------------------
# 4. Grafana's database

def test_grafana_database_backup_and_restore(store, grafana_inventory):
    assert grafana_rows() == ["edited-in-ui"]
    sh(GRAFANA_HOST, f"python3 -c \"import sqlite3; c=sqlite3.connect('{GRAFANA_DB}');"
                     "c.execute(\\\"INSERT INTO dashboard (uid, title, data) VALUES ('later', 'later', '{}')\\\"); c.commit()\"")
    assert grafana_rows() == ["edited-in-ui", "later"]
    args = ("--limit", GRAFANA_HOST, "-e", f"backup_dir={store}", "-e", "backup_components=grafana")

    refused = playbook("playbooks/restore.yml", *args, extra_inventory=grafana_inventory)
    assert refused.returncode != 0
    assert "grafana is not installed on this host" in " ".join(refused.stdout.split()), refused.stdout[-2000:]
    assert grafana_rows() == ["edited-in-ui", "later"]

    run = playbook("playbooks/restore.yml", *args, "-e", "backup_restore_without_service=true",
                   extra_inventory=grafana_inventory)
    assert run.returncode == 0, run.stdout[-3000:]
    assert grafana_rows() == ["edited-in-ui"]  # the database of the backup, read with SQLite
    output = " ".join(run.stdout.split())
    assert "3 rows in 3 tables as in the backup" in output
    assert "SKIPPED" in output and "grafana-server is not" in output  # the server part, with its reason
    again = playbook("playbooks/restore.yml", *args, "-e", "backup_restore_without_service=true",
                     extra_inventory=grafana_inventory)
    assert again.returncode == 0 and recap_changed(again.stdout).get(GRAFANA_HOST) == 0, again.stdout[-3000:]

    # The store on another host of the inventory (backup_store_host): through the controller.
    remote = ("--limit", GRAFANA_HOST, "-e", f"backup_store_host={STORE_HOST}", "-e", "backup_components=grafana",
              "-e", "backup_dir=/var/backups/monstack-store")
    run = playbook("playbooks/backup.yml", *remote, extra_inventory=grafana_inventory)
    assert run.returncode == 0, run.stdout[-3000:]
    filed = sh(STORE_HOST, f"stat -c '%a %n' /var/backups/monstack-store/{GRAFANA_HOST}/grafana/*/*").stdout.split("\n")
    assert [line.split()[0] for line in filed if line] == ["600", "600"], filed
    sh(GRAFANA_HOST, f"python3 -c \"import sqlite3; c=sqlite3.connect('{GRAFANA_DB}');"
                     "c.execute(\\\"INSERT INTO dashboard (uid, title, data) VALUES ('x', 'x', '{}')\\\"); c.commit()\"")
    run = playbook("playbooks/restore.yml", *remote, "-e", "backup_restore_without_service=true",
                   extra_inventory=grafana_inventory)
    assert run.returncode == 0, run.stdout[-3000:]
    assert grafana_rows() == ["edited-in-ui"]
    spool = Path.home() / ".cache" / "monstack" / "backup-spool"
    assert not spool.exists() or not any(spool.iterdir()), list(spool.iterdir())
    sh(STORE_HOST, "rm -rf /var/backups/monstack-store")
    sh(GRAFANA_HOST, "rm -rf /var/lib/grafana /etc/grafana")


def test_grafana_server_backup_and_restore():
    pytest.skip("Grafana server part of backup/restore (stop, start, /api/health, the admin password applied again) "
                "needs a Grafana binary, which cannot be obtained here: set GRAFANA_ARTIFACT and run "
                "tests/integration/test_grafana_server.py (TestGrafanaServer::test_backup_and_restore_of_the_live_database)")


# --------------------------------------------------------------------------
# 5. the Prometheus host is lost

def test_lost_prometheus_host_is_rebuilt_and_restored(store, record_property):
    recreate_empty(MONITOR)
    assert sh(MONITOR, "test -e /var/lib/prometheus", check=False).returncode != 0, "the new host is not empty"

    # Only the new host needs it (the other hosts reach it by name).
    for step in ("molecule/shared/prepare.yml", "site.yml"):
        run = playbook(step, "--limit", MONITOR)
        assert run.returncode == 0, f"{step}: " + run.stdout[-4000:]
    empty = samples(REPORT["at"])
    assert empty == [], f"the rebuilt Prometheus has the series before the restore: {empty}"

    begin = time.monotonic()
    # With the configuration: the deployment targets registered by earlier tests come back too.
    run = playbook("playbooks/restore.yml", "--limit", MONITOR, "-e", f"backup_dir={store}",
                   "-e", "backup_restore_config=true")
    REPORT["restore_seconds"] = round(time.monotonic() - begin, 1)
    assert run.returncode == 0, run.stdout[-4000:]
    # the service steps ran (the rebuilt host has the programs), shown under the role's full name
    for step in ("Restore | Stop the service: prometheus", "Restore | Start the service: prometheus",
                 "Restore | Check the restored data: prometheus"):
        assert f"monstack.stack.backup : {step}" in run.stdout, step
    print(f"\nRESTORE REPORT {json.dumps({'restore_seconds': REPORT['restore_seconds']})}")
    record_property("restore_seconds", REPORT["restore_seconds"])

    # The series: the same values at the same timestamps.
    assert samples(REPORT["at"]) == REPORT["samples"], dump({"before": REPORT["samples"], "after": samples(REPORT["at"])})
    # The silence is active again.
    silences = am("/api/v2/silences")
    mine = [s for s in silences if s["comment"] == f"backup-restore {REPORT['at']}"]
    assert mine and any(s["status"]["state"] == "active" for s in mine), dump(silences)

    again = playbook("playbooks/restore.yml", "--limit", MONITOR, "-e", f"backup_dir={store}",
                     "-e", "backup_restore_config=true")
    assert again.returncode == 0, again.stdout[-3000:]
    assert recap_changed(again.stdout)[MONITOR] == 0, again.stdout[-3000:]
    assert "is restored here already" in again.stdout
    # The configuration came back with the data: the same targets, the deployments' too.
    assert prom().wait_for(lambda: targets() == REPORT["targets"], timeout=60), \
        dump({"before": REPORT["targets"], "after": targets()})


def test_the_stack_is_converged_and_healthy_afterwards():
    run = playbook("site.yml")
    assert run.returncode == 0, run.stdout[-4000:]
    assert all(n == 0 for n in recap_changed(run.stdout).values()), (changed_tasks(run.stdout), run.stdout[-4000:])
    sh(MONITOR, f"rm -f {TEXTFILE}")
    prometheus = prom()

    def inventory_targets_up():  # the deployments' services are the earlier tests' business
        health = {k: h for k, h in prometheus.health().items() if k[0] not in ("deployments", "deployment_health")}
        return health if health and all(h == "up" for h in health.values()) else None

    health = prometheus.wait_for(inventory_targets_up, timeout=120)
    assert health, dump({f"{t['labels']['job']}/{t['labels']['instance']}": t["health"] for t in prometheus.targets()})
