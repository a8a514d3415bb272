"""plugins/modules/deployment_store.py: the record store of a Prometheus host and its lock.

The module's functions are called on tmp directories; the last tests run
playbooks/deployments.yml with localhost (local connection) as the Prometheus
host: six runs started at once, then a directory run that must not prune the
single-record registrations.
"""
from __future__ import annotations

import concurrent.futures
import grp
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import deployment_api as dc
from helpers import QuietHandler, ansible_playbook, record_file_args

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("deployment_store",
                                              REPO / "plugins" / "modules" / "deployment_store.py")
ds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ds)

MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def record(service: str, version: str = "1.0.0", at: str = "2026-11-20T10:15:00Z", **extra) -> dict:
    body = {"service": service, "environment": "production", "version": version, "deployed_at": at,
            "targets": [f"{service}.example.com:8000"], **extra}
    if extra.get("status") == "removed":
        body.pop("targets")
    return body


def entries(*records: dict) -> dict:
    return dc.deployment_store_entries(list(records))


# --------------------------------------------------------------------------
# merging (pure)

def test_later_record_wins_whatever_the_order_and_an_older_one_is_superseded():
    v1, v2 = entries(record("api")), entries(record("api", "2.0.0", "2026-11-21T10:00:00Z"))
    store, applied, superseded, _, conflicts, _ = ds.merge({}, v2, "single-record", False, "ci 1")
    assert applied == ["production--api.json"] and store["production--api.json"]["version"] == "2.0.0"
    assert conflicts == []
    # an older record later (a slow pipeline): not applied, reported (the module then fails)
    again, applied, superseded, _, _, _ = ds.merge(store, v1, "single-record", True, "ci 2")
    assert applied == [] and again["production--api.json"]["version"] == "2.0.0"
    assert superseded == [{"name": "production--api.json", "service": "api", "environment": "production",
                           "given": "2026-11-20T10:15:00Z", "stored": "2026-11-21T10:00:00Z",
                           "owner": "single-record", "source": ""}]
    # an identical record is fine whoever gives it, and keeps its owner
    same, applied, _, _, conflicts, _ = ds.merge(store, v2, "directory", False, "ci 3")
    assert applied == ["production--api.json"] and same == store and conflicts == []
    # a later one of the same owner replaces it
    v3 = entries(record("api", "3.0.0", "2026-11-22T10:00:00Z"))
    moved, _, _, _, _, _ = ds.merge(store, v3, "single-record", False, "ci 4")
    assert moved["production--api.json"]["version"] == "3.0.0"
    assert moved["production--api.json"]["registered_by"] == "ci 4"


def test_another_owner_may_not_repoint_or_remove_a_service_without_takeover():
    store, _, _, _, _, _ = ds.merge({}, entries(record("api"), record("web")), "team-a", True, "a")
    later = entries(record("api", "2.0.0", "2026-11-21T10:00:00Z"),
                    record("web", at="2026-11-21T10:00:00Z", status="removed"))
    after, applied, _, _, conflicts, taken = ds.merge(store, later, "team-b", False, "b")
    assert applied == [] and after == store and taken == []
    assert [(c["name"], c["owner"], c["registered_by"]) for c in conflicts] == [
        ("production--api.json", "team-a", "a"), ("production--web.json", "team-a", "a")]
    message = ds.conflict_message(conflicts, "team-b", "/s/store.json")
    assert "production--api.json: service api in environment production belongs to owner 'team-a'" in message
    assert "this run's owner is 'team-b' (deployment_owner)" in message and "deployment_takeover" in message
    # takeover names the services (with or without .json) that may move
    moved, applied, _, _, conflicts, taken = ds.merge(store, later, "team-b", False, "b",
                                                      takeover=["production--api", "production--web.json"])
    assert conflicts == [] and applied == ["production--api.json", "production--web.json"]
    assert taken == [{"name": "production--api.json", "from": "team-a"},
                     {"name": "production--web.json", "from": "team-a"}]
    assert moved["production--api.json"]["owner"] == "team-b" and moved["production--web.json"]["status"] == "removed"
    # a tombstone belongs to no one: a later record of any owner brings the service back
    back, applied, _, _, conflicts, _ = ds.merge(moved, entries(record("web", at="2026-11-22T00:00:00Z")),
                                                 "team-c", False, "c")
    assert conflicts == [] and back["production--web.json"]["owner"] == "team-c"
    with pytest.raises(ds.StoreError, match="takeover .*'../x'"):
        ds.takeover_names(["../x"])


