"""Unit tests of plugins/modules/file_set.py (one step for a whole set of files).

The module's logic is imported and called on a tmp directory; a few tests run
it through ``ansible localhost -m`` (local connection) and through
playbooks/deployments.yml, as a playbook does.
"""
from __future__ import annotations

import grp
import importlib.util
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import record_file_args

REPO = Path(__file__).resolve().parents[2]
MODULE_PATH = REPO / "plugins" / "modules" / "file_set.py"

spec = importlib.util.spec_from_file_location("file_set", MODULE_PATH)
fs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fs)

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_writes_then_nothing_to_change(tmp_path):
    out = fs.file_set(str(tmp_path), {"b.json": "[]\n", "a.json": "{}\n"}, mode="0640")
    assert out == {"changed": True, "written": ["a.json", "b.json"], "removed": [], "unchanged": []}
    assert (tmp_path / "a.json").read_text() == "{}\n"
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o640
    again = fs.file_set(str(tmp_path), {"b.json": "[]\n", "a.json": "{}\n"}, mode="0640")
    assert again == {"changed": False, "written": [], "removed": [], "unchanged": ["a.json", "b.json"]}
    assert names(tmp_path) == ["a.json", "b.json"]  # no temporary file left behind


def test_changed_content_is_replaced_atomically(tmp_path):
    fs.file_set(str(tmp_path), {"a.json": "old\n"})
    inode = (tmp_path / "a.json").stat().st_ino
    out = fs.file_set(str(tmp_path), {"a.json": "new\n", "b.json": "x"})
    assert out["written"] == ["a.json", "b.json"] and out["unchanged"] == []
    assert (tmp_path / "a.json").read_text() == "new\n"
    assert (tmp_path / "a.json").stat().st_ino != inode  # a new file renamed over the old one


def test_mode_owner_group(tmp_path):
    fs.file_set(str(tmp_path), {"a": "x"}, owner=ME, group=MY_GROUP, mode="0600")
    st = (tmp_path / "a").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.getuid(), os.getgid(), 0o600)
    # only the mode differs: written (fixed in place), content kept
    out = fs.file_set(str(tmp_path), {"a": "x"}, owner=str(os.getuid()), group=str(os.getgid()), mode="0644")
    assert out["written"] == ["a"] and stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644
    assert fs.file_set(str(tmp_path), {"a": "x"}, owner=ME, mode="0644")["changed"] is False
    with pytest.raises(fs.FileSetError, match="owner 'no-such-user-xyz': no such user"):
        fs.file_set(str(tmp_path), {"a": "x"}, owner="no-such-user-xyz")
    with pytest.raises(fs.FileSetError, match="group 'no-such-group-xyz': no such group"):
        fs.file_set(str(tmp_path), {"a": "x"}, group="no-such-group-xyz")
    with pytest.raises(fs.FileSetError, match="mode '0x9'"):
        fs.file_set(str(tmp_path), {"a": "x"}, mode="0x9")


def test_prune_removes_only_matching_names(tmp_path):
    for name in ("prod--old.json", "prod--keep.json", "other.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    out = fs.file_set(str(tmp_path), {"prod--keep.json": "x", "prod--new.json": "y"},
                      mode="0644", prune_patterns=["*--*.json"])
    os.chmod(tmp_path / "prod--keep.json", 0o644)
    assert out["removed"] == ["prod--old.json"]
    assert names(tmp_path) == ["notes.txt", "other.json", "prod--keep.json", "prod--new.json"]
    # an empty set with prune removes every owned file
    out = fs.file_set(str(tmp_path), {}, prune_patterns=["*--*.json"])
    assert out["removed"] == ["prod--keep.json", "prod--new.json"] and out["changed"] is True
    assert names(tmp_path) == ["notes.txt", "other.json"]


