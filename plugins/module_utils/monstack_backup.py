# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Backups of Prometheus, Alertmanager and Grafana data, and their restore (monstack).

The engine of the module monstack.stack.monstack_backup (playbooks/backup.yml,
playbooks/restore.yml) and of the scheduled local backups
(roles/backup/files/monstack_backup_scheduled.py, installed beside a copy of this
file on the hosts, where Ansible is not installed). So it needs only Python's
standard library, and reaches outside Python through a System its caller gives it:
both run programs with run_program below (subprocess, with a timeout, which
AnsibleModule.run_command lacks); the module makes HTTP requests with
ansible.module_utils.urls.open_url, the scheduled command with urllib.
Archives are compressed in this process (gzip through zlib, xz through lzma),
streamed, never held whole in memory.
"""
from __future__ import annotations

import base64
import calendar
import contextlib
import grp
import gzip
import hashlib
import json
import lzma
import os
import pwd
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
import zlib

FORMAT = 1
CHUNK = 1024 * 1024
NAME_RE = re.compile(r"^\d{8}T\d{6}Z$")
# Compressions of new archives, the archive's name and the levels each takes: gzip
# (zlib, fast) and xz (lzma: smaller archives for several times the CPU time, and
# about 100 MiB of memory at level 6).
ARCHIVE_NAMES = {"gzip": "data.tar.gz", "xz": "data.tar.xz"}
LEVELS = {"gzip": range(1, 10), "xz": range(0, 10)}
# Entries of a data directory that are never backed up or replaced: this tool's own
# directories and files, Prometheus' lock and query log, the admin API's snapshots.
OWN_PREFIX = ".monstack-"
SKIP_ENTRIES = {
    "prometheus": {"lock", "queries.active", "snapshots", "lost+found"},
    "alertmanager": {"lost+found"},
    "grafana": set(),
}
# Prometheus writes a directory under one of these names and renames it when complete, and
# deletes it at its next start: never part of a consistent image.
TMP_DIR_RE = re.compile(r"(\.tmp|\.tmp-for-creation|\.tmp-for-deletion)$")
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
# How long the last pause of Prometheus lasted (seconds).
PAUSE = {"seconds": 0.0}
# Run-time files among configuration (the deployment record store's lock).
CONFIG_SKIP = {"lock.json", ".lock.guard"}


class BackupError(Exception):
    """A problem to report to the user, with what to do."""


class System:
    """How the engine reaches outside Python: running a program and an HTTP request.

    run(argv, timeout) -> (returncode, stdout, stderr), text; raises OSError when the
    program cannot be started. request(url, method, headers, data, timeout) ->
    (content type, body bytes); raises OSError (urllib.error.URLError, HTTPError) when
    there is no answer or the status is not 2xx. Requests go to the host's own services
    over loopback: no proxy, no certificate check.
    """

    def __init__(self, run, request):
        self.run = run
        self.request = request


def run_program(argv: list[str], timeout: int) -> tuple[int, str, str]:
    """System.run for the module and the scheduled command: the program's answer,
    or OSError when it cannot start or does not finish within `timeout` seconds
    (a hung systemctl must not hold a paused Prometheus or the backup forever)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                                env=dict(os.environ, LC_ALL="C"))
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"{argv[0]} did not finish within {timeout} s") from exc
    return result.returncode, result.stdout, result.stderr


# --------------------------------------------------------------------------
# small helpers

def utcnow() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def copy_hashed(source, target=None) -> tuple[str, int]:
    """Read `source` to its end in chunks, writing them to `target` if given; the SHA-256 and size."""
    digest, size = hashlib.sha256(), 0
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        if target is not None:
            target.write(chunk)
    return digest.hexdigest(), size


def sha256_file(path: str) -> tuple[str, int]:
    with open(path, "rb") as handle:
        return copy_hashed(handle)


def write_json_atomic(path: str, data, mode: int = 0o600) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ids_of(user: str | None, group: str | None) -> tuple[int, int]:
    """uid and gid of names; -1 (leave as is) for a name this host does not know (no program yet)."""
    try:
        uid = pwd.getpwnam(user).pw_uid if user else -1
    except KeyError:
        uid = -1
    try:
        gid = grp.getgrnam(group).gr_gid if group else (pwd.getpwnam(user).pw_gid if user else -1)
    except KeyError:
        gid = -1
    return uid, gid


def chown_tree(path: str, uid: int, gid: int) -> None:
    if uid == -1 and gid == -1:
        return
    os.lchown(path, uid, gid)
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, gid)


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    return tuple(int(part or 0) for part in match.groups()) if match else None


def program_version(system: System, binary: str | None) -> dict:
    """The program's version from `<binary> --version` (None when it is not installed)."""
    if not binary or not os.path.exists(binary):
        return {"version": None, "raw": None, "binary": binary}
    try:
        _rc, out, err = system.run([binary, "--version"], 30)
    except OSError as exc:  # also a timeout (run_program converts subprocess.TimeoutExpired)
        return {"version": None, "raw": str(exc), "binary": binary}
    text = (out + "\n" + err).strip()
    match = re.search(r"[Vv]ersion\s+v?(\d+\.\d+\.\d+\S*)", text)
    return {"version": match.group(1) if match else None, "raw": text.splitlines()[0] if text else "",
            "binary": binary}


def version_problem(component: str, backup: str | None, target: str | None, allow_older: bool,
                    without_service: bool) -> str | None:
    """Why a backup written by version `backup` cannot be restored onto version `target`.

    The data formats of the three programs are read by later versions (Prometheus 3 reads
    the TSDB of Prometheus 2, Grafana migrates its database forward on start), not by
    earlier ones.
    """
    if target is None:
        if without_service:
            return None
        return (f"{component} is not installed on this host (no program to check the backup's version "
                f"({backup or 'unknown'}) against): run site.yml first, then restore.yml (or set "
                "backup_restore_without_service=true to restore the files only)")
    if backup is None:
        return None
    have, want = version_tuple(target), version_tuple(backup)
    if have is None or want is None:
        return f"{component}: cannot compare the versions {backup!r} (backup) and {target!r} (host)"
    if component == "prometheus" and want[0] < 2 <= have[0]:
        return (f"prometheus {target} cannot read the data of Prometheus {backup} (the 1.x storage format); "
                "restore it with a Prometheus 1.x")
    if have < want and not allow_older:
        return (f"{component} {target} on this host is older than {backup}, which wrote the backup: an older "
                f"version may not read newer data. Install {backup} or later (set {component}_version), or set "
                "backup_restore_allow_older=true to try anyway")
    return None


