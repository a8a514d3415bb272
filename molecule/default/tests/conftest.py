"""Shared helpers for the default scenario's checks (real hosts, real HTTP)."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]
# The scenario's hosts (molecule.yml). To run a check against hosts of your own,
# converged with site.yml: MOLECULE_INVENTORY_FILE=<inventory dir>/hosts.yml,
# MONSTACK_TEST_MONITOR=<the prometheus/alertmanager host>,
# MONSTACK_TEST_HOSTS="<every host, space-separated>".
MONITOR = os.environ.get("MONSTACK_TEST_MONITOR", "monstack-monitor")
HOSTS = os.environ.get("MONSTACK_TEST_HOSTS", "monstack-monitor monstack-app1 monstack-app2").split()


# The scenario's TLS (molecule/shared/group_vars/all/tls.yml): the test CA that
# molecule/shared/prepare.yml makes, and VictoriaMetrics' basic auth.
TEST_CA = str(Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY",
                                  str(Path.home() / ".cache" / "monstack"))) / "test-ca" / "ca.pem")
VM_AUTH = ("prometheus", "molecule-vm-password")


def container_ip(name: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name],
        check=True, capture_output=True, text=True).stdout.split()
    return out[0]


def sh(host: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a shell command on a test host (docker exec)."""
    return subprocess.run(["docker", "exec", host, "sh", "-c", command],
                          check=check, capture_output=True, text=True, timeout=120)


def inventory_dir() -> str:
    return str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)


def playbook(*args: str, extra_inventory: str | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ansible-playbook against the scenario's inventory, like a user would
    (``env``: further environment variables, e.g. a callback's settings)."""
    cmd = ["ansible-playbook", "-i", inventory_dir()]
    if extra_inventory:
        cmd += ["-i", extra_inventory]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_HOST_KEY_CHECKING="False",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", **(env or {}))
    return subprocess.run(cmd + list(args), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def recap_changed(output: str) -> dict[str, int]:
    """changed=N per host from a PLAY RECAP."""
    result = {}
    for line in output.splitlines():
        if " : ok=" in line and "changed=" in line:
            host = line.split(":")[0].strip()
            result[host] = int(line.split("changed=")[1].split()[0])
    return result


def changed_tasks(output: str) -> list[str]:
    """'TASK [name] host' for every task a playbook's output reports as changed: what an
    idempotence assertion prints, since the recap alone does not say which task it was."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK [") or line.startswith("RUNNING HANDLER ["):
            task = line.split("]")[0] + "]"
        elif line.startswith("changed: [") and task:
            found.append(f"{task} {line.split('[', 1)[1].split(']')[0]}")
    return found


class Prometheus:
    def __init__(self, base_url: str):
        self.base = base_url

    def get(self, path: str, **params):
        resp = requests.get(self.base + path, params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()["data"]

    def query(self, expr: str):
        return self.get("/api/v1/query", query=expr)["result"]

    def targets(self):
        return self.get("/api/v1/targets", state="active")["activeTargets"]

    def health(self) -> dict:
        """(job, instance) -> health of every active target."""
        return {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in self.targets()}

    def reload_stamp(self) -> str:
        """When Prometheus last loaded its configuration: unchanged means no reload.

        Read from Prometheus' own /metrics, not through a query: the scraped series lags a
        reload by up to one scrape interval, so a reload just before the first reading (for
        example by the previous test's clean-up) would show up later as a "new" one.
        """
        resp = requests.get(self.base + "/metrics", timeout=10)
        resp.raise_for_status()
        for line in resp.text.splitlines():
            if line.startswith("prometheus_config_last_reload_success_timestamp_seconds "):
                return line.split()[1]
        raise AssertionError("Prometheus exports no prometheus_config_last_reload_success_timestamp_seconds")

    def wait_for(self, predicate, timeout: float = 90, interval: float = 3):
        """Poll until predicate() returns a truthy value; return it (or the last falsy one)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(interval)


@pytest.fixture(scope="session")
def prom() -> Prometheus:
    return Prometheus(f"http://{container_ip(MONITOR)}:9090")


def metrics(host: str, port: int, path: str = "/metrics") -> str:
    return sh(host, f"curl -sf http://127.0.0.1:{port}{path}").stdout


def dump(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)[:4000]