def test_without_prune_only_given_files_and_explicit_removals(tmp_path):
    (tmp_path / "prod--a.json").write_text("x")
    (tmp_path / "prod--gone.json").write_text("x")
    out = fs.file_set(str(tmp_path), {"prod--b.json": "y"}, remove=["prod--gone.json", "prod--absent.json"])
    assert out["written"] == ["prod--b.json"] and out["removed"] == ["prod--gone.json"]
    assert names(tmp_path) == ["prod--a.json", "prod--b.json"]
    # removing what is absent changes nothing
    assert fs.file_set(str(tmp_path), {}, remove=["prod--gone.json"])["changed"] is False
    # a name both given and listed for removal is written, not removed
    out = fs.file_set(str(tmp_path), {"prod--a.json": "z"}, remove=["prod--a.json"])
    assert out["removed"] == [] and (tmp_path / "prod--a.json").read_text() == "z"


def test_check_mode_changes_nothing(tmp_path):
    (tmp_path / "s--old.json").write_text("x")
    (tmp_path / "s--a.json").write_text("before")
    out = fs.file_set(str(tmp_path), {"s--a.json": "after", "s--b.json": "b"},
                      prune_patterns=["*--*.json"], check_mode=True)
    assert out["changed"] is True
    assert out["written"] == ["s--a.json", "s--b.json"] and out["removed"] == ["s--old.json"]
    assert names(tmp_path) == ["s--a.json", "s--old.json"]
    assert (tmp_path / "s--a.json").read_text() == "before"


def test_diff_per_changed_file(tmp_path):
    (tmp_path / "a").write_text("one\n")
    (tmp_path / "old").write_text("gone\n")
    os.chmod(tmp_path / "a", 0o644)
    out = fs.file_set(str(tmp_path), {"a": "two\n", "c": "new\n"}, remove=["old"], diff=True, check_mode=True)
    by_header = {d["before_header"]: d for d in out["diff"]}
    assert by_header[str(tmp_path / "a")]["before"] == "one\n"
    assert by_header[str(tmp_path / "a")]["after"] == "two\n"
    assert by_header[str(tmp_path / "c")] == {"before_header": str(tmp_path / "c"), "after_header": str(tmp_path / "c"),
                                              "before": "", "after": "new\n"}
    assert by_header[str(tmp_path / "old")]["after"] == "" and by_header[str(tmp_path / "old")]["before"] == "gone\n"
    assert len(out["diff"]) == 3
    # no diff entry for an unchanged file
    fs.file_set(str(tmp_path), {"a": "two\n"})
    assert fs.file_set(str(tmp_path), {"a": "two\n"}, diff=True)["diff"] == []


@pytest.mark.parametrize("bad", ["../escape.json", "sub/dir.json", "..", ".", "", "a..b", "/abs"])
def test_bad_names_are_refused_naming_the_file(tmp_path, bad):
    with pytest.raises(fs.FileSetError, match="must be|non-empty") as err:
        fs.file_set(str(tmp_path), {bad: "x"})
    assert repr(bad) in str(err.value)
    with pytest.raises(fs.FileSetError, match="remove entry"):
        fs.file_set(str(tmp_path), {}, remove=[bad])
    assert names(tmp_path) == []


def test_other_errors(tmp_path):
    with pytest.raises(fs.FileSetError, match="not a directory"):
        fs.file_set(str(tmp_path / "missing"), {"a": "x"})
    with pytest.raises(fs.FileSetError, match="prune pattern"):
        fs.file_set(str(tmp_path), {}, prune_patterns=["sub/*"])
    with pytest.raises(fs.FileSetError, match="file a: content must be a string"):
        fs.file_set(str(tmp_path), {"a": 3})
    (tmp_path / "d--x.json").mkdir()
    with pytest.raises(fs.FileSetError, match="d--x.json: is a directory"):
        fs.file_set(str(tmp_path), {}, prune_patterns=["*--*.json"])


def adhoc(args: dict, *flags: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [tool("ansible"), "localhost", "-c", "local", "-i", "localhost,", "-e",
         f"ansible_python_interpreter={sys.executable}", "-m", "monstack.stack.file_set",
         "-a", json.dumps(args), "-o", *flags],
        capture_output=True, text=True, env=env(), cwd=REPO, timeout=120)
    line = proc.stdout.strip().splitlines()[-1]
    return proc.returncode, json.loads(line.split("=>", 1)[1])


