"""Two Prometheus servers in the inventory form an HA pair: same targets,
distinct `replica` external labels. Runs last: it leaves a second server."""
import textwrap
import time

import requests

from conftest import container_ip, playbook


def test_two_prometheus_servers_form_an_ha_pair(tmp_path):
    extra = tmp_path / "ha.yml"
    extra.write_text(textwrap.dedent("""\
        prometheus:
          hosts:
            monstack-app1:
              ansible_connection: community.docker.docker
        """))
    # exporters.yml too: the exporters let the new Prometheus host connect (docs/network.md)
    run = playbook("playbooks/exporters.yml", "playbooks/prometheus.yml", extra_inventory=str(extra))
    assert run.returncode == 0, run.stdout[-3000:]

    def status(host):
        base = f"http://{container_ip(host)}:9090"
        config = requests.get(base + "/api/v1/status/config", timeout=10).json()["data"]["yaml"]
        targets = requests.get(base + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        # Inventory targets only: deployment targets and their health checks reach
        # a new server through the record store copy (test_9_shards checks it). The blackbox
        # exporter listens on loopback: each server scrapes its own (job blackbox).
        return config, sorted((t["labels"]["job"], t["labels"]["instance"]) for t in targets
                              if t["labels"]["job"] not in ("deployments", "deployment_health", "blackbox")), \
            sorted((t["labels"]["instance"], t["scrapeUrl"]) for t in targets if t["labels"]["job"] == "blackbox")

    deadline = time.monotonic() + 60
    while True:  # the new server reads its file_sd files within a few seconds of starting
        config_a, targets_a, blackbox_a = status("monstack-monitor")
        config_b, targets_b, blackbox_b = status("monstack-app1")
        if (targets_a == targets_b and targets_a) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert "replica: monstack-monitor" in config_a
    assert "replica: monstack-app1" in config_b
    assert targets_a == targets_b
    assert ("prometheus", "monstack-app1") in targets_a and ("prometheus", "monstack-monitor") in targets_a
    assert ("node", "monstack-app2") in targets_a
    assert blackbox_a == [("monstack-monitor", "http://127.0.0.1:9115/metrics")]
    assert blackbox_b == [("monstack-app1", "http://127.0.0.1:9115/metrics")]

    # the exporters let the new server connect (exporters.yml ran with it): it scrapes them up
    def node_health(host):
        targets = requests.get(f"http://{container_ip(host)}:9090/api/v1/targets", timeout=10).json()
        return {t["labels"]["instance"]: t["health"] for t in targets["data"]["activeTargets"]
                if t["labels"]["job"] in ("node", "cadvisor") and t["labels"]["instance"] != host}

    deadline = time.monotonic() + 60
    while set(node_health("monstack-app1").values()) != {"up"} and time.monotonic() < deadline:
        time.sleep(3)
    assert set(node_health("monstack-app1").values()) == {"up"}, node_health("monstack-app1")
