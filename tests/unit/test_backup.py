"""Unit tests of backups and their restore: the engine (plugins/module_utils/monstack_backup.py),
the module monstack.stack.backup and the scheduled command
(roles/backup/files/monstack_backup_scheduled.py).

The module's functions run here against real programs where it matters: a
real Prometheus (the artifact cache's binary) paused and hard-linked while it
ingests, then restored into a second one whose samples must be the same; a
real Alertmanager whose silences come back; real SQLite databases written to
while they are backed up. The rest: archives and manifests (one changed byte
is refused, naming the file), the store's retention, version compatibility,
the textfile metric and the scheduled-backup command, installed as on a host; the
module through ansible-playbook (programs with a timeout, HTTP through open_url)
and the backup and restore playbooks on this machine.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from helpers import ansible_playbook

REPO = Path(__file__).resolve().parents[2]
ENGINE_PATH = REPO / "plugins" / "module_utils" / "monstack_backup.py"
MODULE_PATH = REPO / "plugins" / "modules" / "backup.py"
SCHEDULED_PATH = REPO / "roles" / "backup" / "files" / "monstack_backup_scheduled.py"


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The engine under the name the module imports it by (the collection's, through collections/:
# tests/unit/conftest.py) and under the one the scheduled command does on a host (the file beside it).
mb = importlib.import_module("ansible_collections.monstack.stack.plugins.module_utils.monstack_backup")
sys.modules.setdefault("monstack_backup", mb)
scheduled = load("monstack_backup_scheduled", SCHEDULED_PATH)
module = load("monstack_backup_module", MODULE_PATH)
# Programs and HTTP as the scheduled command reaches them (subprocess, urllib).
SYSTEM = mb.System(mb.run_program, scheduled.request)

CACHE = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack"))
PROMETHEUS = CACHE / "bin" / "prometheus"
PROMTOOL = Path(os.environ.get("PROMTOOL", CACHE / "bin" / "promtool"))
ALERTMANAGER = CACHE / "bin" / "alertmanager"
needs_prometheus = pytest.mark.skipif(not (os.access(PROMETHEUS, os.X_OK) and os.access(PROMTOOL, os.X_OK)),
                                      reason=f"no Prometheus and promtool in {CACHE}/bin (tools/build_mirror.py)")
needs_alertmanager = pytest.mark.skipif(not os.access(ALERTMANAGER, os.X_OK),
                                        reason=f"no Alertmanager in {CACHE}/bin (tools/build_mirror.py)")


def params(**overrides) -> dict:
    base = {"component": None, "host": "h1", "name": "20261130T000000Z", "source": {}, "spool_dir": None,
            "compression": "gzip", "compression_level": 6, "fetch_owner": "", "freeze_timeout": 30,
            "manifest": None, "archive": None, "allow_older": False, "force": False, "restore_config": False,
            "keep_aside": True, "without_service": True, "store_dir": None, "keep": 7, "verify_checksum": True}
    base.update(overrides)
    return base


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (loopback)
        return json.load(answer)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback)
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------
# versions

@pytest.mark.parametrize("component,backup,target,allow,problem", [
    ("prometheus", "3.5.3+ds1", "3.5.3+ds1", False, None),
    ("prometheus", "2.53.0", "3.5.3", False, None),            # Prometheus 3 reads 2.x data
    ("prometheus", "3.5.3", "2.53.0", False, "older than 3.5.3"),
    ("prometheus", "3.5.3", "2.53.0", True, None),
    ("prometheus", "1.8.2", "3.5.3", False, "1.x storage format"),
    ("alertmanager", "0.33.1", "0.28.0", False, "alertmanager 0.28.0 on this host is older than 0.33.1"),
    ("grafana", "12.4.6", "13.0.1", False, None),              # Grafana migrates forward
    ("grafana", None, "12.4.6", False, None),
    ("grafana", "12.4.6", None, False, "not installed on this host"),
])
def test_version_compatibility(component, backup, target, allow, problem):
    got = mb.version_problem(component, backup, target, allow, without_service=False)
    assert (got is None) if problem is None else (problem in got), got


def test_program_version_is_read_from_the_program(tmp_path):
    fake = tmp_path / "prometheus"
    fake.write_text("#!/bin/sh\necho 'prometheus, version 3.5.3+ds1 (branch: debian/sid, revision: 3.5.3+ds1-6)'\n")
    fake.chmod(0o755)
    assert mb.program_version(SYSTEM, str(fake))["version"] == "3.5.3+ds1"
    assert mb.program_version(SYSTEM, str(tmp_path / "missing"))["version"] is None


# --------------------------------------------------------------------------
# archives, manifests, the store

def config_backup(tmp_path: Path, name: str = "20261130T000000Z") -> dict:
    """A backup of a directory of files (the configuration part of any component)."""
    etc = tmp_path / "etc" / "thing"
    (etc / "sub").mkdir(parents=True, exist_ok=True)
    (etc / "a.yml").write_text("a: 1\n")
    (etc / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    (etc / "lock.json").write_text("{}")  # run-time state, left out
    entries = mb.collect_config([str(etc)])
    out = tmp_path / "spool" / name
    out.mkdir(parents=True)
    content = mb.write_archive(entries, str(out / "data.tar.gz"), "gzip", 6)
    manifest = {"format": 1, "name": name, "host": "h1", "component": "alertmanager",
                "program": {"name": "alertmanager", "version": "0.33.1"}, "archive": content.pop("archive"),
                "content": content, "checks": {}, "duration_seconds": 0.1}
    return {"manifest": manifest, "archive": out / "data.tar.gz", "etc": etc}


def test_archive_round_trip_and_manifest(tmp_path):
    made = config_backup(tmp_path)
    manifest = made["manifest"]
    paths = {f["path"] for f in manifest["content"]["files"]}
    assert paths == {f"config{made['etc']}/a.yml", f"config{made['etc']}/sub/b.bin"}
    assert manifest["archive"]["size"] == made["archive"].stat().st_size
    assert manifest["archive"]["sha256"] == mb.sha256_file(str(made["archive"]))[0]
    dest = tmp_path / "out"
    dest.mkdir()
    assert mb.extract_verified(str(made["archive"]), manifest, str(dest)) == []
    assert (dest / f"config{made['etc']}" / "sub" / "b.bin").read_bytes() == (made["etc"] / "sub" / "b.bin").read_bytes()


def test_one_changed_byte_is_refused_naming_the_file(tmp_path):
    made = config_backup(tmp_path)
    data = bytearray(made["archive"].read_bytes())
    data[len(data) // 2] ^= 0x01
    made["archive"].write_bytes(bytes(data))
    dest = tmp_path / "out"
    dest.mkdir()
    problems = mb.extract_verified(str(made["archive"]), made["manifest"], str(dest))
    assert problems and problems[0].startswith("data.tar.gz: SHA-256") and "does not match the manifest" in problems[0]


@pytest.mark.parametrize("compression,level,suffix,magic", [
    ("gzip", 1, "gz", b"\x1f\x8b"), ("gzip", 9, "gz", b"\x1f\x8b"),
    ("xz", 0, "xz", b"\xfd7zXZ\x00"), ("xz", 6, "xz", b"\xfd7zXZ\x00")])
def test_both_compressions_round_trip_in_process(tmp_path, compression, level, suffix, magic):
    """The archive is what gzip -d / xz -d read (its magic), and the engine reads it back whole."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "text.yml").write_text("repeated: line\n" * 20000)
    (etc / "random.bin").write_bytes(os.urandom(200_000))
    archive = tmp_path / f"data.tar.{suffix}"
    content = mb.write_archive(mb.collect_config([str(etc)]), str(archive), compression, level)
    info = content.pop("archive")
    assert info["name"] == mb.ARCHIVE_NAMES[compression] == archive.name
    assert archive.read_bytes().startswith(magic)
    assert (info["size"], info["sha256"]) == (archive.stat().st_size, mb.sha256_file(str(archive))[0])
    assert info["size"] < content["total_size"]
    manifest = {"archive": info, "content": content}
    (tmp_path / "out").mkdir()
    assert mb.extract_verified(str(archive), manifest, str(tmp_path / "out")) == []
    assert (tmp_path / "out" / f"config{etc}" / "text.yml").read_text() == (etc / "text.yml").read_text()