def http(system: System, url: str, user: str = "", password: str = "", method: str = "GET", body=None,
         timeout: int = 30):
    """Request to the component on this host; JSON answers are decoded."""
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = "Basic " + token
    kind, raw = system.request(url, method, headers, data, timeout)
    if "json" in kind:
        return json.loads(raw or b"null")
    return raw.decode(errors="replace")


def metric_values(text: str, names: set[str]) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in names:
            with contextlib.suppress(ValueError):
                out[parts[0]] = float(parts[1])
    return out


def prom_duration(text: str) -> float | None:
    """Seconds of a Prometheus duration such as 15d or 1w2d12h."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(int(n) * units[u] for n, u in parts)


def service_state(system: System, service: str | None) -> dict:
    """LoadState, ActiveState and MainPID of a systemd unit (not-found without systemd)."""
    if not service or not shutil.which("systemctl"):
        return {"LoadState": "not-found", "ActiveState": "inactive", "MainPID": 0}
    _rc, out, _err = system.run(["systemctl", "show", "-p", "LoadState", "-p", "ActiveState", "-p", "MainPID",
                                 service + ".service"], 60)
    state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    state["MainPID"] = int(state.get("MainPID") or 0)
    return state


# --------------------------------------------------------------------------
# Prometheus: a crash-consistent image of the data directory

def task_states(pid: int) -> list[str]:
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{task}/stat") as handle:
                # pid (comm) state ...: comm may hold spaces and parentheses
                states.append(handle.read().rsplit(")", 1)[1].split()[0])
    return states


def start_watchdog(system: System, pid: int, seconds: int) -> tuple[str, object]:
    """Resume `pid` after `seconds`, even when this process dies in between.

    With systemd, a transient timer of PID 1 (survives anything that happens to us);
    otherwise a detached child process.
    """
    unit = f"monstack-backup-thaw-{pid}-{os.getpid()}"
    if os.path.isdir("/run/systemd/system") and shutil.which("systemd-run"):
        rc, _out, _err = system.run(["systemd-run", "--quiet", f"--unit={unit}", f"--on-active={seconds}",
                                     "--timer-property=AccuracySec=100ms", "/bin/kill", "-CONT", str(pid)], 60)
        if rc == 0:
            return "systemd", unit
    child = os.fork()
    if child == 0:  # the watchdog: its own session, so a signal to our group misses it
        try:
            os.setsid()
            time.sleep(seconds)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
        finally:
            os._exit(0)
    return "process", child


def stop_watchdog(system: System, kind: str, handle) -> None:
    if kind == "systemd":
        system.run(["systemctl", "stop", handle + ".timer"], 60)
        system.run(["systemctl", "reset-failed", handle + ".timer", handle + ".service"], 60)
    else:
        with contextlib.suppress(OSError):
            os.kill(handle, signal.SIGKILL)
            os.waitpid(handle, 0)


@contextlib.contextmanager
def paused(system: System, pid: int, timeout: int):
    """Stop every thread of `pid` (SIGSTOP) and resume it (SIGCONT) on leaving, whatever happens.

    kill() returns before the threads have stopped; a thread inside a system call (a write
    to the WAL, a rename) stops when the call returns. The image is taken only once every
    thread is in the stopped state, so every write the program made is complete on disk
    and none is half done.
    """
    kind, handle = start_watchdog(system, pid, timeout)
    started = time.monotonic()
    try:
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while True:
            states = task_states(pid)
            if states and all(s in ("T", "t") for s in states):
                break
            if time.monotonic() > deadline:
                raise BackupError(f"Prometheus (pid {pid}) did not stop within 10 s of SIGSTOP (thread states "
                                  f"{sorted(set(states))}); it has been resumed, no backup was taken")
            time.sleep(0.005)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)
        stop_watchdog(system, kind, handle)
        PAUSE["seconds"] = round(time.monotonic() - started, 3)


def link_tree(data_dir: str, image: str, component: str) -> list[dict]:
    """Hard-link the data directory's files into `image`; each file's size now.

    Prometheus only appends to the files it changes in place (WAL segments, head chunk
    files) and replaces the others by rename: the first `size` bytes of a linked file stay
    what they were at this moment, so reading that many bytes later gives this moment's image.
    """
    entries = []
    skip = SKIP_ENTRIES[component]
    for name in sorted(os.listdir(data_dir)):
        if name.startswith(OWN_PREFIX) or name in skip or TMP_DIR_RE.search(name):
            continue
        top = os.path.join(data_dir, name)
        for root, dirs, files in os.walk(top) if os.path.isdir(top) else [(data_dir, [], [name])]:
            dirs[:] = sorted(d for d in dirs if not TMP_DIR_RE.search(d))
            rel_root = os.path.relpath(root, data_dir)
            target_root = os.path.join(image, rel_root) if rel_root != "." else image
            os.makedirs(target_root, exist_ok=True)
            if rel_root != ".":
                entries.append({"type": "dir", "rel": rel_root, "mode": stat.S_IMODE(os.stat(root).st_mode)})
            for file_name in sorted(files):
                src = os.path.join(root, file_name)
                info = os.lstat(src)
                if not stat.S_ISREG(info.st_mode):
                    continue
                dst = os.path.join(target_root, file_name)
                os.link(src, dst)
                rel = os.path.normpath(os.path.join(rel_root, file_name))
                entries.append({"type": "file", "rel": rel, "path": dst, "size": info.st_size,
                                "mode": stat.S_IMODE(info.st_mode), "mtime": int(info.st_mtime)})
    return entries


def collect_prometheus(system: System, source: dict, freeze_timeout: int) -> tuple[list[dict], dict]:
    data_dir = source["data_dir"]
    if not os.path.isdir(data_dir):
        raise BackupError(f"prometheus: the data directory {data_dir} does not exist: nothing to back up")
    url, user, password = source.get("url", ""), source.get("url_user", ""), source.get("url_password", "")
    pid = int(source.get("pid") or service_state(system, source.get("service")).get("MainPID") or 0)
    checks: dict = {"method": "pause-and-hardlink" if pid else "stopped-copy"}
    before = {}
    if pid and url:
        with contextlib.suppress(Exception):
            before = metric_values(http(system, url + "/metrics", user, password),
                                   {"prometheus_tsdb_lowest_timestamp_seconds",
                                    "prometheus_tsdb_head_max_time_seconds"})
    image = os.path.join(data_dir, f"{OWN_PREFIX}image-{os.getpid()}")
    for stale in os.listdir(data_dir):
        if stale.startswith(OWN_PREFIX + "image-"):
            shutil.rmtree(os.path.join(data_dir, stale), ignore_errors=True)
    os.mkdir(image, 0o700)
    taken = time.time()
    if pid:
        with paused(system, pid, freeze_timeout):
            entries = link_tree(data_dir, image, "prometheus")
        checks["pause_seconds"] = PAUSE["seconds"]
    else:
        entries = link_tree(data_dir, image, "prometheus")
    checks["taken_at"] = round(taken, 3)
    if before:
        checks["lowest_timestamp_seconds"] = before.get("prometheus_tsdb_lowest_timestamp_seconds")
        checks["head_max_time_seconds"] = before.get("prometheus_tsdb_head_max_time_seconds")
    # A point in time whose samples were all written before the pause (scrapes time out
    # long before two minutes): the same queries there must give the same answers after a
    # restore.
    if pid and url:
        at = int(taken) - 120
        queries = {}
        for expr in ("count(up)", "sum(up)"):
            with contextlib.suppress(Exception):
                answer = http(system, url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": at}),
                              user, password)
                result = answer["data"]["result"]
                queries[expr] = result[0]["value"][1] if result else None
        checks["queries"] = {"time": at, "results": queries}
    for entry in entries:
        entry["arcname"] = "data/" + entry["rel"]
    return entries, checks


# --------------------------------------------------------------------------
# Alertmanager: the silences and notification log files, and the silences over the API

def collect_alertmanager(system: System, source: dict, work: str) -> tuple[list[dict], dict]:
    data_dir = source["data_dir"]
    if not os.path.isdir(data_dir):
        raise BackupError(f"alertmanager: the data directory {data_dir} does not exist: nothing to back up")
    entries: list[dict] = []
    copy_dir = os.path.join(work, "data")
    os.makedirs(copy_dir, exist_ok=True)
    for name in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, name)
        if name.startswith(OWN_PREFIX) or name in SKIP_ENTRIES["alertmanager"] or not os.path.isfile(path):
            continue
        # Alertmanager replaces these files by rename: the open file is one complete version.
        dst = os.path.join(copy_dir, name)
        shutil.copy2(path, dst)
        info = os.stat(dst)
        entries.append({"type": "file", "rel": name, "path": dst, "arcname": "data/" + name,
                        "size": info.st_size, "mode": stat.S_IMODE(info.st_mode), "mtime": int(info.st_mtime)})
    checks: dict = {"method": "files-and-api"}
    url = source.get("url", "")
    running = service_state(system, source.get("service")).get("ActiveState") == "active" or source.get("pid")
    if url and running:
        # The files are written every 15 minutes (--data.maintenance-interval) and at shutdown;
        # the API holds the silences of this moment.
        silences = http(system, url + "/api/v2/silences", source.get("url_user", ""), source.get("url_password", ""))
        export = os.path.join(work, "silences.json")
        with open(export, "w") as handle:
            json.dump(silences, handle, indent=1, sort_keys=True)
        info = os.stat(export)
        entries.append({"type": "file", "rel": "silences.json", "path": export, "arcname": "export/silences.json",
                        "size": info.st_size, "mode": 0o600, "mtime": int(info.st_mtime)})
        checks["silences_active"] = sum(1 for s in silences if s.get("status", {}).get("state") in ("active", "pending"))
    else:
        checks["silences_export"] = "skipped: Alertmanager is not running (its files hold the state it wrote at shutdown)"
    return entries, checks


# --------------------------------------------------------------------------
# Grafana: SQLite's online backup API

def sqlite_facts(path: str, immutable: bool = False) -> dict:
    """Integrity and the row count of every table of a SQLite database (read-only).

    immutable: a copy nobody writes (no locks, and no -shm or -wal file created beside it).
    """
    connection = sqlite3.connect(f"file:{path}?mode=ro{'&immutable=1' if immutable else ''}", uri=True, timeout=30)
    try:
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        counts = {t: connection.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        connection.close()
    return {"integrity": integrity, "tables": counts}


def collect_grafana(source: dict, work: str) -> tuple[list[dict], dict]:
    db_path = source["db_path"]
    if not os.path.isfile(db_path):
        raise BackupError(f"grafana: the database {db_path} does not exist: nothing to back up")
    copy_dir = os.path.join(work, "data")
    os.makedirs(copy_dir, exist_ok=True)
    name = os.path.basename(db_path)
    dst = os.path.join(copy_dir, name)
    # The online backup API copies a consistent state of the database while Grafana writes
    # to it (all pages in one step: one read transaction, whatever the journal mode).
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60)
    target = sqlite3.connect(dst)
    try:
        src.backup(target)
    finally:
        target.close()
        src.close()
    facts = sqlite_facts(dst, immutable=True)
    if facts["integrity"] != "ok":
        raise BackupError(f"grafana: the copy of {db_path} fails SQLite's integrity check: {facts['integrity']}")
    info = os.stat(db_path)
    os.chmod(dst, stat.S_IMODE(info.st_mode))
    size = os.path.getsize(dst)
    entries = [{"type": "file", "rel": name, "path": dst, "arcname": "data/" + name, "size": size,
                "mode": stat.S_IMODE(info.st_mode), "mtime": int(info.st_mtime)}]
    return entries, {"method": "sqlite-online-backup", "sqlite": facts}


def collect_config(paths: list[str]) -> list[dict]:
    """Configuration files (and directories), by absolute path, as config/<path>."""
    entries = []
    for top in paths:
        if not os.path.exists(top):
            continue
        walk = os.walk(top) if os.path.isdir(top) else [(os.path.dirname(top), [], [os.path.basename(top)])]
        for root, dirs, files in walk:
            dirs.sort()
            if os.path.isdir(top):
                info = os.stat(root)
                entries.append({"type": "dir", "arcname": "config" + root, "mode": stat.S_IMODE(info.st_mode),
                                "uname": owner_name(info.st_uid), "gname": group_name(info.st_gid)})
            for name in sorted(files):
                path = os.path.join(root, name)
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or name in CONFIG_SKIP or name.startswith(".tmp-"):
                    continue
                entries.append({"type": "file", "path": path, "arcname": "config" + path, "size": info.st_size,
                                "mode": stat.S_IMODE(info.st_mode), "mtime": int(info.st_mtime),
                                "uname": owner_name(info.st_uid), "gname": group_name(info.st_gid)})
    return entries


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# --------------------------------------------------------------------------
# archives

class HashingReader:
    """Reads at most `limit` bytes of a file and hashes what it hands out."""

    def __init__(self, handle, limit: int):
        self.handle, self.left, self.digest = handle, limit, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.handle.read(size)
        self.left -= len(data)
        self.digest.update(data)
        return data


class HashingFile:
    """The bytes of a file as they pass, read or written: their SHA-256 and their count
    (the archive as it is on disk, while the compressor writes it or the decompressor
    reads it)."""

    def __init__(self, handle):
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self._count(data)
        return data

    def write(self, data) -> int:
        self._count(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()

    def _count(self, data) -> None:
        self.digest.update(data)
        self.size += len(data)


def open_compressed(fileobj, compression: str, mode: str, level: int = 6):
    """A file object that compresses what is written to it into `fileobj` (mode "w"), or
    reads `fileobj` decompressed (mode "r"): gzip (zlib) or xz (lzma), in this process.
    Closing it ends the compressed stream; `fileobj` stays open."""
    if compression == "gzip":
        return gzip.GzipFile(filename="", fileobj=fileobj, mode=mode + "b", compresslevel=level, mtime=0)
    if compression == "xz":
        return lzma.LZMAFile(fileobj, mode + "b", format=lzma.FORMAT_XZ, preset=level if mode == "w" else None)
    raise BackupError(f"compression {compression!r} is not one of {', '.join(ARCHIVE_NAMES)}")


def write_archive(entries: list[dict], out_path: str, compression: str, level: int) -> dict:
    """Stream a tar of `entries`, compressed, into `out_path`; hash everything on the way."""
    if compression not in ARCHIVE_NAMES:
        raise BackupError(f"backup_compression: {compression!r} is not one of {', '.join(ARCHIVE_NAMES)}")
    levels = LEVELS[compression]
    if level not in levels:
        raise BackupError(f"backup_compression_level: {level} is not a level of {compression} "
                          f"({levels[0]}-{levels[-1]})")
    files, dirs, total = [], [], 0
    with open(out_path, "wb") as out:
        archive = HashingFile(out)
        with open_compressed(archive, compression, "w", level) as stream, \
                tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for entry in entries:
                info = tarfile.TarInfo(entry["arcname"])
                info.mode = entry.get("mode", 0o640)
                info.mtime = entry.get("mtime", int(time.time()))
                info.uname, info.gname = entry.get("uname", ""), entry.get("gname", "")
                if entry["type"] == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                    dirs.append(entry["arcname"])
                    continue
                info.size = entry["size"]
                with open(entry["path"], "rb") as handle:
                    reader = HashingReader(handle, entry["size"])
                    tar.addfile(info, reader)
                record = {"path": entry["arcname"], "size": entry["size"], "sha256": reader.digest.hexdigest(),
                          "mode": "%04o" % info.mode}
                if entry.get("uname"):
                    record.update(owner=entry["uname"], group=entry["gname"])
                files.append(record)
                total += entry["size"]
        out.flush()
        os.fsync(out.fileno())
    return {"files": files, "dirs": dirs, "total_size": total,
            "archive": {"name": os.path.basename(out_path), "size": archive.size,
                        "sha256": archive.digest.hexdigest(), "compression": compression}}


def safe_member(name: str) -> bool:
    parts = name.split("/")
    return (not name.startswith("/") and ".." not in parts and "" not in parts[:-1]
            and parts[0] in ("data", "config", "export"))


def extract_member(tar, member, target: str, want: dict, name: str) -> str | None:
    """Write one file of the archive to `target`; why it is not the manifest's file, if it is not."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as out:
        digest, size = copy_hashed(tar.extractfile(member), out)
    os.chmod(target, member.mode & 0o7777)
    os.utime(target, (member.mtime, member.mtime))
    if size != want["size"] or digest != want["sha256"]:
        return (f"{name}: file {member.name} in the archive does not match the manifest (size {size}, SHA-256 "
                f"{digest[:16]}...; manifest: size {want['size']}, SHA-256 {want['sha256'][:16]}...)")
    return None


