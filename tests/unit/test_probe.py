"""Unit tests of plugins/modules/probe.py (what of a component differs, in one
round trip) and of the probe_sets filter that prepares its arguments.

The module's logic is called on tmp directories as the current user; the
service part runs against a stand-in for `systemctl show` (a function given
to the probe, as the module gives it its run_command)."""
from __future__ import annotations

import grp
import hashlib
import hmac
import importlib.util
import json
import os
import pwd
import re
import subprocess
import time
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.filter import probe_filters as probe_filter
from helpers import ansible_tool, check_filter_sidecar
from ansible_collections.monstack.stack.plugins.filter.probe_filters import monstack_probe_sets
from ansible_collections.monstack.stack.plugins.plugin_utils import component as component_logic

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("probe", REPO / "plugins" / "modules" / "probe.py")
probe_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe_mod)

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def sha1(text: str) -> str:
    return "sha1:" + hashlib.sha1(text.encode()).hexdigest()


def params(**kwargs):
    base = {"install": {}, "user": {}, "dirs": {}, "sets": {}, "key": None, "service": None, "restart_files": [],
            "reload": {}}
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
    assert result == {"changed": False, "drift": [], "details": {}, "arch": os.uname().machine,
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


def test_several_components_in_one_call(tmp_path):
    """components: a result per component, in order, with the key shared; arch once."""
    (tmp_path / "a.yml").write_text("a\n")
    os.chmod(tmp_path / "a.yml", 0o640)
    key = "ab" * 32
    digest = component_logic.content_digest("a\n", key)
    same = {"path": str(tmp_path), "owner": ME, "group": MY_GROUP, "mode": "0640", "files": {"a.yml": digest}}
    other = dict(same, files={"a.yml": component_logic.content_digest("b\n", key)})
    result = probe_mod.probe_all({"key": key, "components": [
        params(sets={"s": same}, service="x"), params(sets={"s": other}), params(dirs={str(tmp_path / "no"): {}})]},
        systemctl())
    assert result["arch"] == os.uname().machine and result["changed"] is False
    first, second, third = result["components"]
    assert first["drift"] == [] and first["unit"]["ActiveState"] == "active"
    assert second["drift"] == ["s"] and "unit" not in second
    assert third["drift"] == ["dirs"]
    assert "arch" not in first and "changed" not in first
    # without components: the one component of the module's own options, as before
    assert probe_mod.probe_all(params(key=key, sets={"s": same}), no_run)["drift"] == []
    with pytest.raises(probe_mod.FileSetError):
        probe_mod.probe_all({"key": None, "components": [params(sets={"s": same})]}, no_run)


def test_bad_names_are_refused(tmp_path):
    with pytest.raises(probe_mod.FileSetError, match="plain name"):
        probe_mod.probe(params(sets={"x": {"path": str(tmp_path), "files": {"../etc/passwd": sha1("")}}}), no_run)
    with pytest.raises(probe_mod.FileSetError, match="needs a path"):
        probe_mod.probe(params(sets={"x": {"files": {}}}), no_run)


KEY = "ab" * 32


def hmac_digest(text: str, key: str = KEY) -> str:
    return probe_filter.content_digest(text, key)


def test_probe_sets_filter_hashes_contents_and_drops_write_only_keys():
    sets = {"config": {"path": "/etc/x", "files": {"x.yml": "a: 1\n", "empty": None}, "owner": "root",
                       "group": "x", "mode": "0640", "validate": "check %s", "on_change": "reload", "secret": True,
                       "prune_patterns": ["*.yml"]}}
    assert monstack_probe_sets(sets, "x", KEY) == {"config": {
        "path": "/etc/x", "owner": "root", "group": "x", "mode": "0640", "prune_patterns": ["*.yml"],
        "files": {"x.yml": hmac_digest("a: 1\n"), "empty": hmac_digest("")}}}


def plain_digests(secret: str) -> set[str]:
    """Every unkeyed digest of secret a reader of the logs could compute from a guess."""
    data = secret.encode()
    return {getattr(hashlib, name)(data).hexdigest() for name in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")}


def test_probe_sets_filter_digest_is_keyed_by_a_random_key_of_the_run():
    """Issue 24 row 10: the probe's arguments hold no unkeyed digest of a secret; the
    digest is an HMAC under a random key of the controller process."""
    secret = "smtp-Passw0rd"
    digest = monstack_probe_sets({"s": {"path": "/x", "files": {"pw": secret}}})["s"]["files"]["pw"]
    run_key = probe_filter.monstack_probe_key("any input")
    assert run_key == probe_filter.monstack_probe_key() and len(bytes.fromhex(run_key)) == 32
    prefix, key_id, mac = digest.split(":")
    assert prefix == "hmac-sha256" and key_id == component_logic.key_id(run_key) and run_key not in digest
    assert mac == hmac.new(bytes.fromhex(run_key), secret.encode(), hashlib.sha256).hexdigest()
    assert not plain_digests(secret) & {mac}
    assert secret not in digest
    # another run (another key) gives another digest of the same content
    assert hmac_digest(secret, "cd" * 32) != hmac_digest(secret, KEY)
    check_filter_sidecar(probe_filter, "probe_sets")
    check_filter_sidecar(probe_filter, "probe_key")


def test_hmac_digests_detect_changes_with_their_key(tmp_path):
    (tmp_path / "pw").write_text("secret")
    os.chmod(tmp_path / "pw", 0o640)

    def run(content, key=KEY, digest_key=KEY):
        return probe_mod.probe(params(key=key, sets={"s": {
            "path": str(tmp_path), "files": {"pw": hmac_digest(content, digest_key)}, "mode": "0640"}}), no_run)
    assert run("secret")["drift"] == []
    assert run("other")["drift"] == ["s"]
    (tmp_path / "pw").unlink()
    assert run("secret")["drift"] == ["s"]
    with pytest.raises(probe_mod.FileSetError, match="set s, file pw: an hmac-sha256: digest needs the key argument"):
        run("secret", key=None)
    with pytest.raises(probe_mod.FileSetError, match="made with another key than the key argument"):
        run("secret", digest_key="cd" * 32)
    with pytest.raises(probe_mod.FileSetError, match="key: expected hex digits"):
        run("secret", key="not hex")


def test_module_logs_neither_key_nor_reload_password_on_the_host(tmp_path, monkeypatch, capsys):
    """The module's own log line on the host ("Invoked with ...", syslog or the journal,
    which the journal role ships to the log host) leaves out the key and the reload password."""
    from ansible.module_utils import basic
    logged = []
    monkeypatch.setattr(basic.AnsibleModule, "log", lambda self, msg, log_args=None: logged.append(msg))
    args = {"sets": {"s": {"path": str(tmp_path), "files": {"pw": hmac_digest("x")}}}, "key": KEY,
            "reload": {"url": "http://127.0.0.1:1/metrics", "metric": "m", "username": "u", "password": "pw-Secret-9"}}
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    with pytest.raises(SystemExit):
        probe_mod.main()
    out = capsys.readouterr().out
    assert logged and "Invoked with" in logged[0]
    for text in (logged[0], out):
        assert KEY not in text and "pw-Secret-9" not in text
    assert '"drift": ["s"]' in out


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
    """The module as Ansible runs it (by its collection name, through ansible.cfg's collections path), on localhost."""
    (tmp_path / "a").write_text("a")
    args = json.dumps({"sets": {"s": {"path": str(tmp_path), "files": {"a": sha1("b")}}}})
    proc = subprocess.run([ansible_tool("ansible"), "localhost", "-m", "monstack.stack.probe", "-a", args, "-o"],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"drift": ["s"]' in proc.stdout


def test_ansible_doc_documents_module_and_filter():
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    proc = subprocess.run([ansible_tool("ansible-doc"), "--json", "monstack.stack.probe"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["monstack.stack.probe"]
    assert set(doc["doc"]["options"]) == {"install", "user", "dirs", "sets", "key", "service", "restart_files", "reload",
                                          "components"}
    assert {"drift", "details", "unit"} <= set(doc["return"])
    proc = subprocess.run([ansible_tool("ansible-doc"), "-t", "filter", "--json", "monstack.stack.probe_sets"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "monstack.stack.probe_sets" in json.loads(proc.stdout)


VVV_PLAYBOOK = """\
- name: The component action's probe of a set that holds a secret, as the component roles run it
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Probe (check mode, so the set is not written)
      monstack.stack.component:
        spec:
          name: secretdemo
          file_sets:
            secrets: {{path: "{path}", files: {{pw: "{secret}"}}, owner: "{owner}", group: "{group}", mode: "0640",
                      secret: true, on_change: reload}}
          check:
            metrics_url: http://127.0.0.1:9/metrics
            reload_metric_prefix: secretdemo
            user: monitor
            password: "{password}"
      register: secretdemo
      check_mode: true
    - name: Drift as expected
      ansible.builtin.assert:
        that: secretdemo.drift == {drift}
"""


def test_no_digest_of_a_secret_at_vvv(tmp_path):
    """Issue 24 row 10: `ansible-playbook -vvv` (the task's result, which ARA keeps too) shows
    no unkeyed digest of a secret in a file set, nor the secret, the reload password or the
    HMAC key; the probe (inside the component action) still sees whether the secret file is
    up to date."""
    secret, password = "smtp-Passw0rd-row10", "check-Passw0rd-row10"
    target = tmp_path / "secrets"
    target.mkdir()
    (target / "pw").write_text(secret)
    os.chmod(target / "pw", 0o640)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"}
    for content, drift in ((secret, []), ("a new " + secret, ["secrets"])):
        playbook = tmp_path / "probe.yml"
        playbook.write_text(VVV_PLAYBOOK.format(path=target, secret=content, owner=ME, group=MY_GROUP,
                                                password=password, drift=json.dumps(drift)))
        proc = subprocess.run([ansible_tool("ansible-playbook"), "-vvv", str(playbook)], capture_output=True,
                              text=True, cwd=REPO, timeout=300, env=env)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-5000:]
        # the probe's arguments (keyed digests, the key) stay inside the action: not shown at all
        assert "hmac-sha256:" not in output
        for text in (secret, content, password):
            assert text not in output
            for digest in plain_digests(text):
                assert digest not in output, f"a digest of {text!r} is in the -vvv output"
        # no 64-hex-digit string but the keyed digests (the key is 64 hex digits)
        hexes = re.findall(r"(?<![0-9a-f:])[0-9a-f]{64}(?![0-9a-f])", output)
        assert hexes == [], hexes