def test_a_level_the_compression_does_not_have_is_refused(tmp_path):
    entries = mb.collect_config([])
    with pytest.raises(mb.BackupError, match=r"backup_compression_level: 10 is not a level of gzip \(1-9\)"):
        mb.write_archive(entries, str(tmp_path / "data.tar.gz"), "gzip", 10)
    with pytest.raises(mb.BackupError, match="backup_compression: 'zstd' is not one of gzip, xz"):
        mb.write_archive(entries, str(tmp_path / "data.tar.zst"), "zstd", 3)
    assert not list(tmp_path.iterdir())


def test_an_archive_in_a_compression_this_version_cannot_read_is_refused(tmp_path):
    made = config_backup(tmp_path)
    made["manifest"]["archive"]["compression"] = "zstd"
    (tmp_path / "out").mkdir()
    problems = mb.extract_verified(str(made["archive"]), made["manifest"], str(tmp_path / "out"))
    assert problems == ["data.tar.gz: compressed with zstd, which this version of monstack_backup cannot read "
                        "(it reads gzip, xz)"]
    assert not list((tmp_path / "out").iterdir())


def test_a_truncated_archive_is_refused(tmp_path):
    made = config_backup(tmp_path)
    made["archive"].write_bytes(made["archive"].read_bytes()[:-100])
    (tmp_path / "out").mkdir()
    problems = mb.extract_verified(str(made["archive"]), made["manifest"], str(tmp_path / "out"))
    assert problems[0].startswith("data.tar.gz: SHA-256") and "does not match the manifest" in problems[0], problems
    assert any("the archive cannot be read" in p and "it is damaged" in p for p in problems), problems


def test_a_manifest_that_lies_about_a_file_is_refused_naming_the_file(tmp_path):
    made = config_backup(tmp_path)
    made["manifest"]["content"]["files"][0]["sha256"] = "0" * 64
    dest = tmp_path / "out"
    dest.mkdir()
    problems = mb.extract_verified(str(made["archive"]), made["manifest"], str(dest))
    name = made["manifest"]["content"]["files"][0]["path"]
    assert any(f"file {name} in the archive does not match the manifest" in p for p in problems), problems


def file_backup(store: Path, made: dict, name: str) -> dict:
    partial = store / "h1" / "alertmanager" / f"{name}.partial"
    partial.mkdir(parents=True)
    shutil.copy(made["archive"], partial / "data.tar.gz")
    manifest = dict(made["manifest"], name=name)
    return mb.store_commit(SYSTEM, params(action="store_commit", store_dir=str(store), component="alertmanager", name=name,
                                  manifest=manifest, keep=2))


def test_store_files_backups_keeps_the_newest_and_verifies(tmp_path):
    made = config_backup(tmp_path)
    store = tmp_path / "store"
    for name in ("20261128T031500Z", "20261129T031500Z", "20261130T031500Z"):
        result = file_backup(store, made, name)
    assert result["kept"] == ["20261129T031500Z", "20261130T031500Z"]
    assert [Path(p).name for p in result["removed"]] == ["20261128T031500Z"]
    base = store / "h1" / "alertmanager"
    assert oct(base.stat().st_mode & 0o777) == "0o700"
    assert oct((base / "20261130T031500Z" / "data.tar.gz").stat().st_mode & 0o777) == "0o600"

    found = mb.store_verify(SYSTEM, params(store_dir=str(store), component="alertmanager", name="latest"))
    assert found["problems"] == [] and found["name"] == "20261130T031500Z"
    named = mb.store_verify(SYSTEM, params(store_dir=str(store), component="alertmanager", name="20261129T031500Z"))
    assert named["problems"] == []
    missing = mb.store_verify(SYSTEM, params(store_dir=str(store), component="alertmanager", name="20261101T000000Z"))
    assert "no such backup" in missing["problems"][0]

    archive = base / "20261130T031500Z" / "data.tar.gz"
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF
    archive.write_bytes(bytes(data))
    bad = mb.store_verify(SYSTEM, params(store_dir=str(store), component="alertmanager", name="latest"))
    assert bad["problems"] and bad["problems"][0].startswith(f"{archive}: SHA-256")
    # Without the checksum (a backup the host holds already is not read again).
    assert mb.store_verify(SYSTEM, params(store_dir=str(store), component="alertmanager", name="latest",
                                  verify_checksum=False))["problems"] == []

    (base / "20261129T031500Z" / "manifest.json").write_text("{not json")
    broken = mb.store_verify(SYSTEM, params(store_dir=str(store), component="alertmanager", name="20261129T031500Z"))
    assert "manifest.json: not a readable backup manifest" in broken["problems"][0]


def test_a_transfer_that_changed_the_archive_is_not_filed(tmp_path):
    made = config_backup(tmp_path)
    store = tmp_path / "store"
    partial = store / "h1" / "alertmanager" / "20261130T031500Z.partial"
    partial.mkdir(parents=True)
    (partial / "data.tar.gz").write_bytes(made["archive"].read_bytes()[:-1])
    with pytest.raises(mb.BackupError, match="after the transfer does not match"):
        mb.store_commit(SYSTEM, params(store_dir=str(store), component="alertmanager", name="20261130T031500Z",
                               manifest=made["manifest"]))
    assert not (store / "h1" / "alertmanager" / "20261130T031500Z").exists()


# --------------------------------------------------------------------------
# Grafana: SQLite's online backup, restore, check, rollback

def grafana_db(path: Path, rows: int = 3) -> None:
    db = sqlite3.connect(path)
    db.executescript("PRAGMA journal_mode=WAL; CREATE TABLE dashboard (id INTEGER PRIMARY KEY, uid TEXT);"
                     "CREATE TABLE annotation (id INTEGER PRIMARY KEY, text TEXT);")
    db.executemany("INSERT INTO dashboard (uid) VALUES (?)", [(f"d{i}",) for i in range(rows)])
    db.commit()
    db.close()


def test_grafana_online_backup_while_written_then_restore_twice(tmp_path):
    live = tmp_path / "var" / "grafana.db"
    live.parent.mkdir()
    grafana_db(live)
    state = tmp_path / "var" / ".monstack-admin-password"
    state.write_text("fingerprint")
    stop_writing, writing = threading.Event(), threading.Event()

    def writer():  # Grafana writing all the time, in transactions of two rows
        db = sqlite3.connect(live, timeout=30)
        n = 0
        while not stop_writing.is_set():
            with db:
                db.execute("INSERT INTO annotation (text) VALUES (?)", (f"a{n}",))
                db.execute("INSERT INTO annotation (text) VALUES (?)", (f"b{n}",))
            writing.set()
            n += 1
        db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(30)
        source = {"db_path": str(live), "config_paths": [], "reset_files": [str(state)]}
        made = mb.create(SYSTEM, params(component="grafana", source=source, spool_dir=str(tmp_path / "spool")))
    finally:
        stop_writing.set()
        thread.join()
    manifest = made["manifest"]
    tables = manifest["checks"]["sqlite"]["tables"]
    assert manifest["checks"]["sqlite"]["integrity"] == "ok"
    assert tables["dashboard"] == 3 and tables["annotation"] > 0 and tables["annotation"] % 2 == 0  # whole transactions

    # Grafana keeps going; then the restore (Grafana "stopped", no service here).
    grafana_db_rows = sqlite3.connect(live).execute("SELECT COUNT(*) FROM annotation").fetchone()[0]
    assert grafana_db_rows > tables["annotation"]
    p = params(component="grafana", source=source, manifest=manifest, archive=made["archive"])
    assert mb.inspect(SYSTEM, p)["problems"] == [] and not mb.inspect(SYSTEM, p)["restored_already"]
    assert mb.stage(SYSTEM, p)["problems"] == []
    swapped = mb.swap(SYSTEM, p)
    assert not state.exists()  # the next site.yml applies the inventory's admin password again
    checked = mb.check(SYSTEM, p)
    assert checked["problems"] == [] and "as in the backup" in checked["checked"][0], checked
    assert any("Grafana server checks skipped" in s for s in checked["skipped"])
    mb.commit(SYSTEM, p)
    assert sqlite3.connect(live).execute("SELECT COUNT(*) FROM annotation").fetchone()[0] == tables["annotation"]
    assert (Path(swapped["aside"]) / "grafana.db").exists()
    assert mb.inspect(SYSTEM, p)["restored_already"]  # the same backup again changes nothing
    assert mb.inspect(SYSTEM, dict(p, force=True))["restored_already"] is False