def test_module_through_ansible(tmp_path):
    (tmp_path / "x--stale.json").write_text("x")
    rc, out = adhoc({"path": str(tmp_path), "files": {"x--a.json": "a\n"}, "owner": ME, "mode": "0640",
                     "prune_patterns": ["*--*.json"]}, "--check", "--diff")
    assert rc == 0 and out["changed"] and out["written"] == ["x--a.json"] and out["removed"] == ["x--stale.json"]
    assert names(tmp_path) == ["x--stale.json"]
    rc, out = adhoc({"path": str(tmp_path), "files": {"x--a.json": "a\n"}, "owner": ME, "mode": "0640",
                     "prune_patterns": ["*--*.json"]})
    assert rc == 0 and out["changed"] and names(tmp_path) == ["x--a.json"]
    rc, out = adhoc({"path": str(tmp_path), "files": {"x--a.json": "a\n"}, "owner": ME, "mode": "0640"})
    assert rc == 0 and not out["changed"] and out["unchanged"] == ["x--a.json"]
    rc, out = adhoc({"path": str(tmp_path), "files": {"../x.json": "a"}})
    assert rc != 0 and "'../x.json'" in out["msg"]


def run_local(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_validate_all_or_nothing(tmp_path):
    """A set with one file the check rejects writes none of its files and
    names the file and the checker's message."""
    (tmp_path / "a.yml").write_text("old a\n")
    check = "grep -q good %s"
    with pytest.raises(fs.FileSetError, match=r"b\.yml: rejected by 'grep -q good %s' \(exit 1\)"):
        fs.file_set(str(tmp_path), {"a.yml": "good a\n", "b.yml": "bad b\n"}, mode="0640",
                    validate=check, run=run_local)
    assert (tmp_path / "a.yml").read_text() == "old a\n"
    assert names(tmp_path) == ["a.yml"]  # no temporary file left
    result = fs.file_set(str(tmp_path), {"a.yml": "good a\n", "b.yml": "good b\n"}, mode="0640",
                         validate=check, run=run_local)
    assert result["written"] == ["a.yml", "b.yml"]
    assert (tmp_path / "b.yml").read_text() == "good b\n"


def test_validate_needs_placeholder(tmp_path):
    with pytest.raises(fs.FileSetError, match="must contain %s"):
        fs.file_set(str(tmp_path), {"a": "x"}, validate="true", run=run_local)


def test_ansible_doc():
    proc = subprocess.run([tool("ansible-doc"), "--json", "monstack.stack.file_set"], capture_output=True,
                          text=True, env=env(), cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["monstack.stack.file_set"]
    assert set(doc["doc"]["options"]) == {"path", "dirs", "links", "sets", "files", "owner", "group", "mode",
                                       "prune_patterns", "remove", "validate"}
    assert set(doc["return"]) >= {"changed", "written", "removed", "unchanged"}
    assert "monstack.stack.file_set:" in doc["examples"]


# --------------------------------------------------------------------------
# playbooks/deployments.yml with localhost as the Prometheus server


def playbook(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"children": {"prometheus": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "prometheus_config_dir": str(tmp_path / "etc"), "node_exporter_textfile_dir": str(tmp_path / "tf"),
        "prometheus_user": MY_GROUP, "prometheus_port": 1,
        "deployment_store_dir": str(tmp_path / "state")}}}}}}))
    return subprocess.run([tool("ansible-playbook"), "-i", str(inventory), str(REPO / "playbooks" / "deployments.yml"),
                           "-e", "ansible_become=false", *args],
                          capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)


def record(service: str, **extra) -> dict:
    return {"service": service, "environment": "production", "version": "1.0.0",
            "deployed_at": "2026-11-20T10:15:00Z", "targets": [f"{service}.example.com:8000"], **extra}


