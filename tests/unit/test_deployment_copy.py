"""Issue 27 (3): the record store copied between Prometheus hosts, and the orphan check.

plugins/module_utils/deployment_copy.py decides on the controller what each Prometheus host
receives of the others' stores (another host's store is untrusted input: the hostile table
below), which targets each shard should have, and which no shard scrapes. The stores here are
made as the store module makes them (its merge of the deployment_store_entries filter's
entries). The last tests run playbooks/deployment_stores.yml and playbooks/deployments.yml with
two local "Prometheus hosts" (the local connection, two store directories).
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import deployment_api as dc
from helpers import ansible_playbook, record_file_args
from test_deployment_store import MY_GROUP, ds

from ansible_collections.monstack.stack.plugins.module_utils import deployment_copy as dcopy
from ansible_collections.monstack.stack.plugins.filter.deployment_store_copy import deployment_store_copy

REPO = Path(__file__).resolve().parents[2]


def record(service: str, version: str = "1.0.0", at: str = "2026-11-20T10:15:00Z", **extra) -> dict:
    body = {"service": service, "environment": "production", "version": version, "deployed_at": at,
            "targets": [f"{service}-{i}.example.com:8000" for i in range(6)], **extra}
    if extra.get("status") == "removed":
        body.pop("targets")
    return body


def store_of(*records: dict, owner: str = "single-record", prune: bool = False, start: dict | None = None) -> dict:
    """The entries of a store after a run with these records (the module's own merge)."""
    given = ds.store_form(dc.deployment_store_entries(list(records))) if records else {}
    entries = ds.merge(start or {}, given, owner, prune, "ci@runner pid 1")[0]
    return entries


def text(entries: dict) -> str:
    return json.dumps({"format": 1, "entries": entries}, indent=1, sort_keys=True)


def plan(stores: dict[str, dict], shards: dict[str, int], **kw) -> dict:
    reads = {host: {"store": text(entries) if entries is not None else "", "path": "/s/store.json"}
             for host, entries in stores.items()}
    return dcopy.copy_plan(reads, shards, **kw)


# --------------------------------------------------------------------------
# which records each host and shard should have

def test_a_new_host_receives_every_entry_it_lacks_with_its_owner():
    old = store_of(record("api"), record("web"))
    old = store_of(record("db"), owner="team-a", start=old)
    result = plan({"prom-a": old, "prom-b": None}, {"prom-a": -1, "prom-b": -1})
    assert sorted(result["copies"]["prom-b"]) == ["production--api.json", "production--db.json",
                                                  "production--web.json"]
    assert result["copies"]["prom-a"] == {}
    assert result["copies"]["prom-b"]["production--db.json"]["owner"] == "team-a"
    # copied entries are exactly the source's (the receiving store keeps the same files)
    for name, entry in result["copies"]["prom-b"].items():
        assert entry == old[name], name
    assert result["refused"] == [] and result["conflicts"] == [] and result["orphans"] == []
    assert result["report"] == "Orphaned deployment targets (scraped by no Prometheus): 0"


def test_the_latest_entry_wins_and_a_newer_own_entry_is_kept():
    a = store_of(record("api", "1.0.0"))
    b = store_of(record("api", "2.0.0", "2026-11-21T10:00:00Z"), record("web"))
    result = plan({"a": a, "b": b}, {"a": -1, "b": -1})
    assert result["copies"]["a"]["production--api.json"]["version"] == "2.0.0"
    assert sorted(result["copies"]["a"]) == ["production--api.json", "production--web.json"]
    assert result["copies"]["b"] == {}


def test_a_removal_is_copied_and_a_pruned_tombstone_loses_to_any_record():
    removed = store_of(record("api", "1.0.0", "2026-11-22T10:00:00Z", status="removed"))
    deployed = store_of(record("api"))
    result = plan({"a": removed, "b": deployed}, {"a": -1, "b": -1})
    assert result["copies"]["b"]["production--api.json"]["status"] == "removed"
    pruned = store_of(owner="directory", prune=True, start=store_of(record("api"), owner="directory"))
    assert pruned["production--api.json"]["epoch_us"] == -1
    result = plan({"a": pruned, "b": None}, {"a": -1, "b": -1})
    assert result["copies"]["b"]["production--api.json"]["pruned_by"] == "ci@runner pid 1"


def test_two_records_of_one_time_are_a_conflict_and_not_copied():
    a = store_of(record("api", "1.0.0"))
    b = store_of(record("api", "1.0.1"))  # same deployed_at, another version
    result = plan({"a": a, "b": b, "c": None}, {"a": -1, "b": -1, "c": -1})
    assert result["copies"] == {"a": {}, "b": {}, "c": {}}
    assert "production--api.json: the stores of a and b hold different records" in result["conflicts"][0]


def test_each_shard_should_have_the_targets_of_its_hashmod():
    """targets the new shard lacks are orphans without the copy, none with it; the shard is Prometheus' hashmod."""
    full = store_of(record("api"), record("web"))
    shards = {"p0": 0, "p1": 1, "p2": 2}
    stores = {"p0": full, "p1": full, "p2": None}
    without = plan(stores, shards, copy=False)
    every = [t for name in sorted(full) for t in json.loads(full[name]["file_sd"])[0]["targets"]]
    want = sorted(t for t in every if dcopy.shard_of(t, 3) == 2)
    assert want, "some target falls on shard 2"
    assert sorted(o["target"] for o in without["orphans"]) == want
    assert {o["shard"] for o in without["orphans"]} == {"2"}
    assert without["copies"]["p2"] == {}
    assert without["report"].startswith(f"Orphaned deployment targets (scraped by no Prometheus): {len(want)}: ")
    assert "(service api, environment production, shard 2)" in without["report"] or \
        "(service web, environment production, shard 2)" in without["report"]
    assert plan(stores, shards)["orphans"] == []
    # a replica of the new shard that holds the entries covers it
    covered = plan({"p0": full, "p1": full, "p2": None, "p2b": full}, dict(shards, p2b=2), copy=False)
    assert covered["orphans"] == []
    # without sharding a host lacking entries orphans nothing while another one scrapes them
    assert plan({"a": full, "b": None}, {"a": -1, "b": -1}, copy=False)["orphans"] == []


def test_shard_of_is_prometheus_hashmod_of_the_source_labels():
    # the values of tools/shard_plan.py's tests (checked there against a real Prometheus)
    assert dcopy.shard_of(["a", "b"], 7) == dcopy.shard_of("a;b", 7)
    labels = {"service": "api", "environment": "production"}
    assert dcopy.target_shard("h:1", labels, 4, ["__address__"]) == str(dcopy.shard_of("h:1", 4))
    assert dcopy.target_shard("h:1", labels, 4, ["service", "__address__"]) == str(dcopy.shard_of(["api", "h:1"], 4))
    assert dcopy.target_shard("h:1", labels, 0, ["__address__"]) == ""


def test_the_textfile_summary_counts_targets_per_shard():
    full = store_of(record("api"), record("web"))
    text3 = dcopy.store_targets_metric(full, {"count": 3, "shard": 1, "source_labels": ["__address__"]})
    lines = [line for line in text3.splitlines() if not line.startswith("#")]
    counts = {line.split('shard="')[1].split('"')[0]: int(line.split()[-1]) for line in lines}
    assert sum(counts.values()) == 12 and sorted(counts) == ["0", "1", "2"]
    assert 'deployment_store_targets{own="true",shard="1"}' in text3
    assert sum('own="true"' in line for line in lines) == 1
    one = dcopy.store_targets_metric(full, {"count": 0, "shard": -1, "source_labels": ["__address__"]})
    assert 'deployment_store_targets{own="true",shard=""} 12' in one
    # the removed and the pruned count nothing
    gone = store_of(record("api", at="2026-11-22T10:00:00Z", status="removed"), start=full)
    assert 'shard=""} 6' in dcopy.store_targets_metric(gone, {"count": 0, "shard": -1})
    for bad in ({"count": 2, "shard": 2}, {"count": -1, "shard": -1}, {"count": True, "shard": 0}, "2"):
        with pytest.raises(ValueError):
            dcopy.store_targets_metric(full, bad)


# --------------------------------------------------------------------------
# Another host's store is untrusted input: the hostile table. Each row changes one valid
# store (or its text) and names what the refusal must say; the row's entry is never copied.

def _valid() -> dict:
    return store_of(record("api", health_url="https://api.example.com/healthz"), record("web"))


def _entry(change):
    def edit(entries):
        change(entries["production--api.json"])
        return entries
    return edit


def _rename(entries):
    entries["production--other.json"] = entries.pop("production--api.json")
    return entries


HOSTILE_ENTRIES = [
    # (case, edit of the entries, words of the refusal)
    ("a target the policy denies (cloud metadata)",
     _entry(lambda e: e["record"].update(targets=["169.254.169.254:80"])), ["169.254.169.254", "denied_targets"]),
    ("file_sd that is not the record's (a planted target)",
     _entry(lambda e: e.update(file_sd=e["file_sd"].replace("api-0.example.com", "evil.example.com"))),
     ["'file_sd' and 'textfile' are not what its record renders to"]),
    ("a textfile with an extra metric",
     _entry(lambda e: e.update(textfile=e["textfile"] + 'node_exporter_build_info{x="y"} 1\n')),
     ["not what its record renders to"]),
    ("a record not in the normalized form",
     _entry(lambda e: e["record"].update(targets=[t.upper() for t in e["record"]["targets"]])), ["normalized form"]),
    ("template syntax in a strict field",
     _entry(lambda e: e["record"].update(service="{{ lookup('pipe', 'id') }}")), ["field 'service'"]),
    ("an unknown field of the entry", _entry(lambda e: e.update(group={"targets": ["x:1"]})), ["unknown fields group"]),
    ("a private field in the record", _entry(lambda e: e["record"].update(_source="/etc/shadow")),
     ["field 'record': expected a deployment record"]),
    ("an entry name with a path", lambda es: {**{"../../etc/cron.d/x.json": es.pop("production--api.json")}, **es},
     ["expected a file name <environment>--<service>.json"]),
    ("an entry under another service's name", _rename, ["whose file is production--api.json"]),
    ("an epoch that is not the record's (a record from the future)",
     _entry(lambda e: e.update(epoch_us=2 ** 62)), ["'status' and 'epoch_us' must be its record's"]),
    ("a pruned tombstone with precedence", _entry(lambda e: e.update(status="removed", pruned_by="x")),
     ["a pruned entry must be status removed with epoch_us -1"]),
    ("an owner with spaces and newlines", _entry(lambda e: e.update(owner="team a\nowner: root")), ["field 'owner'"]),
    ("control characters in registered_by", _entry(lambda e: e.update(registered_by="ci\x1b[2J")),
     ["field 'registered_by'"]),
    ("a removed entry with files",
     _entry(lambda e: e.update(status="removed", record=dict(e["record"], status="removed"))),
     ["a removed entry has no files"]),
    ("a version that differs from its record's", _entry(lambda e: e.update(version="9.9.9")),
     ["field 'version' differs"]),
    ("a label over the policy's limit",
     _entry(lambda e: e["record"].update(labels={f"l{i}": "v" for i in range(40)})), ["deployment_max_labels"]),
]


@pytest.mark.parametrize("case,edit,needles", HOSTILE_ENTRIES, ids=[row[0] for row in HOSTILE_ENTRIES])
def test_a_hostile_entry_is_refused_alone_naming_host_and_entry(case, edit, needles):
    entries = edit(copy.deepcopy(_valid()))
    result = plan({"evil": entries, "new": None}, {"evil": -1, "new": -1}, policy={})
    assert len(result["refused"]) == 1, (case, result["refused"])
    message = result["refused"][0]
    assert message.startswith("evil:/s/store.json")
    for needle in needles:
        assert needle in message, (case, message)
    # the valid neighbour is still copied; the hostile entry is not
    assert list(result["copies"]["new"]) == ["production--web.json"]


def _nested(depth: int) -> str:
    return '{"format": 1, "entries": {"a--b.json": ' + "[" * depth + "]" * depth + "}}"


HOSTILE_STORES = [
    # (case, the store's text, words of the refusal)
    ("larger than the limit", text(_valid()) + " " * 4096, ["bytes, more than deployment_store_copy_max_bytes"]),
    ("not JSON", "{'format': 1}", ["not valid JSON"]),
    ("a key twice (the second would win unseen)",
     '{"format": 1, "entries": {}, "entries": {"x--y.json": {}}}', ["duplicate key 'entries'"]),
    ("nested very deeply", _nested(1500), ["nested too deeply"]),
    ("another format", '{"format": 2, "entries": {}}', ["not a deployment record store of format 1"]),
    ("entries as a list", '{"format": 1, "entries": []}', ["not a deployment record store"]),
    ("too many entries", json.dumps({"format": 1, "entries": {f"e--s{i}.json": {} for i in range(30)}}),
     ["30 entries, more than deployment_store_copy_max_entries (20)"]),
]


@pytest.mark.parametrize("case,body,needles", HOSTILE_STORES, ids=[row[0] for row in HOSTILE_STORES])
def test_a_hostile_store_is_refused_as_a_whole(case, body, needles):
    size = len(text(_valid())) + 100
    reads = {"evil": {"store": body, "path": "/s/store.json"},
             "good": {"store": text(store_of(record("db"))), "path": "/s/store.json"}, "new": {"store": ""}}
    result = dcopy.copy_plan(reads, {"evil": -1, "good": -1, "new": -1}, max_bytes=size, max_entries=20)
    assert len(result["refused"]) == 1, result["refused"]
    message = result["refused"][0]
    assert message.startswith("evil:/s/store.json: ") and "copied anywhere" in message
    for needle in needles:
        assert needle in message, (case, message)
    assert list(result["copies"]["new"]) == ["production--db.json"]
    assert body[:200] not in message or len(body) < 40


def test_the_filter_names_its_input_errors():
    with pytest.raises(Exception, match="for the same hosts"):
        deployment_store_copy({"a": {}}, {"b": -1})
    with pytest.raises(Exception, match="deployment_store_copy: invalid literal"):
        deployment_store_copy({"a": {"store": text(_valid())}}, {"a": "first"})
    assert deployment_store_copy({}, {})["orphans"] == []


# --------------------------------------------------------------------------
# the module's copy (real files, the lock) and the playbooks with two local hosts

def test_the_module_applies_copies_under_the_lock_and_writes_the_files(tmp_path):
    sd, tf, hd = tmp_path / "sd", tmp_path / "tf", tmp_path / "health"
    for path in (sd, tf):
        path.mkdir()
    source = _valid()
    params = {"path": str(tmp_path / "state"), "entries": {}, "copied": source, "owner": "single-record",
              "prune": False, "untracked_owner": "directory", "file_sd_dir": str(sd), "textfile_dir": str(tf),
              "write": True, "file_sd_group": MY_GROUP, "health_dir": str(hd),
              "health": dcopy.health_of(source), "takeover": [], "lock_token": "t1", "lock_holder": "copy",
              "lock_timeout": 5, "lock_lease": 60, "return_records": False,
              "shards": {"count": 0, "shard": -1, "source_labels": ["__address__"]}}
    result = ds.update(dict(params), check_mode=False)
    assert result["copied"] == ["production--api.json", "production--web.json"] and result["changed"]
    assert json.loads((sd / "production--api.json").read_text()) == json.loads(source["production--api.json"]["file_sd"])
    assert json.loads((hd / "production--api.json").read_text())[0]["targets"] == ["https://api.example.com/healthz"]
    assert 'deployment_store_targets{own="true",shard=""} 12' in (tf / "deployment_store.prom").read_text()
    stored = json.loads((tmp_path / "state" / "store.json").read_text())["entries"]
    assert stored == source
    assert ds.read_store(str(tmp_path / "state"), 1 << 20) == (tmp_path / "state" / "store.json").read_text()
    ds.release(str(tmp_path / "state"), "t1")
    again = ds.update(dict(params, lock_token="t2"), check_mode=False)
    assert again["copied"] == [] and not again["changed"]
    # a newer entry of the host's own is kept
    newer = store_of(record("api", "3.0.0", "2026-12-01T00:00:00Z"))
    ds.release(str(tmp_path / "state"), "t2")
    ds.update(dict(params, copied=newer, health={}, lock_token="t3"), check_mode=False)
    ds.release(str(tmp_path / "state"), "t3")
    third = ds.update(dict(params, lock_token="t4"), check_mode=False)
    assert third["copied"] == []
    ds.release(str(tmp_path / "state"), "t4")


def test_read_store_refuses_a_link_and_a_large_file(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    assert ds.read_store(str(tmp_path / "none"), 10) == ""
    assert ds.read_store(str(state), 10) == ""
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0")
    (state / "store.json").symlink_to(secret)
    with pytest.raises(ds.StoreError, match="not a regular file"):
        ds.read_store(str(state), 1 << 20)
    (state / "store.json").unlink()
    (state / "store.json").write_text("x" * 100)
    with pytest.raises(ds.StoreError, match="100 bytes, more than max_bytes"):
        ds.read_store(str(state), 99)


def two_hosts(tmp_path: Path) -> Path:
    """An inventory of two local Prometheus hosts, a and b, each with its own directories."""
    hosts = {}
    for name in ("prom-a", "prom-b"):
        base = tmp_path / name
        for sub in ("etc/file_sd/deployments", "etc/file_sd/deployment_health", "tf"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        hosts[name] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                       "ansible_become": False, "prometheus_config_dir": str(base / "etc"),
                       "node_exporter_textfile_dir": str(base / "tf"), "prometheus_user": MY_GROUP,
                       "deployment_store_dir": str(base / "state")}
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"prometheus": {"hosts": hosts}}}}))
    return inventory