def extract_verified(archive: str, manifest: dict, dest: str) -> list[str]:
    """Unpack `archive` into `dest`, checking it and every file against the manifest.

    One pass over the archive: its SHA-256 is computed while it feeds the decompressor.
    Returns the problems (empty: the staging directory holds exactly the backup).
    """
    info = manifest["archive"]
    name = info["name"]
    compression = info.get("compression", "gzip")
    if compression not in ARCHIVE_NAMES:
        return [f"{name}: compressed with {compression}, which this version of monstack_backup cannot read "
                f"(it reads {', '.join(ARCHIVE_NAMES)})"]
    expected = {f["path"]: f for f in manifest["content"]["files"]}
    problems, seen = [], set()
    with open(archive, "rb") as handle:
        raw = HashingFile(handle)
        try:
            with open_compressed(raw, compression, "r") as stream:
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    for member in tar:
                        if not safe_member(member.name) or not (member.isfile() or member.isdir()):
                            problems.append(f"{name}: unexpected member {member.name!r}")
                            continue
                        target = os.path.join(dest, member.name)
                        if member.isdir():
                            os.makedirs(target, exist_ok=True)
                            os.chmod(target, member.mode & 0o7777 or 0o750)
                            continue
                        want = expected.get(member.name)
                        if want is None:
                            problems.append(f"{name}: member {member.name} is not in the manifest")
                            continue
                        problem = extract_member(tar, member, target, want, name)
                        if problem:
                            problems.append(problem)
                        seen.add(member.name)
                # The rest of the compressed stream: its own checksum is checked at its end.
                copy_hashed(stream)
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            problems.append(f"{name}: the archive cannot be read ({exc}): it is damaged")
        # Read to the end so the archive is hashed whole, whatever the readers left.
        copy_hashed(raw)
    got = raw.digest.hexdigest()
    if got != info["sha256"]:
        problems.insert(0, f"{name}: SHA-256 {got} does not match the manifest ({info['sha256']}): the file "
                           "is damaged or was changed")
    missing = sorted(set(expected) - seen)
    if missing and not problems:
        problems.append(f"{name}: files of the manifest missing from the archive: {', '.join(missing[:5])}")
    return problems


