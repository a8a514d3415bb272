#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Back up and restore the data of Prometheus, Alertmanager and Grafana (monstack)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup
short_description: Back up and restore the data of Prometheus, Alertmanager and Grafana
description:
  - The host side of the playbooks C(monstack.stack.backup) and C(monstack.stack.restore),
    one O(action) per call.
  - V(create) takes a consistent copy of a component's data while it runs and writes it as one
    compressed archive with a manifest (host, component, program version, every file with its
    size and SHA-256, the archive's size and SHA-256, and what to check after a restore).
    Prometheus is paused (SIGSTOP, every thread stopped) for the time it takes to hard-link
    its data directory, which gives the same crash-consistent image as a file system
    snapshot, without the admin API. Alertmanager's silences and notification log files
    (which Alertmanager replaces atomically) are copied and its silences exported over its
    API; Grafana's SQLite database is copied with SQLite's online backup API.
  - The archive is compressed in the module's own process, with gzip (zlib) or xz (lzma) of
    Python's standard library, and streamed to disk; nothing is held whole in memory.
  - V(inspect) and V(stage) check a backup against the host before anything is touched
    (program version, free space, every file's checksum, unpacked into a staging directory
    beside the data); V(swap) moves the current data aside and the backup in; V(check) checks
    the restored data through the running program; V(rollback) puts the old data back and
    V(commit) records the restore, so the same backup is not restored twice.
  - V(store_verify) and V(store_commit) run where the backups are stored (the controller or a
    backup host). They verify an archive against its manifest, and file a fetched backup and
    apply the retention. V(metric) writes the time of the last good backup for
    node_exporter's textfile collector; V(cleanup) removes what a refused or failed run left;
    V(spool) makes the host's spool directory (root's, 0700), or refuses one that is a symbolic
    link, another user's, or group- or world-writable.
  - Against a hostile service user and a hostile archive, no symbolic link in a data directory
    is followed (the backup leaves links, FIFOs, sockets and devices out; every file is opened
    with C(O_NOFOLLOW) through directory fds); a restore stages in a directory of root's beside
    the data directory (in its parent), moves the data in by renames through directory fds,
    sets every owner explicitly and masks modes to C(0o777); it refuses an archive member that
    is not a regular file or directory of the manifest, a name with C(..) or an absolute path,
    and a configuration file outside the component's own C(config_paths).
  - With O(hmac_key), V(create) signs the manifest (HMAC-SHA256), and every restore action
    and V(store_verify), V(store_commit) refuse a manifest without a valid signature before
    they touch anything.
  - The scheduled local backups (role C(monstack.stack.backup)) run the same code on the
    hosts without Ansible.