def test_a_failed_grafana_restore_is_rolled_back(tmp_path):
    live = tmp_path / "grafana.db"
    grafana_db(live, rows=5)
    source = {"db_path": str(live), "config_paths": []}
    made = mb.create(SYSTEM, params(component="grafana", source=source, spool_dir=str(tmp_path / "spool")))
    db = sqlite3.connect(live)
    db.execute("INSERT INTO dashboard (uid) VALUES ('newer')")
    db.commit()
    db.close()
    p = params(component="grafana", source=source, manifest=made["manifest"], archive=made["archive"])
    mb.stage(SYSTEM, p)
    mb.swap(SYSTEM, p)
    assert sqlite3.connect(live).execute("SELECT COUNT(*) FROM dashboard").fetchone()[0] == 5
    rolled = mb.rollback(SYSTEM, p)
    assert rolled["restored_previous"] == ["grafana.db"]
    assert sqlite3.connect(live).execute("SELECT COUNT(*) FROM dashboard").fetchone()[0] == 6
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".monstack")) == []


def test_a_damaged_database_in_the_backup_is_refused(tmp_path):
    live = tmp_path / "grafana.db"
    grafana_db(live)
    source = {"db_path": str(live), "config_paths": []}
    made = mb.create(SYSTEM, params(component="grafana", source=source, spool_dir=str(tmp_path / "spool")))
    manifest = made["manifest"]
    manifest["checks"]["sqlite"]["tables"]["dashboard"] = 4  # the manifest says otherwise
    staged = mb.stage(SYSTEM, params(component="grafana", source=source, manifest=manifest, archive=made["archive"]))
    assert staged["problems"] == ["the database of the backup does not hold the row counts of its manifest"]
    assert not any(p.name.startswith(".monstack-restore") for p in tmp_path.iterdir())


# --------------------------------------------------------------------------
# Prometheus: paused and hard-linked while it ingests, restored into another one

@pytest.fixture
def prometheus_pair(tmp_path):
    """A Prometheus with two hours of history in a block and live scrapes of itself."""
    data = tmp_path / "data"
    data.mkdir()
    now = int(time.time())
    lines = ["# HELP history_value A series of the past.", "# TYPE history_value gauge"]
    lines += [f'history_value{{n="1"}} {i} {now - 3 * 3600 + i * 60}' for i in range(120)]
    (tmp_path / "history.om").write_text("\n".join(lines) + "\n# EOF\n")
    subprocess.run([str(PROMTOOL), "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "history.om"), str(data)],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "self", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}))
    procs = []

    def start(directory: Path, listen: int, config: Path):
        proc = subprocess.Popen([str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={directory}",
                                 f"--web.listen-address=127.0.0.1:{listen}"],
                                stdout=open(tmp_path / f"prometheus-{listen}.log", "w"), stderr=subprocess.STDOUT)
        procs.append(proc)
        wait_ready(f"http://127.0.0.1:{listen}/-/ready", proc)
        return proc

    first = start(data, port, tmp_path / "prometheus.yml")
    try:
        yield {"tmp": tmp_path, "data": data, "port": port, "proc": first, "start": start}
    finally:
        for proc in procs:
            stop(proc)


def raw(port: int, expr: str, at: float) -> list:
    query = urllib.parse.urlencode({"query": expr, "time": at})
    return get_json(f"http://127.0.0.1:{port}/api/v1/query?{query}")["data"]["result"]


@needs_prometheus
def test_prometheus_backup_while_it_ingests_and_restore(prometheus_pair):
    pair = prometheus_pair
    deadline = time.monotonic() + 30  # service discovery hands over the first targets after ~5 s
    while not raw(pair["port"], "up", time.time()) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # a few scrapes in the WAL
    url = f"http://127.0.0.1:{pair['port']}"
    source = {"data_dir": str(pair["data"]), "pid": pair["proc"].pid, "url": url, "binary": str(PROMETHEUS),
              "config_paths": []}
    (pair["data"] / "01HTMPBLOCK.tmp-for-creation").mkdir()  # a compaction in progress: not part of the image
    made = mb.create(SYSTEM, params(component="prometheus", source=source, spool_dir=str(pair["tmp"] / "spool")))
    manifest = made["manifest"]
    assert manifest["checks"]["method"] == "pause-and-hardlink"
    assert manifest["checks"]["pause_seconds"] < 5
    assert manifest["program"]["version"]
    paths = [f["path"] for f in manifest["content"]["files"]]
    assert any(p.startswith("data/wal/") for p in paths)
    assert any(p.endswith("/index") for p in paths), "the block of the history is in the backup"
    assert not any("tmp-for-creation" in p or p.endswith(("/lock", "queries.active")) for p in paths)
    assert not any(p.name.startswith(".monstack-image") for p in pair["data"].iterdir())
    # Prometheus runs on: not left stopped.
    with open(f"/proc/{pair['proc'].pid}/stat") as handle:
        assert handle.read().rsplit(")", 1)[1].split()[0] != "T"
    taken = manifest["checks"]["taken_at"]
    time.sleep(2)  # it keeps ingesting after the backup

    restored = pair["tmp"] / "restored"
    restored.mkdir()
    port2 = free_port()
    source2 = {"data_dir": str(restored), "url": f"http://127.0.0.1:{port2}", "config_paths": []}
    p = params(component="prometheus", source=source2, manifest=manifest, archive=made["archive"])
    assert mb.stage(SYSTEM, p)["problems"] == []
    mb.swap(SYSTEM, p)
    (pair["tmp"] / "empty.yml").write_text("{}")
    second = pair["start"](restored, port2, pair["tmp"] / "empty.yml")
    source2["pid"] = second.pid
    checked = mb.check(SYSTEM, p)
    assert checked["problems"] == [], checked
    mb.commit(SYSTEM, p)

    for expr in ('history_value[4h]', 'up{job="self"}[1m]'):
        before = raw(pair["port"], expr, taken - 1)
        after = raw(port2, expr, taken - 1)
        assert before and after == before, (expr, before, after)
    assert len(raw(port2, 'history_value[4h]', taken)[0]["values"]) == 120


def test_the_watchdog_resumes_a_paused_process_when_the_backup_dies(tmp_path):
    target = subprocess.Popen(["sleep", "60"])
    try:
        child = os.fork()
        if child == 0:  # a backup that dies while the process is paused
            with mb.paused(SYSTEM, target.pid, 2):
                os._exit(1)
        os.waitpid(child, 0)
        state = lambda: open(f"/proc/{target.pid}/stat").read().rsplit(")", 1)[1].split()[0]  # noqa: E731
        assert state() == "T", "paused"
        deadline = time.monotonic() + 10
        while state() == "T" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state() != "T", "the watchdog did not resume it"
    finally:
        target.kill()
        target.wait()


# --------------------------------------------------------------------------
# Alertmanager: the silences come back

@pytest.fixture
def alertmanager(tmp_path):
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: default}\nreceivers: [{name: default}]\n")
    data = tmp_path / "data"
    data.mkdir()
    argv = [str(ALERTMANAGER), f"--config.file={config}", f"--storage.path={data}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    procs = []

    def start():
        proc = subprocess.Popen(argv, stdout=open(tmp_path / "am.log", "a"), stderr=subprocess.STDOUT)
        procs.append(proc)
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc)
        return proc

    try:
        yield {"tmp": tmp_path, "data": data, "url": f"http://127.0.0.1:{port}", "start": start}
    finally:
        for proc in procs:
            stop(proc)


def silence(url: str, name: str, hours: float = 24) -> str:
    body = {"matchers": [{"name": "alertname", "value": name, "isRegex": False, "isEqual": True}],
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + hours * 3600)),
            "createdBy": "unit", "comment": name}
    return mb.http(SYSTEM, url + "/api/v2/silences", method="POST", body=body)["silenceID"]