# --------------------------------------------------------------------------
# create

def create(system: System, params: dict) -> dict:
    component, source = params["component"], params["source"]
    name = params["name"] or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    spool = params["spool_dir"]
    os.makedirs(spool, mode=0o700, exist_ok=True)
    for stale in os.listdir(spool):  # what an interrupted backup of this component left
        if stale.startswith(component + "-"):
            shutil.rmtree(os.path.join(spool, stale), ignore_errors=True)
    owner = params.get("fetch_owner") or os.environ.get("SUDO_USER") or ""
    work = tempfile.mkdtemp(prefix=f"{component}-{name}-", dir=spool)
    started = time.monotonic()
    image_dir = None
    try:
        version = program_version(system, source.get("binary"))
        if component == "prometheus":
            image_dir = os.path.join(source["data_dir"], f"{OWN_PREFIX}image-{os.getpid()}")
            entries, checks = collect_prometheus(system, source, params.get("freeze_timeout") or 30)
        elif component == "alertmanager":
            entries, checks = collect_alertmanager(system, source, work)
        else:
            entries, checks = collect_grafana(source, work)
        entries += collect_config(source.get("config_paths") or [])
        archive_name = ARCHIVE_NAMES[params["compression"]]
        out_dir = os.path.join(spool, f"{component}-{name}")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.mkdir(out_dir, 0o700)
        archive = os.path.join(out_dir, archive_name)
        content = write_archive(entries, archive, params["compression"], params["compression_level"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if image_dir:
            shutil.rmtree(image_dir, ignore_errors=True)
    manifest = {
        "format": FORMAT,
        "name": name,
        "host": params["host"],
        "component": component,
        "program": {"name": component, "version": version["version"], "version_output": version["raw"]},
        "created": utcnow(),
        "duration_seconds": round(time.monotonic() - started, 3),
        "archive": content.pop("archive"),
        "content": content,
        "source": {k: source.get(k) for k in ("data_dir", "db_path", "service", "user", "group", "config_paths")
                   if source.get(k) is not None},
        "checks": checks,
    }
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest)
    if owner:  # Ansible's fetch reads the archive as the login user (become would slurp it into memory)
        uid, gid = ids_of(owner, None)
        for path in (spool, out_dir, archive, os.path.join(out_dir, "manifest.json")):
            os.chown(path, uid, gid)
    return {"changed": True, "manifest": manifest, "archive": archive, "archive_dir": out_dir}


# --------------------------------------------------------------------------
# restore on the host

def layout(component: str, source: dict) -> dict:
    """Where the data of a component lives: the directory and the names a restore replaces."""
    if component == "grafana":
        db = source["db_path"]
        base = os.path.basename(db)
        return {"dir": os.path.dirname(db), "names": [base + s for s in ("",) + SQLITE_SIDE_FILES],
                "whole_dir": False}
    return {"dir": source["data_dir"], "names": None, "whole_dir": True}


def marker_path(component: str, source: dict) -> str:
    return os.path.join(layout(component, source)["dir"], f"{OWN_PREFIX}restored-{component}.json")


def staging_path(component: str, source: dict) -> str:
    return os.path.join(layout(component, source)["dir"], f"{OWN_PREFIX}restore-{component}")


def free_bytes(path: str) -> int:
    while not os.path.exists(path):
        path = os.path.dirname(path) or "/"
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def inspect(system: System, params: dict) -> dict:
    component, source, manifest = params["component"], params["source"], params["manifest"]
    problems = []
    if manifest.get("format") != FORMAT:
        problems.append(f"manifest format {manifest.get('format')!r} is not {FORMAT} (written by another version of monstack?)")
    if manifest.get("component") != component:
        problems.append(f"the backup is of {manifest.get('component')}, not {component}")
    version = program_version(system, source.get("binary"))
    state = service_state(system, source.get("service"))
    installed = state.get("LoadState") == "loaded"
    problem = version_problem(component, manifest.get("program", {}).get("version"), version["version"],
                              params["allow_older"], params["without_service"])
    if problem:
        problems.append(problem)
    if not installed and not params["without_service"] and version["version"] is not None:
        problems.append(f"the {source.get('service')} service is not installed on this host: run site.yml first "
                        "(or set backup_restore_without_service=true to restore the files only)")
    where = layout(component, source)
    marker = marker_path(component, source)
    restored_already = False
    if os.path.exists(marker) and not params["force"]:
        with contextlib.suppress(OSError, ValueError):
            with open(marker) as handle:
                previous = json.load(handle)
            live = (os.path.exists(os.path.join(where["dir"], where["names"][0])) if where["names"]
                    else True)
            restored_already = live and previous.get("archive_sha256") == manifest["archive"]["sha256"]
    need = int(manifest["content"]["total_size"] * 1.05) + manifest["archive"]["size"]
    free = free_bytes(where["dir"])
    if not restored_already and free < need:
        problems.append(f"{where['dir']}: {free // 2**20} MiB free, the restore needs about {need // 2**20} MiB "
                        "(archive, staging copy)")
    return {"changed": False, "problems": problems, "restored_already": restored_already,
            "version": version["version"], "service_installed": installed,
            "service_active": state.get("ActiveState") == "active", "data_dir": where["dir"]}


def stage(_system: System, params: dict) -> dict:
    component, source, manifest = params["component"], params["source"], params["manifest"]
    staging = staging_path(component, source)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging, mode=0o700)
    problems = extract_verified(params["archive"], manifest, staging)
    if problems:
        shutil.rmtree(staging, ignore_errors=True)
        return {"changed": False, "problems": problems}
    if component == "grafana":
        names = [f["path"][len("data/"):] for f in manifest["content"]["files"] if f["path"].startswith("data/")]
        db = os.path.join(staging, "data", names[0]) if len(names) == 1 else ""
        if not db:
            shutil.rmtree(staging, ignore_errors=True)
            return {"changed": False, "problems": [f"the backup holds {len(names)} database files, not one"]}
        facts = sqlite_facts(db, immutable=True)
        want = manifest.get("checks", {}).get("sqlite", {})
        if facts["integrity"] != "ok":
            problems.append(f"the database of the backup fails SQLite's integrity check: {facts['integrity']}")
        elif want and facts["tables"] != want.get("tables"):
            problems.append("the database of the backup does not hold the row counts of its manifest")
        if problems:
            shutil.rmtree(staging, ignore_errors=True)
    return {"changed": True, "problems": problems, "staging": staging}


