"""Helpers shared by the unit and integration tests."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]


def ansible_tool(name: str) -> str:
    """Path of an Ansible command such as ansible-doc (the venv's first); skip the test when there is none."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (run scripts/setup.sh)")
    return found


def ansible_playbook() -> str:
    """Path of ansible-playbook (the venv's first); skip the test when there is none."""
    return ansible_tool("ansible-playbook")


def plugin_env(**extra: str) -> dict[str, str]:
    """Environment for running Ansible in a scratch directory with this package's filter
    plugins and without its ansible.cfg; extra sets more variables."""
    env = dict(os.environ, ANSIBLE_FILTER_PLUGINS=str(REPO / "filter_plugins"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false", **extra)
    env.pop("ANSIBLE_CONFIG", None)
    return env


def play_results(cwd: Path, playbook: str, *args: str) -> list[dict]:
    """Run a playbook with the json callback; the per-host results of each task, in order.
    Fails the test, with the output, when the run fails."""
    result = subprocess.run([ansible_playbook(), *args, playbook], cwd=cwd, env=plugin_env(ANSIBLE_STDOUT_CALLBACK="json"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tasks = json.loads(result.stdout[result.stdout.index("{"):])["plays"][0]["tasks"]
    return [task["hosts"] for task in tasks]


def check_filter_sidecar(module, name: str) -> None:
    """The filter plugin file module registers name, and filter_plugins/<name>.yml documents it."""
    import yaml

    assert module.FilterModule().filters()[name] is getattr(module, name)
    sidecar = yaml.safe_load((REPO / "filter_plugins" / f"{name}.yml").read_text())
    assert sidecar["DOCUMENTATION"]["name"] == name
    assert "_input" in sidecar["DOCUMENTATION"]["options"]
    assert sidecar["EXAMPLES"].strip()
    assert "_value" in sidecar["RETURN"]


def filter_docs(names: list[str], cwd: Path) -> dict:
    """ansible-doc's JSON for filter plugins of this package (run outside the repo: only
    ANSIBLE_FILTER_PLUGINS finds them); fails the test on an error or warning."""
    result = subprocess.run([ansible_tool("ansible-doc"), "-t", "filter", "--json", *names],
                            capture_output=True, text=True, env=plugin_env(), cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return json.loads(result.stdout)
