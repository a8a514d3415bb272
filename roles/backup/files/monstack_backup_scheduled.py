"""Scheduled local backups of the components of this host (monstack backup role).

  python3 /usr/local/lib/monstack/monstack_backup_scheduled.py /etc/monstack/backup.json

monstack-backup.service runs it, started by monstack-backup.timer. It backs up every
component of the configuration into <dir>/<component>/<YYYYMMDDTHHMMSSZ>/ (manifest.json
and the archive, as in the store of playbooks/backup.yml; the manifest signed with
<hmac_key> when it is set), keeps the newest <keep> (at least 1) of each, and writes the time of the last good backup for node_exporter's textfile
collector (monstack_backup_scheduled.prom). One component's failure does not stop the
others; the exit status is 1 when any failed.

The backups themselves are the engine's, monstack_backup.py beside this file (the
collection's plugins/module_utils/monstack_backup.py, which the module
monstack.stack.backup runs through Ansible). Here there is no Ansible: this
file gives the engine programs through subprocess and HTTP through urllib. Standard
library only (python3 of Debian 11-13).
"""
from __future__ import annotations

import json
import os
import shutil
import ssl
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import monstack_backup as engine  # noqa: E402  pylint: disable=wrong-import-position


def request(url: str, method: str, headers: dict, data: bytes | None, timeout: int) -> tuple[str, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the host's own service, over loopback
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    with opener.open(urllib.request.Request(url, data=data, headers=headers, method=method), timeout=timeout) as answer:
        return answer.headers.get("Content-Type", ""), answer.read()


def back_up(system: engine.System, config: dict, item: dict) -> str:
    """One component into the store; the line that reports it."""
    component, store = item["component"], config["dir"]
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    spool = os.path.join(store, ".spool")
    started = time.monotonic()
    try:
        result = engine.create(system, {
            "component": component, "source": item["source"], "name": name, "host": config["host"],
            "spool_dir": spool, "compression": config.get("compression", "gzip"),
            "compression_level": config.get("compression_level", 6), "fetch_owner": "",
            "freeze_timeout": config.get("freeze_timeout", 30), "hmac_key": config.get("hmac_key", "")})
        base = os.path.join(store, component)
        os.makedirs(base, mode=0o700, exist_ok=True)
        os.rename(result["archive_dir"], os.path.join(base, name))
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    engine.prune(base, config.get("keep", 7), name)
    seconds = round(time.monotonic() - started, 3)
    size = result["manifest"]["archive"]["size"]
    if config.get("textfile_dir") and os.path.isdir(config["textfile_dir"]):
        engine.write_metric(config["textfile_dir"], "scheduled", component, True, size, seconds)
    return f"{component}: {os.path.join(base, name)} {size} bytes in {seconds:.1f}s (kept {len(engine.backup_dirs(base))})"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: python3 {argv[0]} /etc/monstack/backup.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        config = json.load(handle)
    try:  # before any backup: a retention of 0 would delete them all, the new one too
        engine.keep_check(config.get("keep", 7), "keep (backup_schedule_keep)")
        engine.hmac_key_check(config.get("hmac_key", ""))
        engine.check_private_dir(config["dir"], "the backup directory (backup_schedule_dir)", create_mode=0o700)
    except engine.BackupError as exc:
        print(f"{argv[1]}: {exc}", file=sys.stderr)
        return 2
    system = engine.System(engine.run_program, request)
    failures = 0
    for item in config["components"]:
        try:
            print(back_up(system, config, item))
        except Exception as exc:  # pylint: disable=broad-exception-caught  # one failure must not stop the others
            failures += 1
            print(f"{item['component']}: backup FAILED: {exc}", file=sys.stderr)
            if config.get("textfile_dir") and os.path.isdir(config["textfile_dir"]):
                engine.write_metric(config["textfile_dir"], "scheduled", item["component"], False)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