def swap(_system: System, params: dict) -> dict:
    """Move the current data aside and the staged backup into place (the service is stopped)."""
    component, source = params["component"], params["source"]
    where = layout(component, source)
    staging = staging_path(component, source)
    data_dir = where["dir"]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = os.path.join(data_dir, f"{OWN_PREFIX}aside-{component}-{stamp}")
    journal = {"aside": aside, "moved_aside": [], "moved_in": [], "config_aside": [], "config_in": [],
               "reset": []}
    os.makedirs(aside, mode=0o700)
    uid, gid = ids_of(source.get("user"), source.get("group"))
    write_json_atomic(os.path.join(staging, "journal.json"), journal)
    staged = os.path.join(staging, "data")
    staged_names = sorted(os.listdir(staged)) if os.path.isdir(staged) else []
    if not where["whole_dir"] and len(staged_names) != 1:
        raise BackupError(f"the staged backup holds {staged_names}, not one database file; nothing was moved")
    if where["whole_dir"]:
        skip = SKIP_ENTRIES[component]
        current = [n for n in os.listdir(data_dir) if not n.startswith(OWN_PREFIX) and n not in skip]
        current += [n for n in ("lock", "queries.active") if component == "prometheus" and
                    os.path.exists(os.path.join(data_dir, n))]
    else:
        current = [n for n in where["names"] if os.path.lexists(os.path.join(data_dir, n))]
    for name in sorted(set(current)):
        os.rename(os.path.join(data_dir, name), os.path.join(aside, name))
        journal["moved_aside"].append(name)
        write_json_atomic(os.path.join(staging, "journal.json"), journal)
    for name in staged_names:
        # Grafana: the database of the backup becomes this host's database file, whatever its name.
        target = os.path.join(data_dir, name) if where["whole_dir"] else source["db_path"]
        os.rename(os.path.join(staged, name), target)
        chown_tree(target, uid, gid)
        journal["moved_in"].append(os.path.basename(target))
        write_json_atomic(os.path.join(staging, "journal.json"), journal)
    # State that describes the data being replaced (Grafana: which admin password was applied
    # to the database): moved aside too, so the next site.yml applies the inventory's again.
    for path in source.get("reset_files") or []:
        if os.path.lexists(path):
            os.makedirs(os.path.join(aside, "reset"), exist_ok=True)
            os.rename(path, os.path.join(aside, "reset", os.path.basename(path)))
            journal["reset"].append(path)
            write_json_atomic(os.path.join(staging, "journal.json"), journal)
    if params["restore_config"]:
        config_root = os.path.join(staging, "config")
        for root, _dirs, files in os.walk(config_root):
            for file_name in files:
                staged_file = os.path.join(root, file_name)
                target = "/" + os.path.relpath(staged_file, config_root)
                want = next((f for f in params["manifest"]["content"]["files"]
                             if f["path"] == "config" + target), {})
                if os.path.exists(target):
                    keep = os.path.join(aside, "config" + target)
                    os.makedirs(os.path.dirname(keep), exist_ok=True)
                    shutil.copy2(target, keep)
                    journal["config_aside"].append(target)
                else:
                    journal["config_in"].append(target)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                tmp = target + ".monstack-restore"
                shutil.copy2(staged_file, tmp)
                os.chown(tmp, *ids_of(want.get("owner"), want.get("group")))
                os.rename(tmp, target)
                write_json_atomic(os.path.join(staging, "journal.json"), journal)
    fsync_dir(data_dir)
    return {"changed": True, "aside": aside, "moved_aside": journal["moved_aside"], "moved_in": journal["moved_in"],
            "config_restored": journal["config_aside"] + journal["config_in"]}


