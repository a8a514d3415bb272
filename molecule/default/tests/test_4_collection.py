"""The stack through the collection monstack.stack, from outside: the tarball of this
checkout (`ansible-galaxy collection build`), installed into an empty collections path,
and playbooks run from a scratch directory that has no ansible.cfg of this repository
and no roles, filter, library or module_utils path (only ANSIBLE_COLLECTIONS_PATH).

On the converged scenario: a playbook written only with fully qualified names
(import_playbook monstack.stack.site, filters and a module by their full names)
changes nothing on any host, so the collection resolves every role, filter, module
and module_utils the stack needs, and converges to the same state as the clone.
Then `--tags prometheus_configure` with a configuration value changed: only
Prometheus' configuration is written and reloaded (no install, user, start or
restart step runs, the process is the same), and the value is back, unchanged, after
the same run without it.

Runs after the converge and idempotence of the scenario and before test_9_ha (which
adds a second Prometheus server). Against hosts of your own: conftest.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import requests

from conftest import MONITOR, ROOT, container_ip, inventory_dir, recap_changed, sh

sys.path.insert(0, str(ROOT / "tests"))
from helpers import ansible_playbook, ansible_tool, build_collection, install_collection, json_run_tasks, outside_env  # noqa: E402


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("collection")
    tarball = build_collection(root / "dist")
    install_collection(tarball, root / "collections")
    scratch = root / "scratch"
    scratch.mkdir()
    assert not (scratch / "ansible.cfg").exists()
    return {"path": root / "collections", "scratch": scratch}


def run(collection: dict, *args: str, json_output: bool = False) -> subprocess.CompletedProcess:
    """ansible-playbook from the scratch directory against the scenario's inventory, with the
    installed collection only (the docker connection comes from the Python environment)."""
    extra = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"} if json_output else {}
    env = outside_env(collection["path"], ANSIBLE_PIPELINING="true", **extra)
    return subprocess.run([ansible_playbook(), "-i", inventory_dir(), *args], cwd=collection["scratch"], env=env,
                          capture_output=True, text=True, timeout=1200)


def test_fqcn_playbook_from_the_installed_collection_changes_nothing(collection):
    playbook = collection["scratch"] / "stack.yml"
    playbook.write_text(textwrap.dedent("""\
        - name: The whole stack, from the installed collection
          ansible.builtin.import_playbook: monstack.stack.site

        - name: The collection's filters and a module, by their full names
          hosts: prometheus
          become: true
          gather_facts: false
          tasks:
            - name: Compare Prometheus on the host with its wanted service state (read only)
              monstack.stack.probe:
                service: prometheus
              register: stack_probe

            - name: Prometheus runs, and its address is what the filter computes
              ansible.builtin.assert:
                that:
                  - stack_probe.drift == []
                  - ('0.0.0.0' | monstack.stack.local_host) == '127.0.0.1'
                  - ('127.0.0.1' | monstack.stack.loopback)
        """))
    result = run(collection, str(playbook))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    changed = recap_changed(result.stdout)
    assert changed and set(changed.values()) == {0}, f"changed on a converged stack: {changed}\n{output[-5000:]}"
    # the only monstack.stack these runs can see is the installed copy
    listed = subprocess.run([ansible_tool("ansible-galaxy"), "collection", "list", "monstack.stack", "--format", "json"],
                            cwd=collection["scratch"], env=outside_env(collection["path"]), capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert list(json.loads(listed.stdout)) == [str(collection["path"] / "ansible_collections")], listed.stdout


# Steps of a component (the monstack.stack.component action's result: steps) that are not
# configuration, and the tasks of a role that are not.
NOT_CONFIGURE_STEPS = ("install", "user", "group ", "restart", "start")
NOT_CONFIGURE = ("Remove",)
COMPONENT_TASK = "Install, configure and run Prometheus"
CONFIGURE_CHANGES = {"files config", "reload"}


def prometheus_state() -> tuple[str, str]:
    """(main PID, the scrape interval Prometheus runs with)."""
    pid = sh(MONITOR, "systemctl show -p MainPID --value prometheus").stdout.strip()
    config = requests.get(f"http://{container_ip(MONITOR)}:9090/api/v1/status/config", timeout=60).json()
    interval = [line.split(":", 1)[1].strip() for line in config["data"]["yaml"].splitlines()
                if line.strip().startswith("scrape_interval:")][0]
    return pid, interval


def configure_run(collection: dict, *extra: str) -> list[dict]:
    result = run(collection, "monstack.stack.prometheus", "--tags", "prometheus_configure", *extra, json_output=True)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    return json_run_tasks(result.stdout)


def assert_configure_only(rows: list[dict]) -> None:
    ran = [r for r in rows if not r["skipped"]]
    wrong = sorted({f"{r['host']}: {r['task']}" for r in ran if r["task"].startswith(NOT_CONFIGURE)}
                   | {f"{r['host']}: {r['task']}: {step}" for r in ran for step in r["steps"]
                      if step.startswith(NOT_CONFIGURE_STEPS)})
    assert not wrong, f"--tags prometheus_configure ran steps that are not configuration: {wrong}"
    # only the argument check of each role of the play (tagged always by Ansible) runs outside Prometheus
    others = sorted({f"{r['role']} : {r['task']}" for r in ran if r["role"] not in ("", "monstack.stack.prometheus",
                                                                                     "monstack.stack.common")
                     and not r["task"].startswith("Validating arguments against arg spec")})
    assert not others, f"--tags prometheus_configure reached other roles: {others}"
    assert {r["role"] for r in ran if r["role"]} <= {"monstack.stack.prometheus", "monstack.stack.common",
                                                     "monstack.stack.blackbox_exporter"}, {r["role"] for r in ran}
    changed = {(r["host"], r["task"]) for r in rows if r["changed"]}
    assert changed == {(MONITOR, COMPONENT_TASK)}, changed
    [steps] = [r["steps"] for r in rows if r["changed"]]
    assert set(steps) == CONFIGURE_CHANGES, steps


def test_tags_prometheus_configure_touches_only_configuration(collection):
    pid, interval = prometheus_state()
    assert interval == "5s", interval  # molecule/shared/group_vars/all/alerting.yml

    rows = configure_run(collection, "-e", "prometheus_scrape_interval=7s")
    assert_configure_only(rows)
    assert any(r["task"] == COMPONENT_TASK and not r["skipped"] for r in rows), "the probe did not run"
    new_pid, new_interval = prometheus_state()
    assert new_interval == "7s", "Prometheus did not load the new configuration"
    assert new_pid == pid, "Prometheus was restarted, not reloaded"

    # the same run without the change puts the inventory's value back, then changes nothing
    assert_configure_only(configure_run(collection))
    assert prometheus_state() == (pid, "5s")
    rows = configure_run(collection)
    assert not [r for r in rows if r["changed"]], [r for r in rows if r["changed"]]