@needs_alertmanager
def test_alertmanager_silences_come_back_after_a_restore_onto_empty_data(alertmanager):
    proc = alertmanager["start"]()
    url = alertmanager["url"]
    silence(url, "KeepMe")
    expired = silence(url, "ExpireMe")
    mb.http(SYSTEM, url + f"/api/v2/silence/{expired}", method="DELETE")
    source = {"data_dir": str(alertmanager["data"]), "url": url, "pid": proc.pid, "config_paths": []}
    made = mb.create(SYSTEM, params(component="alertmanager", source=source, spool_dir=str(alertmanager["tmp"] / "spool")))
    assert made["manifest"]["checks"]["silences_active"] == 1
    stop(proc)

    # The data is lost: a new, empty Alertmanager. Then the restore.
    shutil.rmtree(alertmanager["data"])
    alertmanager["data"].mkdir()
    p = params(component="alertmanager", source=source, manifest=made["manifest"], archive=made["archive"])
    assert mb.stage(SYSTEM, p)["problems"] == []
    mb.swap(SYSTEM, p)
    source["pid"] = alertmanager["start"]().pid
    checked = mb.check(SYSTEM, p)
    assert checked["problems"] == [], checked
    mb.commit(SYSTEM, p)
    live = mb.http(SYSTEM, url + "/api/v2/silences")
    active = [s["comment"] for s in live if s["status"]["state"] == "active"]
    assert active == ["KeepMe"], live
    assert mb.check(SYSTEM, p)["changed"] is False  # nothing left to create


@needs_alertmanager
def test_reconcile_expires_a_silence_the_backup_holds_as_expired(alertmanager):
    alertmanager["start"]()
    url = alertmanager["url"]
    sid = silence(url, "StillActiveInTheOldFile")
    exported = [dict(s, status={"state": "expired"}) for s in mb.http(SYSTEM, url + "/api/v2/silences")]
    result = mb.reconcile_silences(SYSTEM, url, "", "", exported)
    assert result == {"created": [], "expired": [sid]}
    assert [s["status"]["state"] for s in mb.http(SYSTEM, url + "/api/v2/silences")] == ["expired"]


# --------------------------------------------------------------------------
# the metric of the last good backup, the scheduled command

def test_textfile_metric_keeps_the_last_success_after_a_failure(tmp_path):
    mb.write_metric(str(tmp_path), "scheduled", "prometheus", True, 1234, 2.5, now=1000.0)
    mb.write_metric(str(tmp_path), "scheduled", "grafana", True, 10, 0.1, now=1001.0)
    mb.write_metric(str(tmp_path), "scheduled", "prometheus", False, now=2000.0)
    text = (tmp_path / "monstack_backup_scheduled.prom").read_text()
    assert 'monstack_backup_last_success_timestamp_seconds{component="prometheus",kind="scheduled"} 1000.000' in text
    assert 'monstack_backup_last_run_timestamp_seconds{component="prometheus",kind="scheduled"} 2000.000' in text
    assert 'monstack_backup_last_run_success{component="prometheus",kind="scheduled"} 0' in text
    assert 'monstack_backup_last_size_bytes{component="grafana",kind="scheduled"} 10' in text
    assert text.count("# TYPE monstack_backup_last_success_timestamp_seconds gauge") == 1
    if os.access(PROMTOOL, os.X_OK):
        check = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def install_scheduled(where: Path) -> Path:
    """The engine and the scheduled command side by side, as the role installs them on a host."""
    where.mkdir(parents=True)
    shutil.copy(ENGINE_PATH, where / "monstack_backup.py")
    shutil.copy(SCHEDULED_PATH, where / "monstack_backup_scheduled.py")
    return where / "monstack_backup_scheduled.py"


def test_scheduled_command_backs_up_keeps_the_newest_and_publishes(tmp_path):
    db = tmp_path / "grafana.db"
    grafana_db(db)
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    config = {"host": "h1", "dir": str(tmp_path / "backups"), "keep": 2, "textfile_dir": str(textfile),
              "compression": "xz", "compression_level": 6,
              "components": [{"component": "grafana", "source": {"db_path": str(db), "config_paths": []}},
                             {"component": "prometheus", "source": {"data_dir": str(tmp_path / "missing")}}]}
    (tmp_path / "backup.json").write_text(json.dumps(config))
    command = install_scheduled(tmp_path / "lib")
    for _ in range(3):
        # as monstack-backup.service runs it, from another directory, with nothing of this checkout on the path
        run = subprocess.run([sys.executable, str(command), str(tmp_path / "backup.json")], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, env={"PATH": os.environ["PATH"]})
        time.sleep(1.05)  # backups are named by the second
    assert run.returncode == 1  # the prometheus component failed: its data directory is missing
    assert "prometheus: backup FAILED" in run.stderr and "does not exist" in run.stderr
    assert run.stdout.startswith("grafana: ") and "(kept 2)" in run.stdout, run.stdout
    kept = sorted(p.name for p in (tmp_path / "backups" / "grafana").iterdir())
    assert len(kept) == 2, kept
    newest = tmp_path / "backups" / "grafana" / kept[-1]
    manifest = json.loads((newest / "manifest.json").read_text())
    assert manifest["archive"]["compression"] == "xz" and (newest / "data.tar.xz").is_file()
    out = tmp_path / "out"
    out.mkdir()
    assert mb.extract_verified(str(newest / "data.tar.xz"), manifest, str(out)) == []
    assert not (tmp_path / "backups" / ".spool").exists()
    text = (textfile / "monstack_backup_scheduled.prom").read_text()
    assert 'monstack_backup_last_run_success{component="grafana",kind="scheduled"} 1' in text
    assert 'monstack_backup_last_run_success{component="prometheus",kind="scheduled"} 0' in text
    assert 'monstack_backup_last_success_timestamp_seconds{component="prometheus",kind="scheduled"} 0' in text


