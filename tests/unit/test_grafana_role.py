"""Static checks of the grafana role: the argument specification agrees
with the defaults, names, templates, modules and handlers follow the
project's conventions, and the secret-handling tasks keep their no_log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "grafana"

TYPES = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict}
TASK_KEYWORDS = {
    "name", "when", "loop", "loop_control", "register", "vars", "notify", "no_log", "become", "become_user",
    "delegate_to", "run_once", "check_mode", "changed_when", "failed_when", "until", "retries", "delay", "tags",
    "block", "rescue", "always", "listen", "ignore_errors", "environment", "args",
}


def load(path: Path):
    with path.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def defaults():
    return load(ROLE / "defaults" / "main.yml")


@pytest.fixture(scope="module")
def options():
    return load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def test_argument_specs_match_defaults_exactly(defaults, options):
    assert list(options) == list(defaults), "same variables, in the same order"
    for name, value in defaults.items():
        spec = options[name]
        assert spec.get("description"), f"{name}: no description"
        assert "default" in spec, f"{name}: no default in the spec"
        assert spec["default"] == value, f"{name}: spec default {spec['default']!r} != defaults {value!r}"
        assert isinstance(value, TYPES[spec["type"]]), f"{name}: {value!r} is not of type {spec['type']}"
        if spec["type"] == "int":
            assert not isinstance(value, bool)
        if "choices" in spec:
            assert value in spec["choices"], f"{name}: default {value!r} not among its choices"
        if spec["type"] == "list":
            assert spec.get("elements"), f"{name}: list without elements"


def test_every_variable_is_prefixed_and_documented(defaults):
    text = (ROLE / "defaults" / "main.yml").read_text().splitlines()
    for name in defaults:
        assert name.startswith("grafana_")
        index = next(i for i, line in enumerate(text) if line.startswith(f"{name}:"))
        # A comment above the variable (directly, or above the block it belongs to).
        above = text[:index][::-1]
        block = []
        for line in above:
            if not line.strip():
                break
            block.append(line)
        assert any(line.startswith("#") for line in block), f"{name} is not documented"
    for name in load(ROLE / "vars" / "main.yml"):
        assert name.startswith("grafana_")


def test_admin_password_has_no_usable_default(defaults, options):
    assert defaults["grafana_admin_password"] == ""
    for secret in ("grafana_admin_password", "grafana_smtp_password", "grafana_secret_key",
                   "grafana_prometheus_basic_auth_password", "grafana_alertmanager_basic_auth_password"):
        assert options[secret].get("no_log") is True, secret


@pytest.mark.parametrize("template", sorted((ROLE / "templates").glob("*.j2")), ids=lambda p: p.name)
def test_templates_start_with_ansible_managed(template):
    assert template.read_text().splitlines()[0] == "{{ ansible_managed | comment }}"


def test_grafana_ini_template_has_no_legacy_alerting():
    text = re.sub(r"\{#.*?#\}", "", (ROLE / "templates" / "grafana.ini.j2").read_text(), flags=re.S)
    assert "alerting" not in text


def iter_tasks(tasks):
    for task in tasks or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from iter_tasks(task.get(key))


def all_task_files():
    return sorted((ROLE / "tasks").glob("*.yml")) + [ROLE / "handlers" / "main.yml"]


@pytest.mark.parametrize("path", all_task_files(), ids=lambda p: p.name)
def test_modules_are_fully_qualified_and_tasks_named(path):
    for task in iter_tasks(load(path)):
        assert task.get("name"), f"{path.name}: unnamed task {task}"
        modules = [k for k in task if k not in TASK_KEYWORDS]
        if "block" in task:
            assert not modules, f"{path.name}: {task['name']}"
            continue
        assert len(modules) == 1, f"{path.name}: {task['name']}: {modules}"
        assert modules[0].startswith(("ansible.builtin.", "monstack.stack.")), f"{path.name}: {modules[0]} is not FQCN"


def test_notified_handlers_exist():
    handlers = {h["name"] for h in load(ROLE / "handlers" / "main.yml")}
    notified = set()
    for path in sorted((ROLE / "tasks").glob("*.yml")):
        for task in iter_tasks(load(path)):
            if "notify" in task:
                notified |= {task["notify"]} if isinstance(task["notify"], str) else set(task["notify"])
    assert notified and notified <= handlers, notified - handlers


def test_main_is_a_table_of_contents():
    main = load(ROLE / "tasks" / "main.yml")
    block = main[1]["block"]
    assert [t["name"] for t in block] == ["Facts of this host", "Preflight", "Install the package",
                                          "Install, configure and run", "Dashboards", "Run"]
    assert [t.get("ansible.builtin.import_tasks") for t in block] == [
        None, "preflight.yml", "install_package.yml", None, "dashboards.yml", "run.yml"]
    assert block[3]["monstack.stack.component"] == {"spec": "{{ grafana_component }}"}


def tasks_by_name(filename):
    return {t["name"]: t for t in iter_tasks(load(ROLE / "tasks" / filename))}


def test_secrets_are_written_and_applied_without_logging():
    sets = load(ROLE / "vars" / "main.yml")["grafana_component"]["file_sets"]
    ini = sets["config"]
    assert ini["files"] == {"grafana.ini": {"template": "grafana.ini.j2"}}
    assert ini["secret"] is True  # written by the component action without logging, no diff
    assert ini["mode"] == "0640"
    assert ini["owner"] == "root"
    assert ini["group"] == "{{ grafana_owner }}"
    assert sets["datasources"]["files"] == {"monstack.yml": {"template": "datasources.yml.j2"}}
    assert sets["datasources"]["secret"] is True
    run = tasks_by_name("run.yml")
    reset = run["Run | Apply a new admin password"]
    assert reset["no_log"] is True
    argv = reset["ansible.builtin.command"]["argv"]
    assert argv[-3:] == ["admin", "reset-admin-password", "--password-from-stdin"]
    assert "grafana_admin_password" not in " ".join(argv), "the password goes to stdin, never to argv"
    state = run["Run | Remember the admin password applied (its salted hash only)"]
    assert state["no_log"] is True
    assert state["ansible.builtin.copy"]["mode"] == "0600"
    assert state["ansible.builtin.copy"]["owner"] == "root"


def test_health_wait_checks_the_database_not_the_port():
    run = tasks_by_name("run.yml")
    wait = run["Run | Wait until Grafana reports its database ok"]
    assert wait["ansible.builtin.uri"]["url"].endswith("/api/health")
    assert "database" in wait["until"] and "'ok'" in wait["until"]
    assert int(str(wait["retries"]).strip("{} ").replace("grafana_health_retries", "60")) > 0


def test_playbook_runs_the_preflight_then_the_role():
    play = load(ROOT / "playbooks" / "grafana.yml")
    assert play[0]["ansible.builtin.import_playbook"] == "preflight.yml"
    assert play[1]["hosts"] == "grafana"
    role = play[1]["tasks"][0]["ansible.builtin.import_role"]
    assert role["name"] == "monstack.stack.grafana"
    # the preflight play has checked the role's argument specs
    assert role["rolespec_validate"] is False
    # no facts play: the role gathers the facts its checks read, only when missing
    facts = load(ROLE / "tasks" / "main.yml")[1]["block"][0]
    assert facts["ansible.builtin.setup"]["gather_subset"] == ["min"]
    assert facts["when"] == "ansible_facts.architecture is not defined"
