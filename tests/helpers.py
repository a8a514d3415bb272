"""Helpers shared by the unit and integration tests."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import uuid
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


def record_file_args(directory: Path, record: dict) -> list[str]:
    """The arguments that give playbooks/deployments.yml one record: the record written to a
    new file in directory, passed as -e deployment_record_file=<file> (records are read
    from files, never passed as variables)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"record-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(record))
    return ["-e", f"deployment_record_file={path}"]


def plugin_env(**extra: str) -> dict[str, str]:
    """Environment for running Ansible in a scratch directory with this package's plugins,
    by their collection names only (monstack.stack.*, through collections/), and without
    its ansible.cfg; extra sets more variables."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1",
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
    """The filter plugin file module registers name, and plugins/filter/<name>.yml documents it."""
    import yaml

    registered = module.FilterModule().filters()[name]
    assert registered.__module__ == module.__name__ and getattr(module, registered.__name__) is registered, name
    sidecar = yaml.safe_load((REPO / "plugins" / "filter" / f"{name}.yml").read_text())
    assert sidecar["DOCUMENTATION"]["name"] == name
    assert "_input" in sidecar["DOCUMENTATION"]["options"]
    assert sidecar["EXAMPLES"].strip()
    assert "_value" in sidecar["RETURN"]


def filter_docs(names: list[str], cwd: Path) -> dict:
    """ansible-doc's JSON for filter plugins of this package, asked for by their full names
    (monstack.stack.<name>, run outside the repo: only the collections path finds them) and
    keyed by name; fails the test on an error or warning."""
    result = subprocess.run([ansible_tool("ansible-doc"), "-t", "filter", "--json",
                             *(f"{COLLECTION}.{name}" for name in names)],
                            capture_output=True, text=True, env=plugin_env(), cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return {name.removeprefix(f"{COLLECTION}."): doc for name, doc in json.loads(result.stdout).items()}


# ---------------------------------------------------------------------------
# The collection monstack.stack from outside (tests/collection, molecule default).
# ---------------------------------------------------------------------------
COLLECTION = "monstack.stack"


def build_collection(out_dir: Path) -> Path:
    """`ansible-galaxy collection build` of this checkout (galaxy.yml at its top) into
    out_dir, as docs/release.md does; the path of the tarball."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([ansible_tool("ansible-galaxy"), "collection", "build", "--force", "--output-path",
                             str(out_dir), str(REPO)], capture_output=True, text=True, timeout=300,
                            env=outside_env(None), cwd=out_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    tarballs = sorted(out_dir.glob("monstack-stack-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    return tarballs[0]


def install_collection(tarball: Path, collections_dir: Path) -> Path:
    """Install the tarball into an empty collections path, as a user would; the
    directory of the installed collection."""
    assert not collections_dir.exists() or not any(collections_dir.iterdir()), f"{collections_dir} is not empty"
    # --force and only this path configured: a copy elsewhere (molecule installs the
    # project's collection into ~/.ansible/collections) must not make it "already installed".
    result = subprocess.run([ansible_tool("ansible-galaxy"), "collection", "install", "--offline", "--force", "-p",
                             str(collections_dir), str(tarball)], capture_output=True, text=True, timeout=300,
                            env=outside_env(collections_dir), cwd=tarball.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    installed = collections_dir / "ansible_collections" / "monstack" / "stack"
    assert (installed / "MANIFEST.json").is_file(), result.stdout
    return installed


def outside_env(collections_dir: Path | None, **extra: str) -> dict[str, str]:
    """The environment of a user of the installed collection: no ANSIBLE_* setting of
    this repository (no ansible.cfg, roles, filter, library or module_utils path), the
    collections path collections_dir only (and the Python environment's own collections,
    such as community.docker for the docker connection of the test hosts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    if collections_dir is not None:
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_dir)
    env.update(extra)
    return env


def json_run_tasks(stdout: str) -> list[dict]:
    """Every task result of a run with the json callback, flattened:
    {play, role, task, host, changed, skipped, failed, steps}, in order (a role's task is
    named "<role> : <task>" there: role and task apart here; steps: what a
    monstack.stack.component task did, its result's steps)."""
    data = json.loads(stdout[stdout.index("{"):])
    rows = []
    for play in data["plays"]:
        for task in play["tasks"]:
            role, _sep, name = task["task"]["name"].rpartition(" : ")
            for host, res in task["hosts"].items():
                rows.append({"play": play["play"]["name"], "role": role, "task": name, "host": host,
                             "changed": bool(res.get("changed")), "skipped": bool(res.get("skipped")),
                             "failed": bool(res.get("failed")), "steps": list(res.get("steps") or [])})
    return rows


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """The request handler of a test's fake server on loopback: answer() sends one
    response with its length; nothing is logged."""

    def answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # pylint: disable=arguments-differ
        pass