def test_prune_removes_only_the_runs_own_entries():
    store, _, _, _, *_ = ds.merge({}, entries(record("a"), record("b")), "directory", True, "dir")
    store, _, _, _, *_ = ds.merge(store, entries(record("single")), "single-record", False, "one")
    store, _, _, _, *_ = ds.merge(store, entries(record("other")), "team-b", True, "b")
    after, applied, _, pruned, *_ = ds.merge(store, entries(record("a")), "directory", True, "dir")
    assert pruned == ["production--b.json"] and applied == ["production--a.json"]
    assert {name: e["status"] for name, e in after.items()} == {
        "production--a.json": "deployed", "production--b.json": "removed",
        "production--single.json": "deployed", "production--other.json": "deployed"}
    # a pruned entry is a tombstone without precedence: an older record may come back
    back, applied, _, _, *_ = ds.merge(after, entries(record("b", at="2020-01-01T00:00:00Z")), "x", False, "x")
    assert applied == ["production--b.json"] and back["production--b.json"]["status"] == "deployed"


def test_removal_record_leaves_a_tombstone_that_older_records_cannot_pass():
    store, _, _, _, *_ = ds.merge({}, entries(record("api")), "single-record", False, "one")
    removal = entries(record("api", at="2026-11-21T00:00:00Z", status="removed"))
    gone, applied, _, _, *_ = ds.merge(store, removal, "single-record", False, "dir")
    assert gone["production--api.json"]["status"] == "removed" and "file_sd" not in gone["production--api.json"]
    _, applied, superseded, _, *_ = ds.merge(gone, entries(record("api")), "single-record", False, "late")
    assert applied == [] and superseded[0]["stored"] == "2026-11-21T00:00:00Z"


# --------------------------------------------------------------------------
# the module's update on directories

def params(tmp_path: Path, given: dict, owner: str = "single-record", prune: bool = False, token: str = "t1") -> dict:
    for sub in ("sd", "tf"):
        (tmp_path / sub).mkdir(exist_ok=True)
    return {"path": str(tmp_path / "state"), "entries": given, "owner": owner, "prune": prune,
            "untracked_owner": "directory", "file_sd_dir": str(tmp_path / "sd"), "textfile_dir": str(tmp_path / "tf"),
            "lock_token": token, "lock_holder": f"test {token}", "lock_timeout": 2, "lock_lease": 60}


def apply(tmp_path: Path, result: dict) -> None:
    """What the playbook's file_set calls do with the result."""
    for sub, key in (("sd", "file_sd"), ("tf", "textfile")):
        for name, content in result[key]["write"].items():
            (tmp_path / sub / name).write_text(content)
        for name in result[key]["remove"]:
            (tmp_path / sub / name).unlink()


def test_update_derives_the_files_from_the_store(tmp_path):
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "production--legacy.json").write_text("[]\n")  # from before the store
    (tmp_path / "sd" / "notes.txt").write_text("not ours")
    single = ds.update(params(tmp_path, entries(record("one"))), check_mode=False)
    assert single["changed"] and single["file_sd"]["remove"] == []  # a single record adopts nothing
    assert list(single["file_sd"]["write"]) == ["production--one.json"]
    assert list(single["textfile"]["write"]) == ["deployment--production--one.prom"]
    assert single["time"] <= time.time() and single["lock"]["holder"] == "test t1"
    apply(tmp_path, single)
    ds.release(str(tmp_path / "state"), "t1")
    directory = ds.update(params(tmp_path, entries(record("a"), record("b")), "directory", True, "t2"), False)
    assert sorted(directory["file_sd"]["write"]) == ["production--a.json", "production--b.json"]
    assert directory["file_sd"]["remove"] == ["production--legacy.json"]  # the default owner adopts it
    assert "records" not in directory
    listed = ds.update(dict(params(tmp_path, entries(record("a"), record("b")), "directory", True, "t2"),
                            return_records=True), True)
    assert [r["service"] for r in listed["records"]] == ["a", "b", "one"]
    apply(tmp_path, directory)
    # drift is repaired by any run: a file edited by hand is written again
    (tmp_path / "sd" / "production--one.json").write_text("[]\n")
    again = ds.update(params(tmp_path, entries(record("a"), record("b")), "directory", True, "t2"), False)
    assert not again["changed"] and list(again["file_sd"]["write"]) == ["production--one.json"]
    # without node_exporter's directory there is nothing to say about textfiles
    assert ds.update(dict(params(tmp_path, {}, token="t2"), textfile_dir=str(tmp_path / "no")), False)["textfile"] is None


