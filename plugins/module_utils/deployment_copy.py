# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""The record store copied between Prometheus hosts, and the orphan check (issue 27).

Every Prometheus host keeps its own deployment record store (plugins/modules/deployment_store.py);
a host added later (a new shard, a replacement replica) has none of the single-record
registrations made before it existed. playbooks/deployment_stores.yml (part of
playbooks/prometheus.yml, so of site.yml) reads every Prometheus host's store, and this module
decides, on the controller:

* which entries of the other hosts' stores are valid (parse_store / check_entry): a store is
  another host's file, so untrusted input; its size, its number of entries and every entry are
  checked, each record against the record contract and the policy, and the files the entry
  holds must be exactly what its record renders to (nothing else is ever copied);
* what each host receives (plan_copies): for every service, the latest entry any host holds
  (by deployed_at, as the store itself merges), where the host's own is older or missing;
* which deployment targets no shard scrapes (orphans): a target belongs to the shard of its
  hashmod (Prometheus' own hash, shard_of); it is scraped when a Prometheus host of that shard
  has its record in its store (the store is what its file_sd files are made of).

The store module also writes, from its store, the textfile metric deployment_store_targets
(store_targets_metric), from which the alert DeploymentTargetsOrphaned computes the same on
Prometheus. Pure functions, standard library only (they also run on managed hosts).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import (
    STATUS_REMOVED, CONTROL_RE, RecordError, check_policy, check_record, compile_policy, file_name, record_content)
from ansible_collections.monstack.stack.plugins.module_utils.deployment_render import (
    health_group, store_files, target_group)

SEPARATOR = ";"  # Prometheus' default relabel separator
STORE_FORMAT = 1
# Defaults of deployment_store_copy_max_bytes / _max_entries: a store of 20,000 services of
# large records stays below both; a bigger file is refused as a whole, before parsing.
MAX_STORE_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 20000
# The keys the store module writes into an entry (merge(), prune): nothing else is copied.
ENTRY_KEYS = frozenset({"service", "environment", "version", "status", "deployed_at", "epoch_us", "record",
                        "file_sd", "textfile", "owner", "registered_by", "pruned_by"})
OWNER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")
ENTRY_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*--[a-z0-9][a-z0-9_.-]*\.json")
HOLDER_MAX_LEN = 512
METRIC = "deployment_store_targets"


class CopyError(Exception):
    """A store that cannot be read as a whole; the message names the host and file."""


def shard_of(values, modulus: int, separator: str = SEPARATOR) -> int:
    """The shard Prometheus' hashmod gives the joined label values (a str is one value):
    MD5 of the values joined with the separator, the last 8 bytes as a big-endian integer, modulo."""
    if isinstance(modulus, bool) or not isinstance(modulus, int) or modulus < 1:
        raise ValueError(f"modulus must be at least 1 (a whole number), got {modulus!r}")
    if isinstance(values, str):
        values = [values]
    digest = hashlib.md5(separator.join(values).encode("utf-8")).digest()  # noqa: S324 (Prometheus' hash)
    return int.from_bytes(digest[8:], "big") % modulus


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key[:60]!r}")
        seen[key] = value
    return seen