def test_deployments_playbook_directory_single_and_gate(tmp_path):
    sd, tf, records = tmp_path / "etc" / "file_sd" / "deployments", tmp_path / "tf", tmp_path / "records"
    for d in (sd, tf, records):
        d.mkdir(parents=True)
    for i in range(30):
        (records / f"svc{i}.json").write_text(json.dumps(record(f"svc{i}")))
    (sd / "production--stale.json").write_text("[]")
    (tf / "deployment--production--stale.prom").write_text("")
    (tf / "other.prom").write_text("")
    proc = playbook(tmp_path, "-e", f"deployment_records_dir={records}", "-e", "deployment_gate=false")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert names(sd) == sorted(f"production--svc{i}.json" for i in range(30))
    # and the store's per-shard summary (deployment_store_targets, the orphan check's)
    assert names(tf) == sorted([f"deployment--production--svc{i}.prom" for i in range(30)]
                               + ["deployment_store.prom", "other.prom"])
    assert json.loads((sd / "production--svc7.json").read_text())[0]["targets"] == ["svc7.example.com:8000"]
    assert 'service="svc7"' in (tf / "deployment--production--svc7.prom").read_text()
    # nothing to change
    proc = playbook(tmp_path, "-e", f"deployment_records_dir={records}", "-e", "deployment_gate=false")
    assert proc.returncode == 0 and "changed=0" in proc.stdout, proc.stdout
    # one record removed on the command line by the directory's owner: only its two files go
    proc = playbook(tmp_path, *record_file_args(tmp_path / "singles", record("svc3", status="removed",
                                                                             deployed_at="2026-11-21T10:15:00Z")),
                    "-e", "deployment_gate=false", "-e", "deployment_owner=directory")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "production--svc3.json" not in names(sd) and len(names(sd)) == 29
    assert "deployment--production--svc3.prom" not in names(tf) and len(names(tf)) == 30 + 1  # and deployment_store.prom
    # the gate waits for the targets of the files written in this run only (no Prometheus here)
    # (a record deployed after the removal: an older one would be superseded by the removal)
    proc = playbook(tmp_path, *record_file_args(tmp_path / "singles", record("svc3", version="1.0.1",
                                                                             deployed_at="2026-11-22T10:15:00Z")),
                    "-e", "deployment_gate_timeout=1", "-e", "deployment_gate_interval=1")
    assert proc.returncode != 0
    assert "production--svc3.json: svc3.example.com:8000 (service svc3, environment production, version 1.0.1): " \
        "not discovered yet" in proc.stdout, proc.stdout
    assert "svc4.example.com" not in proc.stdout


def test_sets_and_dirs_in_one_step(tmp_path):
    """Several directories and sets in one call (a component's files on a first
    converge): parents first, then each set; changed_sets names what changed."""
    conf, rules = tmp_path / "etc" / "x", tmp_path / "etc" / "x" / "rules"
    dirs = {str(rules): {"mode": "0750"}, str(conf): {"mode": "0750"}}
    sets = [{"name": "rules", "path": str(rules), "files": {"a.yml": "a\n"}, "mode": "0640", "prune_patterns": ["*"]},
            {"name": "config", "path": str(conf), "files": {"x.yml": "x\n"}, "mode": "0640"}]
    preview = fs.apply_sets(sets, dirs, check_mode=True)
    assert preview["dirs_changed"] == [str(conf), str(rules)] and preview["changed_sets"] == ["rules", "config"]
    assert not conf.exists()
    done = fs.apply_sets(sets, dirs)
    assert done["changed_sets"] == ["rules", "config"]
    assert (rules / "a.yml").read_text() == "a\n" and oct(os.stat(conf).st_mode & 0o777) == "0o750"
    (rules / "old.yml").write_text("stale\n")
    again = fs.apply_sets(sets, dirs)
    assert again["changed_sets"] == ["rules"] and again["removed"] == [str(rules / "old.yml")]
    assert fs.apply_sets(sets, dirs) == {**fs.apply_sets(sets, dirs), "changed": False}


def test_check_mode_set_in_a_directory_not_made_yet(tmp_path):
    """--check on a fresh host: a set whose directory an earlier step would make
    reports its files as to be written instead of failing."""
    sets = [{"name": "secrets", "path": str(tmp_path / "later"), "files": {"a": "x"}}]
    assert fs.apply_sets(sets, {}, check_mode=True)["changed_sets"] == ["secrets"]
    with pytest.raises(fs.FileSetError, match="not a directory"):
        fs.apply_sets(sets, {})