def test_check_mode_takes_no_lock_and_writes_nothing(tmp_path):
    result = ds.update(params(tmp_path, entries(record("a"))), check_mode=True)
    assert result["changed"] and "lock" not in result and list(result["file_sd"]["write"]) == ["production--a.json"]
    assert not (tmp_path / "state").exists()


def test_store_errors_name_the_file(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "store.json").write_text("{half")
    with pytest.raises(ds.StoreError, match=r"state/store.json: not valid JSON .*move it away"):
        ds.update(params(tmp_path, {}), False)
    with pytest.raises(ds.StoreError, match="file_sd_dir .*: not a directory"):
        ds.update(dict(params(tmp_path, {}), file_sd_dir=str(tmp_path / "missing")), False)
    with pytest.raises(ds.StoreError, match="entry 'x.json': expected a file name"):
        ds.check_entries({"x.json": {}})
    with pytest.raises(ds.StoreError, match="entry a--b.json: a deployed entry needs"):
        ds.check_entries({"a--b.json": {"epoch_us": 1, "status": "deployed"}})


# --------------------------------------------------------------------------
# the lock

def test_lock_waits_then_names_its_holder(tmp_path):
    state = str(tmp_path)
    clock = [1000.0]
    first = ds.acquire(state, "run-a", "ci@runner-1 pid 42, record production--api", 10, 60, clock=lambda: clock[0])
    assert first["holder"].startswith("ci@runner-1") and first["waited"] == 0
    assert ds.acquire(state, "run-a", "again", 10, 60, clock=lambda: clock[0])  # the holder may take it again

    def tick(seconds):
        clock[0] += seconds
    with pytest.raises(ds.LockBusy) as err:
        ds.acquire(state, "run-b", "other", 3, 60, clock=lambda: clock[0], sleep=tick)
    message = str(err.value)
    assert "lock.json is held by again since 1970-01-01T00:16:40Z (lease until 1970-01-01T00:17:40Z)" in message
    assert "waited 3 s" in message
    # an abandoned lock (lease over) is taken over, and says whose it was
    clock[0] += 100
    taken = ds.acquire(state, "run-b", "other", 3, 60, clock=lambda: clock[0])
    assert taken["took_over"]["holder"] == "again"
    assert not ds.release(state, "run-a") and ds.release(state, "run-b") and not (tmp_path / "lock.json").exists()