def test_scheduled_command_without_its_configuration_says_how_to_run_it(tmp_path):
    run = subprocess.run([sys.executable, str(install_scheduled(tmp_path / "lib"))], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and "usage:" in run.stderr and "backup.json" in run.stderr, run.stderr


def test_the_module_documents_its_options():
    import yaml
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["module"] == "backup"
    source = MODULE_PATH.read_text()
    for option, spec in doc["options"].items():
        assert f"{option}=dict(type=\"{spec['type']}\"" in source, option
    assert doc["options"]["compression"]["choices"] == list(mb.ARCHIVE_NAMES)
    # HTTP through open_url; programs through the engine's run_program, which has a timeout
    # (run_command has none)
    for text in (source, ENGINE_PATH.read_text()):
        assert "urlopen" not in text and "module.run_command" not in text
    assert "System(run_program, request)" in source


# --------------------------------------------------------------------------
# the module and the playbooks through Ansible, on this machine

def ansible_env(**extra: str) -> dict:
    return {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0", **extra}


@needs_alertmanager
def test_the_module_runs_the_program_and_asks_the_api_through_ansible(alertmanager, tmp_path):
    """monstack.stack.backup by its full name: the version from `alertmanager --version`
    (run_program) and the silences over the API (open_url), the password of the checks never shown."""
    proc = alertmanager["start"]()
    silence(alertmanager["url"], "ThroughAnsible")
    secret = "check-password-4711"
    source = {"data_dir": str(alertmanager["data"]), "url": alertmanager["url"], "pid": proc.pid,
              "binary": str(ALERTMANAGER), "config_paths": [], "url_user": "checker", "url_password": secret}
    play = tmp_path / "play.yml"
    play.write_text(json.dumps([{
        "name": "The module", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"ansible_python_interpreter": sys.executable},
        "tasks": [{"name": "Back up Alertmanager", "register": "made", "monstack.stack.backup": {
            "action": "create", "component": "alertmanager", "host": "h1", "name": "20261130T000000Z",
            "source": source, "spool_dir": str(tmp_path / "spool"), "compression": "xz"}}]}]))
    run = subprocess.run([ansible_playbook(), "-i", "localhost,", str(play), "-v"], capture_output=True, text=True,
                         env=ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json"), cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert secret not in run.stdout + run.stderr
    result = json.loads(run.stdout[run.stdout.index("{"):])["plays"][0]["tasks"][0]["hosts"]["localhost"]
    manifest = result["manifest"]
    version = subprocess.run([str(ALERTMANAGER), "--version"], capture_output=True, text=True).stdout
    assert manifest["program"]["version"] and manifest["program"]["version"] in version, (manifest["program"], version)
    assert manifest["checks"]["silences_active"] == 1
    assert manifest["archive"]["compression"] == "xz" and result["archive"].endswith("/data.tar.xz")
    out = tmp_path / "out"
    out.mkdir()
    assert mb.extract_verified(result["archive"], manifest, str(out)) == []
    exported = json.loads((out / "export" / "silences.json").read_text())
    assert [s["comment"] for s in exported] == ["ThroughAnsible"]


HMAC_SECRET = "playbook-test-secret-0123456789"


def test_backup_and_restore_playbooks_on_this_machine(tmp_path):
    """playbooks/backup.yml and restore.yml as a user runs them (the roles and the module by their
    full names), for a Grafana database on this machine without a Grafana service: backed up into
    the store, restored over newer data, and restored again: nothing changes."""
    data, store, textfile = tmp_path / "grafana", tmp_path / "store", tmp_path / "textfile"
    data.mkdir()
    textfile.mkdir()
    grafana_db(data / "grafana.db", rows=3)
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"grafana": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False,
        "grafana_data_dir": str(data), "grafana_config_dir": str(tmp_path / "etc"),
        "backup_dir": str(store), "backup_host_spool_dir": str(tmp_path / "spool"),
        "backup_spool_dir": str(tmp_path / "controller-spool"), "backup_textfile_dir": str(textfile),
        "backup_hmac_secret": HMAC_SECRET}}}}}}))

    def playbook(name: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        run = subprocess.run([ansible_playbook(), "-i", str(inventory), str(REPO / "playbooks" / name), *args],
                             capture_output=True, text=True, env=ansible_env(), cwd=tmp_path, timeout=600)
        assert (run.returncode == 0) == ok, run.stdout[-4000:] + run.stderr[-2000:]
        assert HMAC_SECRET not in run.stdout + run.stderr  # no_log
        return run

    def rows() -> int:
        return sqlite3.connect(data / "grafana.db").execute("SELECT COUNT(*) FROM dashboard").fetchone()[0]

    backup = playbook("backup.yml")
    assert "monstack.stack.backup : Backup | Take the backup while it runs: grafana" in backup.stdout
    filed = sorted(store.glob("localhost/grafana/*/*"))
    assert [p.name for p in filed] == ["data.tar.gz", "manifest.json"], filed
    assert {oct(p.stat().st_mode & 0o777) for p in filed} == {"0o600"}
    assert json.loads(filed[1].read_text())["hmac"]["algorithm"] == "HMAC-SHA256"  # signed with backup_hmac_secret
    assert 'monstack_backup_last_run_success{component="grafana",kind="playbook"} 1' in \
        (textfile / "monstack_backup_playbook.prom").read_text()

    db = sqlite3.connect(data / "grafana.db")
    db.execute("INSERT INTO dashboard (uid) VALUES ('newer')")
    db.commit()
    db.close()
    assert rows() == 4
    restore = playbook("restore.yml", "-e", "backup_restore_without_service=true")
    assert rows() == 3
    output = " ".join(restore.stdout.split())
    assert "grafana: restored backup" in output and "3 rows in 2 tables as in the backup" in output, output[-3000:]
    assert "SKIPPED" in output and "grafana-server is not" in output  # the server part, with its reason
    again = playbook("restore.yml", "-e", "backup_restore_without_service=true")
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0 ", again.stdout), again.stdout[-2000:]
    assert "is restored here already" in again.stdout
    assert rows() == 3
    assert not any((tmp_path / "controller-spool").glob("*")) and not any((tmp_path / "spool").glob("*/*"))
    # Another secret: the manifest's HMAC does not match; refused before anything is touched.
    other = playbook("restore.yml", "-e", "backup_restore_without_service=true", "-e", "backup_restore_force=true",
                     "-e", "backup_hmac_secret=another-secret-0123456789", ok=False)
    output = " ".join(other.stdout.split())
    assert "its HMAC does not match backup_hmac_secret" in output and "Restore | Upload" not in output, output[-3000:]
    assert rows() == 3


def test_a_bad_variable_stops_backup_and_restore_before_anything(tmp_path):
    """The role's entry points for the playbooks (backup, restore_check) are validated against
    its argument specs: a value that is not allowed stops the run, naming the variable."""
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"grafana": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False,
        "grafana_data_dir": str(tmp_path / "grafana"), "backup_dir": str(tmp_path / "store"),
        "backup_host_spool_dir": str(tmp_path / "spool")}}}}}}))
    for name, bad in (("backup.yml", "backup_compression=zstd"), ("restore.yml", "backup_keep=seven")):
        run = subprocess.run([ansible_playbook(), "-i", str(inventory), str(REPO / "playbooks" / name), "-e", bad],
                             capture_output=True, text=True, env=ansible_env(), cwd=tmp_path, timeout=300)
        output = " ".join(run.stdout.split())
        assert run.returncode != 0, output[-2000:]
        variable, value = bad.split("=")
        assert "Validating arguments against arg spec" in output and variable in output and value in output, \
            output[-2000:]
    run = subprocess.run([ansible_playbook(), "-i", str(inventory), str(REPO / "playbooks" / "backup.yml"),
                          "-e", "backup_keep=0"], capture_output=True, text=True, env=ansible_env(), cwd=tmp_path,
                         timeout=300)
    output = " ".join(run.stdout.split())
    assert run.returncode != 0 and "backup_keep: 0 is not allowed: keep at least 1 backup" in output, output[-2000:]
    assert not (tmp_path / "store").exists() and not (tmp_path / "spool").exists()


def test_run_program_answers_and_bounds_the_time():
    """A program's answer, and a clear OSError (not a hang) when it outlives its timeout."""
    assert mb.run_program(["sh", "-c", "echo out; echo err >&2; exit 3"], 10) == (3, "out\n", "err\n")
    started = time.monotonic()
    with pytest.raises(OSError, match="sleep did not finish within 1 s"):
        mb.run_program(["sleep", "30"], 1)
    assert time.monotonic() - started < 10
    with pytest.raises(OSError):
        mb.run_program(["/nonexistent/program"], 10)


# --------------------------------------------------------------------------
# a hostile service user and a hostile archive (issue 24, rows 6, 7 and 11)

SECRET = b"root:$6$not-for-the-service-user:19000:0:99999:7:::\n"
NOBODY = 65534