def test_links_are_made_and_repointed_in_the_same_step(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_text("an old copy")  # a file there is replaced
    links = {str(tmp_path / "bin" / "prog"): str(tmp_path / "v1" / "prog"),
             str(tmp_path / "bin" / "tool"): str(tmp_path / "v1" / "tool")}
    checked = fs.apply_sets([], {}, check_mode=True, links=links)
    assert checked["changed"] and sorted(checked["links_changed"]) == sorted(links)
    assert not (tmp_path / "bin" / "prog").is_symlink()
    made = fs.apply_sets([], {}, links=links)
    assert made["changed"] and os.readlink(tmp_path / "bin" / "tool") == str(tmp_path / "v1" / "tool")
    assert not fs.apply_sets([], {}, links=links)["changed"]
    upgraded = fs.apply_sets([], {}, links={str(tmp_path / "bin" / "prog"): str(tmp_path / "v2" / "prog")})
    assert upgraded["links_changed"] == [str(tmp_path / "bin" / "prog")]
    assert os.readlink(tmp_path / "bin" / "prog") == str(tmp_path / "v2" / "prog")
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["prog", "tool"]  # no temporary left
    with pytest.raises(fs.FileSetError, match="is a directory, not replaced"):
        fs.apply_sets([], {}, links={str(tmp_path / "v1"): "/nowhere"})


# --------------------------------------------------------------------------
# issue 24 row 8: never through a symbolic link, never waiting on a FIFO (as root, in a group-writable directory)

SECRET = "root-only secret 7f3a\n"


def planted(tmp_path: Path, name: str, what: str) -> Path:
    """A symbolic link to a root-only file, a FIFO or a hard link, at ``name`` in ``tmp_path / 'tf'``."""
    tf = tmp_path / "tf"
    tf.mkdir(exist_ok=True)
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    path = tf / name
    if what == "symlink":
        path.symlink_to(secret)
    elif what == "fifo":
        os.mkfifo(path)
    else:
        os.link(secret, path)
    return path


@pytest.mark.parametrize("what", ["symlink", "fifo", "hardlink"])
@pytest.mark.parametrize("flags", [("--diff",), ("--check", "--diff"), ()])
def test_a_planted_link_or_fifo_is_refused_never_read(tmp_path, what, flags):
    path = planted(tmp_path, "deployment--a.prom", what)
    rc, out = adhoc({"path": str(path.parent), "files": {"deployment--a.prom": "new\n", "b.prom": "b\n"},
                     "owner": ME, "mode": "0644"}, *flags)  # a hang fails the test (adhoc's timeout)
    assert rc != 0
    kind = {"symlink": "a symbolic link to", "fifo": "a FIFO (named pipe)", "hardlink": "a regular file with 2 hard"}
    assert f"{path}: is {kind[what]}" in out["msg"] and "not read, followed or replaced" in out["msg"], out
    assert SECRET.strip() not in json.dumps(out)
    assert (tmp_path / "shadow").read_text() == SECRET and not (path.parent / "b.prom").exists()  # nothing written
    mode = os.lstat(path).st_mode  # left as it was
    assert {"symlink": stat.S_ISLNK, "fifo": stat.S_ISFIFO, "hardlink": stat.S_ISREG}[what](mode)


@pytest.mark.parametrize("what", ["symlink", "fifo"])
def test_a_stale_link_or_fifo_is_removed_itself_and_not_read_in_diff_mode(tmp_path, what):
    path = planted(tmp_path, "deployment--old.prom", what)
    rc, out = adhoc({"path": str(path.parent), "files": {}, "prune_patterns": ["deployment--*.prom"]}, "--diff")
    assert rc == 0 and out["removed"] == ["deployment--old.prom"], out
    assert SECRET.strip() not in json.dumps(out)
    assert not os.path.lexists(path) and (tmp_path / "shadow").read_text() == SECRET


def test_owner_and_mode_are_set_on_the_open_file_not_through_a_name(tmp_path):
    """Only the mode differs: the file is fixed through its descriptor; a link there is refused, not chmod'ed."""
    (tmp_path / "a").write_text("x")
    (tmp_path / "a").chmod(0o600)
    assert fs.file_set(str(tmp_path), {"a": "x"}, mode="0644")["written"] == ["a"]
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644
    secret = planted(tmp_path, "b", "symlink")
    with pytest.raises(fs.FileSetError, match="is a symbolic link"):
        fs.file_set(str(secret.parent), {"b": SECRET}, mode="0644")
    assert stat.S_IMODE((tmp_path / "shadow").stat().st_mode) == 0o600