def test_lock_serializes_real_processes(tmp_path):
    """Four processes take the lock in turn: never two inside at once."""
    # the module imports the collection's module_utils by the collection's name
    script = (f"import importlib.util, sys, time\n"
              f"sys.path.insert(0, {str(REPO / 'collections')!r})\n"
              f"spec = importlib.util.spec_from_file_location('m', {str(REPO / 'plugins' / 'modules' / 'deployment_store.py')!r})\n"
              f"m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
              f"d = sys.argv[1]; t = sys.argv[2]\n"
              f"m.acquire(d, t, t, 30, 60)\n"
              f"open(d + '/log', 'a').write('in ' + t + '\\n'); time.sleep(0.3)\n"
              f"open(d + '/log', 'a').write('out ' + t + '\\n'); m.release(d, t)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), f"p{i}"]) for i in range(4)]
    assert all(proc.wait(timeout=60) == 0 for proc in procs)
    lines = (tmp_path / "log").read_text().split()
    pairs = list(zip(lines[0::4], lines[1::4], lines[2::4], lines[3::4]))
    assert len(pairs) == 4 and all((came, left) == ("in", "out") and who == again
                                   for came, who, left, again in pairs), lines


# --------------------------------------------------------------------------
# playbooks/deployments.yml: six runs at once

def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The file_sd directory, node_exporter's textfile directory and a records directory, made."""
    made = (tmp_path / "etc" / "file_sd" / "deployments", tmp_path / "tf", tmp_path / "records")
    for path in made:
        path.mkdir(parents=True, exist_ok=True)
    return made


def playbook(tmp_path: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    inventory = tmp_path / "inventory.json"
    if not inventory.exists():
        inventory.write_text(json.dumps({"all": {"children": {"prometheus": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False,
            "prometheus_config_dir": str(tmp_path / "etc"), "node_exporter_textfile_dir": str(tmp_path / "tf"),
            "prometheus_user": MY_GROUP, "deployment_store_dir": str(tmp_path / "state")}}}}}}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([ansible_playbook(), "-i", str(inventory), str(REPO / "playbooks" / "deployments.yml"),
                           "-e", "deployment_gate=false", *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


def test_concurrent_runs_add_up_and_a_directory_run_keeps_single_registrations(tmp_path):
    sd, tf, records = layout(tmp_path)
    for i in range(12):
        (records / f"dir{i}.json").write_text(json.dumps(record(f"dir{i}")))
    singles = [record(f"single{i}", targets=[f"single{i}-a.example.com:8000", f"single{i}-b.example.com:9000"])
               for i in range(5)]
    runs = [["-e", f"deployment_records_dir={records}"]]
    runs += [record_file_args(tmp_path / "singles", one) for one in singles]

    seen_bad, stop = [], threading.Event()

    def watch():  # Prometheus' view: every file it can read is complete JSON, at any moment
        while not stop.is_set():
            for path in sd.glob("*.json"):
                try:
                    json.loads(path.read_text())
                except FileNotFoundError:
                    pass
                except ValueError as exc:
                    seen_bad.append(f"{path.name}: {exc}")
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
            results = list(pool.map(lambda args: playbook(tmp_path, *args), runs))
    finally:
        stop.set()
        watcher.join()
    elapsed = time.monotonic() - started
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert not seen_bad, seen_bad[:5]
    expected = sorted([f"production--dir{i}.json" for i in range(12)] + [f"production--single{i}.json" for i in range(5)])
    assert sorted(p.name for p in sd.iterdir()) == expected  # no temporary or partial file left
    # with the store's per-shard summary (deployment_store_targets, issue 27)
    assert sorted(p.name for p in tf.iterdir()) == sorted(
        ["deployment--" + name.replace(".json", ".prom") for name in expected] + ["deployment_store.prom"])
    for i, one in enumerate(singles):
        assert json.loads((sd / f"production--single{i}.json").read_text())[0]["targets"] == sorted(one["targets"])
    assert json.loads((sd / "production--dir7.json").read_text())[0]["targets"] == ["dir7.example.com:8000"]
    assert not (tmp_path / "state" / "lock.json").exists()
    print(f"six concurrent runs: {elapsed:.1f} s")

    # Another directory run without two of its records: those two go, the single registrations stay.
    (records / "dir0.json").unlink()
    (records / "dir1.json").unlink()
    again = playbook(tmp_path, "-e", f"deployment_records_dir={records}")
    assert again.returncode == 0, again.stdout[-3000:]
    remaining = sorted(p.name for p in sd.iterdir())
    assert remaining == [name for name in expected if name not in ("production--dir0.json", "production--dir1.json")]
    store = json.loads((tmp_path / "state" / "store.json").read_text())["entries"]
    assert store["production--single3.json"]["owner"] == "single-record"
    assert store["production--dir5.json"]["owner"] == "directory"


def test_a_waiting_run_names_the_holder(tmp_path):
    sd = layout(tmp_path)[0]
    (tmp_path / "state").mkdir()
    ds.acquire(str(tmp_path / "state"), "other-run", "ci@runner-7 pid 4711, record production--api 2.0.0", 1, 600)
    result = playbook(tmp_path, *record_file_args(tmp_path / "singles", record("api")),
                      "-e", "deployment_lock_timeout=1")
    assert result.returncode != 0
    assert "is held by ci@runner-7 pid 4711, record production--api 2.0.0 since" in result.stdout, result.stdout[-3000:]
    assert not (sd / "production--api.json").exists()
    assert (tmp_path / "state" / "lock.json").exists()  # someone else's lock is left alone


# --------------------------------------------------------------------------
# write: true (one round trip per host: store, file_sd, health checks, textfiles)

def write_params(tmp_path: Path, given: dict, health: dict | None = None, **extra) -> dict:
    """Parameters as the playbook gives them: the plan's entries and health-check target groups, as data."""
    return dict(params(tmp_path, given, **extra), write=True, file_sd_group=MY_GROUP,
                health_dir=str(tmp_path / "health"), health=health or {})


def test_write_makes_every_directory_match_the_store_in_one_call(tmp_path):
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "production--legacy.json").write_text("[]\n")
    plan = dc.deployment_plan([record("a", health_url="http://a.example.com/health"), record("b")])
    first = ds.update(write_params(tmp_path, plan["entries"], plan["health"], owner="directory", prune=True),
                      check_mode=False)
    assert first["changed"] and first["written"] == ["production--a.json", "production--b.json"]
    assert sorted(p.name for p in (tmp_path / "sd").iterdir()) == ["production--a.json", "production--b.json"]
    assert (tmp_path / "sd" / "production--a.json").read_text() == json.dumps(
        [plan["entries"]["production--a.json"]["group"]], indent=2, sort_keys=True) + "\n"
    assert oct((tmp_path / "sd" / "production--a.json").stat().st_mode & 0o777) == "0o640"
    assert [p.name for p in (tmp_path / "health").iterdir()] == ["production--a.json"]
    assert oct((tmp_path / "health").stat().st_mode & 0o777) == "0o750"
    assert json.loads((tmp_path / "health" / "production--a.json").read_text())[0]["targets"] == [
        "http://a.example.com/health"]
    assert sorted(p.name for p in (tmp_path / "tf").iterdir()) == [
        "deployment--production--a.prom", "deployment--production--b.prom"]
    assert first["file_sd"]["write"] == ["production--a.json", "production--b.json"]  # names only
    ds.release(str(tmp_path / "state"), "t1")
    # nothing to change: nothing written, not changed
    again = ds.update(write_params(tmp_path, plan["entries"], plan["health"], owner="directory", prune=True),
                      check_mode=False)
    assert not again["changed"] and again["written"] == [] and again["files"]["changed_sets"] == []
    ds.release(str(tmp_path / "state"), "t1")
    # b goes from the directory: its files go; a loses its health check
    smaller = dc.deployment_plan([record("a")])
    third = ds.update(write_params(tmp_path, smaller["entries"], smaller["health"], owner="directory", prune=True),
                      check_mode=False)
    assert third["pruned"] == ["production--b.json"] and third["changed"]
    assert [p.name for p in (tmp_path / "sd").iterdir()] == ["production--a.json"]
    assert list((tmp_path / "health").iterdir()) == []
    assert [p.name for p in (tmp_path / "tf").iterdir()] == ["deployment--production--a.prom"]


def test_write_in_check_mode_reports_and_touches_nothing(tmp_path):
    (tmp_path / "sd").mkdir()
    plan = dc.deployment_plan([record("a", health_url="http://a.example.com/health")])
    result = ds.update(write_params(tmp_path, plan["entries"], plan["health"]), check_mode=True)
    assert result["changed"] and result["written"] == ["production--a.json"]
    assert sorted(result["files"]["changed_sets"]) == ["file_sd", "health", "textfile"]
    assert list((tmp_path / "sd").iterdir()) == [] and not (tmp_path / "health").exists()
    assert not (tmp_path / "state").exists()


# --------------------------------------------------------------------------
# issue 24 row 3: a superseded record fails the run; an owner per service

def store_entries(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "state" / "store.json").read_text())["entries"]


def single(tmp_path: Path, body: dict) -> list[str]:
    """The arguments that give the playbook one record (a record file of its own)."""
    return record_file_args(tmp_path / "singles", body)


def test_superseded_record_fails_the_run_naming_file_service_environment_and_later_time(tmp_path):
    sd, _tf, records = layout(tmp_path)
    (records / "api-2.json").write_text(json.dumps(record("api", "2.0.0", "2026-11-21T10:00:00Z")))
    first = playbook(tmp_path, "-e", f"deployment_records_dir={records}")
    assert first.returncode == 0, first.stdout[-3000:]
    before = (sd / "production--api.json").read_text()
    # the directory now holds only an older record of api (its later one was lost): the store keeps the later
    (records / "api-2.json").unlink()
    (records / "api-1.json").write_text(json.dumps(record("api", "1.0.0", "2026-11-20T10:15:00Z")))
    (records / "web.json").write_text(json.dumps(record("web")))
    run = playbook(tmp_path, "-e", f"deployment_records_dir={records}")
    assert run.returncode != 0, run.stdout[-3000:]
    out = " ".join(run.stdout.split())
    assert ("Superseded, nothing written: production--api.json: the record of service api in environment production "
            "deployed_at 2026-11-20T10:15:00Z (record file " + str(records / "api-1.json") + ")") in out, out[-3000:]
    assert "deployed_at 2026-11-21T10:00:00Z (owner directory)" in out
    # nothing of the run was written (web neither), and the lock is given back
    assert (sd / "production--api.json").read_text() == before and not (sd / "production--web.json").exists()
    assert set(store_entries(tmp_path)) == {"production--api.json"}
    assert not (tmp_path / "state" / "lock.json").exists()
    # a single record older than the store's fails the same way, naming its source
    one = playbook(tmp_path, *single(tmp_path, record("api", "0.9.0")), "-e", "deployment_owner=directory")
    assert one.returncode != 0, one.stdout[-3000:]
    assert re.search(r"production--api.json: the record of service api in environment production deployed_at "
                     r"2026-11-20T10:15:00Z \(record file (command line|\S+\.json)\)", " ".join(one.stdout.split())), \
        one.stdout[-3000:]


def test_another_owner_is_refused_and_takeover_moves_the_service(tmp_path):
    sd, _tf, records = layout(tmp_path)
    team_a = playbook(tmp_path, *single(tmp_path, record("api")), "-e", "deployment_owner=team-a")
    assert team_a.returncode == 0, team_a.stdout[-3000:]
    assert store_entries(tmp_path)["production--api.json"]["owner"] == "team-a"
    before = (sd / "production--api.json").read_text()
    moved = record("api", "2.0.0", "2026-11-21T10:00:00Z", targets=["evil.example.com:8000"])
    # another owner, in either mode, may neither repoint nor remove it
    for args in ([*single(tmp_path, moved), "-e", "deployment_owner=team-b"],
                 single(tmp_path, record("api", at="2026-11-21T10:00:00Z", status="removed"))):
        run = playbook(tmp_path, *args)
        assert run.returncode != 0, run.stdout[-3000:]
        out = " ".join(run.stdout.split())
        assert "production--api.json: service api in environment production belongs to owner 'team-a'" in out, out[-3000:]
        assert "deployment_takeover" in out and "(deployment_owner)" in out
        assert (sd / "production--api.json").read_text() == before
        assert not (tmp_path / "state" / "lock.json").exists()
    (records / "api.json").write_text(json.dumps(moved))
    run = playbook(tmp_path, "-e", f"deployment_records_dir={records}", "-e", "deployment_owner=team-b")
    assert run.returncode != 0 and "belongs to owner 'team-a'" in run.stdout, run.stdout[-3000:]
    # with the takeover, team-b's directory takes it, and says so
    run = playbook(tmp_path, "-e", f"deployment_records_dir={records}", "-e", "deployment_owner=team-b",
                   "-e", json.dumps({"deployment_takeover": ["production--api"]}))
    assert run.returncode == 0, run.stdout[-3000:]
    assert "production--api.json: taken over from owner 'team-a' by owner 'team-b'" in run.stdout + run.stderr
    assert json.loads((sd / "production--api.json").read_text())[0]["targets"] == ["evil.example.com:8000"]
    assert store_entries(tmp_path)["production--api.json"]["owner"] == "team-b"
    # a bad owner name is refused
    bad = playbook(tmp_path, *single(tmp_path, record("x")), "-e", json.dumps({"deployment_owner": "a b"}))
    assert bad.returncode != 0 and "owner (deployment_owner) 'a b'" in bad.stdout, bad.stdout[-3000:]


# --------------------------------------------------------------------------
# issue 24 row 8: a link or FIFO in node_exporter's (group-writable) textfile directory,
# and directories a less-privileged user could redirect

SECRET = "root-only secret 7f3a"


@pytest.mark.parametrize("what", ["symlink", "fifo"])
@pytest.mark.parametrize("flags", [("--diff",), ("--check", "--diff"), ()])
def test_a_link_or_fifo_in_the_textfile_directory_fails_the_run_without_reading_it(tmp_path, what, flags):
    sd, tf, _records = layout(tmp_path)
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    path = tf / "deployment--production--api.prom"
    if what == "symlink":
        path.symlink_to(secret)
    else:
        os.mkfifo(path)
    run = playbook(tmp_path, *single(tmp_path, record("api")), *flags,
                   timeout=120)  # a hang on the FIFO fails the test
    assert run.returncode != 0, run.stdout[-3000:]
    out = " ".join(run.stdout.split())
    assert f"{path}: is a {'symbolic link' if what == 'symlink' else 'FIFO'}" in out, out[-3000:]
    assert SECRET not in run.stdout + run.stderr and secret.read_text() == SECRET
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "state" / "lock.json").exists()  # given back
    # removed by hand, the next run writes everything
    path.unlink()
    again = playbook(tmp_path, *single(tmp_path, record("api")))
    assert again.returncode == 0, again.stdout[-3000:]
    assert (sd / "production--api.json").exists() and path.is_file() and not path.is_symlink()


