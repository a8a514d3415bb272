# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Backups of Prometheus, Alertmanager and Grafana data, and their restore (monstack).

The engine of the module monstack.stack.backup (playbooks/backup.yml,
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
import hmac
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
# Permission bits a backup records and a restore sets: never setuid, setgid or sticky.
MODE_MASK = 0o777
# Opening a file of a directory that a service user can write: never through a symbolic
# link (O_NOFOLLOW), and never blocking on a FIFO planted there (O_NONBLOCK).
O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
HMAC_ALGORITHM = "HMAC-SHA256"
HMAC_MIN_LENGTH = 16


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
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # O_EXCL | O_NOFOLLOW
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fchmod(handle.fileno(), mode)  # on the file opened, not on whatever the name points at now
            os.fsync(handle.fileno())
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


def race_point(step: str, **where) -> None:
    """Nothing. The unit tests replace it to act as a hostile service user between two steps
    (plant a symbolic link where the backup or the restore is about to look)."""
    del step, where


def kind_of(mode: int) -> str:
    """What a file is, in words, from its st_mode."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISREG, "a regular file"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a file of an unknown type"


def open_dir_at(name: str, dir_fd: int | None = None) -> int:
    """A directory's fd, never through a symbolic link (OSError ELOOP/ENOTDIR otherwise)."""
    return os.open(name, O_DIR, dir_fd=dir_fd)


def open_regular_at(name: str, dir_fd: int | None = None, ino: tuple | None = None) -> int:
    """A regular file's fd, opened without following a symbolic link or blocking on a FIFO;
    with `ino` (st_dev, st_ino), it must be that file. OSError otherwise."""
    fd = os.open(name, O_READ, dir_fd=dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (ino is not None and (info.st_dev, info.st_ino) != tuple(ino)):
        os.close(fd)
        raise OSError(f"{name} is {kind_of(info.st_mode)}, or another file than the one listed")
    return fd


def open_beneath(root_fd: int, rel: str, ino: tuple | None = None) -> int:
    """The regular file `rel` under the directory `root_fd`, every component opened without
    following a symbolic link."""
    parts = rel.split("/")
    opened = []
    fd = root_fd
    try:
        for part in parts[:-1]:
            fd = open_dir_at(part, fd)
            opened.append(fd)
        return open_regular_at(parts[-1], fd, ino)
    finally:
        for handle in opened:
            os.close(handle)


def makedirs_at(base_fd: int, rel: str, mode: int = 0o700) -> int:
    """fd of the directory `rel` under `base_fd`, made where missing; never through a symbolic link."""
    fd = os.dup(base_fd)
    try:
        for part in [p for p in rel.split("/") if p]:
            try:
                child = open_dir_at(part, fd)
            except FileNotFoundError:
                os.mkdir(part, mode, dir_fd=fd)
                child = open_dir_at(part, fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def rmtree_at(dir_fd: int, name: str) -> None:
    """Remove `name` of the directory `dir_fd` and all below it, following no symbolic link."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = open_dir_at(name, dir_fd)
    try:
        for entry in os.listdir(fd):
            rmtree_at(fd, entry)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def check_private_dir(path: str, what: str, create_mode: int | None = None) -> bool:
    """Refuse a directory that someone other than root could change: a symbolic link, owned by
    another user, or group- or world-writable. Made (mode `create_mode`) when missing and
    `create_mode` is given; True when it was made."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if create_mode is None:
            raise BackupError(f"{what} {path} does not exist") from None
        parent = os.path.dirname(os.path.normpath(path))
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        os.mkdir(path, create_mode)
        os.chmod(path, create_mode)  # whatever the umask
        return True
    if stat.S_ISLNK(info.st_mode):
        raise BackupError(f"{what} {path} is a symbolic link: refusing to use it (whoever made it chooses where "
                          "the files go). Remove it; it is made again, owned by root")
    if not stat.S_ISDIR(info.st_mode):
        raise BackupError(f"{what} {path} is {kind_of(info.st_mode)}, not a directory: refusing to use it")
    if info.st_uid not in (0, os.geteuid()):
        raise BackupError(f"{what} {path} exists and is owned by {owner_name(info.st_uid)} (uid {info.st_uid}), not "
                          "root: refusing to use it (its owner could swap what is in it). Remove it, or make it "
                          "root's (chown root:root, chmod 0700), then run again")
    if info.st_mode & 0o022:
        raise BackupError(f"{what} {path} is group- or world-writable (mode {stat.S_IMODE(info.st_mode):04o}): "
                          "refusing to use it (chmod go-w, or remove it), then run again")
    return False


# --------------------------------------------------------------------------
# the manifest's HMAC (backup_hmac_secret)

def hmac_key_check(key: str | None) -> str:
    key = key or ""
    if key and len(key) < HMAC_MIN_LENGTH:
        raise BackupError(f"backup_hmac_secret: shorter than {HMAC_MIN_LENGTH} characters; use a long random value "
                          "(e.g. openssl rand -hex 32) from the vault")
    return key


def manifest_digest(manifest: dict, key: str) -> str:
    """HMAC-SHA256 of the manifest (all but its `hmac` field) in canonical JSON."""
    body = {k: v for k, v in manifest.items() if k != "hmac"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def sign_manifest(manifest: dict, key: str) -> dict:
    if hmac_key_check(key):
        manifest["hmac"] = {"algorithm": HMAC_ALGORITHM, "value": manifest_digest(manifest, key)}
    return manifest


def signature_problem(manifest: dict, key: str | None, where: str = "the manifest") -> str | None:
    """Why the manifest is not signed with `key` (None when it is, or when no key is set)."""
    key = hmac_key_check(key)
    if not key:
        return None
    signature = manifest.get("hmac") if isinstance(manifest, dict) else None
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        return (f"{where} has no HMAC, and backup_hmac_secret is set: refusing it (a backup taken before the "
                "secret was set, or a forged one); nothing was touched")
    if signature.get("algorithm") != HMAC_ALGORITHM or \
            not hmac.compare_digest(signature["value"], manifest_digest(manifest, key)):
        return (f"{where}: its HMAC does not match backup_hmac_secret (the manifest was changed, or signed with "
                "another secret): refusing it; nothing was touched")
    return None


# --------------------------------------------------------------------------
# what a restore accepts of an archive and its manifest

def member_problem(name) -> str | None:
    """Why `name` is not the name of a member a backup writes (None when it is)."""
    if not isinstance(name, str) or not name:
        return "an empty name"
    if name.startswith("/"):
        return "an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "a '..' component"
    if any(part in ("", ".") for part in parts) or "\\" in name or "\0" in name:
        return "not a plain relative path"
    if parts[0] not in ("data", "config", "export") or len(parts) < 2:
        return "outside data/, config/ and export/"
    return None


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


def link_tree(data_fd: int, image_fd: int, component: str, skipped: list | None = None) -> list[dict]:
    """Hard-link the data directory's files into the image directory; each file's size now.

    Prometheus only appends to the files it changes in place (WAL segments, head chunk
    files) and replaces the others by rename: the first `size` bytes of a linked file stay
    what they were at this moment, so reading that many bytes later gives this moment's image.

    The data directory belongs to the service user: it is walked through directory fds,
    nothing is opened through a symbolic link (links, FIFOs, sockets and devices are not
    backed up; `skipped` lists them), a hard link to another user's file is left out, and
    the image is root's (0700), read later through its own fd.
    """
    entries: list[dict] = []
    skipped = [] if skipped is None else skipped
    skip = SKIP_ENTRIES[component]
    owner = os.fstat(data_fd).st_uid

    def walk(src_fd: int, dst_fd: int, rel: str) -> None:
        for name in sorted(os.listdir(src_fd)):
            if not rel and (name.startswith(OWN_PREFIX) or name in skip or TMP_DIR_RE.search(name)):
                continue
            path_rel = f"{rel}/{name}" if rel else name
            try:
                info = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                if TMP_DIR_RE.search(name):
                    continue
                try:
                    sub = open_dir_at(name, src_fd)
                except OSError:
                    skipped.append(f"data/{path_rel}: replaced while it was read, not followed")
                    continue
                try:
                    now = os.fstat(sub)
                    if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                        skipped.append(f"data/{path_rel}: replaced while it was read, not followed")
                        continue
                    os.mkdir(name, 0o700, dir_fd=dst_fd)
                    dst = open_dir_at(name, dst_fd)
                    try:
                        entries.append({"type": "dir", "rel": path_rel, "mode": stat.S_IMODE(info.st_mode) & MODE_MASK})
                        walk(sub, dst, path_rel)
                    finally:
                        os.close(dst)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(info.st_mode):
                if info.st_nlink > 1 and info.st_uid != owner:
                    skipped.append(f"data/{path_rel}: a hard link to a file of {owner_name(info.st_uid)}, not backed up")
                    continue
                race_point("link", dir_fd=src_fd, name=name, rel=path_rel)
                try:
                    os.link(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted since it was listed
                linked = os.stat(name, dir_fd=dst_fd, follow_symlinks=False)
                if not stat.S_ISREG(linked.st_mode) or (linked.st_nlink > 2 and linked.st_uid != owner):
                    os.unlink(name, dir_fd=dst_fd)
                    skipped.append(f"data/{path_rel}: became {kind_of(linked.st_mode)} while it was read, not followed")
                    continue
                entries.append({"type": "file", "rel": path_rel, "root_fd": image_fd,
                                "ino": (linked.st_dev, linked.st_ino), "size": linked.st_size,
                                "mode": stat.S_IMODE(linked.st_mode) & MODE_MASK, "mtime": int(linked.st_mtime)})
            else:
                skipped.append(f"data/{path_rel}: {kind_of(info.st_mode)}, not backed up (never followed)")

    walk(data_fd, image_fd, "")
    return entries


def remove_own_dir(dir_fd: int, name: str, ino: tuple) -> None:
    """Remove the directory `name` this run made, if it is still that one (not a swapped-in one)."""
    with contextlib.suppress(OSError):
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (info.st_dev, info.st_ino) == tuple(ino):
            rmtree_at(dir_fd, name)


def collect_prometheus(system: System, source: dict, freeze_timeout: int, cleanups: list | None = None
                       ) -> tuple[list[dict], dict]:
    data_dir = source["data_dir"]
    if not os.path.isdir(data_dir):
        raise BackupError(f"prometheus: the data directory {data_dir} does not exist: nothing to back up")
    cleanups = [] if cleanups is None else cleanups
    url, user, password = source.get("url", ""), source.get("url_user", ""), source.get("url_password", "")
    pid = int(source.get("pid") or service_state(system, source.get("service")).get("MainPID") or 0)
    checks: dict = {"method": "pause-and-hardlink" if pid else "stopped-copy"}
    before = {}
    if pid and url:
        with contextlib.suppress(Exception):
            before = metric_values(http(system, url + "/metrics", user, password),
                                   {"prometheus_tsdb_lowest_timestamp_seconds",
                                    "prometheus_tsdb_head_max_time_seconds"})
    data_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    cleanups.append(lambda: os.close(data_fd))
    for stale in os.listdir(data_fd):
        if stale.startswith(OWN_PREFIX + "image-"):
            with contextlib.suppress(OSError):
                rmtree_at(data_fd, stale)
    image = f"{OWN_PREFIX}image-{os.getpid()}"
    os.mkdir(image, 0o700, dir_fd=data_fd)
    image_fd = open_dir_at(image, data_fd)
    cleanups.append(lambda: os.close(image_fd))
    info = os.fstat(image_fd)
    cleanups.append(lambda: remove_own_dir(data_fd, image, (info.st_dev, info.st_ino)))
    if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise BackupError(f"prometheus: {data_dir}/{image} is not the directory this backup made: refusing to use it")
    skipped: list[str] = []
    taken = time.time()
    if pid:
        with paused(system, pid, freeze_timeout):
            entries = link_tree(data_fd, image_fd, "prometheus", skipped)
        checks["pause_seconds"] = PAUSE["seconds"]
    else:
        entries = link_tree(data_fd, image_fd, "prometheus", skipped)
    checks["taken_at"] = round(taken, 3)
    if skipped:
        checks["skipped"] = skipped[:100]
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
    skipped: list[str] = []
    copy_dir = os.path.join(work, "data")
    os.makedirs(copy_dir, exist_ok=True)
    data_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        owner = os.fstat(data_fd).st_uid
        for name in sorted(os.listdir(data_fd)):
            if name.startswith(OWN_PREFIX) or name in SKIP_ENTRIES["alertmanager"]:
                continue
            try:
                info = os.stat(name, dir_fd=data_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                skipped.append(f"data/{name}: {kind_of(info.st_mode)}, not backed up (never followed)")
                continue
            if info.st_nlink > 1 and info.st_uid != owner:
                skipped.append(f"data/{name}: a hard link to a file of {owner_name(info.st_uid)}, not backed up")
                continue
            race_point("copy", dir_fd=data_fd, name=name)
            # Alertmanager replaces these files by rename: the open file is one complete version.
            try:
                fd = open_regular_at(name, data_fd, (info.st_dev, info.st_ino))
            except OSError:
                skipped.append(f"data/{name}: replaced while it was read, not followed")
                continue
            dst = os.path.join(copy_dir, name)
            with os.fdopen(fd, "rb") as src, open(dst, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            os.chmod(dst, stat.S_IMODE(info.st_mode) & MODE_MASK)
            os.utime(dst, (info.st_atime, info.st_mtime))
            copied = os.stat(dst)
            entries.append({"type": "file", "rel": name, "path": dst, "arcname": "data/" + name,
                            "size": copied.st_size, "mode": stat.S_IMODE(copied.st_mode),
                            "mtime": int(copied.st_mtime)})
    finally:
        os.close(data_fd)
    checks: dict = {"method": "files-and-api"}
    if skipped:
        checks["skipped"] = skipped[:100]
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
    try:
        before = os.lstat(db_path)
    except FileNotFoundError:
        raise BackupError(f"grafana: the database {db_path} does not exist: nothing to back up") from None
    # SQLite opens the database (and its -wal, -shm and -journal files) by name: none may be
    # a link or anything but a regular file (Grafana's directory belongs to its user).
    for path in [db_path] + [db_path + suffix for suffix in SQLITE_SIDE_FILES]:
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                raise BackupError(f"grafana: {path} is {kind_of(info.st_mode)}, not a regular file: refusing to follow "
                                  "it; no backup was taken")
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
    after = os.lstat(db_path)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(after.st_mode):
        raise BackupError(f"grafana: {db_path} was replaced while it was copied: no backup was taken (run it again)")
    facts = sqlite_facts(dst, immutable=True)
    if facts["integrity"] != "ok":
        raise BackupError(f"grafana: the copy of {db_path} fails SQLite's integrity check: {facts['integrity']}")
    mode = stat.S_IMODE(before.st_mode) & MODE_MASK
    os.chmod(dst, mode)
    size = os.path.getsize(dst)
    entries = [{"type": "file", "rel": name, "path": dst, "arcname": "data/" + name, "size": size,
                "mode": mode, "mtime": int(before.st_mtime)}]
    return entries, {"method": "sqlite-online-backup", "sqlite": facts}


def collect_config(paths: list[str]) -> list[dict]:
    """Configuration files (and directories), by absolute path, as config/<path>. Symbolic
    links and anything but regular files and directories are left out, never followed."""
    entries = []
    for top in paths:
        try:
            top_info = os.lstat(top)
        except FileNotFoundError:
            continue
        if not (stat.S_ISDIR(top_info.st_mode) or stat.S_ISREG(top_info.st_mode)):
            continue
        is_dir = stat.S_ISDIR(top_info.st_mode)
        walk = os.walk(top) if is_dir else [(os.path.dirname(top), [], [os.path.basename(top)])]
        for root, dirs, files in walk:
            dirs.sort()
            if is_dir:
                info = os.lstat(root)
                if not stat.S_ISDIR(info.st_mode):
                    continue
                entries.append({"type": "dir", "arcname": "config" + root, "mode": stat.S_IMODE(info.st_mode) & MODE_MASK,
                                "uname": owner_name(info.st_uid), "gname": group_name(info.st_gid)})
            for name in sorted(files):
                path = os.path.join(root, name)
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or name in CONFIG_SKIP or name.startswith(".tmp-"):
                    continue
                entries.append({"type": "file", "path": path, "ino": (info.st_dev, info.st_ino),
                                "arcname": "config" + path, "size": info.st_size,
                                "mode": stat.S_IMODE(info.st_mode) & MODE_MASK, "mtime": int(info.st_mtime),
                                "uname": owner_name(info.st_uid), "gname": group_name(info.st_gid)})
    return entries


def open_entry(entry: dict):
    """The file of an entry, opened without following a symbolic link; it must be the file listed."""
    try:
        if "root_fd" in entry:
            fd = open_beneath(entry["root_fd"], entry["rel"], entry.get("ino"))
        else:
            fd = open_regular_at(entry["path"], None, entry.get("ino"))
    except OSError as exc:
        raise BackupError(f"{entry['arcname']}: replaced while the backup read it ({exc}); refusing to follow it: "
                          "no backup was taken") from exc
    return os.fdopen(fd, "rb")


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
                info.mode = entry.get("mode", 0o640) & MODE_MASK
                info.mtime = entry.get("mtime", int(time.time()))
                info.uname, info.gname = entry.get("uname", ""), entry.get("gname", "")
                if entry["type"] == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                    dirs.append(entry["arcname"])
                    continue
                info.size = entry["size"]
                with open_entry(entry) as handle:
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
    return member_problem(name) is None


def config_roots(source: dict) -> tuple[list[str], list[str]]:
    """The component's own configuration paths on this host, and why any cannot take a restore."""
    roots, problems = [], []
    for path in source.get("config_paths") or []:
        normal = os.path.normpath(path)
        if not os.path.isabs(normal) or normal == "/":
            problems.append(f"config path {path!r} is not an absolute path below /")
            continue
        if os.path.realpath(normal) != normal:
            problems.append(f"config path {path} resolves to {os.path.realpath(normal)} (a symbolic link on the way): "
                            "refusing to restore configuration through it")
            continue
        roots.append(normal)
    return roots, problems


def config_root_of(target: str, roots: list[str]) -> str | None:
    return next((r for r in roots if target == r or target.startswith(r.rstrip("/") + "/")), None)


def manifest_problems(manifest, component: str, source: dict, restore_config: bool, key: str | None) -> list[str]:
    """Why a restore refuses this manifest, before it reads the archive or touches anything."""
    if not isinstance(manifest, dict):
        return ["the manifest is not a JSON object; refusing it"]
    problem = signature_problem(manifest, key)
    if problem:
        return [problem]
    try:
        files, dirs, archive = manifest["content"]["files"], manifest["content"].get("dirs", []), manifest["archive"]
        names = [f["path"] for f in files] + list(dirs)
        sizes_ok = all(isinstance(f["size"], int) and f["size"] >= 0 and isinstance(f["sha256"], str) for f in files)
        archive_name = archive["name"]
    except (KeyError, TypeError, AttributeError) as exc:
        return [f"the manifest lacks {exc} (not a backup manifest): refusing it"]
    problems = []
    if archive_name not in ARCHIVE_NAMES.values():
        problems.append(f"the manifest names the archive {archive_name!r}, not one of {', '.join(ARCHIVE_NAMES.values())}")
    if not sizes_ok:
        problems.append("the manifest lists a file without a size or SHA-256: refusing it")
    roots, root_problems = config_roots(source) if restore_config else ([], [])
    problems += root_problems
    seen = set()
    for name in names:
        why = member_problem(name)
        if why:
            problems.append(f"the manifest lists {name!r}: {why}; refusing the backup")
            continue
        if name in seen:
            problems.append(f"the manifest lists {name} twice; refusing the backup")
        seen.add(name)
        top, rest = name.split("/", 1)
        if top == "data" and component == "grafana" and "/" in rest:
            problems.append(f"the manifest lists {name}: a Grafana backup holds one database file, data/<name>")
        elif top == "export" and (component != "alertmanager" or rest != "silences.json"):
            problems.append(f"the manifest lists {name}: not an export this component's backup holds")
        elif top == "config" and restore_config and not root_problems and config_root_of("/" + rest, roots) is None:
            problems.append(f"the manifest lists {name}: /{rest} is outside the configuration paths of {component} "
                            f"on this host ({', '.join(roots) or 'none'}); refusing to restore it")
    return problems


def tar_kind(member) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return f"of tar type {member.type!r}"


def extract_member(tar, member, target: str, want: dict, name: str, owner: tuple = (-1, -1)) -> str | None:
    """Write one file of the archive to `target` (a new file in a private directory): its mode
    without setuid, setgid or sticky bits, its owner `owner`; why it is not the manifest's file,
    if it is not."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "wb") as out:
        digest, size = copy_hashed(tar.extractfile(member), out)
        out.flush()
        if owner != (-1, -1):
            os.fchown(out.fileno(), *owner)
        os.fchmod(out.fileno(), member.mode & MODE_MASK)
        os.utime(out.fileno(), (member.mtime, member.mtime))
    if size != want["size"] or digest != want["sha256"]:
        return (f"{name}: file {member.name} in the archive does not match the manifest (size {size}, SHA-256 "
                f"{digest[:16]}...; manifest: size {want['size']}, SHA-256 {want['sha256'][:16]}...)")
    return None


def extract_verified(archive: str, manifest: dict, dest: str, data_owner: tuple = (-1, -1), config: bool = True,
                     roots: list[str] | None = None) -> list[str]:
    """Unpack `archive` into `dest` (a new private directory), checking it and every file
    against the manifest.

    One pass over the archive: its SHA-256 is computed while it feeds the decompressor.
    Only regular files and directories of the manifest, under data/, config/ and export/,
    are written; the first member that is anything else (a link, a device, a FIFO, an
    absolute or `..` name, a configuration file outside `roots`) stops the unpacking before
    it is written. Modes lose setuid, setgid and sticky bits; files under data/ belong to
    `data_owner`, configuration files to the owner the manifest names (root when unknown).
    `config` false: configuration files are checked against the archive's checksum but not
    written. Returns the problems (empty: `dest` holds exactly the backup).
    """
    info = manifest["archive"]
    name = info["name"]
    compression = info.get("compression", "gzip")
    if compression not in ARCHIVE_NAMES:
        return [f"{name}: compressed with {compression}, which this version of monstack_backup cannot read "
                f"(it reads {', '.join(ARCHIVE_NAMES)})"]
    expected = {f["path"]: f for f in manifest["content"]["files"]}
    expected_dirs = set(manifest["content"].get("dirs", []))
    problems, seen = [], set()
    refused = False
    with open(archive, "rb") as handle:
        raw = HashingFile(handle)
        try:
            with open_compressed(raw, compression, "r") as stream:
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    for member in tar:
                        why = member_problem(member.name)
                        if why is None and not (member.isfile() or member.isdir()):
                            why = f"it is {tar_kind(member)}; a backup holds only regular files and directories"
                        top = member.name.split("/", 1)[0]
                        if why is None and top == "config" and config and roots is not None and \
                                config_root_of(member.name[len("config"):], roots) is None:
                            why = (f"{member.name[len('config'):]} is outside the component's configuration paths "
                                   f"({', '.join(roots) or 'none'})")
                        if why is None and member.isdir() and member.name not in expected_dirs:
                            why = "a directory the manifest does not list"
                        if why is None and member.isfile() and member.name not in expected:
                            why = "a file the manifest does not list"
                        if why:
                            problems.append(f"{name}: member {member.name!r} refused: {why}; nothing of it was written")
                            refused = True
                            break
                        if top == "config" and not config:
                            seen.add(member.name)
                            continue
                        target = os.path.join(dest, member.name)
                        owner = data_owner if top == "data" else (-1, -1)
                        if member.isdir():
                            os.makedirs(target, mode=0o700, exist_ok=True)
                            if owner != (-1, -1):
                                os.lchown(target, *owner)
                            os.chmod(target, member.mode & MODE_MASK or 0o750)
                            continue
                        want = expected[member.name]
                        if top == "config":
                            owner = ids_of(want.get("owner"), want.get("group"))
                        try:
                            problem = extract_member(tar, member, target, want, name, owner)
                        except FileExistsError:
                            problem = f"{name}: member {member.name} appears twice in the archive; refused"
                            refused = True
                        if problem:
                            problems.append(problem)
                        if refused:
                            break
                        seen.add(member.name)
                if not refused:
                    # The rest of the compressed stream: its own checksum is checked at its end.
                    copy_hashed(stream)
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            problems.append(f"{name}: the archive cannot be read ({exc}): it is damaged")
        if refused:
            return problems
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
    key = hmac_key_check(params.get("hmac_key"))
    spool = params["spool_dir"]
    check_private_dir(spool, "the host's spool directory (backup_host_spool_dir)", create_mode=0o700)
    for stale in os.listdir(spool):  # what an interrupted backup of this component left
        if stale.startswith(component + "-"):
            shutil.rmtree(os.path.join(spool, stale), ignore_errors=True)
    owner = params.get("fetch_owner") or os.environ.get("SUDO_USER") or ""
    work = tempfile.mkdtemp(prefix=f"{component}-{name}-", dir=spool)
    started = time.monotonic()
    cleanups: list = []
    try:
        version = program_version(system, source.get("binary"))
        if component == "prometheus":
            entries, checks = collect_prometheus(system, source, params.get("freeze_timeout") or 30, cleanups)
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
        for step in reversed(cleanups):
            with contextlib.suppress(OSError):
                step()
        shutil.rmtree(work, ignore_errors=True)
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
    sign_manifest(manifest, key)
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest)
    if owner:  # Ansible's fetch reads the archive as the login user (become would slurp it into memory)
        uid, gid = ids_of(owner, None)
        os.chmod(spool, 0o711)  # root's; the login user passes through to its own directory only
        for path in (out_dir, archive, os.path.join(out_dir, "manifest.json")):
            os.chown(path, uid, gid)
    return {"changed": True, "manifest": manifest, "archive": archive, "archive_dir": out_dir}


def spool(_system: System, params: dict) -> dict:
    """The host's spool directory: made root's (0700) when missing; refused when it is a link,
    another user's, or group- or world-writable."""
    made = check_private_dir(params["spool_dir"], "the host's spool directory (backup_host_spool_dir)", 0o700)
    return {"changed": made, "path": params["spool_dir"]}


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
    """The restore's staging directory: root's (0700), beside the data directory in its parent
    (which the service user cannot write), on the same file system for the final renames."""
    data_dir = os.path.normpath(layout(component, source)["dir"])
    return os.path.join(os.path.dirname(data_dir), f"{OWN_PREFIX}restore-{component}-{os.path.basename(data_dir)}")


def check_staging(component: str, source: dict) -> str:
    """Refuse to stage where the service user could reach: the parent of the data directory
    must be root's and not group- or world-writable, the data directory no symbolic link and
    on the same file system. The data directory."""
    data_dir = os.path.normpath(layout(component, source)["dir"])
    parent = os.path.dirname(data_dir)
    check_private_dir(parent, f"the directory above {component}'s data directory (where a restore stages),")
    try:
        info = os.lstat(data_dir)
    except FileNotFoundError:
        return data_dir
    if not stat.S_ISDIR(info.st_mode):
        raise BackupError(f"{component}: the data directory {data_dir} is {kind_of(info.st_mode)}, not a directory: "
                          "refusing to restore into it (give its real path)")
    if info.st_dev != os.lstat(parent).st_dev:
        raise BackupError(f"{component}: the data directory {data_dir} is a mount point: a restore stages in {parent} "
                          "and renames into place, which needs one file system. Mount the volume one level up "
                          f"(e.g. on {parent}) and keep {data_dir} a directory on it")
    return data_dir


def free_bytes(path: str) -> int:
    while not os.path.exists(path):
        path = os.path.dirname(path) or "/"
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def inspect(system: System, params: dict) -> dict:
    component, source, manifest = params["component"], params["source"], params["manifest"]
    problems = manifest_problems(manifest, component, source, bool(params.get("restore_config")),
                                 params.get("hmac_key"))
    if problems:
        return {"changed": False, "problems": problems, "restored_already": False, "version": None,
                "service_installed": False, "service_active": False, "data_dir": layout(component, source)["dir"]}
    if manifest.get("format") != FORMAT:
        problems.append(f"manifest format {manifest.get('format')!r} is not {FORMAT} (written by another version of monstack?)")
    if manifest.get("component") != component:
        problems.append(f"the backup is of {manifest.get('component')}, not {component}")
    try:
        check_staging(component, source)
    except BackupError as exc:
        problems.append(str(exc))
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
    if not params["force"]:
        with contextlib.suppress(OSError, ValueError):
            with os.fdopen(open_regular_at(marker), "r") as handle:  # never through a link
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
    """Unpack and verify the backup in a staging directory of root's, outside every directory
    the service user can write; nothing live is touched. Refuses, before it writes anything,
    a manifest that is not signed with backup_hmac_secret (when set) or lists anything but
    data, exports and configuration under the component's own configuration paths."""
    component, source, manifest = params["component"], params["source"], params["manifest"]
    restore_config = bool(params.get("restore_config"))
    problems = manifest_problems(manifest, component, source, restore_config, params.get("hmac_key"))
    if not problems:
        try:
            check_staging(component, source)
        except BackupError as exc:
            problems.append(str(exc))
    if problems:
        return {"changed": False, "problems": problems}
    staging = staging_path(component, source)
    remove_path(staging)
    os.mkdir(staging, 0o700)
    os.chmod(staging, 0o700)
    race_point("staged-dir", staging=staging, data_dir=layout(component, source)["dir"])
    owner = ids_of(source.get("user"), source.get("group"))
    problems = extract_verified(params["archive"], manifest, staging, data_owner=owner, config=restore_config,
                                roots=config_roots(source)[0] if restore_config else None)
    if problems:
        remove_path(staging)
        return {"changed": False, "problems": problems}
    if component == "grafana":
        names = [f["path"][len("data/"):] for f in manifest["content"]["files"] if f["path"].startswith("data/")]
        db = os.path.join(staging, "data", names[0]) if len(names) == 1 else ""
        if not db:
            remove_path(staging)
            return {"changed": False, "problems": [f"the backup holds {len(names)} database files, not one"]}
        facts = sqlite_facts(db, immutable=True)
        want = manifest.get("checks", {}).get("sqlite", {})
        if facts["integrity"] != "ok":
            problems.append(f"the database of the backup fails SQLite's integrity check: {facts['integrity']}")
        elif want and facts["tables"] != want.get("tables"):
            problems.append("the database of the backup does not hold the row counts of its manifest")
        if problems:
            remove_path(staging)
    return {"changed": True, "problems": problems, "staging": staging}


def remove_path(path: str) -> None:
    """Remove a file, link or directory tree by path, following no symbolic link."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)  # fd-based on Linux: follows no link
        else:
            os.unlink(path)


def own_staging(component: str, source: dict) -> str:
    staging = staging_path(component, source)
    try:
        info = os.lstat(staging)
    except FileNotFoundError:
        raise BackupError(f"{staging}: no staged backup (the stage step did not run or refused the backup); "
                          "nothing was moved") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise BackupError(f"{staging} is not the staging directory of this restore (a link, another owner, or "
                          "open to others): refusing it; nothing was moved")
    return staging


def open_own_dir(name: str, dir_fd: int) -> int:
    """fd of a directory this run made (root's, 0700) in a directory of the service user."""
    fd = open_dir_at(name, dir_fd)
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
        os.close(fd)
        raise BackupError(f"{name} is not the directory this restore made (owner uid {info.st_uid}, mode "
                          f"{stat.S_IMODE(info.st_mode):04o}): refusing it")
    return fd


def config_parent(target: str, roots: list[str], create: bool = True) -> tuple[int, str]:
    """fd of the directory of the configuration file `target` and its name. `target` must be
    under one of `roots`; below it every directory is opened without following a symbolic link
    (made, root's, when missing and `create`)."""
    root = config_root_of(target, roots)
    if root is None:
        raise BackupError(f"{target} is outside the configuration paths ({', '.join(roots) or 'none'}); refusing it")
    if target == root:
        parent, name = os.path.split(root)
        return os.open(parent, O_DIR), name
    try:
        if create and not os.path.lexists(root):
            make_root_dir(root)
        fd = os.open(root, O_DIR)
    except OSError as exc:
        raise BackupError(f"{target}: the configuration path {root} is not a directory or is a symbolic link "
                          f"({exc.strerror}); refusing to write through it") from exc
    rel = os.path.relpath(os.path.dirname(target), root)
    for part in [] if rel == "." else rel.split("/"):
        try:
            try:
                child = open_dir_at(part, fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                child = open_dir_at(part, fd)
        except OSError as exc:
            os.close(fd)
            raise BackupError(f"{target}: {part} on the way is a symbolic link or not a directory ({exc.strerror}); "
                              "refusing to write through it") from exc
        os.close(fd)
        fd = child
    return fd, os.path.basename(target)


def make_root_dir(path: str) -> None:
    """Make the missing directory `path` and its missing parents, root's 0755 (a configuration
    path on a rebuilt host, e.g. /var/lib/monstack/deployments). The deepest existing parent
    must be a real directory of root's that no one else may write to; each new directory is
    made in the fd of the one before, so no symbolic link is followed."""
    missing = []
    parent = path
    while not os.path.lexists(parent):
        parent, name = os.path.split(parent)
        missing.append(name)
    info = os.lstat(parent)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or stat.S_IMODE(info.st_mode) & 0o022:
        raise BackupError(f"{path}: missing, and {parent} is not a directory of root's that only root may write "
                          "to; refusing to make it")
    fd = os.open(parent, O_DIR)
    try:
        for name in reversed(missing):
            os.mkdir(name, 0o755, dir_fd=fd)
            child = open_dir_at(name, fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def write_file_at(source, dir_fd: int, name: str, mode: int, uid: int, gid: int) -> None:
    """Replace `name` in `dir_fd` atomically with the bytes of `source` (a file object): a new
    file (O_EXCL, O_NOFOLLOW), its owner and mode (no setuid, setgid or sticky) set, renamed
    over the old one."""
    tmp = f".tmp-monstack-restore-{name}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600,
                 dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as out:
        copy_hashed(source, out)
        out.flush()
        if (uid, gid) != (-1, -1):
            os.fchown(out.fileno(), uid, gid)
        os.fchmod(out.fileno(), mode & MODE_MASK)
        os.fsync(out.fileno())
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def swap(_system: System, params: dict) -> dict:
    """Move the current data aside and the staged backup into place (the service is stopped).

    Every step in the data directory (the service user's) goes through directory fds opened
    without following a symbolic link: a link planted there is renamed over, never followed.
    """
    component, source, manifest = params["component"], params["source"], params["manifest"]
    restore_config = bool(params.get("restore_config"))
    problems = manifest_problems(manifest, component, source, restore_config, params.get("hmac_key"))
    if problems:
        raise BackupError("; ".join(problems) + "; nothing was moved")
    where = layout(component, source)
    data_dir = check_staging(component, source)
    staging = own_staging(component, source)
    journal_file = os.path.join(staging, "journal.json")
    uid, gid = ids_of(source.get("user"), source.get("group"))
    if not os.path.lexists(data_dir):
        os.mkdir(data_dir, 0o750)
        os.lchown(data_dir, uid, gid)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside_name = f"{OWN_PREFIX}aside-{component}-{stamp}"
    journal = {"aside": os.path.join(data_dir, aside_name), "moved_aside": [], "moved_in": [], "config_aside": [],
               "config_in": [], "reset": []}
    staged = os.path.join(staging, "data")
    staged_names = sorted(os.listdir(staged)) if os.path.isdir(staged) else []
    if not where["whole_dir"] and len(staged_names) != 1:
        raise BackupError(f"the staged backup holds {staged_names}, not one database file; nothing was moved")
    data_fd = os.open(data_dir, O_DIR)
    try:
        os.mkdir(aside_name, 0o700, dir_fd=data_fd)
        write_json_atomic(journal_file, journal)
        aside_fd = open_own_dir(aside_name, data_fd)
        try:
            race_point("aside-made", data_dir=data_dir, aside=journal["aside"])
            if where["whole_dir"]:
                skip = SKIP_ENTRIES[component]
                current = [n for n in os.listdir(data_fd) if not n.startswith(OWN_PREFIX) and n not in skip]
                current += [n for n in ("lock", "queries.active") if component == "prometheus" and
                            n in os.listdir(data_fd)]
            else:
                current = [n for n in where["names"] if n in os.listdir(data_fd)]
            for name in sorted(set(current)):
                os.rename(name, name, src_dir_fd=data_fd, dst_dir_fd=aside_fd)
                journal["moved_aside"].append(name)
                write_json_atomic(journal_file, journal)
            race_point("moved-aside", data_dir=data_dir, names=staged_names)
            if staged_names:
                staged_fd = open_dir_at(staged)
                try:
                    for name in staged_names:
                        # Grafana: the database of the backup becomes this host's database file, whatever its name.
                        target = name if where["whole_dir"] else os.path.basename(source["db_path"])
                        os.rename(name, target, src_dir_fd=staged_fd, dst_dir_fd=data_fd)
                        journal["moved_in"].append(target)
                        write_json_atomic(journal_file, journal)
                finally:
                    os.close(staged_fd)
            # State that describes the data being replaced (Grafana: which admin password was applied
            # to the database): moved aside too, so the next site.yml applies the inventory's again.
            for path in source.get("reset_files") or []:
                if os.path.lexists(path):
                    reset_fd = makedirs_at(aside_fd, "reset")
                    try:
                        os.rename(path, os.path.basename(path), dst_dir_fd=reset_fd)
                    finally:
                        os.close(reset_fd)
                    journal["reset"].append(path)
                    write_json_atomic(journal_file, journal)
            if restore_config:
                restore_config_files(staging, config_roots(source)[0], aside_fd, journal, journal_file)
        finally:
            os.close(aside_fd)
        os.fsync(data_fd)
    finally:
        os.close(data_fd)
    return {"changed": True, "aside": journal["aside"], "moved_aside": journal["moved_aside"],
            "moved_in": journal["moved_in"], "config_restored": journal["config_aside"] + journal["config_in"]}


def restore_config_files(staging: str, roots: list[str], aside_fd: int, journal: dict, journal_file: str) -> None:
    """The staged configuration files into place, each under the component's own configuration
    paths; the files they replace are kept in the aside directory."""
    config_root = os.path.join(staging, "config")
    for root, _dirs, files in os.walk(config_root):
        for file_name in sorted(files):
            staged_file = os.path.join(root, file_name)
            target = "/" + os.path.relpath(staged_file, config_root)
            parent_fd, name = config_parent(target, roots)
            try:
                try:
                    current = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                except FileNotFoundError:
                    current = None
                if current is not None and not stat.S_ISREG(current.st_mode):
                    raise BackupError(f"{target} is {kind_of(current.st_mode)}: refusing to replace it with the "
                                      "backup's file")
                if current is not None:
                    keep_fd = makedirs_at(aside_fd, "config" + os.path.dirname(target))
                    try:
                        with os.fdopen(open_regular_at(name, parent_fd), "rb") as old:
                            write_file_at(old, keep_fd, name, current.st_mode, current.st_uid, current.st_gid)
                    finally:
                        os.close(keep_fd)
                    journal["config_aside"].append(target)
                else:
                    journal["config_in"].append(target)
                write_json_atomic(journal_file, journal)
                info = os.lstat(staged_file)
                with open(staged_file, "rb") as new:
                    write_file_at(new, parent_fd, name, info.st_mode, info.st_uid, info.st_gid)
            finally:
                os.close(parent_fd)


def rollback(_system: System, params: dict) -> dict:
    """Undo swap: the restored data out, the data moved aside back in (the service is stopped)."""
    component, source = params["component"], params["source"]
    where = layout(component, source)
    staging = staging_path(component, source)
    journal_file = os.path.join(staging, "journal.json")
    if not os.path.exists(journal_file):
        return {"changed": False, "msg": "nothing to roll back"}
    own_staging(component, source)
    with open(journal_file) as handle:
        journal = json.load(handle)
    data_dir = os.path.normpath(where["dir"])
    aside_name = os.path.basename(journal["aside"])
    failed = os.path.join(staging, "failed")
    os.makedirs(failed, exist_ok=True)
    data_fd = os.open(data_dir, O_DIR)
    failed_fd = open_dir_at(failed)
    try:
        aside_fd = open_own_dir(aside_name, data_fd)
        try:
            for name in journal["moved_in"]:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(name, name, src_dir_fd=data_fd, dst_dir_fd=failed_fd)
            # What the program wrote since (a lock, a WAL of its own) goes too; then the old data back.
            if where["whole_dir"]:
                kept = SKIP_ENTRIES[component] - {"lock", "queries.active"}
                for name in os.listdir(data_fd):
                    if not name.startswith(OWN_PREFIX) and name not in kept:
                        os.rename(name, name, src_dir_fd=data_fd, dst_dir_fd=failed_fd)
            for name in journal["moved_aside"]:
                os.rename(name, name, src_dir_fd=aside_fd, dst_dir_fd=data_fd)
            for path in journal.get("reset", []):
                reset_fd = open_dir_at("reset", aside_fd)
                try:
                    os.rename(os.path.basename(path), path, src_dir_fd=reset_fd)
                finally:
                    os.close(reset_fd)
            roots = config_roots(source)[0]
            for target in journal["config_aside"]:
                parent_fd, name = config_parent(target, roots, create=False)
                try:
                    keep = open_beneath(aside_fd, "config" + target)
                    info = os.fstat(keep)
                    with os.fdopen(keep, "rb") as old:
                        write_file_at(old, parent_fd, name, info.st_mode, info.st_uid, info.st_gid)
                finally:
                    os.close(parent_fd)
            for target in journal["config_in"]:
                with contextlib.suppress(FileNotFoundError, BackupError):
                    parent_fd, name = config_parent(target, roots, create=False)
                    try:
                        os.unlink(name, dir_fd=parent_fd)
                    finally:
                        os.close(parent_fd)
        finally:
            os.close(aside_fd)
        rmtree_at(data_fd, aside_name)
        os.fsync(data_fd)
    finally:
        os.close(failed_fd)
        os.close(data_fd)
    shutil.rmtree(staging, ignore_errors=True)
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
    if aside:
        data_fd = os.open(os.path.normpath(layout(component, source)["dir"]), O_DIR)
        try:
            name = os.path.basename(aside)
            empty = True
            with contextlib.suppress(OSError, BackupError):
                fd = open_own_dir(name, data_fd)
                empty = not os.listdir(fd)
                os.close(fd)
            if not params["keep_aside"] or empty:
                with contextlib.suppress(OSError):
                    rmtree_at(data_fd, name)
                aside = None
        finally:
            os.close(data_fd)
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
    """Find a backup in the store and check its manifest's HMAC (backup_hmac_secret) and its
    archive against the manifest (read only)."""
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
    problem = signature_problem(manifest, params.get("hmac_key"), manifest_file)
    if problem:
        return {"changed": False, "problems": [problem]}
    problems = []
    if manifest.get("host") != params["host"] or manifest.get("component") != params["component"]:
        problems.append(f"{manifest_file}: it is the manifest of {manifest.get('component')} of {manifest.get('host')}")
    if os.path.basename(archive) not in ARCHIVE_NAMES.values():
        problems.append(f"{manifest_file}: names the archive {manifest['archive']['name']!r}; refusing it")
    elif not os.path.isfile(archive):
        problems.append(f"{archive}: missing")
    elif params.get("verify_checksum", True):
        digest, size = sha256_file(archive)
        if size != want_size or digest != want_sha:
            problems.append(f"{archive}: SHA-256 {digest} (size {size}) does not match the manifest ({want_sha}, size "
                            f"{want_size}): the file is damaged or was changed; refusing to restore it")
    return {"changed": False, "problems": problems, "manifest": manifest, "archive": archive, "name": name,
            "directory": directory}


def keep_check(keep, variable: str = "backup_keep") -> int:
    """The number of backups to keep: at least 1 (0 would delete every backup, the new one too)."""
    try:
        value = int(keep)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or isinstance(keep, bool):
        raise BackupError(f"{variable}: {keep!r} is not allowed: keep at least 1 backup (0 would delete every backup, "
                          "the new one too); nothing was filed or deleted")
    return value


def store_commit(_system: System, params: dict) -> dict:
    """File a fetched backup: check the archive, write its manifest, name the directory, prune
    (never the new backup)."""
    keep = keep_check(params["keep"])
    manifest = params["manifest"]
    problem = signature_problem(manifest, params.get("hmac_key"), "the manifest of the new backup")
    if problem:
        raise BackupError(problem.replace("nothing was touched", "nothing was filed"))
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
    removed = prune(base, keep, params["name"])
    for entry in os.listdir(base):  # what crashed runs left
        if entry.endswith(".partial") and entry != params["name"] + ".partial":
            shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
    return {"changed": True, "directory": final, "removed": removed, "kept": backup_dirs(base)}


def prune(base: str, keep: int, new: str) -> list[str]:
    """Delete the oldest backups of `base` beyond `keep` (at least 1), never the new one."""
    keep = keep_check(keep)
    names = [n for n in backup_dirs(base) if n != new]
    removed = []
    for old in names[:max(0, len(names) - (keep - 1))]:
        shutil.rmtree(os.path.join(base, old))
        removed.append(os.path.join(base, old))
    return removed


# --------------------------------------------------------------------------
# the actions, by name (the module's `action`; `metric` is write_metric)

ACTIONS = {"create": create, "inspect": inspect, "stage": stage, "swap": swap, "check": check,
           "rollback": rollback, "commit": commit, "cleanup": cleanup, "store_verify": store_verify,
           "store_commit": store_commit, "spool": spool}
