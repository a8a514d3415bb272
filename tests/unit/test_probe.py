"""Unit tests of library/monstack_probe.py (what of a component differs, in one
round trip) and of the monstack_probe_sets filter that prepares its arguments.

The module's logic is called on tmp directories as the current user; the
service part runs against a stand-in for `systemctl show` (a function given
to the probe, as the module gives it its run_command)."""
from __future__ import annotations

import grp
import hashlib
import importlib.util
import json
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from helpers import ansible_tool
from monstack_probe import monstack_probe_sets

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("monstack_probe", REPO / "library" / "monstack_probe.py")
probe_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe_mod)

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def sha1(text: str) -> str:
    return "sha1:" + hashlib.sha1(text.encode()).hexdigest()


def params(**kwargs):
    base = {"install": {}, "user": {}, "dirs": {}, "sets": {}, "service": None, "restart_files": [], "reload": {}}
    base.update(kwargs)
    return base


def systemctl(active="active", enabled="enabled", since=None):
    """A stand-in for `systemctl show` with the given states."""
    monotonic_us = int((time.monotonic() if since is None else since) * 1e6)

    def run(argv):
        assert argv[:2] == ["systemctl", "show"]
        return 0, (f"LoadState=loaded\nActiveState={active}\nUnitFileState={enabled}\n"
                   f"ActiveEnterTimestampMonotonic={monotonic_us}\n"), ""
    return run


def no_run(argv):
    raise AssertionError(f"unexpected command {argv}")


def test_nothing_differs(tmp_path):
    (tmp_path / "a.yml").write_text("a\n")
    os.chmod(tmp_path / "a.yml", 0o640)
    binary = tmp_path / "bin"
    binary.write_text("#!/bin/sh\n")
    link = tmp_path / "link"
    link.symlink_to(binary)
    result = probe_mod.probe(params(
        install={"path": str(binary), "links": {str(link): str(binary)}},
        dirs={str(tmp_path): {"owner": ME, "group": MY_GROUP, "mode": f"{os.stat(tmp_path).st_mode & 0o7777:04o}"}},
        sets={"config": {"path": str(tmp_path), "files": {"a.yml": sha1("a\n")}, "owner": ME, "group": MY_GROUP,
                         "mode": "0640"}},
        service="x", restart_files=[str(link)]), systemctl(since=time.monotonic() + 5))
    assert result == {"changed": False, "drift": [], "details": {},
                      "unit": {"LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled",
                               "ActiveEnterTimestampMonotonic": result["unit"]["ActiveEnterTimestampMonotonic"]}}


def test_each_part_reports_what_differs(tmp_path):
    (tmp_path / "a.yml").write_text("old\n")
    (tmp_path / "stale.yml").write_text("x\n")
    (tmp_path / ".a.yml.123.tmp").write_text("a write in progress is not stale\n")
    result = probe_mod.probe(params(
        install={"path": str(tmp_path / "missing"), "links": {str(tmp_path / "nolink"): "/x"}},
        user={"name": "no-such-user-monstack"},
        dirs={str(tmp_path / "nodir"): {"owner": "root", "group": "root", "mode": "0750"}},
        sets={"config": {"path": str(tmp_path), "files": {"a.yml": sha1("new\n"), "b.yml": sha1("b\n")},
                         "mode": "0640", "prune_patterns": ["*.yml"], "remove": ["a.yml"]},
              "same": {"path": str(tmp_path), "files": {}}},
        service="x"), systemctl(active="inactive", enabled="disabled"))
    assert result["drift"] == ["install", "user", "dirs", "config", "service"]
    assert f"{tmp_path}/missing: missing" in result["details"]["install"]
    assert result["details"]["user"] == ["user no-such-user-monstack: missing"]
    assert result["details"]["config"] == [f"{tmp_path}/a.yml", f"{tmp_path}/b.yml", f"{tmp_path}/a.yml (to remove)",
                                           f"{tmp_path}/stale.yml (stale)"]
    assert result["details"]["service"] == ["x: inactive, disabled"]