def test_directories_a_less_privileged_user_could_redirect_are_refused(tmp_path):
    given = entries(record("a"))
    base = params(tmp_path, given)
    # a textfile directory that is a symbolic link owned by another user
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "tf-link"
    link.symlink_to(tmp_path / "elsewhere")
    os.lchown(link, 65534, 65534)
    with pytest.raises(ds.StoreError, match=r"textfile_dir .*tf-link is a symbolic link owned by uid 65534 \(not followed\)"):
        ds.update(dict(base, textfile_dir=str(link)), check_mode=True)
    # a file_sd directory below a directory everyone may write to (no sticky bit)
    (tmp_path / "open" / "sd").mkdir(parents=True)
    (tmp_path / "open").chmod(0o777)
    with pytest.raises(ds.StoreError, match=r"file_sd_dir .*open may be written by everyone, so .*open/sd could be replaced"):
        ds.update(dict(base, file_sd_dir=str(tmp_path / "open" / "sd")), check_mode=True)
    # the store's own directory may not be writable by another group
    (tmp_path / "state").mkdir()
    os.chown(tmp_path / "state", 0, 65534)
    (tmp_path / "state").chmod(0o770)
    with pytest.raises(ds.StoreError, match=r"path .*state may be written by group 65534"):
        ds.update(base, check_mode=True)
    (tmp_path / "state").chmod(0o750)
    # a store file that is a link is not read
    (tmp_path / "state" / "store.json").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ds.StoreError, match=r"store.json: is a symbolic link"):
        ds.update(base, check_mode=True)


