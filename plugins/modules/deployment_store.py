#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""The deployment record store of a Prometheus host and its lock (monstack)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: deployment_store
short_description: Merge deployment records into a Prometheus host's record store, under a lock
description:
  - Keeps, on each Prometheus host, the latest deployment record of every (environment, service) with
    the run that owns it, in one JSON file (O(path)/store.json). The deployment file_sd files and
    textfiles are derived from it, so runs of C(playbooks/deployments.yml) in different modes and from
    different pipelines add up instead of undoing each other.
  - With O(state=present) it takes the host's deployment lock (O(path)/lock.json; waiting at most
    O(lock_timeout) seconds for another run to release it), merges O(entries) into the store and
    returns what to write and remove in O(file_sd_dir) and O(textfile_dir) so that they match the
    store. The lock stays taken (for at most O(lock_lease) seconds) until a call with
    O(state=released) and the same O(lock_token), so that the writes and the post-deploy gate of one
    run are not interleaved with another run's.
  - 'Merging: a given entry replaces the stored one of the same file name unless the stored record was
    deployed later: then, with O(on_superseded=fail) (the default), the module fails naming the entry, its
    record file, service, environment and the store''s later C(deployed_at), and writes nothing. A replaced or new entry
    is owned by O(owner); an identical one keeps its owner. An entry with status C(removed) leaves a
    tombstone, so that an older record cannot bring the service back.'
  - 'Owners: a new or different entry for a service that another owner holds is refused (the module fails
    naming service, environment and owner, and writes nothing) unless O(takeover) lists it. A tombstone
    belongs to no one: any owner may register the service again with a later record.'
  - 'Pruning (O(prune), a directory run): entries owned by O(owner) that are not in O(entries) are
    removed. Entries of other owners (for example single-record registrations) are never pruned. Files in
    the directories that the store does not know (written before the store existed) count as
    O(untracked_owner)''s.'
  - 'Copying (O(copied), C(playbooks/deployment_stores.yml)): entries of other Prometheus hosts'' stores, checked on
    the controller, each applied when this store has no entry of that name or an older one (by C(deployed_at)),
    with its owner; nothing else of the store changes. With O(state=read) the module only returns this host''s
    store file as text (at most O(max_bytes)), for the controller to check and copy.'
  - With O(shards), the textfile C(deployment_store.prom) in O(textfile_dir) says how many deployment targets of
    the store each shard scrapes (the metric C(deployment_store_targets), of the alert DeploymentTargetsOrphaned).
  - Without O(write) it writes nothing itself but the store and the lock; the caller writes the returned
    files (for example with M(monstack.stack.file_set)). With O(write) it also makes the three directories match
    the store in the same call (each file written atomically, stale ones removed), so that a run costs one
    round trip per host whatever the number of services. With O(release) the lock is given back before
    the module returns (also when it fails). In check mode nothing is written and no lock is taken.