def test_mode_and_unknown_owner_are_drift_not_errors(tmp_path):
    """On a fresh host the component's user does not exist yet: the probe says
    'write it' instead of failing."""
    (tmp_path / "a").write_text("a")
    os.chmod(tmp_path / "a", 0o644)
    result = probe_mod.probe(params(sets={
        "mode": {"path": str(tmp_path), "files": {"a": sha1("a")}, "mode": "0640"},
        "owner": {"path": str(tmp_path), "files": {"a": sha1("a")}, "mode": "0644", "group": "no-such-group-monstack"},
    }), no_run)
    assert result["drift"] == ["mode", "owner"]


def test_a_change_after_the_service_started_needs_a_restart(tmp_path):
    unit = tmp_path / "x.service"
    unit.write_text("[Unit]\n")
    started_before = time.monotonic() - 60
    result = probe_mod.probe(params(service="x", restart_files=[str(unit)]), systemctl(since=started_before))
    assert result["drift"] == ["restart"]
    result = probe_mod.probe(params(service="x", restart_files=[str(unit)]), systemctl(since=time.monotonic() + 5))
    assert result["drift"] == []


def test_a_stopped_service_is_started_not_restarted(tmp_path):
    unit = tmp_path / "x.service"
    unit.write_text("[Unit]\n")
    result = probe_mod.probe(params(service="x", restart_files=[str(unit)]),
                             systemctl(active="failed", since=time.monotonic() - 60))
    assert result["drift"] == ["service"]


def test_bad_names_are_refused(tmp_path):
    with pytest.raises(probe_mod.FileSetError, match="plain name"):
        probe_mod.probe(params(sets={"x": {"path": str(tmp_path), "files": {"../etc/passwd": sha1("")}}}), no_run)
    with pytest.raises(probe_mod.FileSetError, match="needs a path"):
        probe_mod.probe(params(sets={"x": {"files": {}}}), no_run)


def test_probe_sets_filter_hashes_contents_and_drops_write_only_keys():
    sets = {"config": {"path": "/etc/x", "files": {"x.yml": "a: 1\n", "empty": None}, "owner": "root",
                       "group": "x", "mode": "0640", "validate": "check %s", "on_change": "reload", "secret": True,
                       "prune_patterns": ["*.yml"]}}
    assert monstack_probe_sets(sets, "x") == {"config": {
        "path": "/etc/x", "owner": "root", "group": "x", "mode": "0640", "prune_patterns": ["*.yml"],
        "files": {"x.yml": sha1("a: 1\n"), "empty": sha1("")}}}


@pytest.mark.parametrize("sets, message", [
    ([], "expected a mapping of set name to set"),
    ({"c": "x"}, "'c': expected a mapping"),
    ({"c": {"path": "relative", "files": {}}}, "must be an absolute directory"),
    ({"c": {"path": "/x", "files": {}, "onchange": "reload"}}, "unknown key\\(s\\) onchange"),
    ({"c": {"path": "/x", "files": {}, "on_change": "bounce"}}, "on_change 'bounce' must be one of"),
    ({"c": {"path": "/x", "files": {"a": {"k": 1}}}}, "content of a must be text, got dict"),
])
def test_probe_sets_filter_names_the_set_and_key(sets, message):
    with pytest.raises(AnsibleFilterError, match=message):
        monstack_probe_sets(sets, "prometheus")


def test_module_through_ansible(tmp_path):
    """The module as Ansible runs it (module_utils from ansible.cfg), on localhost."""
    (tmp_path / "a").write_text("a")
    args = json.dumps({"sets": {"s": {"path": str(tmp_path), "files": {"a": sha1("b")}}}})
    proc = subprocess.run([ansible_tool("ansible"), "localhost", "-m", "monstack_probe", "-a", args, "-o"],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"drift": ["s"]' in proc.stdout


def test_ansible_doc_documents_module_and_filter():
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    proc = subprocess.run([ansible_tool("ansible-doc"), "--json", "monstack_probe"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["monstack_probe"]
    assert set(doc["doc"]["options"]) == {"install", "user", "dirs", "sets", "service", "restart_files", "reload"}
    assert {"drift", "details", "unit"} <= set(doc["return"])
    proc = subprocess.run([ansible_tool("ansible-doc"), "-t", "filter", "--json", "monstack_probe_sets"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "monstack_probe_sets" in json.loads(proc.stdout)