def run(inventory: Path, play: str, *args: str) -> subprocess.CompletedProcess:
    # messages on one line (the YAML format folds long ones)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    done = subprocess.run([ansible_playbook(), "-i", str(inventory), str(REPO / "playbooks" / play), *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    return done


def test_a_host_added_later_gets_the_single_record_registrations(tmp_path):
    inventory = two_hosts(tmp_path)
    one = record("api", targets=["api-1.example.com:8000", "api-2.example.com:8000"])
    # registered while only prom-a existed
    only_a = ["--limit", "localhost,prom-a", "-e", "deployment_gate=false"]
    done = run(inventory, "deployments.yml", *only_a, *record_file_args(tmp_path / "r", one))
    assert done.returncode == 0, done.stdout[-3000:]
    b_sd = tmp_path / "prom-b" / "etc" / "file_sd" / "deployments" / "production--api.json"
    assert not b_sd.exists()
    off = run(inventory, "deployment_stores.yml", "-e", "deployment_store_copy=false")
    assert off.returncode == 0, off.stdout[-3000:]
    assert not b_sd.exists()
    assert "Orphaned deployment targets (scraped by no Prometheus): 0 (deployment_store_copy is false)" in off.stdout
    on = run(inventory, "deployment_stores.yml")
    assert on.returncode == 0, on.stdout[-3000:]
    assert json.loads(b_sd.read_text())[0]["targets"] == ["api-1.example.com:8000", "api-2.example.com:8000"]
    assert "Orphaned deployment targets (scraped by no Prometheus): 0" in on.stdout
    b_store = json.loads((tmp_path / "prom-b" / "state" / "store.json").read_text())["entries"]
    a_store = json.loads((tmp_path / "prom-a" / "state" / "store.json").read_text())["entries"]
    assert b_store == a_store
    rerun = run(inventory, "deployment_stores.yml")
    assert rerun.returncode == 0 and "changed=0" in rerun.stdout.split("PLAY RECAP")[1]
    assert rerun.stdout.split("PLAY RECAP")[1].count("changed=0") == 2
    # sharded: prom-b a second shard; without the copy its targets are orphans, named
    (tmp_path / "prom-b" / "state" / "store.json").unlink()
    b_sd.unlink()
    inv = json.loads(inventory.read_text())
    hosts = inv["all"]["children"]["prometheus"]["hosts"]
    hosts["prom-a"]["prometheus_shard"], hosts["prom-b"]["prometheus_shard"] = 0, 1
    inventory.write_text(json.dumps(inv))
    want = [t for t in one["targets"] if dcopy.shard_of(t, 2) == 1]
    off = run(inventory, "deployment_stores.yml", "-e", "deployment_store_copy=false")
    assert off.returncode == 0, off.stdout[-3000:]
    assert f"Orphaned deployment targets (scraped by no Prometheus): {len(want)}" in off.stdout
    for target in want:
        assert f"{target} (service api, environment production, shard 1)" in off.stdout
    summary = (tmp_path / "prom-a" / "tf" / "deployment_store.prom").read_text()
    assert f'deployment_store_targets{{own="false",shard="1"}} {len(want)}' in summary
    on = run(inventory, "deployment_stores.yml")
    assert "Orphaned deployment targets (scraped by no Prometheus): 0" in on.stdout
    assert b_sd.exists()


def test_check_mode_on_a_fresh_host_changes_nothing_and_passes(tmp_path):
    """--check before the prometheus role made its directories: no error, nothing written."""
    inventory = two_hosts(tmp_path)
    one = record("api", targets=["api-1.example.com:8000"])
    done = run(inventory, "deployments.yml", "--limit", "localhost,prom-a", "-e", "deployment_gate=false",
               *record_file_args(tmp_path / "r", one))
    assert done.returncode == 0, done.stdout[-3000:]
    fresh = tmp_path / "prom-b" / "etc"
    for path in sorted(fresh.rglob("*"), reverse=True):
        path.rmdir()
    checked = run(inventory, "deployment_stores.yml", "--check")
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert not (tmp_path / "prom-b" / "state").exists() and not any(fresh.iterdir())
