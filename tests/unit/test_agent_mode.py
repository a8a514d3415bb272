"""Agent mode (prometheus_mode: agent, issue 28 item 4) with the real programs on loopback.

prometheus.yml and the flags rendered by Ansible from the role, checked by promtool in agent
mode; then the real Prometheus runs with those flags as an agent, scrapes itself and
remote_writes to a real VictoriaMetrics (from the mirror's release archive): the samples arrive
there, the agent serves no queries, it is ready and reloads on SIGHUP.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from test_dashboards import Processes, free_port, wait_http
from test_scrape_files import PROMTOOL, needs_promtool, render

CACHE = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack"))
PROMETHEUS = Path(os.environ.get("PROMETHEUS_BIN", CACHE / "bin" / "prometheus"))
VM_ARCHIVES = sorted((CACHE / "mirror" / "VictoriaMetrics" / "VictoriaMetrics" / "releases" / "download")
                     .glob("v*/victoria-metrics-linux-amd64-v*.tar.gz"))


def agent_vars(work: Path, store: str, port: int) -> dict:
    return {"prometheus_mode": "agent", "prometheus_data_dir": str(work / "data"),
            "prometheus_listen_address": "127.0.0.1", "prometheus_port": port,
            "prometheus_scrape_interval": "1s", "prometheus_scrape_timeout": "1s",
            "prometheus_external_labels": {"agent": "dmz1"},
            "prometheus_remote_write": [{"url": f"{store}/api/v1/write"}],
            "prometheus_extra_scrape_configs": [{"job_name": "self",
                                                 "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}


def get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback)
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@needs_promtool
def test_agent_config_and_flags(tmp_path):
    agent = render(tmp_path / "agent", None, **agent_vars(tmp_path, "http://127.0.0.1:8428", 9090))
    assert agent["rc"] == 0, agent["out"][-3000:]
    config = yaml.safe_load(agent["prometheus.yml"])
    assert "alerting" not in config and "rule_files" not in config and "remote_read" not in config
    assert config["remote_write"] == [{"url": "http://127.0.0.1:8428/api/v1/write"}]
    assert config["global"]["external_labels"] == {"agent": "dmz1"}
    flags = agent["flags"]["flags"]
    assert "--agent" in flags and f"--storage.agent.path={tmp_path / 'data'}" in flags
    assert not [flag for flag in flags if flag.startswith("--storage.tsdb.")], flags
    assert agent["flags"]["check"].endswith(" check config --agent %s")
    path = tmp_path / "agent.yml"
    path.write_text(agent["prometheus.yml"])
    check = subprocess.run([str(PROMTOOL), "check", "config", "--agent", str(path)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    # the server's configuration is no agent's: promtool in agent mode refuses it
    server = render(tmp_path / "server", None)
    assert server["rc"] == 0, server["out"][-3000:]
    assert "--agent" not in server["flags"]["flags"] and server["flags"]["check"].endswith(" check config %s")
    (tmp_path / "server.yml").write_text(server["prometheus.yml"])
    refused = subprocess.run([str(PROMTOOL), "check", "config", "--agent", str(tmp_path / "server.yml")],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "not allowed in agent mode" in refused.stdout + refused.stderr


@needs_promtool
def test_agent_remote_writes_to_victoriametrics_and_serves_no_queries(tmp_path):
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip(f"no prometheus binary at {PROMETHEUS} (tools/build_mirror.py, or set PROMETHEUS_BIN)")
    if not VM_ARCHIVES:
        pytest.skip("no VictoriaMetrics release archive in the mirror (tools/build_mirror.py)")
    with tarfile.open(VM_ARCHIVES[-1]) as archive:
        archive.extract("victoria-metrics-prod", tmp_path, filter="data")
    vm_port, agent_port = free_port(), free_port()
    store = f"http://127.0.0.1:{vm_port}"
    rendered = render(tmp_path / "render", None, **agent_vars(tmp_path, store, agent_port))
    assert rendered["rc"] == 0, rendered["out"][-3000:]
    config_flag = next(flag for flag in rendered["flags"]["flags"] if flag.startswith("--config.file="))
    Path(config_flag.split("=", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    Path(config_flag.split("=", 1)[1]).write_text(rendered["prometheus.yml"])

    procs = Processes(tmp_path)
    try:
        vm = procs.start("victoriametrics", [str(tmp_path / "victoria-metrics-prod"), f"-httpListenAddr=127.0.0.1:{vm_port}",
                                             f"-storageDataPath={tmp_path / 'vm'}", "-search.latencyOffset=0s"])
        wait_http(f"{store}/health", 30, vm)
        agent = procs.start("prometheus", [str(PROMETHEUS), *rendered["flags"]["flags"]])
        url = f"http://127.0.0.1:{agent_port}"
        wait_http(f"{url}/-/ready", 30, agent)

        query = urllib.parse.urlencode({"query": 'up{job="self",agent="dmz1"}'})
        deadline, found = time.monotonic() + 60, []
        while time.monotonic() < deadline and not found:
            time.sleep(2)
            status, answer = get_json(f"{store}/api/v1/query?{query}")
            found = answer.get("data", {}).get("result", []) if status == 200 else []
        assert found and found[0]["value"][1] == "1", "no sample of the agent arrived in VictoriaMetrics"

        status, answer = get_json(f"{url}/api/v1/query?{query}")
        assert status != 200 and answer.get("error") == "unavailable with Prometheus Agent", (status, answer)

        # the role's reload: SIGHUP, checked by the reload metrics
        os.kill(agent.pid, signal.SIGHUP)
        deadline, ok = time.monotonic() + 20, False
        while time.monotonic() < deadline and not ok:
            metrics = wait_http(f"{url}/metrics", 5, agent).decode()
            ok = "prometheus_config_last_reload_successful 1" in metrics
            time.sleep(0.5)
        assert ok
    finally:
        procs.stop()