version_added: "1.1.0"
author: monstack (!UNKNOWN)
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [check, cleanup, commit, create, inspect, metric, rollback, spool, stage, store_commit, store_verify, swap]
  component:
    description: The component.
    type: str
    choices: [prometheus, alertmanager, grafana]
  host:
    description: Inventory name of the host the backup is of (written into the manifest).
    type: str
  name:
    description:
      - Name of the backup, its UTC time C(YYYYMMDDTHHMMSSZ); V(latest) with V(store_verify).
    type: str
  source:
    description:
      - What the component keeps where, from the component role's C(backup_source) entry point
        (C(data_dir), C(db_path), C(service), C(user), C(group), C(binary), C(config_paths),
        C(reset_files), C(url), C(ready_url), C(url_user), C(url_password)).
      - The value of C(url_password) is never logged.
    type: dict
    default: {}
  spool_dir:
    description:
      - Directory on the host for archives on their way to or from the store (V(create), V(spool)).
        It must be root's and not group- or world-writable, and not a symbolic link.
    type: path
  compression:
    description:
      - Compression of a new archive (V(create)). V(gzip) is fast; V(xz) makes smaller
        archives for several times the CPU time and about 100 MiB of memory at level 6.
    type: str
    default: gzip
    choices: [gzip, xz]
  compression_level:
    description: The compression level, 1-9 for V(gzip), 0-9 for V(xz).
    type: int
    default: 6
  fetch_owner:
    description:
      - User who must be able to read the archive (Ansible's fetch runs without become).
        Empty, the user of sudo (C(SUDO_USER)).
    type: str
    default: ""
  freeze_timeout:
    description: Longest pause of Prometheus (seconds); a watchdog resumes it after that, whatever happens.
    type: int
    default: 30
  manifest:
    description: The backup's manifest (restore actions, V(metric)).
    type: dict
  archive:
    description: The backup's archive on the host (V(stage), V(cleanup)).
    type: path
  allow_older:
    description: Restore onto an older program version than the one that wrote the backup.
    type: bool
    default: false
  force:
    description: Restore even when this backup is recorded as restored already.
    type: bool
    default: false
  restore_config:
    description:
      - Also put the configuration files of the backup back (V(inspect), V(stage), V(swap)), only
        those under the component's own C(config_paths); V(false) does not unpack them.
    type: bool
    default: false
  keep_aside:
    description: Keep the data moved aside by a successful restore (deleted otherwise).
    type: bool
    default: true
  without_service:
    description: Restore files onto a host where the component's program or service is not installed.
    type: bool
    default: false
  store_dir:
    description: The backup store (V(store_verify), V(store_commit)).
    type: path
  keep:
    description:
      - Backups to keep per host and component (V(store_commit)), the new one included; at least 1.
    type: int
    default: 7
  hmac_key:
    description:
      - Secret of the manifest's HMAC-SHA256 (C(backup_hmac_secret), from the vault), at least 16
        characters. V(create) signs the manifest with it; V(store_verify), V(store_commit),
        V(inspect), V(stage) and V(swap) refuse a manifest that is not signed with it. Empty, no
        signature is made or required.
      - Never logged.
    type: str
    default: ""
  textfile_dir:
    description: node_exporter's textfile directory (V(metric)); nothing is written when it does not exist.
    type: path
  metric_kind:
    description: Value of the C(kind) label of the metrics (V(metric)).
    type: str
    default: playbook
    choices: [playbook, scheduled]
  success:
    description: Whether the backup succeeded (V(metric)).
    type: bool
    default: true
  verify_checksum:
    description:
      - V(store_verify) also checks the archive's size and SHA-256; V(false) only finds the
        backup and reads its manifest.
    type: bool
    default: true
notes:
  - Backups hold secrets, such as C(grafana.ini) and the Grafana database. The store is made 0700
    and every file in it 0600.
attributes:
  check_mode:
    description:
      - Does not run in check mode; the roles run its read-only actions (V(inspect),
        V(store_verify)) with C(check_mode=false).
    support: none
  diff_mode:
    description: Returns no diff.
    support: none
"""

EXAMPLES = r"""
- name: Back up Prometheus into the host's spool directory
  monstack.stack.backup:
    action: create
    component: prometheus
    host: "{{ inventory_hostname }}"
    name: 20261130T120000Z
    source: "{{ prometheus_backup_source }}"
    spool_dir: /var/tmp/monstack-backup
    compression: xz
  register: backup_created

- name: Find the newest backup of mon1's Alertmanager in the store and verify its archive
  monstack.stack.backup:
    action: store_verify
    store_dir: /srv/monstack-backups
    host: mon1
    component: alertmanager
    name: latest
  delegate_to: localhost
  check_mode: false
  register: backup_found
"""

RETURN = r"""
manifest:
  description: The manifest of the backup.
  returned: when O(action) is V(create) or V(store_verify) and the backup was found
  type: dict
  sample:
    format: 1
    name: 20261130T120000Z
    host: mon1
    component: prometheus
    program: {name: prometheus, version: 3.5.3}
    archive: {name: data.tar.gz, size: 17700000, sha256: 4f1c..., compression: gzip}
archive:
  description: Path of the archive.
  returned: when O(action) is V(create) or V(store_verify) and the backup was found
  type: str
  sample: /var/tmp/monstack-backup/prometheus-20261130T120000Z/data.tar.gz
problems:
  description: Why a backup cannot be restored here; empty when it can.
  returned: when O(action) is V(inspect), V(stage), V(check) or V(store_verify), and on failure
  type: list
  elements: str
restored_already:
  description: The data directory holds this backup, restored earlier.
  returned: when O(action) is V(inspect)
  type: bool
version:
  description: The version of the program on this host (None when it is not installed).
  returned: when O(action) is V(inspect)
  type: str
service_installed:
  description: Whether the component's systemd service is installed on this host.
  returned: when O(action) is V(inspect)
  type: bool
service_active:
  description: Whether the component's systemd service runs.
  returned: when O(action) is V(inspect)
  type: bool
checked:
  description: What was checked of the restored data, and the result.
  returned: when O(action) is V(check)
  type: list
  elements: str
skipped:
  description: Checks that could not run, each with its reason.
  returned: when O(action) is V(check)
  type: list
  elements: str
aside:
  description: Where the data that a restore replaced was moved (V(swap)), or is kept (V(commit)).
  returned: when O(action) is V(swap) or V(commit)
  type: str
restored_previous:
  description: The names put back in the data directory.
  returned: when O(action) is V(rollback)
  type: list
  elements: str
directory:
  description: The backup's directory in the store.
  returned: when O(action) is V(store_commit) or V(store_verify)
  type: str
name:
  description: The name of the backup found (V(latest) resolved).
  returned: when O(action) is V(store_verify) and the backup was found
  type: str
kept:
  description: The names of the backups of this host and component kept in the store, oldest first.
  returned: when O(action) is V(store_commit)
  type: list
  elements: str
removed:
  description: What the retention (V(store_commit)) or V(cleanup) removed.
  returned: when O(action) is V(store_commit) or V(cleanup)
  type: list
  elements: str
path:
  description: The textfile written.
  returned: when O(action) is V(metric) and the textfile directory exists, or V(spool)
  type: str
"""

import contextlib
import os
import sqlite3

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlConnectionError, open_url

from ansible_collections.monstack.stack.plugins.module_utils.monstack_backup import (
    ACTIONS, BackupError, System, run_program, write_metric)


def module_system() -> System:
    """Programs through run_program (it has a timeout), HTTP through open_url (the host's own services)."""

    def request(url, method, headers, data, timeout):
        try:
            answer = open_url(url, data=data, headers=headers, method=method, timeout=timeout, validate_certs=False,
                              use_proxy=False, use_netrc=False, follow_redirects="safe")
        except UrlConnectionError as exc:  # not an OSError: the engine expects one
            raise OSError(f"{url}: {exc}") from exc
        with contextlib.closing(answer):
            return answer.headers.get("Content-Type", ""), answer.read()

    return System(run_program, request)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", required=True, choices=sorted(list(ACTIONS) + ["metric"])),
            component=dict(type="str", choices=["prometheus", "alertmanager", "grafana"]),
            host=dict(type="str"),
            name=dict(type="str"),
            source=dict(type="dict", default={}),
            spool_dir=dict(type="path"),
            compression=dict(type="str", default="gzip", choices=["gzip", "xz"]),
            compression_level=dict(type="int", default=6),
            fetch_owner=dict(type="str", default=""),
            freeze_timeout=dict(type="int", default=30),
            manifest=dict(type="dict"),
            archive=dict(type="path"),
            allow_older=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            restore_config=dict(type="bool", default=False),
            keep_aside=dict(type="bool", default=True),
            without_service=dict(type="bool", default=False),
            store_dir=dict(type="path"),
            keep=dict(type="int", default=7),
            textfile_dir=dict(type="path"),
            metric_kind=dict(type="str", default="playbook", choices=["playbook", "scheduled"]),
            success=dict(type="bool", default=True),
            verify_checksum=dict(type="bool", default=True),
            hmac_key=dict(type="str", default="", no_log=True),
        ),
        supports_check_mode=False,
    )
    params = module.params
    if params["source"].get("url_password"):
        module.no_log_values.add(params["source"]["url_password"])
    try:
        if params["action"] == "metric":
            if not params["textfile_dir"] or not os.path.isdir(params["textfile_dir"]):
                module.exit_json(changed=False, skipped_reason=f"no textfile directory {params['textfile_dir']}")
            manifest = params["manifest"] or {}
            path = write_metric(params["textfile_dir"], params["metric_kind"], params["component"], params["success"],
                                manifest.get("archive", {}).get("size", 0), manifest.get("duration_seconds", 0.0))
            module.exit_json(changed=True, path=path)
        result = ACTIONS[params["action"]](module_system(), params)
    except BackupError as exc:
        module.fail_json(msg=str(exc), problems=[str(exc)])
    except (OSError, sqlite3.Error) as exc:
        module.fail_json(msg=f"{params['action']} of {params.get('component')}: {exc}", problems=[str(exc)])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
