"""A Prometheus agent on a host of its own that only remote_writes to VictoriaMetrics (issue 28).

Runs after test_9_shards (pytest sorts the files: test_9_shards.py, then this one), whose
VictoriaMetrics host (MONSTACK_SHARD_HOSTS' third, the scenario's monstack-app2) it writes to;
the playbooks make sure the store is there. A fresh container joins as the only host of the
group prometheus_agent (prometheus_mode: agent) with its own node_exporter as target, in an
extra inventory file like a user would add it:

- the agent runs `prometheus --agent`, its configuration has no rule_files and no alerting, and
  its rule directory holds no rule file;
- the agent's own `up` arrives in VictoriaMetrics (with its external label);
- the agent serves no queries ("unavailable with Prometheus Agent"), but is ready;
- a rerun changes nothing on the agent.

Outside molecule: MOLECULE_INVENTORY_FILE (an inventory of the scenario's kind, with TLS),
MONSTACK_SHARD_HOSTS, MONSTACK_AGENT_NETWORK (the docker network of those hosts).
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests
import yaml

from conftest import TEST_CA, VM_AUTH, container_ip, playbook, recap_changed, sh

HOSTS = os.environ.get("MONSTACK_SHARD_HOSTS", "monstack-monitor,monstack-app1,monstack-app2").split(",")
VM = HOSTS[2]
AGENT = os.environ.get("MONSTACK_AGENT_HOST", "monstack-agent1")
NETWORK = os.environ.get("MONSTACK_AGENT_NETWORK", "monstack-test")
IMAGE = os.environ.get("MONSTACK_AGENT_IMAGE", "monstack-test:debian12")
SYSTEMD = ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--security-opt", "seccomp=unconfined",
           "--security-opt", "apparmor=unconfined", "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
           "--tmpfs", "/run", "--tmpfs", "/run/lock"]


@pytest.fixture
def agent_inventory(tmp_path):
    subprocess.run(["docker", "rm", "-f", AGENT], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", AGENT, "--hostname", AGENT, "--network", NETWORK, *SYSTEMD,
                    IMAGE, "/lib/systemd/systemd"], check=True, capture_output=True)
    for _ in range(60):
        state = subprocess.run(["docker", "exec", AGENT, "systemctl", "is-system-running"], capture_output=True,
                               text=True).stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(1)
    inventory = tmp_path / "agent.yml"
    agent_vars = {"prometheus_mode": "agent", "prometheus_external_labels": {"agent": AGENT},
                  "prometheus_inventory_targets": [{"job": "node", "group": "prometheus_agent",
                                                    "port_var": "node_exporter_port", "default_port": 9100,
                                                    "state_var": "node_exporter_state"}]}
    inventory.write_text(yaml.safe_dump({
        "all": {"hosts": {AGENT: {"ansible_connection": "community.docker.docker"}}},
        "victoriametrics": {"hosts": {VM: None}},
        "prometheus_agent": {"hosts": {AGENT: agent_vars}}}))
    yield str(inventory)
    subprocess.run(["docker", "rm", "-f", AGENT], capture_output=True)
    # The runs were limited to the agent and the store host: the store host's allow lists (which
    # let the agent in) go back to the scenario's inventory.
    playbook("site.yml", "--limit", VM)


def vm_query(expr: str) -> list:
    # the scenario's VictoriaMetrics serves https with basic auth (group_vars/all/tls.yml); hosts of
    # one's own may serve plain http: its unit says which
    tls = "-tls" in sh(VM, "systemctl cat victoriametrics").stdout
    url = f"{'https' if tls else 'http'}://{container_ip(VM)}:8428/api/v1/query"
    resp = requests.get(url, params={"query": expr}, timeout=30,
                        **(dict(auth=VM_AUTH, verify=TEST_CA) if tls else {}))
    resp.raise_for_status()
    return resp.json()["data"]["result"]


def test_an_agent_only_remote_writes_to_victoriametrics(agent_inventory):
    # two runs: each stays well within the playbook helper's time limit on a busy machine
    for playbooks in (["playbooks/exporters.yml"], ["playbooks/victoriametrics.yml", "playbooks/prometheus.yml"]):
        run = playbook(*playbooks, "--limit", f"{AGENT},{VM}", extra_inventory=agent_inventory)
        assert run.returncode == 0, run.stdout[-4000:]
    unit = sh(AGENT, "systemctl cat prometheus").stdout
    assert " --agent " in unit.replace("\n", " ") + " " and "--storage.agent.path=" in unit, unit
    assert "--storage.tsdb" not in unit
    config = sh(AGENT, "cat /etc/prometheus/prometheus.yml").stdout
    assert "rule_files:" not in config and "alerting:" not in config and "remote_write:" in config
    assert sh(AGENT, "ls /etc/prometheus/rules").stdout.split() == []

    deadline, found = time.monotonic() + 180, []
    while time.monotonic() < deadline and not found:
        found = vm_query(f'up{{job="node",agent="{AGENT}"}}')
        time.sleep(0 if found else 5)
    assert found and found[0]["value"][1] == "1", "the agent's samples did not arrive in VictoriaMetrics"

    answer = sh(AGENT, "curl -s http://127.0.0.1:9090/api/v1/query?query=up").stdout
    assert "unavailable with Prometheus Agent" in answer, answer
    assert sh(AGENT, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9090/-/ready").stdout == "200"

    rerun = playbook("playbooks/prometheus.yml", "--limit", AGENT, extra_inventory=agent_inventory)
    assert rerun.returncode == 0 and recap_changed(rerun.stdout)[AGENT] == 0, rerun.stdout[-3000:]