# --------------------------------------------------------------------------
# issue 24 row 9: locks in one order across hosts, a lease longer than the wait

def test_lease_must_be_longer_than_the_wait(tmp_path):
    with pytest.raises(ds.StoreError, match=r"lock_lease 600 s is not longer than lock_timeout 600 s"):
        ds.acquire(str(tmp_path), "t", "h", 600, 600)
    with pytest.raises(ds.StoreError, match=r"lock_timeout \(deployment_lock_timeout\) -1"):
        ds.check_lease(-1, 10)
    assert not (tmp_path / "lock.json").exists()


def test_runs_taking_locks_in_one_order_never_wait_on_each_other(tmp_path):
    """Two runs, two hosts, each run takes both locks in sorted order and holds them a while: both
    finish; neither waits out its timeout nor takes over a live lock."""
    hosts = [tmp_path / "p1", tmp_path / "p2"]
    for host in hosts:
        host.mkdir()
    taken = []

    def run(token):
        locks = [ds.acquire(str(host), token, token, 20, 20 * len(hosts) + 30) for host in sorted(hosts)]
        time.sleep(0.5)  # the gate
        for host in hosts:
            ds.release(str(host), token)
        taken.extend(locks)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(run, ["run-a", "run-b"]))
    assert len(taken) == 4 and not any("took_over" in lock for lock in taken)
    assert max(lock["waited"] for lock in taken) < 10