def rollback(_system: System, params: dict) -> dict:
    """Undo swap: the restored data out, the data moved aside back in (the service is stopped)."""
    component, source = params["component"], params["source"]
    where = layout(component, source)
    staging = staging_path(component, source)
    journal_file = os.path.join(staging, "journal.json")
    if not os.path.exists(journal_file):
        return {"changed": False, "msg": "nothing to roll back"}
    with open(journal_file) as handle:
        journal = json.load(handle)
    data_dir, aside = where["dir"], journal["aside"]
    failed = os.path.join(staging, "failed")
    os.makedirs(failed, exist_ok=True)
    for name in journal["moved_in"]:
        with contextlib.suppress(FileNotFoundError):
            os.rename(os.path.join(data_dir, name), os.path.join(failed, name))
    # What the program wrote since (a lock, a WAL of its own) goes too; then the old data back.
    if where["whole_dir"]:
        kept = SKIP_ENTRIES[component] - {"lock", "queries.active"}
        for name in os.listdir(data_dir):
            if not name.startswith(OWN_PREFIX) and name not in kept:
                os.rename(os.path.join(data_dir, name), os.path.join(failed, name))
    for name in journal["moved_aside"]:
        os.rename(os.path.join(aside, name), os.path.join(data_dir, name))
    for path in journal.get("reset", []):
        os.rename(os.path.join(aside, "reset", os.path.basename(path)), path)
    for target in journal["config_aside"]:
        kept = os.path.join(aside, "config" + target)
        shutil.copy2(kept, target + ".monstack-restore")
        os.rename(target + ".monstack-restore", target)
    for target in journal["config_in"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
    shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    fsync_dir(data_dir)
    return {"changed": True, "restored_previous": journal["moved_aside"]}


def silence_key(silence: dict) -> tuple:
    matchers = tuple(sorted((m.get("name"), m.get("value"), bool(m.get("isRegex")), m.get("isEqual", True) is not False)
                            for m in silence.get("matchers", [])))
    return (matchers, silence.get("endsAt"), silence.get("createdBy"), silence.get("comment"))


def _epoch(text: str) -> float:
    """Seconds of an Alertmanager time (2030-01-01T00:00:00.000Z, always UTC)."""
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))


