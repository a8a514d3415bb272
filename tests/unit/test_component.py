"""The component action's pure logic (plugins/plugin_utils/component.py), the role specs
(<role>_component in each role's vars/main.yml) and the action itself on localhost: a file
set converged, its rerun one module call, check mode, --diff, secrets never shown."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ansible_tool

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("monstack_component_logic", REPO / "plugins/plugin_utils/component.py")
logic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(logic)

ROLES = ["node_exporter", "cadvisor", "blackbox_exporter", "prometheus", "victoriametrics", "alertmanager", "grafana"]


def minimal(**extra):
    spec = {"name": "demo", "service": {"name": "demo", "description": "Demo", "documentation": "https://example.org",
                                        "exec": "/usr/local/bin/demo", "flags": ["--a=1", "--b=%x$y"]}}
    spec.update(extra)
    return logic.normalise(spec)


# ------------------------------------------------------------------ normalise
def test_normalise_fills_defaults():
    comp = minimal()
    assert comp["file_sets"] == {} and comp["dirs"] == {}
    assert comp["service"]["manage_unit"] is True and comp["service"]["ip_restrict"] is False
    assert comp["check"] == {k: "" for k in logic.CHECK_KEYS}
    assert comp["release"] == {"name": "demo"}


@pytest.mark.parametrize("spec, words", [
    ({"name": "Demo"}, ["name", "Demo"]),
    ({"name": "demo", "bogus": 1}, ["bogus", "unknown"]),
    ({"name": "demo", "file_sets": {"cfg": {"path": "etc"}}}, ["demo_component.file_sets.cfg", "absolute"]),
    ({"name": "demo", "file_sets": {"cfg": {"path": "/etc", "on_change": "kick"}}}, ["on_change", "kick"]),
    ({"name": "demo", "file_sets": {"cfg": {"path": "/etc", "files": {"a": 3}}}}, ["files['a']", "int"]),
    ({"name": "demo", "file_sets": {"cfg": {"path": "/etc", "files": {"a": {"template": "x", "src": "y"}}}}},
     ["files['a']", "one of template"]),
    ({"name": "demo", "service": {"flags": "--x"}}, ["service.flags", "list"]),
    ({"name": "demo", "service": {"reload": "maybe"}}, ["service.reload", "boolean"]),
    ({"name": "demo", "dirs": {"rel": {"mode": "0750"}}}, ["dirs", "absolute"]),
    ({"name": "demo", "state": "gone"}, ["demo_component.state", "gone", "demo_state"]),
    ({"name": "demo", "remove_paths": ["etc/demo"]}, ["remove_paths", "etc/demo"]),
    ({"name": "demo", "remove_paths": ["/etc/"]}, ["remove_paths", "below a system directory"]),
])
def test_normalise_names_the_wrong_field(spec, words):
    with pytest.raises(logic.ComponentError) as err:
        logic.normalise(spec)
    for word in words:
        assert word in str(err.value)


# ----------------------------------------------------------------------- unit
def test_unit_text_as_the_old_template_rendered_it():
    comp = minimal(user={"name": "demo"})
    comp["service"]["environment"] = {"B": "2", "A": "1"}
    comp["service"]["hardening"] = {"ProtectHome": None, "ReadWritePaths": ["/var/lib/demo", "/var/log/demo"]}
    unit = logic.unit_text(comp, "demo")
    assert unit.startswith("#\n# Ansible managed\n#\n[Unit]\nDescription=Demo\n")
    assert 'Environment="A=1"\nEnvironment="B=2"\nExecStart=/usr/local/bin/demo \\\n    --a=1 \\\n    --b=%%x$$y\n' \
           "Restart=on-failure\n" in unit
    assert "ExecReload" not in unit and "IPAddress" not in unit
    assert "ProtectHome" not in unit
    assert "ReadWritePaths=/var/lib/demo\nReadWritePaths=/var/log/demo\n" in unit
    assert "SystemCallFilter=@system-service\nSystemCallFilter=~@privileged\n" in unit
    assert unit.endswith("\n[Install]\nWantedBy=multi-user.target\n")


def test_unit_text_reload_tls_and_ip_access():
    comp = minimal(web={"config_path": "/etc/demo/web.yml", "tls_cert_file": "/etc/c.pem", "tls_key_file": "/etc/k.pem"})
    comp["service"].update(reload=True, ip_restrict=True, ip_allow_hosts=["mon2", "mon1", "mon1"])
    unit = logic.unit_text(comp, "root", ["localhost", "10.0.0.1"])
    assert "# Serves HTTPS (web configuration /etc/demo/web.yml)" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID\n" in unit
    assert "IPAddressAllow=localhost 10.0.0.1\n" in unit and "IPAddressDeny=any\n" in unit
    assert "# Who may connect: localhost, the addresses of mon1, mon2\n# and demo_ip_allow" in unit


def test_web_config_and_extra_sets():
    comp = minimal(user={"name": "demo"}, web={"config_path": "/etc/demo/web-config.yml",
                                               "basic_auth_users": {"prom": "pw"}})
    text = logic.web_config_text(comp, "host1", lambda password, seed: "hash(%s,%s)" % (password, seed))
    assert text.endswith('basic_auth_users:\n  "prom": "hash(pw,host1:demo:prom)"\n')
    assert "tls_server_config" not in text
    sets = logic.extra_sets(comp, "UNIT", text)
    assert sets["web"]["secret"] is True and sets["web"]["files"] == {"web-config.yml": text}
    assert sets["web"]["group"] == "demo" and sets["web"]["path"] == "/etc/demo"
    assert sets["unit"]["files"] == {"demo.service": "UNIT"} and sets["unit"]["on_change"] == "restart"
    off = logic.extra_sets(minimal(web={"config_path": "/etc/demo/web-config.yml"}), "UNIT", None)
    assert off["web"]["files"] == {} and off["web"]["remove"] == ["web-config.yml"]


# ---------------------------------------------------------------------- probe
def test_probe_args():
    comp = minimal(user={"name": "demo", "groups": ["extra"]},
                   release={"version": "1.2", "binaries": ["demo", "democtl"]},
                   file_sets={"cfg": {"path": "/etc/demo", "on_change": "reload"}, "sd": {"path": "/etc/sd"}},
                   check={"metrics_url": "http://127.0.0.1:1/metrics", "reload_metric_prefix": "demo_config",
                          "user": "u", "password": "p"})
    args = logic.probe_args(comp, {"cfg": {}})
    assert args["install"] == {"path": "/opt/monstack/demo/1.2/demo",
                               "links": {"/usr/local/bin/demo": "/opt/monstack/demo/1.2/demo",
                                         "/usr/local/bin/democtl": "/opt/monstack/demo/1.2/democtl"}}
    assert args["user"] == {"name": "demo", "groups": ["demo", "extra"]}
    assert args["restart_files"][0] == "/etc/systemd/system/demo.service"
    assert args["reload"]["sets"] == ["cfg"]
    assert args["reload"]["metric"] == "demo_config_last_reload_success_timestamp_seconds"
    package = logic.install_paths({"name": "demo", "method": "package", "packages": ["demo-pkg"]})
    assert package == {"packages": ["demo-pkg"]}
    grafana = logic.install_paths({"name": "grafana", "version": "1", "version_dir": "/opt/g/1", "binary_subdir": "bin/",
                                   "binaries": ["grafana"]})
    assert grafana["path"] == "/opt/g/1/bin/grafana"
    assert logic.probe_args(minimal(user={"name": "root"}), {})["user"] == {}


# ---------------------------------------------------------------------- steps
def test_state_and_what_absent_removes():
    assert minimal()["state"] == "present" and minimal()["remove_paths"] == []
    comp = minimal(state="absent", remove_paths=["/etc/demo"], release={"binaries": ["demo", "democtl"]})
    assert logic.removed_paths(comp) == ["/etc/systemd/system/demo.service", "/opt/monstack/demo",
                                         "/usr/local/bin/demo", "/usr/local/bin/democtl", "/etc/demo"]
    assert logic.removed_paths(minimal(service={}), "/srv/x") == ["/srv/x/demo"]


@pytest.mark.parametrize("run, skip, steps", [
    (["all"], [], {"install", "configure", "run"}),
    (["demo"], [], {"install", "configure", "run"}),
    (["demo_configure"], [], {"configure"}),
    (["demo_install", "demo_run"], [], {"install", "run"}),
    (["all"], ["demo_install"], {"configure", "run"}),
    (["all"], ["demo"], set()),
    (["other"], [], set()),
    (["all"], ["all"], set()),
    (["all"], ["other_run"], {"install", "configure", "run"}),
])
def test_selected_steps(run, skip, steps):
    assert logic.selected_steps("demo", run, skip) == steps


def test_plan_and_service_actions():
    everything = {"install", "configure", "run"}
    todo = logic.plan(["install", "user", "dirs", "cfg", "unit", "service"], ["cfg", "sd", "unit"], everything)
    assert todo == {"install": True, "user": True, "dirs": True, "sets": ["cfg", "unit"], "catch_up_restart": False,
                    "catch_up_reload": False, "start": True}
    # --tags demo_configure: no install, no start, the files and their reload
    todo = logic.plan(["install", "cfg", "service"], ["cfg"], {"configure"})
    assert not todo["install"] and not todo["start"] and todo["sets"] == ["cfg"]
    # a changed unit restarts a running service; a changed reload set reloads it, not both
    todo = logic.plan(["cfg", "unit"], ["cfg", "unit"], everything)
    assert logic.service_actions(todo, True, {"reload", "restart"}, False, True) == \
        {"restart": True, "reload": False, "start": False}
    assert logic.service_actions(todo, True, {"reload"}, False, True) == {"restart": False, "reload": True, "start": False}
    # no reload check (no URL, no metric): nothing to reload
    assert logic.service_actions(todo, True, {"reload"}, False, False)["reload"] is False
    # a stopped service is started with everything new, not restarted
    assert logic.service_actions(todo, False, {"restart"}, True, True) == {"restart": False, "reload": False, "start": False}
    # a lost restart or reload (the probe's restart/reload drift) is caught up
    lost = logic.plan(["restart"], [], {"run"})
    assert logic.service_actions(lost, True, set(), False, True)["restart"] is True
    lost = logic.plan(["reload"], [], {"run"})
    assert logic.service_actions(lost, True, set(), False, True)["reload"] is True
    assert logic.plan(["reload"], [], {"install"})["catch_up_reload"] is False


# --------------------------------------------------------------------- reload
METRICS = ("# HELP x\nprometheus_config_last_reload_success_timestamp_seconds %s\n"
           "prometheus_config_last_reload_successful %s\n")


def test_reload_outcome():
    before = METRICS % ("1.7e+09", 1)
    assert logic.reload_time(before, "prometheus_config") == 1.7e9
    assert logic.reload_outcome(before, METRICS % ("1.8e+09", 1), "prometheus_config") == "applied"
    assert logic.reload_outcome(before, METRICS % ("1.7e+09", 0), "prometheus_config") == "failed"
    assert logic.reload_outcome(before, before, "prometheus_config") == "pending"
    assert logic.reload_outcome("", "", "prometheus_config") == "pending"


# ---------------------------------------------------------------- role specs
@pytest.mark.parametrize("role", ROLES)
def test_every_role_is_remove_preflight_component(role):
    """A component role's tasks/main.yml: remove, preflight, (addresses,) the component action; or
    (addresses,) the action, which removes (spec state) and checks the variables itself."""
    tasks = yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text())
    text = (REPO / "roles" / role / "tasks" / "main.yml").read_text()
    assert "monstack.stack.component" in text and '"{{ %s_component }}"' % role in text
    assert "tasks_from: converge" not in text and "tasks_from: probe" not in text
    spec = yaml.safe_load((REPO / "roles" / role / "vars" / "main.yml").read_text())["%s_component" % role]
    if "state" in spec:
        assert spec["state"] == "{{ %s_state }}" % role
        assert not any(t["name"].startswith(("Remove", "Preflight")) for t in tasks)
        assert "when" not in tasks[-1] and "monstack.stack.component" in tasks[-1]
    else:
        assert tasks[0]["name"].startswith("Remove")
    assert spec["name"] == role
    assert set(spec) <= set(logic.TOP_KEYS)
    dumped = yaml.safe_dump(spec)
    assert "{%" not in dumped and "lookup(" not in dumped, "plain data: Jinja only in leaf values"


def test_common_keeps_only_remove_and_certificates():
    tasks = sorted(p.name for p in (REPO / "roles/common/tasks").glob("*.yml"))
    assert tasks == ["certificates.yml", "main.yml", "remove.yml"]
    assert "{%" not in (REPO / "roles/common/vars/main.yml").read_text()


# ------------------------------------------------------------- the action
PLAY = """\
- name: A component of one file set on localhost
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Converge
      monstack.stack.component:
        spec:
          name: demo
          dirs: {{"{path}": {{owner: "{owner}", group: "{group}", mode: "0750"}}}}
          file_sets:
            config:
              path: "{path}"
              owner: "{owner}"
              group: "{group}"
              mode: "0640"
              files:
                demo.yml: "setting: {{{{ demo_setting }}}}\\n"
                rendered.txt: {{template: "{template}"}}
            secrets:
              path: "{path}"
              owner: "{owner}"
              group: "{group}"
              mode: "0600"
              secret: true
              files:
                password: "{{{{ demo_password }}}}"
      register: converged
      vars:
        demo_setting: "{setting}"
        demo_password: "{password}"
        demo_value: "[[ demo_setting ]]"
    - name: Show the result
      ansible.builtin.debug:
        var: converged