class FakePrometheus:
    """/api/v1/targets of a Prometheus that scrapes every target of the given file_sd directories
    up, one second after its file was written (so the gate holds the locks a while)."""

    def __init__(self, sd_dirs):
        import http.server
        from datetime import datetime, timezone
        dirs = sd_dirs

        class Handler(QuietHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                active = []
                now = time.time()
                for sd in dirs:
                    for path in sorted(sd.glob("*.json")):
                        if now - path.stat().st_mtime < 1.0:
                            continue
                        for group in json.loads(path.read_text()):
                            for target in group["targets"]:
                                active.append({
                                    "scrapePool": "deployments", "health": "up", "lastError": "",
                                    "discoveredLabels": {"__address__": target, **group.get("labels", {})},
                                    "lastScrape": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
                self.answer(200, json.dumps({"status": "success", "data": {"activeTargets": active}}).encode())

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_two_runs_against_an_ha_pair_take_the_locks_in_one_order(tmp_path):
    """Two concurrent runs, two Prometheus hosts (p1, p2, each its own store): both pass their gate;
    no run takes over the other's live lock, and the lease outlasts every wait."""
    hosts = {}
    for name in ("p2", "p1"):  # inventory order is not the lock order: the play's is sorted
        base = tmp_path / name
        for sub in ("etc/file_sd/deployments", "tf", "state"):
            (base / sub).mkdir(parents=True)
        hosts[name] = base
    prometheus = FakePrometheus([base / "etc" / "file_sd" / "deployments" for base in hosts.values()])
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"prometheus": {"hosts": {name: {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False,
        "prometheus_config_dir": str(base / "etc"), "node_exporter_textfile_dir": str(base / "tf"),
        "prometheus_user": MY_GROUP, "prometheus_listen_address": "127.0.0.1", "prometheus_port": prometheus.port,
        "deployment_store_dir": str(base / "state")} for name, base in hosts.items()}}}}}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}

    def run(service):
        return subprocess.run(
            [ansible_playbook(), "-i", str(inventory), str(REPO / "playbooks" / "deployments.yml"),
             *single(tmp_path, record(service)), "-e", f"deployment_owner=team-{service}",
             "-e", "deployment_gate_interval=1", "-e", "deployment_gate_timeout=30", "-e", "deployment_lock_timeout=60"],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=300)

    seen, stop = {}, threading.Event()

    def watch():  # every lock as it is held: (host, holder) -> (first seen, lease)
        while not stop.is_set():
            for name, base in hosts.items():
                try:
                    lock = json.loads((base / "state" / "lock.json").read_text())
                except (FileNotFoundError, ValueError):
                    continue
                seen.setdefault((name, lock["holder"]), (time.monotonic(), lock["expires"] - lock["since"]))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(run, ["a", "b"]))
    finally:
        stop.set()
        watcher.join()
        prometheus.stop()
    for result in results:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "took over the deployment lock" not in result.stdout + result.stderr
    for base in hosts.values():
        assert sorted(p.name for p in (base / "etc" / "file_sd" / "deployments").iterdir()) == [
            "production--a.json", "production--b.json"]
        assert not (base / "state" / "lock.json").exists()
    # lease = wait x hosts + gate looks x (interval + 10 s) + 300 s, longer than the 60 s wait
    assert seen and {round(lease) for _, lease in seen.values()} == {60 * 2 + 30 * (1 + 10) + 300}
    # each run took p1 before p2
    for holder in {holder for _, holder in seen}:
        if ("p1", holder) in seen and ("p2", holder) in seen:
            assert seen[("p1", holder)][0] <= seen[("p2", holder)][0], seen