def reconcile_silences(system: System, url: str, user: str, password: str, exported: list[dict]) -> dict:
    """Make the silences of the backup hold again in a running Alertmanager.

    A silence that is live (same id, from the restored file or from a cluster peer) is
    left alone; an active one that is missing is created again (same matchers, end,
    author and comment; Alertmanager gives it a new id); one the backup holds as expired
    but the restored file still has active is expired.
    """
    now = time.time()
    live = http(system, url + "/api/v2/silences", user, password)
    by_id = {s["id"]: s for s in live}
    live_keys = {silence_key(s) for s in live if s.get("status", {}).get("state") in ("active", "pending")}
    created, expired = [], []
    for silence in exported:
        state = silence.get("status", {}).get("state")
        current = by_id.get(silence.get("id"))
        if state == "expired":
            if current and current.get("status", {}).get("state") in ("active", "pending"):
                http(system, url + "/api/v2/silence/" + urllib.parse.quote(silence["id"]), user, password,
                     method="DELETE")
                expired.append(silence["id"])
            continue
        if _epoch(silence["endsAt"]) <= now:
            continue  # ended since the backup
        if current and current.get("status", {}).get("state") in ("active", "pending") \
                and current.get("endsAt") == silence.get("endsAt"):
            continue
        if silence_key(silence) in live_keys:
            continue
        body = {k: silence[k] for k in ("matchers", "startsAt", "endsAt", "createdBy", "comment")}
        answer = http(system, url + "/api/v2/silences", user, password, method="POST", body=body)
        created.append(answer.get("silenceID") if isinstance(answer, dict) else None)
    return {"created": created, "expired": expired}


def check(system: System, params: dict) -> dict:
    """Check the restored data through the running program (or the file, without one)."""
    component, source, manifest = params["component"], params["source"], params["manifest"]
    url, user, password = source.get("url", ""), source.get("url_user", ""), source.get("url_password", "")
    checks = manifest.get("checks", {})
    problems, done, skipped = [], [], []
    changed = False
    running = service_state(system, source.get("service")).get("ActiveState") == "active" or bool(source.get("pid"))
    if component == "prometheus":
        if not running:
            skipped.append("Prometheus is not running here: its restored data cannot be queried")
        else:
            runtime = http(system, url + "/api/v1/status/runtimeinfo", user, password)["data"]
            retention = prom_duration(runtime.get("storageRetention", "").split(" ")[0]) or 0
            oldest_kept = time.time() - retention if retention else 0
            values = metric_values(http(system, url + "/metrics", user, password),
                                   {"prometheus_tsdb_lowest_timestamp_seconds"})
            lowest = checks.get("lowest_timestamp_seconds")
            if lowest and lowest > oldest_kept:
                have = values.get("prometheus_tsdb_lowest_timestamp_seconds")
                if have is None or have > lowest + 1:
                    problems.append(f"the restored TSDB starts at {have}, the backup's at {lowest}: history is missing")
                else:
                    done.append(f"history starts at {int(have)} (backup: {int(lowest)})")
            queries = checks.get("queries", {})
            if queries and queries.get("time", 0) > oldest_kept:
                for expr, want in queries.get("results", {}).items():
                    query = urllib.parse.urlencode({"query": expr, "time": queries["time"]})
                    answer = http(system, url + "/api/v1/query?" + query, user, password)["data"]["result"]
                    have = answer[0]["value"][1] if answer else None
                    if have != want:
                        problems.append(f"{expr} at {queries['time']} is {have} after the restore, {want} in the backup")
                    else:
                        done.append(f"{expr} at {queries['time']} = {have}, as in the backup")
            elif queries:
                skipped.append("the backup's check time is beyond the retention: Prometheus deleted that data")
    elif component == "alertmanager":
        export = os.path.join(staging_path(component, source), "export", "silences.json")
        if not os.path.exists(export):
            skipped.append("the backup holds no silences export (Alertmanager was not running when it was taken)")
        elif not running:
            skipped.append("Alertmanager is not running here: silences cannot be checked")
        else:
            with open(export) as handle:
                exported = json.load(handle)
            result = reconcile_silences(system, url, user, password, exported)
            changed = bool(result["created"] or result["expired"])
            live = http(system, url + "/api/v2/silences", user, password)
            active = {s["id"] for s in live if s.get("status", {}).get("state") in ("active", "pending")}
            active_keys = {silence_key(s) for s in live if s["id"] in active}
            now = time.time()
            missing = [s["id"] for s in exported if s.get("status", {}).get("state") in ("active", "pending")
                       and _epoch(s["endsAt"]) > now and s["id"] not in active and silence_key(s) not in active_keys]
            if missing:
                problems.append(f"silences of the backup not active after the restore: {', '.join(missing)}")
            else:
                done.append(f"{len(exported)} silences of the backup checked ({len(result['created'])} created again, "
                            f"{len(result['expired'])} expired again)")
    else:
        db = source["db_path"]
        facts = sqlite_facts(db, immutable=not running)
        want = checks.get("sqlite", {}).get("tables")
        if facts["integrity"] != "ok":
            problems.append(f"{db} fails SQLite's integrity check after the restore: {facts['integrity']}")
        elif not running and want is not None and facts["tables"] != want:
            problems.append(f"{db} does not hold the rows of the backup after the restore: {facts['tables']} "
                            f"(backup: {want})")
        else:
            done.append(f"{db}: integrity ok, {sum(facts['tables'].values())} rows in {len(facts['tables'])} tables"
                        + (" as in the backup" if not running and want is not None else ""))
        if running and url:
            health = http(system, url + "/api/health", user, password)
            if health.get("database") != "ok":
                problems.append(f"Grafana reports its database as {health.get('database')!r}")
            else:
                done.append("Grafana /api/health: database ok")
        else:
            skipped.append("Grafana server checks skipped: grafana-server is not running on this host")
    return {"changed": changed, "problems": problems, "checked": done, "skipped": skipped}


def commit(_system: System, params: dict) -> dict:
    component, source, manifest = params["component"], params["source"], params["manifest"]
    staging = staging_path(component, source)
    journal = {}
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(staging, "journal.json")) as handle:
            journal = json.load(handle)
    write_json_atomic(marker_path(component, source), {
        "archive_sha256": manifest["archive"]["sha256"], "name": manifest.get("name"),
        "host": manifest.get("host"), "component": component, "restored_at": utcnow(),
        "aside": journal.get("aside") if params["keep_aside"] else None})
    shutil.rmtree(staging, ignore_errors=True)
    aside = journal.get("aside")
    if aside and (not params["keep_aside"] or not os.listdir(aside)):
        shutil.rmtree(aside, ignore_errors=True)
        aside = None
    return {"changed": True, "aside": aside}