"""


def run_play(tmp_path, setting, password, *args):
    import grp
    import pwd
    target = tmp_path / "etc"
    template = tmp_path / "t.j2"
    template.write_text("value {{ demo_setting }} {{ 1 + 1 }}\n")
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(path=target, owner=pwd.getpwuid(os.getuid()).pw_name,
                                group=grp.getgrgid(os.getgid()).gr_name, template=template,
                                setting=setting, password=password))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    proc = subprocess.run([ansible_tool("ansible-playbook"), str(play), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env=env)
    return proc, target


def test_action_converges_reruns_clean_and_hides_secrets(tmp_path):
    proc, target = run_play(tmp_path, "one", "Secret-Pw-1", "--check")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert not target.exists(), "check mode writes nothing"
    proc, target = run_play(tmp_path, "one", "Secret-Pw-1", "--diff", "-vvv")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert (target / "demo.yml").read_text() == "setting: one\n"
    assert (target / "rendered.txt").read_text() == "value one 2\n"
    assert (target / "password").read_text() == "Secret-Pw-1"
    assert oct((target / "password").stat().st_mode & 0o777) == "0o600"
    assert "+setting: one" in proc.stdout, "--diff shows the files of sets that hold no secret"
    assert "Secret-Pw-1" not in proc.stdout + proc.stderr
    assert "changed=1" in proc.stdout
    # rerun: nothing to do
    proc, _ = run_play(tmp_path, "one", "Secret-Pw-1")
    assert proc.returncode == 0 and "changed=0" in proc.stdout, proc.stdout[-3000:]
    assert "drift: []" in proc.stdout or '"drift": []' in proc.stdout
    # a changed secret: drift of the secret set only, in check mode nothing written
    proc, _ = run_play(tmp_path, "one", "Secret-Pw-2", "--check", "--diff", "-vvv")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Secret-Pw-2" not in proc.stdout + proc.stderr and "Secret-Pw-1" not in proc.stdout + proc.stderr
    assert "files secrets" in proc.stdout
    assert (target / "password").read_text() == "Secret-Pw-1"


def test_action_is_documented():
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    proc = subprocess.run([ansible_tool("ansible-doc"), "--json", "monstack.stack.component"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["monstack.stack.component"]
    assert set(doc["doc"]["options"]["spec"]["suboptions"]) == set(logic.TOP_KEYS)
    assert {"drift", "steps"} <= set(doc["return"])


# ------------------------------------------------------- file_entries
def test_file_entries_filter():
    from ansible_collections.monstack.stack.plugins.filter import file_entries as monstack_file_entries
    from ansible.errors import AnsibleFilterError
    from helpers import check_filter_sidecar
    from ansible_collections.monstack.stack.plugins.filter.file_entries import monstack_file_entries as entries
    assert entries({"a.rules.yml": "rules/a.rules.yml.j2"}, "template", variable_start_string="[[",
                   variable_end_string="]]") == {"a.rules.yml": {"template": "rules/a.rules.yml.j2",
                                                                 "variable_start_string": "[[",
                                                                 "variable_end_string": "]]"}}
    assert entries({"user-x.yml": "/srv/x.yml"}, "src") == {"user-x.yml": {"src": "/srv/x.yml"}}
    for bad, word in (([("a", "b")], "mapping"), ({"a": ""}, "'a'")):
        with pytest.raises(AnsibleFilterError, match=word):
            entries(bad)
    with pytest.raises(AnsibleFilterError, match="kind"):
        entries({}, "copy")
    with pytest.raises(AnsibleFilterError, match="unknown option"):
        entries({}, "src", variable_start_string="[[")
    check_filter_sidecar(monstack_file_entries, "file_entries")