def parse_store(text: Any, where: str, max_bytes: int = MAX_STORE_BYTES, max_entries: int = MAX_ENTRIES) -> dict:
    """The entries of a store file's text (``where``: host and path, for messages), not yet checked.

    Refused as a whole (CopyError): more than max_bytes, not JSON (or a key twice), not a store of
    the known format, more than max_entries. An absent store is the empty text."""
    if text is None or text == "":
        return {}
    if not isinstance(text, str):
        raise CopyError(f"{where}: expected the store file's text, got {type(text).__name__}")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise CopyError(f"{where}: {size} bytes, more than deployment_store_copy_max_bytes ({max_bytes}); "
                        f"not read")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise CopyError(f"{where}: nested too deeply; not a deployment record store") from None
    except ValueError as exc:
        raise CopyError(f"{where}: not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT or not isinstance(data.get("entries"), dict):
        raise CopyError(f"{where}: not a deployment record store of format {STORE_FORMAT}")
    entries = data["entries"]
    if len(entries) > max_entries:
        raise CopyError(f"{where}: {len(entries)} entries, more than deployment_store_copy_max_entries "
                        f"({max_entries}); not read")
    return entries


def _holder(where: str, name: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > HOLDER_MAX_LEN or CONTROL_RE.search(value):
        raise RecordError(f"{where}: entry {name}: field '{field}': expected a text of at most {HOLDER_MAX_LEN} "
                          f"characters without control characters")
    return value


def check_entry(name: Any, entry: Any, where: str, policy=None) -> dict:
    """One store entry of another host, checked; -> the entry as the receiving store keeps it.

    Raises RecordError naming the entry and field. The record must pass the record contract
    (and ``policy``, compiled, when given) and be in its normalized form; the entry's own
    fields must be the record's; the file contents must be exactly the record's rendering
    (with or without the version labels); a tombstone of a prune has no files and no precedence."""
    if not isinstance(name, str) or not ENTRY_NAME_RE.fullmatch(name) or len(name) > 250:
        raise RecordError(f"{where}: entry {str(name)[:80]!r}: expected a file name <environment>--<service>.json")
    if not isinstance(entry, Mapping):
        raise RecordError(f"{where}: entry {name}: expected a mapping")
    unknown = sorted(str(key)[:40] for key in entry if key not in ENTRY_KEYS)
    if unknown:
        raise RecordError(f"{where}: entry {name}: unknown fields {', '.join(unknown)}")
    record = entry.get("record")
    if not isinstance(record, Mapping) or any(not isinstance(key, str) or key.startswith("_") for key in record):
        raise RecordError(f"{where}: entry {name}: field 'record': expected a deployment record")
    dep = check_record(dict(record, _source=f"{where} entry {name}"), 1)
    if policy is not None:
        check_policy(dep, policy)
    if record_content(dep) != dict(record):
        raise RecordError(f"{where}: entry {name}: field 'record': not in the normalized form the store writes")
    if file_name(dep) != name:
        raise RecordError(f"{where}: entry {name}: its record is service {dep.service} in environment "
                          f"{dep.environment}, whose file is {file_name(dep)}")
    pruned = "pruned_by" in entry
    status = entry.get("status")
    epoch_us = entry.get("epoch_us")
    if isinstance(epoch_us, bool) or not isinstance(epoch_us, int):
        raise RecordError(f"{where}: entry {name}: field 'epoch_us': expected an integer")
    if pruned:
        if status != STATUS_REMOVED or epoch_us != -1:
            raise RecordError(f"{where}: entry {name}: a pruned entry must be status removed with epoch_us -1")
    elif status != dep.status or epoch_us != dep.epoch_us:
        raise RecordError(f"{where}: entry {name}: fields 'status' and 'epoch_us' must be its record's "
                          f"({dep.status}, {dep.epoch_us})")
    for field in ("service", "environment", "version", "deployed_at"):
        if entry.get(field) != dep.record[field]:
            raise RecordError(f"{where}: entry {name}: field '{field}' differs from its record's")
    owner = entry.get("owner")
    if not isinstance(owner, str) or not OWNER_RE.fullmatch(owner):
        raise RecordError(f"{where}: entry {name}: field 'owner': expected a name of letters, digits and . _ : / @ + -")
    out = {"service": dep.service, "environment": dep.environment, "version": dep.version, "status": status,
           "deployed_at": dep.record["deployed_at"], "epoch_us": epoch_us, "record": record_content(dep),
           "owner": owner, "registered_by": _holder(where, name, "registered_by", entry.get("registered_by", "unknown"))}
    if pruned:
        out["pruned_by"] = _holder(where, name, "pruned_by", entry["pruned_by"])
    if status == STATUS_REMOVED:
        if "file_sd" in entry or "textfile" in entry:
            raise RecordError(f"{where}: entry {name}: a removed entry has no files")
        return out
    given = {"file_sd": entry.get("file_sd"), "textfile": entry.get("textfile")}
    for info in (True, False):
        files = store_files({"group": target_group(dep, info), "record": out["record"], "status": status,
                             "epoch_us": epoch_us})
        if files == given:
            return dict(out, **files)
    raise RecordError(f"{where}: entry {name}: fields 'file_sd' and 'textfile' are not what its record renders to")


def checked_store(text: Any, where: str, policy: Any = None, max_bytes: int = MAX_STORE_BYTES,
                  max_entries: int = MAX_ENTRIES) -> tuple[dict, list[str]]:
    """-> (valid entries, refusals): every entry of a store's text checked; one bad entry is refused
    alone (named in the refusals, never copied), a bad store as a whole raises CopyError."""
    rules = None if policy is None else compile_policy(policy)
    good, refused = {}, []
    for name, entry in sorted(parse_store(text, where, max_bytes, max_entries).items(), key=lambda kv: str(kv[0])):
        try:
            good[name] = check_entry(name, entry, where, rules)
        except RecordError as exc:
            refused.append(str(exc))
    return good, refused


def _same(one: dict, other: dict) -> bool:
    return all(one.get(key) == other.get(key) for key in ("status", "epoch_us", "record", "file_sd", "textfile"))


def latest(stores: Mapping[str, dict]) -> tuple[dict, list[str]]:
    """-> ({name: (host, entry)} the latest entry of each service over all hosts' checked stores,
    conflicts): two different entries of one service with the same deployed_at are a conflict,
    named, and that service is left as each host has it."""
    best: dict[str, tuple[str, dict]] = {}
    conflicts: dict[str, str] = {}
    for host in sorted(stores):
        for name, entry in stores[host].items():
            held = best.get(name)
            if held is None or entry["epoch_us"] > held[1]["epoch_us"]:
                best[name] = (host, entry)
                conflicts.pop(name, None)
            elif entry["epoch_us"] == held[1]["epoch_us"] and not _same(entry, held[1]):
                conflicts[name] = (f"{name}: the stores of {held[0]} and {host} hold different records of the same "
                                   f"deployed_at {entry['deployed_at']}; not copied (register the service again)")
    for name in conflicts:
        best.pop(name, None)
    return best, [conflicts[name] for name in sorted(conflicts)]


def plan_copies(stores: Mapping[str, dict], best: Mapping[str, tuple[str, dict]]) -> dict[str, dict]:
    """{host: {name: entry}}: what each host lacks of the latest entries (missing, or its own older)."""
    copies: dict[str, dict] = {}
    for host in sorted(stores):
        own = stores[host]
        wanted = {}
        for name, (source, entry) in sorted(best.items()):
            mine = own.get(name)
            if source != host and (mine is None or entry["epoch_us"] > mine["epoch_us"]):
                wanted[name] = entry
        copies[host] = wanted
    return copies


def health_of(entries: Mapping[str, dict]) -> dict[str, list]:
    """The health-check target groups of the deployed entries with a health_url (their files)."""
    out = {}
    for name, entry in sorted(entries.items()):
        record = entry["record"]
        if entry["status"] != STATUS_REMOVED and "health_url" in record:
            dep = check_record(record, 1)
            out[name] = [health_group(dep)]
    return out


def _source_values(address: str, labels: Mapping[str, Any], source_labels) -> list[str]:
    known = dict(labels, __address__=address, job="deployments")
    return [str(known.get(label, "")) for label in source_labels]


def entry_targets(entry: Mapping[str, Any]) -> list[tuple[str, dict]]:
    """(address, labels) of a deployed entry's file_sd file (its target group)."""
    if entry.get("status") == STATUS_REMOVED or not isinstance(entry.get("file_sd"), str):
        return []
    out = []
    for group in json.loads(entry["file_sd"]):
        labels = group.get("labels") or {}
        out += [(str(address), labels) for address in group.get("targets") or []]
    return out


def check_shards(shards: Any) -> tuple[int, int, list[str]]:
    """The sharding of the Prometheus hosts: {count, shard, source_labels} -> (count, shard, labels);
    count 0 (or shard -1): not sharded."""
    if not isinstance(shards, Mapping):
        raise ValueError(f"shards: expected a mapping with count, shard and source_labels, got {shards!r}")
    count, shard = shards.get("count", 0), shards.get("shard", -1)
    labels = shards.get("source_labels") or ["__address__"]
    if isinstance(count, str) and count.strip().lstrip("-").isdigit():
        count = int(count)
    if isinstance(shard, str) and shard.strip().lstrip("-").isdigit():
        shard = int(shard)
    if (isinstance(count, bool) or not isinstance(count, int) or count < 0 or isinstance(shard, bool)
            or not isinstance(shard, int) or shard < -1 or (shard >= 0 and shard >= count)
            or not isinstance(labels, (list, tuple)) or not all(isinstance(one, str) for one in labels)):
        raise ValueError(f"shards: expected count >= 0, shard -1 or below count and a list of label names, "
                         f"got {dict(shards)!r}")
    return (count, shard, list(labels)) if shard >= 0 and count > 0 else (0, -1, list(labels))


def target_shard(address: str, labels: Mapping[str, Any], count: int, source_labels) -> str:
    """The shard (as the label value) that scrapes a target; '' without sharding."""
    return str(shard_of(_source_values(address, labels, source_labels), count)) if count > 0 else ""


def store_targets_metric(entries: Mapping[str, dict], shards: Any) -> str:
    """node_exporter textfile text: this host's store's deployment targets per shard, own="true"
    on the shard this host scrapes for (every shard is counted, also with 0)."""
    count, own, labels = check_shards(shards)
    counts = {str(k): 0 for k in range(count)} if count else {"": 0}
    for entry in entries.values():
        for address, target_labels in entry_targets(entry):
            counts[target_shard(address, target_labels, count, labels)] += 1
    mine = str(own) if count else ""
    lines = [f"# HELP {METRIC} Deployment targets in this Prometheus host's record store, by the shard that "
             f"scrapes them (own=\"true\": this host's shard; shard=\"\" without sharding).",
             f"# TYPE {METRIC} gauge"]
    lines += [f'{METRIC}{{own="{str(shard == mine).lower()}",shard="{shard}"}} {number}'
              for shard, number in sorted(counts.items(), key=lambda kv: (len(kv[0]), kv[0]))]
    return "\n".join(lines) + "\n"


def orphans(stores: Mapping[str, dict], shard_of_host: Mapping[str, int], source_labels) -> list[dict]:
    """The deployment targets that no Prometheus host scrapes: a target of the latest entries over all
    ``stores`` (host -> entries, as they will be) whose shard has no host with that entry in its store.
    ``shard_of_host``: host -> prometheus_shard (-1 everywhere: not sharded)."""
    count = len({shard for shard in shard_of_host.values() if shard >= 0})
    best, _conflicts = latest(stores)
    holders: dict[str, set[str]] = {}
    for host, entries in stores.items():
        for name, entry in entries.items():
            if entry.get("status") != STATUS_REMOVED and name in best and _same(entry, best[name][1]):
                holders.setdefault(name, set()).add(str(shard_of_host[host]) if count else "")
    out = []
    for name, (_host, entry) in sorted(best.items()):
        for address, labels in entry_targets(entry):
            shard = target_shard(address, labels, count, source_labels)
            if shard not in holders.get(name, set()):
                out.append({"target": address, "service": entry["service"], "environment": entry["environment"],
                            "shard": shard, "entry": name})
    return out


def copy_plan(reads: Mapping[str, Any], shard_of_host: Mapping[str, int], copy: bool = True, policy: Any = None,
              source_labels=("__address__",), max_bytes: int = MAX_STORE_BYTES,
              max_entries: int = MAX_ENTRIES) -> dict:
    """Everything playbooks/deployment_stores.yml needs, from each host's read of its store
    (host -> {path, store: text}): copies and health files per host, refusals and conflicts
    (messages), and the orphans once the copies are made (or, with copy false, as things are)."""
    stores, refused = {}, []
    for host in sorted(reads):
        read = reads[host] or {}
        where = f"{host}:{read.get('path', 'store.json')}"
        try:
            stores[host], bad = checked_store(read.get("store", ""), where, policy, max_bytes, max_entries)
        except CopyError as exc:
            stores[host], bad = {}, [f"{exc}; this host's store is not copied anywhere"]
        refused += bad
    best, conflicts = latest(stores)
    copies = plan_copies(stores, best) if copy else {host: {} for host in stores}
    after = {host: dict(stores[host], **copies[host]) for host in stores}
    lost = orphans(after, shard_of_host, list(source_labels))
    return {"copies": copies, "health": {host: health_of(copies[host]) for host in copies},
            "refused": refused, "conflicts": conflicts, "orphans": lost, "report": report(lost)}


def report(lost: list[dict]) -> str:
    """The orphan check's line for the playbook's output."""
    text = f"Orphaned deployment targets (scraped by no Prometheus): {len(lost)}"
    shown = [f"{one['target']} (service {one['service']}, environment {one['environment']}"
             + (f", shard {one['shard']})" if one["shard"] else ")") for one in lost[:50]]
    more = f"; and {len(lost) - 50} more" if len(lost) > 50 else ""
    return text + (": " + "; ".join(shown) + more if shown else "")