def cleanup(_system: System, params: dict) -> dict:
    """Remove a staging directory and spool files left by a refused or failed run."""
    removed = []
    if params.get("component") and params.get("source"):
        staging = staging_path(params["component"], params["source"])
        if os.path.exists(staging) and not os.path.exists(os.path.join(staging, "journal.json")):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    if params.get("archive"):
        directory = os.path.dirname(params["archive"])
        if os.path.isdir(directory):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return {"changed": bool(removed), "removed": removed}


# --------------------------------------------------------------------------
# the textfile metric of the last good backup

METRICS = [
    ("monstack_backup_last_success_timestamp_seconds", "Unix time at which the last successful backup of the component finished."),
    ("monstack_backup_last_run_timestamp_seconds", "Unix time at which the last backup of the component finished, successful or not."),
    ("monstack_backup_last_run_success", "1 when the last backup of the component succeeded, 0 when it failed."),
    ("monstack_backup_last_size_bytes", "Size of the archive of the last successful backup."),
    ("monstack_backup_last_duration_seconds", "How long the last successful backup took."),
]


def write_metric(textfile_dir: str, kind: str, component: str, success: bool, size: int = 0,
                 duration: float = 0.0, now: float | None = None) -> str:
    """Update monstack_backup_<kind>.prom (one set of series per component), atomically."""
    now = time.time() if now is None else now
    path = os.path.join(textfile_dir, f"monstack_backup_{kind}.prom")
    state_path = os.path.join(textfile_dir, f".monstack_backup_{kind}.json")
    state = {}
    with contextlib.suppress(OSError, ValueError):
        with open(state_path) as handle:
            state = json.load(handle)
    entry = state.get(component, {"last_success": 0, "size": 0, "duration": 0})
    entry.update(last_run=now, success=1 if success else 0)
    if success:
        entry.update(last_success=now, size=size, duration=duration)
    state[component] = entry
    write_json_atomic(state_path, state, mode=0o644)
    values = {"monstack_backup_last_success_timestamp_seconds": "last_success",
              "monstack_backup_last_run_timestamp_seconds": "last_run",
              "monstack_backup_last_run_success": "success", "monstack_backup_last_size_bytes": "size",
              "monstack_backup_last_duration_seconds": "duration"}
    lines = []
    for metric, help_text in METRICS:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for name in sorted(state):
            value = state[name][values[metric]]
            lines.append(f'{metric}{{component="{name}",kind="{kind}"}} {value:.3f}'
                         if isinstance(value, float) else f'{metric}{{component="{name}",kind="{kind}"}} {value}')
    fd, tmp = tempfile.mkstemp(dir=textfile_dir, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    return path


# --------------------------------------------------------------------------
# the store (controller or backup host)

def backup_dirs(base: str) -> list[str]:
    """Complete backups of one host and component, oldest first."""
    if not os.path.isdir(base):
        return []
    return sorted(d for d in os.listdir(base) if NAME_RE.match(d) and
                  os.path.isfile(os.path.join(base, d, "manifest.json")))


def store_verify(_system: System, params: dict) -> dict:
    """Find a backup in the store and check its archive against its manifest (read only)."""
    base = os.path.join(params["store_dir"], params["host"], params["component"])
    names = backup_dirs(base)
    wanted = params["name"] or "latest"
    if not names:
        return {"changed": False, "problems": [f"no backup of {params['component']} of {params['host']} in {base}"]}
    name = names[-1] if wanted == "latest" else wanted
    directory = os.path.join(base, name)
    manifest_file = os.path.join(directory, "manifest.json")
    if name not in names:
        return {"changed": False, "problems": [f"{directory}: no such backup (there are: {', '.join(names[-5:])})"]}
    try:
        with open(manifest_file) as handle:
            manifest = json.load(handle)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        archive = os.path.join(directory, manifest["archive"]["name"])
        want_size, want_sha = manifest["archive"]["size"], manifest["archive"]["sha256"]
        manifest["content"]["files"]  # noqa: B018 (the manifest must list the files)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {"changed": False, "problems": [f"{manifest_file}: not a readable backup manifest ({exc}); refusing to restore"]}
    problems = []
    if manifest.get("host") != params["host"] or manifest.get("component") != params["component"]:
        problems.append(f"{manifest_file}: it is the manifest of {manifest.get('component')} of {manifest.get('host')}")
    if not os.path.isfile(archive):
        problems.append(f"{archive}: missing")
    elif params.get("verify_checksum", True):
        digest, size = sha256_file(archive)
        if size != want_size or digest != want_sha:
            problems.append(f"{archive}: SHA-256 {digest} (size {size}) does not match the manifest ({want_sha}, size "
                            f"{want_size}): the file is damaged or was changed; refusing to restore it")
    return {"changed": False, "problems": problems, "manifest": manifest, "archive": archive, "name": name,
            "directory": directory}


def store_commit(_system: System, params: dict) -> dict:
    """File a fetched backup: check the archive, write its manifest, name the directory, prune."""
    manifest = params["manifest"]
    base = os.path.join(params["store_dir"], params["host"], params["component"])
    partial = os.path.join(base, params["name"] + ".partial")
    final = os.path.join(base, params["name"])
    archive = os.path.join(partial, manifest["archive"]["name"])
    digest, size = sha256_file(archive)
    if digest != manifest["archive"]["sha256"] or size != manifest["archive"]["size"]:
        raise BackupError(f"{archive}: SHA-256 {digest} (size {size}) after the transfer does not match the host's "
                          f"({manifest['archive']['sha256']}, size {manifest['archive']['size']}); nothing was filed")
    os.chmod(archive, 0o600)
    for directory in (params["store_dir"], os.path.dirname(base), base, partial):
        os.chmod(directory, 0o700)  # backups hold secrets
    write_json_atomic(os.path.join(partial, "manifest.json"), manifest)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.rename(partial, final)
    fsync_dir(base)
    removed = []
    names = backup_dirs(base)
    for old in names[:max(0, len(names) - params["keep"])]:
        shutil.rmtree(os.path.join(base, old))
        removed.append(os.path.join(base, old))
    for entry in os.listdir(base):  # what crashed runs left
        if entry.endswith(".partial") and entry != params["name"] + ".partial":
            shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
    return {"changed": True, "directory": final, "removed": removed, "kept": backup_dirs(base)}


# --------------------------------------------------------------------------
# the actions, by name (the module's `action`; `metric` is write_metric)

ACTIONS = {"create": create, "inspect": inspect, "stage": stage, "swap": swap, "check": check,
           "rollback": rollback, "commit": commit, "cleanup": cleanup, "store_verify": store_verify,
           "store_commit": store_commit}