def hostile_archive(tmp_path: Path, members: list[tuple], listed: list[str] | None = None, dirs: list[str] = (),
                    component: str = "alertmanager") -> dict:
    """An archive made by hand, with a manifest that lists `listed` (default: every member, as
    a forger who writes both would), sizes and SHA-256 sums right."""
    import hashlib
    import io
    out = tmp_path / "hostile"
    out.mkdir(exist_ok=True)
    archive = out / "data.tar.gz"
    files = []
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, mode, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 1_700_000_000
            if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
            if kind != tarfile.DIRTYPE and (listed is None or name in listed):
                files.append({"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                              "mode": "%04o" % (mode & 0o7777)})
    manifest = {"format": 1, "name": "20261130T000000Z", "host": "h1", "component": component,
                "program": {"name": component, "version": None},
                "archive": {"name": "data.tar.gz", "size": archive.stat().st_size,
                            "sha256": mb.sha256_file(str(archive))[0], "compression": "gzip"},
                "content": {"files": files, "dirs": list(dirs), "total_size": sum(f["size"] for f in files)},
                "checks": {}}
    return {"manifest": manifest, "archive": archive}


@pytest.fixture
def host(tmp_path):
    """An Alertmanager's data and configuration directories, and files the service user must
    never reach through a restore or a backup."""
    root = tmp_path / "host"
    data = root / "var" / "lib" / "alertmanager"
    etc = root / "etc" / "alertmanager"
    data.mkdir(parents=True)
    etc.mkdir(parents=True)
    (data / "nflog").write_bytes(b"live nflog")
    (data / "silences").write_bytes(b"live silences")
    (etc / "alertmanager.yml").write_text("route: {}\n")
    secret = root / "etc" / "shadow"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    victim = root / "etc" / "sudoers.d"
    victim.mkdir()
    source = {"data_dir": str(data), "config_paths": [str(etc)], "service": None}
    return {"root": root, "data": data, "etc": etc, "secret": secret, "victim": victim, "source": source}


def tree(path: Path) -> dict:
    """Every name below `path` with what it is and holds (links not followed)."""
    out = {}
    for entry in sorted(path.rglob("*")):
        info = entry.lstat()
        out[str(entry.relative_to(path))] = (info.st_mode, os.readlink(entry) if entry.is_symlink() else
                                             entry.read_bytes() if entry.is_file() else None)
    return out


HOSTILE = {
    # name: (members, restore_config, what the refusal says)
    "config member outside config_paths": (
        lambda h: [(f"config{h['victim']}/x", tarfile.REGTYPE, b"ALL ALL=(ALL) NOPASSWD: ALL\n", 0o440, "")],
        True, "is outside the configuration paths"),
    "config member outside config_paths, not listed": (
        lambda h: [(f"config{h['victim']}/x", tarfile.REGTYPE, b"ALL ALL=(ALL) NOPASSWD: ALL\n", 0o440, "")],
        True, "is outside the component's configuration paths"),
    "dot-dot": (lambda h: [("data/../../../etc/sudoers.d/x", tarfile.REGTYPE, b"pwned\n", 0o644, "")],
                False, "a '..' component"),
    "dot-dot, not listed": (lambda h: [("data/../../../etc/sudoers.d/x", tarfile.REGTYPE, b"pwned\n", 0o644, "")],
                            False, "a '..' component"),
    "absolute path": (lambda h: [(f"{h['victim']}/x", tarfile.REGTYPE, b"pwned\n", 0o644, "")],
                      False, "an absolute path"),
    "symlink member": (lambda h: [("data/nflog", tarfile.SYMTYPE, b"", 0o777, str(h["secret"]))],
                       False, "it is a symbolic link"),
    "hard link member": (lambda h: [("data/nflog", tarfile.LNKTYPE, b"", 0o644, str(h["secret"]))],
                         False, "it is a hard link"),
    "device member": (lambda h: [("data/nflog", tarfile.CHRTYPE, b"", 0o666, "")], False, "it is a device"),
    "FIFO member": (lambda h: [("data/nflog", tarfile.FIFOTYPE, b"", 0o666, "")], False, "it is a FIFO"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_archive_is_refused_before_anything_is_written(host, tmp_path, case):
    make, restore_config, says = HOSTILE[case]
    benign = [("data/silences", tarfile.REGTYPE, b"restored silences", 0o640, "")]
    hostile = make(host)
    listed = None if "not listed" not in case else [m[0] for m in benign]
    made = hostile_archive(tmp_path, hostile + benign, listed=listed)
    before = {p: tree(p) for p in (host["data"], host["etc"], host["victim"])}
    secret_before = host["secret"].read_bytes()
    p = params(component="alertmanager", source=host["source"], manifest=made["manifest"], archive=str(made["archive"]),
               restore_config=restore_config)
    staged = mb.stage(SYSTEM, p)
    assert staged["problems"] and any(says in problem for problem in staged["problems"]), staged
    assert not os.path.lexists(mb.staging_path("alertmanager", host["source"]))  # nothing left staged
    assert {p: tree(p) for p in before} == before  # nothing written anywhere
    assert host["secret"].read_bytes() == secret_before and not (host["victim"] / "x").exists()
    if "not listed" not in case:  # the manifest lists the member: refused before the archive is read
        problems = mb.inspect(SYSTEM, dict(p, without_service=True))["problems"]
        if case not in ("symlink member", "hard link member", "device member", "FIFO member"):
            assert any(says in problem for problem in problems), problems
    with pytest.raises(mb.BackupError, match="nothing was moved|not the staging directory"):
        mb.swap(SYSTEM, p)
    assert {p: tree(p) for p in before} == before


def test_setuid_bits_are_masked_and_ownership_set_explicitly(host, tmp_path):
    """A member with setuid, setgid and sticky bits is restored 0755, owned by the service user
    (files of data/) or by the manifest's owner (configuration; root when it names an unknown one)."""
    made = hostile_archive(tmp_path, [
        ("data/tool", tarfile.REGTYPE, b"#!/bin/sh\nid\n", 0o6755, ""),
        ("data/sub", tarfile.DIRTYPE, b"", 0o3777, ""),
        ("data/sub/file", tarfile.REGTYPE, b"x", 0o1644, ""),
        (f"config{host['etc']}/alertmanager.yml", tarfile.REGTYPE, b"route: {receiver: x}\n", 0o4644, "")],
        dirs=["data/sub"])
    made["manifest"]["content"]["files"][-1].update(owner="no-such-user-here", group="no-such-group-here")
    source = dict(host["source"], user="nobody", group="nogroup" if _group_exists("nogroup") else "nobody")
    p = params(component="alertmanager", source=source, manifest=made["manifest"], archive=str(made["archive"]),
               restore_config=True)
    assert mb.stage(SYSTEM, p)["problems"] == []
    mb.swap(SYSTEM, p)
    for path, mode in ((host["data"] / "tool", 0o755), (host["data"] / "sub", 0o777),
                       (host["data"] / "sub" / "file", 0o644), (host["etc"] / "alertmanager.yml", 0o644)):
        info = path.lstat()
        assert stat_mode(info) == mode, (path, oct(info.st_mode))
    assert (host["data"] / "tool").stat().st_uid == NOBODY and (host["data"] / "sub").stat().st_uid == NOBODY
    assert (host["etc"] / "alertmanager.yml").stat().st_uid == 0
    assert (host["etc"] / "alertmanager.yml").read_text() == "route: {receiver: x}\n"
    mb.rollback(SYSTEM, p)  # and back: the old configuration, the old data
    assert (host["etc"] / "alertmanager.yml").read_text() == "route: {}\n"
    assert (host["data"] / "nflog").read_bytes() == b"live nflog" and not (host["data"] / "tool").exists()


def _group_exists(name: str) -> bool:
    import grp
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def stat_mode(info) -> int:
    import stat as stat_module
    return stat_module.S_IMODE(info.st_mode)


def signed_backup(tmp_path: Path, key: str) -> dict:
    live = tmp_path / "grafana" / "grafana.db"
    live.parent.mkdir()
    grafana_db(live)
    source = {"db_path": str(live), "config_paths": []}
    made = mb.create(SYSTEM, params(component="grafana", source=source, spool_dir=str(tmp_path / "spool"),
                                    hmac_key=key))
    return {"made": made, "source": source, "live": live}


def test_with_a_secret_only_a_manifest_signed_with_it_is_restored(tmp_path):
    key = "k" * 40
    backup = signed_backup(tmp_path, key)
    manifest = json.loads(json.dumps(backup["made"]["manifest"]))  # as it travels through Ansible
    assert manifest["hmac"]["algorithm"] == "HMAC-SHA256" and len(manifest["hmac"]["value"]) == 64
    p = params(component="grafana", source=backup["source"], manifest=manifest, archive=backup["made"]["archive"],
               hmac_key=key)
    unsigned = {k: v for k, v in manifest.items() if k != "hmac"}
    changed = json.loads(json.dumps(manifest))
    changed["content"]["files"][0]["sha256"] = "0" * 64  # a forger's edit, with the old signature
    for bad, key_used, says in ((unsigned, key, "has no HMAC, and backup_hmac_secret is set"),
                                (changed, key, "its HMAC does not match backup_hmac_secret"),
                                (manifest, "w" * 40, "its HMAC does not match backup_hmac_secret")):
        for action in (mb.inspect, mb.stage):
            problems = action(SYSTEM, dict(p, manifest=bad, hmac_key=key_used))["problems"]
            assert len(problems) == 1 and says in problems[0], (action.__name__, problems)
        with pytest.raises(mb.BackupError, match=says):
            mb.swap(SYSTEM, dict(p, manifest=bad, hmac_key=key_used))
        assert not os.path.lexists(mb.staging_path("grafana", backup["source"]))
    with pytest.raises(mb.BackupError, match="backup_hmac_secret: shorter than 16"):
        mb.stage(SYSTEM, dict(p, hmac_key="short"))
    # Without a secret a signed backup restores (nothing to check it with); with it, too.
    assert mb.stage(SYSTEM, dict(p, hmac_key=""))["problems"] == []
    assert mb.stage(SYSTEM, p)["problems"] == []
    mb.swap(SYSTEM, p)
    mb.commit(SYSTEM, p)


def test_with_a_secret_the_store_refuses_an_unsigned_or_changed_manifest(tmp_path):
    key = "s" * 32
    made = config_backup(tmp_path)
    store = tmp_path / "store"
    with pytest.raises(mb.BackupError, match="has no HMAC.*nothing was filed"):
        mb.store_commit(SYSTEM, params(store_dir=str(store), component="alertmanager", name="20261130T031500Z",
                                       manifest=made["manifest"], hmac_key=key))
    partial = store / "h1" / "alertmanager" / "20261130T031500Z.partial"
    partial.mkdir(parents=True)
    shutil.copy(made["archive"], partial / "data.tar.gz")
    manifest = mb.sign_manifest(dict(made["manifest"], name="20261130T031500Z"), key)
    mb.store_commit(SYSTEM, params(store_dir=str(store), component="alertmanager", name="20261130T031500Z",
                                   manifest=manifest, hmac_key=key))
    find = params(store_dir=str(store), component="alertmanager", name="latest", hmac_key=key)
    assert mb.store_verify(SYSTEM, find)["problems"] == []
    stored = store / "h1" / "alertmanager" / "20261130T031500Z" / "manifest.json"
    forged = json.loads(stored.read_text())
    forged["content"]["files"].append({"path": "config/etc/sudoers.d/x", "size": 1, "sha256": "0" * 64})
    stored.write_text(json.dumps(forged))
    problems = mb.store_verify(SYSTEM, find)["problems"]
    assert len(problems) == 1 and str(stored) in problems[0] and "HMAC does not match" in problems[0], problems


def test_a_symlink_in_a_data_directory_is_not_followed_by_the_backup(host, tmp_path):
    """Alertmanager's and Prometheus' data directories belong to their service users: a
    link there to /etc/shadow (or to a directory), a FIFO and a hard link to root's file are
    left out, listed in the manifest's checks; the backup does not hang."""
    (host["data"] / "nflog2").symlink_to(host["secret"])
    os.mkfifo(host["data"] / "fifo")
    made = mb.create(SYSTEM, params(component="alertmanager", source=host["source"],
                                    spool_dir=str(tmp_path / "spool")))
    paths = [f["path"] for f in made["manifest"]["content"]["files"]]
    assert "data/nflog" in paths and "data/nflog2" not in paths and "data/fifo" not in paths
    assert any("data/nflog2: a symbolic link" in s for s in made["manifest"]["checks"]["skipped"])
    assert SECRET not in unpacked_bytes(made, tmp_path)

    prom = tmp_path / "prom"
    (prom / "wal").mkdir(parents=True)
    (prom / "wal" / "00000001").write_bytes(b"wal segment")
    (prom / "wal" / "00000002").symlink_to(host["secret"])
    (prom / "chunks_head").symlink_to(host["secret"].parent)  # a link to a directory
    os.mkfifo(prom / "wal" / "fifo")
    os.link(host["secret"], prom / "shadow-link")  # a hard link to root's file in a directory of another user
    os.chown(prom, NOBODY, NOBODY)
    os.chown(prom / "wal", NOBODY, NOBODY)
    os.chown(prom / "wal" / "00000001", NOBODY, NOBODY)
    made = mb.create(SYSTEM, params(component="prometheus", source={"data_dir": str(prom), "config_paths": []},
                                    spool_dir=str(tmp_path / "spool"), name="20261130T000001Z"))
    paths = [f["path"] for f in made["manifest"]["content"]["files"]]
    assert paths == ["data/wal/00000001"], paths
    skipped = " ".join(made["manifest"]["checks"]["skipped"])
    for what in ("data/chunks_head: a symbolic link", "data/wal/00000002: a symbolic link", "data/wal/fifo: a FIFO",
                 "data/shadow-link: a hard link to a file of root"):
        assert what in skipped, skipped
    assert SECRET not in unpacked_bytes(made, tmp_path)
    assert not any(p.name.startswith(".monstack-image") for p in prom.iterdir())


def unpacked_bytes(made: dict, tmp_path: Path) -> bytes:
    out = tmp_path / f"unpacked-{made['manifest']['name']}-{made['manifest']['component']}"
    out.mkdir()
    assert mb.extract_verified(made["archive"], made["manifest"], str(out)) == []
    return b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_a_file_swapped_for_a_symlink_during_the_backup_is_not_followed(host, tmp_path, monkeypatch):
    """The race: between the listing (lstat) and the read, the service user replaces a data
    file by a link to /etc/shadow. Alertmanager's copy and Prometheus' hard-link image both
    open with O_NOFOLLOW: the file is left out, the secret is not in the archive."""
    def swap_in_a_link(step, dir_fd=None, name=None, **_where):
        if name in ("nflog", "00000001"):
            os.rename(name, name + ".moved", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.symlink(str(host["secret"]), name, dir_fd=dir_fd)

    monkeypatch.setattr(mb, "race_point", swap_in_a_link)
    made = mb.create(SYSTEM, params(component="alertmanager", source=host["source"], spool_dir=str(tmp_path / "spool")))
    assert "data/nflog" not in [f["path"] for f in made["manifest"]["content"]["files"]]
    assert any("data/nflog: replaced while it was read" in s for s in made["manifest"]["checks"]["skipped"])
    assert SECRET not in unpacked_bytes(made, tmp_path)

    prom = tmp_path / "prom"
    (prom / "wal").mkdir(parents=True)
    (prom / "wal" / "00000001").write_bytes(b"wal segment")
    made = mb.create(SYSTEM, params(component="prometheus", source={"data_dir": str(prom), "config_paths": []},
                                    spool_dir=str(tmp_path / "spool"), name="20261130T000001Z"))
    assert "data/wal/00000001" not in [f["path"] for f in made["manifest"]["content"]["files"]]
    assert any("data/wal/00000001: became a symbolic link" in s for s in made["manifest"]["checks"]["skipped"])
    assert SECRET not in unpacked_bytes(made, tmp_path)


def honest_backup(host: dict, tmp_path: Path, restore_config: bool = False) -> dict:
    made = mb.create(SYSTEM, params(component="alertmanager", source=host["source"], spool_dir=str(tmp_path / "spool")))
    (host["data"] / "nflog").write_bytes(b"newer nflog")
    return params(component="alertmanager", source=host["source"], manifest=made["manifest"], archive=made["archive"],
                  restore_config=restore_config)


def test_the_restore_stages_outside_the_data_directory_of_the_service_user(host, tmp_path, monkeypatch):
    """The service user owns the data directory: the staging directory is root's (0700), in its
    parent. A link the service user plants at the old staging place during the stage
    catches nothing."""
    p = honest_backup(host, tmp_path)
    staging = Path(mb.staging_path("alertmanager", host["source"]))
    assert staging.parent == host["data"].parent

    def plant(step, **where):
        if step == "staged-dir":
            assert stat_mode(staging.lstat()) == 0o700 and staging.lstat().st_uid == os.geteuid()
            (host["data"] / ".monstack-restore-alertmanager").symlink_to(host["victim"])

    monkeypatch.setattr(mb, "race_point", plant)
    assert mb.stage(SYSTEM, p)["problems"] == []
    mb.swap(SYSTEM, p)
    mb.commit(SYSTEM, p)
    assert not list(host["victim"].iterdir())
    assert (host["data"] / "nflog").read_bytes() == b"live nflog"


@pytest.mark.parametrize("when", ["aside-made", "moved-aside"])
def test_a_symlink_swapped_in_during_the_swap_is_not_followed(host, tmp_path, monkeypatch, when):
    """The race: while the restore moves data (service stopped, its user may still act), the
    service user replaces the aside directory by a link to /etc/sudoers.d, or plants links
    where the backup's files are about to go. Every move goes through directory fds: nothing
    lands in the link's target, a planted link is replaced, never written through."""
    p = honest_backup(host, tmp_path)
    assert mb.stage(SYSTEM, p)["problems"] == []

    def plant(step, data_dir=None, aside=None, **_where):
        if step != when:
            return
        if step == "aside-made":
            os.rename(aside, aside + ".moved-by-the-service-user")
            os.symlink(str(host["victim"]), aside)
        else:
            for name in ("nflog", "silences"):
                os.symlink(str(host["victim"] / name), os.path.join(data_dir, name))

    monkeypatch.setattr(mb, "race_point", plant)
    mb.swap(SYSTEM, p)
    assert not list(host["victim"].iterdir())
    for name in ("nflog", "silences"):
        assert not (host["data"] / name).is_symlink()
    assert (host["data"] / "nflog").read_bytes() == b"live nflog"  # the backup's
    mb.commit(SYSTEM, p)
    assert not list(host["victim"].iterdir()) and host["secret"].read_bytes() == SECRET


def test_an_aside_directory_replaced_before_it_is_opened_stops_the_swap(host, tmp_path, monkeypatch):
    p = honest_backup(host, tmp_path)
    assert mb.stage(SYSTEM, p)["problems"] == []
    real_mkdir = os.mkdir

    def mkdir_then_swap(path, mode=0o777, *, dir_fd=None):
        real_mkdir(path, mode, dir_fd=dir_fd)
        if str(path).startswith(".monstack-aside-"):  # the service user wins the race
            os.rmdir(path, dir_fd=dir_fd)
            os.symlink(str(host["victim"]), path, dir_fd=dir_fd)

    monkeypatch.setattr(mb.os, "mkdir", mkdir_then_swap)
    with pytest.raises(OSError):
        mb.swap(SYSTEM, p)
    monkeypatch.undo()
    assert not list(host["victim"].iterdir())
    assert (host["data"] / "nflog").read_bytes() == b"newer nflog"  # nothing was moved


def test_a_symlink_on_the_way_to_a_configuration_file_is_refused_and_rolled_back(host, tmp_path):
    (host["etc"] / "templates").mkdir()
    (host["etc"] / "templates" / "a.tmpl").write_text("{{ define }}")
    p = honest_backup(host, tmp_path, restore_config=True)
    shutil.rmtree(host["etc"] / "templates")
    (host["etc"] / "templates").symlink_to(host["victim"])  # after the backup
    assert mb.stage(SYSTEM, p)["problems"] == []
    with pytest.raises(mb.BackupError, match="templates on the way is a symbolic link"):
        mb.swap(SYSTEM, p)
    assert not list(host["victim"].iterdir())
    mb.rollback(SYSTEM, p)
    assert (host["data"] / "nflog").read_bytes() == b"newer nflog"


def test_a_missing_configuration_path_is_made_on_a_rebuilt_host(host, tmp_path):
    """A rebuilt host may lack a configuration path (the deployment store's directory is made by
    the first deployments run): the restore makes it, root's 0755, and puts the files back."""
    (host["etc"] / "templates").mkdir()
    (host["etc"] / "templates" / "a.tmpl").write_text("{{ define }}")
    p = honest_backup(host, tmp_path, restore_config=True)
    shutil.rmtree(host["etc"])
    assert mb.stage(SYSTEM, p)["problems"] == []
    mb.swap(SYSTEM, p)
    assert (host["etc"] / "templates" / "a.tmpl").read_text() == "{{ define }}"
    assert stat.S_IMODE(host["etc"].stat().st_mode) == 0o755 and not host["etc"].is_symlink()


def test_a_config_path_through_a_symlink_takes_no_configuration(host, tmp_path):
    p = honest_backup(host, tmp_path, restore_config=True)
    elsewhere = host["root"] / "elsewhere"
    host["etc"].rename(elsewhere)
    host["etc"].symlink_to(elsewhere)
    problems = mb.stage(SYSTEM, p)["problems"]
    assert any("a symbolic link on the way" in problem for problem in problems), problems


@pytest.mark.parametrize("kind", ["another user's", "a symbolic link", "world-writable"])
def test_a_spool_directory_someone_else_could_change_is_refused(tmp_path, kind):
    spool = tmp_path / "spool"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if kind == "a symbolic link":
        spool.symlink_to(elsewhere)
        says = "is a symbolic link"
    else:
        spool.mkdir()
        if kind == "another user's":
            os.chown(spool, NOBODY, NOBODY)
            says = "is owned by nobody (uid 65534), not root"
        else:
            spool.chmod(0o1777)
            says = "is group- or world-writable (mode 1777)"
    live = tmp_path / "grafana.db"
    grafana_db(live)
    with pytest.raises(mb.BackupError, match=re.escape(says)):
        mb.create(SYSTEM, params(component="grafana", source={"db_path": str(live)}, spool_dir=str(spool)))
    with pytest.raises(mb.BackupError, match=re.escape(says)):
        mb.spool(SYSTEM, params(spool_dir=str(spool)))
    assert not list(elsewhere.iterdir()) and (kind == "a symbolic link" or not list(spool.iterdir()))


def test_the_spool_stays_roots_when_the_archive_is_handed_to_the_login_user(tmp_path):
    live = tmp_path / "grafana.db"
    grafana_db(live)
    spool = tmp_path / "spool"
    assert mb.spool(SYSTEM, params(spool_dir=str(spool)))["changed"] is True
    assert stat_mode(spool.stat()) == 0o700
    for name in ("20261130T000000Z", "20261130T000001Z"):  # reused: still root's
        made = mb.create(SYSTEM, params(component="grafana", source={"db_path": str(live)}, spool_dir=str(spool),
                                        fetch_owner="nobody", name=name))
        assert spool.stat().st_uid == 0 and stat_mode(spool.stat()) == 0o711
        assert Path(made["archive"]).stat().st_uid == NOBODY
    assert mb.spool(SYSTEM, params(spool_dir=str(spool)))["changed"] is False


def test_backup_keep_0_is_refused_and_deletes_nothing(tmp_path):
    made = config_backup(tmp_path)
    store = tmp_path / "store"
    for name in ("20261128T031500Z", "20261129T031500Z"):
        file_backup(store, made, name)
    base = store / "h1" / "alertmanager"
    partial = base / "20261130T031500Z.partial"
    partial.mkdir()
    shutil.copy(made["archive"], partial / "data.tar.gz")
    for keep in (0, -1):
        with pytest.raises(mb.BackupError, match=f"backup_keep: {keep} is not allowed: keep at least 1"):
            mb.store_commit(SYSTEM, params(store_dir=str(store), component="alertmanager", name="20261130T031500Z",
                                           manifest=made["manifest"], keep=keep))
    assert sorted(p.name for p in base.iterdir()) == ["20261128T031500Z", "20261129T031500Z", "20261130T031500Z.partial"]
    # keep 1 keeps the new backup, even one named earlier than those in the store (a clock set back)
    partial.rename(base / "20261101T000000Z.partial")
    filed = mb.store_commit(SYSTEM, params(store_dir=str(store), component="alertmanager", name="20261101T000000Z",
                                           manifest=made["manifest"], keep=1))
    assert filed["kept"] == ["20261101T000000Z"]


def test_the_scheduled_command_refuses_keep_0_before_any_backup(tmp_path):
    db = tmp_path / "grafana.db"
    grafana_db(db)
    command = install_scheduled(tmp_path / "lib")
    for keep, says in ((0, "keep (backup_schedule_keep): 0 is not allowed"),
                       (3, "is owned by nobody (uid 65534), not root")):
        backups = tmp_path / f"backups-{keep}"
        backups.mkdir()
        if keep:
            os.chown(backups, NOBODY, NOBODY)
        config = {"host": "h1", "dir": str(backups), "keep": keep,
                  "components": [{"component": "grafana", "source": {"db_path": str(db), "config_paths": []}}]}
        (tmp_path / "backup.json").write_text(json.dumps(config))
        run = subprocess.run([sys.executable, str(command), str(tmp_path / "backup.json")], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 2 and says in run.stderr, run.stderr
        assert not list(backups.iterdir())