version_added: "1.0.0"
author: monstack (!UNKNOWN)
options:
  path:
    description: Directory of the store and the lock (created, mode 0750, if missing).
    type: path
    required: true
  state:
    description:
      - C(present) takes the lock and merges; C(released) gives the lock back; C(read) returns the store file's
        text (RV(store)) and changes nothing.
    type: str
    choices: [present, released, read]
    default: present
  entries:
    description:
      - File name (C(<environment>--<service>.json)) to entry, as P(monstack.stack.deployment_store_entries#filter)
        (or the C(entries) of P(monstack.stack.deployment_plan#filter)) returns them, as data, with C(epoch_us),
        C(status), C(record), C(source) (the record file, for messages) and, for a deployed one, C(group), its
        target group. The module renders the file_sd file and the textfile of each entry itself (the record
        library in plugins/module_utils, as the filters do).
    type: dict
    default: {}
  copied:
    description:
      - File name to entry as another Prometheus host's store holds it (with C(owner) and C(registered_by)), checked
        on the controller (the deployment_store_copy filter). Applied where this store has no entry of that name
        or an older one; no lock holder's owner or prune applies to them. Returned in RV(copied).
    type: dict
    default: {}
  max_bytes:
    description: With O(state=read), the largest store file returned; a larger one fails, naming it.
    type: int
    default: 67108864
  shards:
    description:
      - The sharding of the Prometheus hosts, C(count) (0 without sharding), this host's C(shard) (-1 without) and
        C(source_labels) (prometheus_shard_source_labels). With O(write) and a textfile directory, the textfile
        C(deployment_store.prom) counts the store's deployment targets per shard.
    type: dict
  owner:
    description:
      - Who owns the entries this run writes (the run's C(deployment_owner); by default C(directory) for a
        directory run and C(single-record) for one record). Letters, digits, and the characters C(._:/@+-).
    type: str
    default: single-record
  takeover:
    description:
      - Services (C(<environment>--<service>), with or without C(.json)) whose entries this run may take from
        another owner. Each one taken over is returned in RV(taken_over) and warned about.
    type: list
    elements: str
    default: []
  on_superseded:
    description:
      - C(fail) (default) fails the module when a given entry is older than the stored one, before anything
        is written; C(report) only returns it in RV(superseded) and applies the others.
    type: str
    choices: [fail, report]
    default: fail
  prune:
    description: Remove the entries owned by O(owner) that are not in O(entries) (a directory run).
    type: bool
    default: false
  untracked_owner:
    description: The owner that files unknown to the store belong to.
    type: str
    default: directory
  file_sd_dir:
    description:
      - The directory of the deployment file_sd files (C(<environment>--<service>.json)); required with O(state=present).
      - With O(state=read) only RV(ready) says whether it exists.
    type: path
  textfile_dir:
    description: node_exporter's textfile directory (C(deployment--<environment>--<service>.prom)); ignored when absent.
    type: path
  write:
    description:
      - Also write the files, the file_sd files in O(file_sd_dir) (owner root, group O(file_sd_group),
        mode 0640), the textfiles in O(textfile_dir) (root, 0644) and the health-check targets O(health)
        in O(health_dir) (created root:O(file_sd_group) 0750; files 0640).
      - The health-check file of a given entry that the store applied is written; the store's file_sd
        removals and the applied entries without a health check are removed there.
    type: bool
    default: false
  file_sd_group:
    description: Group of the files written with O(write) (the Prometheus user's group, so it can read them).
    type: str
    default: prometheus
  health_dir:
    description: Directory of the health-check probe targets (file_sd files of the blackbox exporter job); with O(write).
    type: path
  health:
    description:
      - File name to the target groups of this run's health-check targets, as
        P(monstack.stack.deployment_health_files#filter) (or the C(health) of P(monstack.stack.deployment_plan#filter))
        returns them; written as JSON.
    type: dict
    default: {}
  rules_dir:
    description:
      - With O(write), the directory of the SLO rule files (C(<environment>--<service>.yml), one per deployed
        service whose record has C(slos); created root:O(file_sd_group) 0750). They are rendered from the store
        (plugins/module_utils/deployment_slo.py) with O(slo_contract), checked together by O(promtool) before
        any replaces the old one, and files of services without SLOs (removed, or their SLOs removed) are
        removed. When a file changed, Prometheus is reloaded (O(reload)).
      - A record of this run whose SLOs this host cannot compute (a latency threshold that is not a bucket
        boundary, a window longer than the retention) fails the module before anything is written; a stored
        record of another run that no longer fits (the contract changed) keeps no rules, with a warning.
    type: path
  slo_contract:
    description:
      - What the rules are computed from, the prometheus role's metric contract and retention
        (C(requests_total), C(request_duration_seconds), C(status_label), C(buckets), C(retention)).
    type: dict
    default: {}
  promtool:
    description: The promtool that checks the rule files (C(promtool check rules)) before they replace the old ones.
    type: path
    default: promtool
  reload:
    description:
      - How to reload Prometheus after a rule change and read its answer (C(service), the systemd unit;
        C(metrics_url), where its C(prometheus_config_last_reload_successful) is read; C(api_url), where the
        loaded rule groups are read; C(user), C(password), C(validate_certs), C(ca_path)). A reload that
        Prometheus does not confirm, or rule groups it did not load, fail the module. Without C(service),
        no reload (the caller reloads).
    type: dict
    default: {}
  release:
    description:
      - When to give the lock back before returning (with O(state=present)); RV(released) says whether it was.
      - C(never) keeps it for a later call with O(state=released); C(always) suits a run with no post-deploy
        gate; C(when_nothing_written) keeps it only when a file_sd file was written (there is something to
        wait for).
    type: str
    choices: [never, always, when_nothing_written]
    default: never
  return_records:
    description: Return RV(records), every deployed record of the store (large with many services).
    type: bool
    default: false
  lock_token:
    description: Identifies this run's lock; the same value releases it. Required with O(state=present) and
      O(state=released).
    type: str
  lock_holder:
    description: Who holds the lock, for the message of a run that waits (user, controller, pipeline).
    type: str
    default: unknown
  lock_timeout:
    description: Seconds to wait for another run's lock.
    type: int
    default: 300
  lock_lease:
    description:
      - Seconds after which a lock that was not released counts as abandoned (another run then takes it over,
        with a warning). Must be longer than O(lock_timeout), and longer than the longest a live run keeps
        the lock (C(playbooks/deployments.yml) derives it).
    type: int
    default: 900
notes:
  - Supports check mode (no lock, nothing written; the returned changes are those a real run would make).
  - With O(write), diff mode shows every file written or removed.
  - No symbolic link is followed and no FIFO, socket or device is opened (C(lstat), C(O_NOFOLLOW),
    C(O_NONBLOCK)); a file to compare or write that is not a regular file is an error naming it (a
    stale one is removed itself). O(path), O(file_sd_dir), O(health_dir) and O(textfile_dir) are refused
    when a user other than root (or the module's user) could redirect them (a symbolic link they own, or
    a directory on the way they may write to); O(path) itself must not be writable by others.
attributes:
  check_mode:
    description: Can run in check mode and return the changed status it predicts without changing the host.
    support: full
  diff_mode:
    description: With O(write), shows every file written or removed.
    support: partial
    details: With O(write) only.
"""

EXAMPLES = r"""
- name: Merge this run's records, keep the lock
  monstack.stack.deployment_store:
    path: /var/lib/monstack/deployments
    entries: "{{ records | monstack.stack.deployment_store_entries }}"
    owner: records-repo
    prune: true
    file_sd_dir: /etc/prometheus/file_sd/deployments
    textfile_dir: /var/lib/node_exporter/textfile
    lock_token: "{{ token }}"
    lock_holder: "ci@runner-3 (pipeline 4242)"
  register: store

- name: Write the file_sd files the store asks for
  monstack.stack.file_set:
    path: /etc/prometheus/file_sd/deployments
    files: "{{ store.file_sd.write }}"
    remove: "{{ store.file_sd.remove }}"

- name: Or all in one round trip (no gate between the write and the release)
  monstack.stack.deployment_store:
    path: /var/lib/monstack/deployments
    entries: "{{ records | deployment_store_entries }}"
    file_sd_dir: /etc/prometheus/file_sd/deployments
    textfile_dir: /var/lib/node_exporter/textfile
    write: true
    release: always
    lock_token: "{{ token }}"

- name: Give the lock back
  monstack.stack.deployment_store:
    path: /var/lib/monstack/deployments
    state: released
    file_sd_dir: /etc/prometheus/file_sd/deployments
    lock_token: "{{ token }}"
"""

RETURN = r"""
changed:
  description: Whether the store changed (with O(write), or a file).
  returned: always
  type: bool
file_sd:
  description:
    - C(write), file name to content, and C(remove), file names, that make O(file_sd_dir) match the store.
    - With O(write), C(write) lists the names of the files whose content differed (not their content).
  returned: state=present
  type: dict
written:
  description: Names of the file_sd files written (in check mode, that would be).
  returned: state=present and write
  type: list
  elements: str
files:
  description: What the write did per directory (C(changed_sets), C(written) and C(removed) paths).
  returned: state=present and write
  type: dict
textfile:
  description: The same for O(textfile_dir); null when that directory does not exist.
  returned: state=present
  type: dict
store:
  description: The store file's text (empty when there is none).
  returned: state=read
  type: str
ready:
  description: Whether O(file_sd_dir) exists (Prometheus is installed), so that a write can follow.
  returned: state=read
  type: bool
copied:
  description: Names of the O(copied) entries applied (this store had none of that name, or an older one).
  returned: state=present
  type: list
  elements: str
applied:
  description: Names of the given entries now in the store (new, replaced or identical).
  returned: state=present
  type: list
  elements: str
superseded:
  description:
    - Given entries not applied because the store holds a later record (name, service, environment, given and
      stored deployed_at, owner, and C(source), the given record's file). With O(on_superseded=fail) also
      returned by the failure, whose message names them.
  returned: state=present
  type: list
  elements: dict
replaced:
  description:
    - The applied entries that deploy a new version of a service (a new service too), each with C(name), C(service),
      C(environment), C(version), and C(previous_version) and C(previous_record) (the version and record it replaced;
      null for a new service). What M(monstack.stack.deployment_compare) compares.
  returned: state=present
  type: list
  elements: dict
taken_over:
  description: Entries taken from another owner through O(takeover) (name, and C(from), the previous owner).
  returned: state=present
  type: list
  elements: dict
pruned:
  description: Names of the entries this run's prune removed.
  returned: state=present
  type: list
  elements: str
records:
  description: Every record currently deployed according to the store (all owners), sorted by file name.
  returned: state=present and return_records
  type: list
  elements: dict
time:
  description: Seconds since the epoch on the host, taken after the merge and before any file is written.
  returned: state=present
  type: float
lock:
  description: The lock taken (holder, since, expires, waited seconds, and the abandoned lock taken over, if any).
  returned: state=present and not check mode
  type: dict
rules:
  description:
    - With O(rules_dir), the SLO rule files C(written) and C(removed) (names) and whether Prometheus was
      C(reloaded).
  returned: state=present and write and rules_dir
  type: dict
released:
  description: Whether this call released the run's lock (false when it was not held by O(lock_token)).
  returned: always
  type: bool
"""

import fcntl
import fnmatch
import json
import os
import re
import time
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError
from ansible_collections.monstack.stack.plugins.module_utils.deployment_slo import (
    SloError, check_contract, entry_rules)
from ansible_collections.monstack.stack.plugins.module_utils.reload_check import reload_outcome
from ansible_collections.monstack.stack.plugins.module_utils.deployment_copy import store_targets_metric
from ansible_collections.monstack.stack.plugins.module_utils.deployment_render import nice_json, store_files
from ansible_collections.monstack.stack.plugins.module_utils.monstack_files import (
    FileSetError, apply_sets, discard, ensure_dirs, fsync_dir, not_regular, read_current, resolve_owner,
    untrusted_path, write_temp)

STORE = "store.json"
LOCK = "lock.json"
GUARD = ".lock.guard"
FORMAT = 1
FILE_SD_PATTERN = "*--*.json"
TEXTFILE_PREFIX = "deployment--"
TEXTFILE_PATTERN = TEXTFILE_PREFIX + "*.prom"
RULES_PATTERN = "*--*.yml"
PROMTOOL_BATCH = 200  # rule files per promtool call
RELOAD_PREFIX = "prometheus_config"
# The store's summary per shard (deployment_store_targets), with O(shards).
SUMMARY_TEXTFILE = "deployment_store.prom"
# Fields of an entry that make it "the same" (its owner may then stay).
SAME_FIELDS = ("status", "epoch_us", "record", "file_sd", "textfile")


class StoreError(Exception):
    """A problem a person has to solve; the message names the file."""


class LockBusy(StoreError):
    """Another run holds the lock for longer than the timeout."""


class Superseded(StoreError):
    """Given records older than the store's: nothing was written."""

    def __init__(self, message, superseded):
        StoreError.__init__(self, message)
        self.superseded = superseded


# A run's owner: a name such as a CI project path (group/project), no spaces.
OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


def iso(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_json(path, default):
    """The JSON file ``path`` (``default`` when absent); never through a symbolic link or from a FIFO."""
    try:
        data, st = read_current(path)
        if data is None:
            if st is not None:
                raise StoreError(str(not_regular(path, st)))
            return default
        return json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise StoreError("%s: not valid JSON (%s); move it away to start an empty store" % (path, exc))


def save_json(path, data, mode=0o640):
    """Replace ``path`` by a complete new file (a reader sees the old or the new one, never a part)."""
    directory, name = os.path.split(path)
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    tmp = write_temp(directory, name, text.encode("utf-8"), -1, -1, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    fsync_dir(directory)


class Guard:
    """An exclusive flock on the guard file for the short critical sections (taking, giving back)."""

    def __init__(self, directory):
        self.path = os.path.join(directory, GUARD)
        self.handle = None

    def __enter__(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            raise StoreError("%s: cannot be opened as the lock's guard file (%s); it must be a regular file"
                             % (self.path, exc.strerror or exc))
        self.handle = os.fdopen(fd, "r+")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.handle.close()  # closing drops the flock


def describe_lock(path, held):
    return "%s is held by %s since %s (lease until %s)" % (
        path, held.get("holder", "unknown"), iso(held.get("since", 0)), iso(held.get("expires", 0)))


def acquire(directory, token, holder, timeout, lease, clock=time.time, sleep=time.sleep):
    """Take the lock or raise LockBusy naming its holder; an expired lease is taken over."""
    path = os.path.join(directory, LOCK)
    check_lease(timeout, lease)
    started = clock()
    while True:
        with Guard(directory):
            held = read_json(path, None)
            now = clock()
            if held is None or held.get("token") == token or held.get("expires", 0) < now:
                lock = {"token": token, "holder": holder, "since": now, "expires": now + lease}
                save_json(path, lock)
                shown = {k: v for k, v in lock.items() if k != "token"}
                shown["waited"] = round(now - started, 3)
                if held is not None and held.get("token") != token:
                    shown["took_over"] = {k: v for k, v in held.items() if k != "token"}
                return shown
        if now - started >= timeout:
            raise LockBusy(
                "the deployment lock %s; waited %d s (lock_timeout). Another run of playbooks/deployments.yml "
                "is writing to this Prometheus host. If that run is gone, the lock ends by itself when its "
                "lease runs out, or remove the file." % (describe_lock(path, held), timeout))
        sleep(0.2)


def check_lease(timeout, lease):
    """A live run's lock must outlast any wait for it, or a waiter would take it over."""
    if timeout < 0:
        raise StoreError("lock_timeout (deployment_lock_timeout) %d: must be 0 or more seconds" % timeout)
    if lease <= timeout:
        raise StoreError(
            "lock_lease %d s is not longer than lock_timeout %d s: a run waiting for the lock would take over "
            "the lock of a run that is still working. playbooks/deployments.yml derives the lease from "
            "deployment_lock_timeout, the number of Prometheus hosts and the gate." % (lease, timeout))


def release(directory, token):
    path = os.path.join(directory, LOCK)
    if not os.path.isdir(directory):
        return False
    with Guard(directory):
        held = read_json(path, None)
        if held is None or held.get("token") != token:
            return False
        os.unlink(path)
        return True


def textfile_name(name):
    return TEXTFILE_PREFIX + name[: -len(".json")] + ".prom"


def claimed_by(entry):
    """The owner a service belongs to, or None: a tombstone (a removal, or pruned) belongs to no one."""
    if entry is None or entry.get("status") == "removed":
        return None
    return entry.get("owner")


def takeover_names(takeover):
    """deployment_takeover's items (<environment>--<service>, with or without .json) -> file names."""
    names = set()
    for item in takeover or ():
        name = item if str(item).endswith(".json") else "%s.json" % item
        if not isinstance(item, str) or "/" in name or not fnmatch.fnmatchcase(name, FILE_SD_PATTERN):
            raise StoreError("takeover (deployment_takeover) item %r: expected <environment>--<service>" % (item,))
        names.add(name)
    return names


def merge(stored, given, owner, prune, holder, takeover=()):
    """-> (new entries, applied, superseded, pruned, conflicts, taken_over). Pure: ``stored`` is not modified.

    An entry older than the stored one is superseded (not applied). A newer or different entry of a
    service that another owner holds is a conflict (not applied) unless ``takeover`` names it; then it
    is taken over. The caller decides what a superseded entry or a conflict means (the module fails)."""
    entries = dict(stored)
    takeover = takeover_names(takeover)
    applied, superseded, pruned, conflicts, taken_over = [], [], [], [], []
    for name in sorted(given):
        new = given[name]
        old = entries.get(name)
        if old is not None and new["epoch_us"] < old["epoch_us"]:
            superseded.append({"name": name, "service": new.get("service"), "environment": new.get("environment"),
                               "given": new.get("deployed_at"), "stored": old.get("deployed_at"),
                               "owner": old.get("owner"), "source": new.get("source") or ""})
            continue
        if old is not None and all(old.get(f) == new.get(f) for f in SAME_FIELDS):
            applied.append(name)
            continue  # identical: keeps its owner
        current = claimed_by(old)
        if current is not None and current != owner:
            if name not in takeover:
                conflicts.append({"name": name, "service": new.get("service"), "environment": new.get("environment"),
                                  "owner": current, "registered_by": old.get("registered_by")})
                continue
            taken_over.append({"name": name, "from": current})
        applied.append(name)
        entry = {k: new[k] for k in ("service", "environment", "version", "status", "deployed_at", "epoch_us",
                                     "record", "file_sd", "textfile") if k in new}
        entries[name] = dict(entry, owner=owner, registered_by=holder)
    if prune:
        for name, old in sorted(entries.items()):
            if old.get("owner") == owner and name not in given and old.get("status") != "removed":
                # A tombstone without precedence: the files go, any later registration may come back.
                entries[name] = dict(old, status="removed", epoch_us=-1, pruned_by=holder)
                entries[name].pop("file_sd", None)
                entries[name].pop("textfile", None)
                pruned.append(name)
    return entries, applied, superseded, pruned, conflicts, taken_over


def replaced(stored, entries, applied):
    """The applied entries that deploy a new version, each with the version and record they replaced
    (null for a new service): what the comparing gate (deployment_compare) compares."""
    out = []
    for name in applied:
        new, old = entries[name], stored.get(name)
        if new.get("status") == "removed":
            continue
        if old is not None and old.get("status") == "removed":
            old = None
        if old is not None and old.get("version") == new.get("version"):
            continue  # the same version (identical or re-registered): nothing to compare
        out.append({"name": name, "service": new.get("service"), "environment": new.get("environment"),
                    "version": new.get("version"), "previous_version": old.get("version") if old else None,
                    "previous_record": old.get("record") if old else None})
    return out


def merge_copied(entries, copied):
    """Apply other hosts' entries (checked on the controller) where ``entries`` has none of that name or an
    older one; -> the names applied. Modifies ``entries``."""
    applied = []
    for name in sorted(copied):
        entry, old = copied[name], entries.get(name)
        if old is None or entry["epoch_us"] > old["epoch_us"]:
            entries[name] = dict(entry)
            applied.append(name)
    return applied


def read_store(directory, max_bytes):
    """The store file's text ('' when absent); never through a link, never more than max_bytes."""
    path = os.path.join(directory, STORE)
    if not os.path.isdir(directory):
        return ""
    check_dirs({"path": directory})
    data, st = read_current(path)
    if data is None:
        if st is not None:
            raise StoreError(str(not_regular(path, st)))
        return ""
    if len(data) > max_bytes:
        raise StoreError("%s: %d bytes, more than max_bytes (deployment_store_copy_max_bytes, %d); not read"
                         % (path, len(data), max_bytes))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise StoreError("%s: not UTF-8 text; not a deployment record store" % path)


def conflict_message(conflicts, owner, store_path):
    text = ("%s: service %s in environment %s belongs to owner '%s' (registered by %s), and this run's owner is "
            "'%s' (deployment_owner)")
    lines = [text % (c["name"], c["service"], c["environment"], c["owner"], c.get("registered_by") or "unknown", owner)
             for c in conflicts]
    return ("Not applied, nothing written: %s, in the record store %s. A run may not repoint or remove another "
            "owner's service. To move it to this owner, list it in deployment_takeover (for example "
            "-e '{\"deployment_takeover\": [\"%s\"]}'), or run as its owner."
            % ("; ".join(lines), store_path, conflicts[0]["name"][: -len(".json")]))


def superseded_message(superseded, store_path):
    """The one message of superseded records: each one's record file, and the store's later deployed_at."""
    lines = ["%s: the record of service %s in environment %s deployed_at %s (record file %s) is older than the one "
             "in the record store %s, deployed_at %s (owner %s)"
             % (one["name"], one["service"], one["environment"], one["given"], one.get("source") or "unknown",
                store_path, one["stored"], one["owner"]) for one in superseded]
    return ("Superseded, nothing written: %s. The latest record by deployed_at counts; to roll back, write a new "
            "record (the old version, a later deployed_at)." % "; ".join(lines))


def store_form(entries):
    """The given entries as the store keeps them: the contents of each deployed one's file_sd file and
    textfile rendered (by the record library, as the filters render them)."""
    out = {}
    for name, entry in entries.items():
        kept = {key: value for key, value in entry.items() if key != "group"}
        if entry.get("status") != "removed":
            kept.update(store_files(entry))
        out[name] = kept
    return out


def plan_dir(directory, pattern, wanted, known, adopt, compare=True):
    """-> {write, remove}: files of ``directory`` matching ``pattern`` made equal to ``wanted``.

    A file no one wants is removed when the store knows its name (a tombstone) or when ``adopt``
    (this run owns the files the store does not know). Without ``compare`` no file is read and
    ``write`` stays empty (the writer compares them itself).
    """
    write, remove = {}, []
    present = set(name for name in os.listdir(directory) if fnmatch.fnmatchcase(name, pattern))
    for name, content in sorted(wanted.items()) if compare else ():
        current = None
        if name in present:
            # never through a link, never from a FIFO: anything but a regular file differs
            data = read_current(os.path.join(directory, name))[0]
            current = data.decode("utf-8", errors="replace") if data is not None else None
        if current != content:
            write[name] = content
    for name in sorted(present - set(wanted)):
        if name in known or adopt:
            remove.append(name)
    return {"write": write, "remove": remove}


def write_files(params, plans, wanted, applied, check_mode, diff):
    """Make the directories match the store (one file set each, atomic writes); -> apply_sets' result."""
    group = params["file_sd_group"]
    sets = [{"name": "file_sd", "path": params["file_sd_dir"], "files": wanted["file_sd"],
             "remove": plans["file_sd"]["remove"], "owner": "root", "group": group, "mode": "0640"}]
    dirs = {}
    if params.get("health_dir"):
        health = params.get("health") or {}
        dirs[params["health_dir"]] = {"owner": "root", "group": group, "mode": "0750"}
        sets.append({"name": "health", "path": params["health_dir"],
                     "files": {name: nice_json(groups) for name, groups in health.items() if name in applied},
                     "remove": plans["file_sd"]["remove"] + [name for name in applied if name not in health],
                     "owner": "root", "group": group, "mode": "0640"})
    if plans.get("textfile") is not None:
        sets.append({"name": "textfile", "path": params["textfile_dir"], "files": wanted["textfile"],
                     "remove": plans["textfile"]["remove"], "owner": "root", "group": "root", "mode": "0644"})
    return apply_sets(sets, dirs, check_mode=check_mode, diff=diff)


# --------------------------------------------------------------------------
# SLO rule files (docs/deployments.md, "SLOs")
# --------------------------------------------------------------------------
def entry_who(entry):
    """The record's file and service, as the record contract names them in messages."""
    record = entry.get("record") or {}
    return "%s (service %r)" % (entry.get("source") or "record", record.get("service", "unknown"))


def wanted_rules(params, entries, applied, warnings):
    """{file name: rule file text} of the deployed entries with SLOs. A record of this run that this host
    cannot compute fails (StoreError, nothing written); another stored one keeps no rules, with a warning."""
    try:
        contract = check_contract(params.get("slo_contract") or {})
    except SloError as exc:
        raise StoreError(str(exc))
    wanted = {}
    for name in sorted(entries):
        entry = entries[name]
        if entry.get("status") == "removed" or not (entry.get("record") or {}).get("slos"):
            continue
        try:
            made = entry_rules(entry, contract, entry_who(entry))
        except RecordError as exc:
            if name in applied:
                raise StoreError("Not applied, nothing written: %s" % exc)
            warnings.append("%s; its SLO rules are left out" % exc)
            continue
        if made is not None:
            wanted[made[0]] = made[1]
    return wanted


def write_rules(params, wanted, check_mode, run):
    """Make rules_dir hold exactly ``wanted``: changed files are written beside their names, checked
    together by promtool, then renamed into place (all or none); -> {written, removed}."""
    directory = params["rules_dir"]
    ensure_dirs({directory: {"owner": "root", "group": params["file_sd_group"], "mode": "0750"}}, check_mode)
    present = set()
    if os.path.isdir(directory):
        present = set(name for name in os.listdir(directory) if fnmatch.fnmatchcase(name, RULES_PATTERN))
    write = {}
    for name, text in sorted(wanted.items()):
        data = read_current(os.path.join(directory, name))[0] if name in present else None
        if data is None or data.decode("utf-8", errors="replace") != text:
            write[name] = text
    remove = sorted(present - set(wanted))
    if check_mode:
        return {"written": sorted(write), "removed": remove}
    uid, gid = resolve_owner("root", params["file_sd_group"])
    temps = []
    try:
        for name, text in sorted(write.items()):
            temps.append((name, write_temp(directory, name, text.encode("utf-8"), uid, gid, 0o640)))
        for start in range(0, len(temps), PROMTOOL_BATCH):
            batch = temps[start:start + PROMTOOL_BATCH]
            rc, out, err = run([params["promtool"], "check", "rules"] + [tmp for _name, tmp in batch])
            if rc != 0:
                text = (err or out).strip()
                for name, tmp in batch:
                    text = text.replace(tmp, os.path.join(directory, name))
                raise StoreError("SLO rule files in %s rejected by '%s check rules' (exit %s), none written: %s"
                                 % (directory, params["promtool"], rc, text[-2000:]))
    except BaseException:
        for _name, tmp in temps:
            discard(tmp)
        raise
    for name, tmp in temps:
        os.rename(tmp, os.path.join(directory, name))
    for name in remove:
        os.unlink(os.path.join(directory, name))
    if temps or remove:
        fsync_dir(directory)
    return {"written": sorted(write), "removed": remove}


RELOAD_WAIT = 180  # seconds for Prometheus to answer after a reload (thousands of rules on a busy host)


def http_get(spec, url, timeout=30):
    answer = open_url(url, url_username=spec.get("user") or None, url_password=spec.get("password") or None,
                      force_basic_auth=bool(spec.get("user")), validate_certs=bool(spec.get("validate_certs")),
                      ca_path=spec.get("ca_path") or None, timeout=timeout)
    return to_text(answer.read(), errors="surrogate_or_replace")


def metrics_now(spec):
    """Prometheus' metrics text, or '' while it does not answer (busy loading the rules)."""
    try:
        return http_get(spec, spec["metrics_url"])
    except Exception:  # pylint: disable=broad-except  # a timeout or refused connection: ask again
        return ""


def loaded_groups(spec):
    """Names of the SLO rule groups Prometheus runs (one recording rule per SLO asked for)."""
    url = spec["api_url"].rstrip("/") + "/api/v1/rules?type=record&rule_name[]=monstack_slo:objective:ratio"
    body = json.loads(http_get(spec, url, timeout=120))
    return set(group.get("name") for group in (body.get("data") or {}).get("groups") or [])


def reload_prometheus(spec, run, wanted, sleep=time.sleep):
    """Reload Prometheus (systemd's reload: SIGHUP) and wait for its answer: a successful load newer than
    before (reload_outcome, as the component action reads it), and every SLO rule group running."""
    service = spec["service"]
    before = http_get(spec, spec["metrics_url"])
    rc, out, err = run(["systemctl", "reload", service])
    if rc != 0:
        raise StoreError("systemctl reload %s failed (exit %s): %s" % (service, rc, (err or out).strip()))
    outcome = "pending"
    deadline = time.monotonic() + RELOAD_WAIT
    while time.monotonic() < deadline:
        outcome = reload_outcome(before, metrics_now(spec), RELOAD_PREFIX)
        if outcome != "pending":
            break
        sleep(1)
    if outcome != "applied":
        rc, out, err = run(["journalctl", "--unit=" + service, "--since=-5min", "--no-pager", "--output=cat",
                            "--grep=level=(ERROR|error)"])
        lines = out.strip().splitlines()[-5:]
        raise StoreError("%s did not load the new SLO rules (%s); it keeps running with the previous ones. Its "
                         "log: %s" % (service, outcome, " | ".join(lines) or "see journalctl -u " + service))
    if spec.get("api_url"):
        groups = set("monstack-slo-" + name[: -len(".yml")] for name in wanted)
        missing = sorted(groups - loaded_groups(spec))
        if missing:
            raise StoreError("%s reloaded but does not run the SLO rule groups %s: its prometheus.yml does not "
                             "load %s (rule_files); converge the prometheus role on this host"
                             % (service, ", ".join(missing[:5]), spec.get("rules_dir", "the rules directory")))


def check_dirs(params):
    """The store's and the files' directories: no one but root (or this user) may redirect them."""
    for option, private in (("path", True), ("file_sd_dir", False), ("health_dir", False), ("textfile_dir", False),
                            ("rules_dir", False)):
        if params.get(option):
            problem = untrusted_path(params[option], private=private)
            if problem:
                raise StoreError("%s %s: %s; refusing to read or write there as %s" % (
                    option, params[option], problem, "root" if os.geteuid() == 0 else "uid %d" % os.geteuid()))


def update(params, check_mode, diff=False, run=None, warnings=None):
    directory = params["path"]
    if not os.path.isdir(params["file_sd_dir"]):
        raise StoreError("file_sd_dir %s: not a directory (is Prometheus installed here?)" % params["file_sd_dir"])
    check_dirs(params)
    lock = None
    if not check_mode:
        os.makedirs(directory, mode=0o750, exist_ok=True)
        lock = acquire(directory, params["lock_token"], params["lock_holder"], params["lock_timeout"],
                       params["lock_lease"])
    store_path = os.path.join(directory, STORE)
    store = read_json(store_path, {"format": FORMAT, "entries": {}})
    if not isinstance(store, dict) or store.get("format") != FORMAT or not isinstance(store.get("entries"), dict):
        raise StoreError("%s: not a deployment record store of format %d" % (store_path, FORMAT))
    entries, applied, superseded, pruned, conflicts, taken_over = merge(
        store["entries"], store_form(params["entries"]), params["owner"], params["prune"], params["lock_holder"],
        params.get("takeover") or ())
    if conflicts:
        raise StoreError(conflict_message(conflicts, params["owner"], store_path))
    copied = merge_copied(entries, params.get("copied") or {})
    if superseded and params.get("on_superseded", "fail") == "fail":
        raise Superseded(superseded_message(superseded, store_path), superseded)
    rules = None
    if params.get("write") and params.get("rules_dir"):
        # before anything is written: a record of this run with SLOs this host cannot compute fails here
        rules = wanted_rules(params, entries, applied, warnings if warnings is not None else [])
    changed = entries != store["entries"]
    if changed and not check_mode:
        save_json(store_path, {"format": FORMAT, "entries": entries})
    deployed = {name: entry for name, entry in entries.items() if entry.get("status") != "removed"}
    adopt = params["prune"] and params["owner"] == params["untracked_owner"]
    wanted = {"file_sd": {name: e["file_sd"] for name, e in deployed.items()},
              "textfile": {textfile_name(name): e["textfile"] for name, e in deployed.items()}}
    if params.get("shards") is not None:
        try:
            wanted["textfile"][SUMMARY_TEXTFILE] = store_targets_metric(deployed, params["shards"])
        except ValueError as exc:
            raise StoreError(str(exc))
    result = {
        "changed": changed, "applied": applied, "copied": copied, "superseded": superseded, "pruned": pruned,
        "taken_over": taken_over,
        "file_sd": plan_dir(params["file_sd_dir"], FILE_SD_PATTERN, wanted["file_sd"], set(entries), adopt,
                            compare=not params.get("write")),
        "textfile": None,
    }
    if params.get("return_records"):
        result["records"] = [deployed[name]["record"] for name in sorted(deployed)]
    result["replaced"] = replaced(store["entries"], entries, applied)
    textfile_dir = params.get("textfile_dir")
    if textfile_dir and os.path.isdir(textfile_dir):
        result["textfile"] = plan_dir(textfile_dir, TEXTFILE_PATTERN, wanted["textfile"],
                                      set(textfile_name(name) for name in entries), adopt,
                                      compare=not params.get("write"))
    if lock is not None:
        result["lock"] = lock
    result["time"] = time.time()
    if params.get("write"):
        files = write_files(params, result, wanted, applied + copied, check_mode, diff)
        result["diff"] = files.pop("diff", [])
        # what changed only: the lists of unchanged files would be most of the answer
        files.pop("unchanged", None)
        for one in files["sets"].values():
            one.pop("unchanged", None)
        result["files"] = files
        result["written"] = [os.path.basename(path) for path in files["sets"]["file_sd"]["written"]]
        result["changed"] = changed or files["changed"]
        # each file was read once, by the writer: its written lists are the plans' write lists
        for name in ("file_sd", "textfile"):
            if result[name] is not None:
                result[name]["write"] = sorted(os.path.basename(path) for path in files["sets"][name]["written"])
        if rules is not None:
            result["rules"] = write_rules(params, rules, check_mode, run)
            result["rules"]["reloaded"] = False
            if result["rules"]["written"] or result["rules"]["removed"]:
                result["changed"] = True
                spec = dict(params.get("reload") or {}, rules_dir=params["rules_dir"])
                if spec.get("service") and not check_mode:
                    reload_prometheus(spec, run, rules)
                    result["rules"]["reloaded"] = True
    return result


def check_owner(owner):
    if not isinstance(owner, str) or not OWNER_RE.match(owner):
        raise StoreError("owner (deployment_owner) %r: expected a name of letters, digits and . _ : / @ + - "
                         "(at most 128, for example a CI project path)" % (owner,))


def check_entries(entries):
    for name, entry in entries.items():
        if "/" in name or not fnmatch.fnmatchcase(name, FILE_SD_PATTERN):
            raise StoreError("entry %r: expected a file name <environment>--<service>.json" % (name,))
        if not isinstance(entry, dict) or not isinstance(entry.get("epoch_us"), int) or "status" not in entry:
            raise StoreError("entry %s: expected an entry of the deployment_store_entries filter" % name)
        group = entry.get("group")
        if entry["status"] != "removed" and not (isinstance(group, dict) and isinstance(group.get("targets"), list)
                                                 and isinstance(group.get("labels"), dict)
                                                 and isinstance(entry.get("record"), dict)):
            raise StoreError("entry %s: a deployed entry needs its record and target group (group: {targets, labels})"
                             % name)


def check_copied(copied):
    for name, entry in copied.items():
        if "/" in name or not fnmatch.fnmatchcase(name, FILE_SD_PATTERN) or not isinstance(entry, dict) \
                or not isinstance(entry.get("epoch_us"), int) or not isinstance(entry.get("owner"), str) \
                or (entry.get("status") != "removed" and not isinstance(entry.get("file_sd"), str)):
            raise StoreError("copied %r: expected an entry of another host's store (the deployment_store_copy filter)"
                             % (name,))


def check_health(health):
    for name, groups in health.items():
        if "/" in name or not fnmatch.fnmatchcase(name, FILE_SD_PATTERN) or not isinstance(groups, list):
            raise StoreError("health %r: expected a file name <environment>--<service>.json and its target groups "
                             "(the deployment_health_files filter)" % (name,))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "released", "read"], default="present"),
            entries=dict(type="dict", default={}),
            copied=dict(type="dict", default={}),
            max_bytes=dict(type="int", default=67108864),
            shards=dict(type="dict"),
            owner=dict(type="str", default="single-record"),
            prune=dict(type="bool", default=False),
            untracked_owner=dict(type="str", default="directory"),
            file_sd_dir=dict(type="path"),
            textfile_dir=dict(type="path"),
            write=dict(type="bool", default=False),
            file_sd_group=dict(type="str", default="prometheus"),
            health_dir=dict(type="path"),
            health=dict(type="dict", default={}),
            release=dict(type="str", choices=["never", "always", "when_nothing_written"], default="never"),
            return_records=dict(type="bool", default=False),
            lock_token=dict(type="str", no_log=False),
            lock_holder=dict(type="str", default="unknown"),
            lock_timeout=dict(type="int", default=300),
            lock_lease=dict(type="int", default=900),
            takeover=dict(type="list", elements="str", default=[]),
            on_superseded=dict(type="str", choices=["fail", "report"], default="fail"),
            rules_dir=dict(type="path"),
            slo_contract=dict(type="dict", default={}),
            promtool=dict(type="path", default="promtool"),
            reload=dict(type="dict", default={}, no_log=True),
        ),
        required_if=[("state", "present", ["file_sd_dir", "lock_token"]), ("state", "released", ["lock_token"])],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["state"] == "read":
            module.exit_json(changed=False, store=read_store(params["path"], params["max_bytes"]),
                             path=os.path.join(params["path"], STORE),
                             ready=bool(params.get("file_sd_dir")) and os.path.isdir(params["file_sd_dir"]))
        if params["state"] == "released":
            released = False if module.check_mode else release(params["path"], params["lock_token"])
            module.exit_json(changed=False, released=released)
        check_owner(params["owner"])
        takeover_names(params["takeover"])
        check_lease(params["lock_timeout"], params["lock_lease"])
        check_entries(params["entries"])
        check_health(params["health"])
        check_copied(params["copied"])
        result, failed, warnings = {}, True, []
        try:
            result = update(params, module.check_mode, diff=module._diff, warnings=warnings,
                            run=module.run_command)
            failed = False
        finally:
            # after a failure nothing waits for a gate: give the lock back unless asked to keep it
            keep = params["release"] == "never" or (params["release"] == "when_nothing_written" and not failed
                                                    and result.get("written", True))
            result["released"] = False
            if not keep and not module.check_mode:
                result["released"] = release(params["path"], params["lock_token"])
        if not module._diff:
            result.pop("diff", None)
        for warning in warnings:
            module.warn(warning)
        took = (result.get("lock") or {}).get("took_over")
        if took:
            module.warn("took over the deployment lock of %s, whose lease ended at %s (the run is gone)"
                        % (took.get("holder", "unknown"), iso(took.get("expires", 0))))
        for one in result.get("taken_over", []):
            module.warn("%s: taken over from owner '%s' by owner '%s' (takeover)"
                        % (one["name"], one["from"], params["owner"]))
        module.exit_json(invocation=invocation(params), **result)
    except Superseded as exc:
        module.fail_json(msg=str(exc), superseded=exc.superseded, invocation=invocation(params))
    except (StoreError, FileSetError, OSError) as exc:
        module.fail_json(msg=explain(exc, params["path"]), invocation=invocation(params))


def invocation(params):
    """The arguments echoed back, without the entries and health checks themselves (a thousand records
    would be most of the answer, and Ansible walks every node of an answer); their names are kept."""
    args = {key: value for key, value in params.items() if key not in ("entries", "health", "copied", "reload")}
    args.update(entries=sorted(params.get("entries") or {}), health=sorted(params.get("health") or {}),
                copied=sorted(params.get("copied") or {}))
    return {"module_args": args}


def explain(exc, path):
    """A StoreError or FileSetError says it all; an OSError gets the file it is about."""
    if isinstance(exc, (StoreError, FileSetError)):
        return str(exc)
    return "%s: %s" % (exc.filename or path, exc.strerror or exc)


if __name__ == "__main__":
    main()
