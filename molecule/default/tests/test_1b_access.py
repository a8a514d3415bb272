"""Who may connect (issue 24, row 12): an application host cannot reach another host's
node_exporter, cAdvisor or blackbox_exporter, while Prometheus scrapes them all (up == 1).

The exporters' units allow localhost, the Prometheus host and the docker host (the scenario's
monstack_ip_allow, for the tests' own checks) with systemd's IPAddressAllow=/IPAddressDeny=any;
blackbox_exporter listens on the Prometheus host's loopback. systemd enforces the IP filter with
cgroup BPF programs: where the kernel or the container runtime cannot, the filter checks report
themselves as skipped with the reason, never as passed.
"""
from __future__ import annotations

import pytest
import requests

from conftest import HOSTS, MONITOR, container_ip, sh

APPS = [host for host in HOSTS if host != MONITOR]
PORTS = {"node": 9100, "cadvisor": 8080}


def _reach(source: str, target: str, port: int) -> str:
    """curl's result from one test host to another: an HTTP code, or the curl error."""
    proc = sh(source, f"curl -s -o /dev/null -m 3 -w '%{{http_code}}' http://{target}:{port}/metrics", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else f"curl exit {proc.returncode}"


def _not_enforced(host: str) -> str | None:
    """Why systemd on a host does not apply the units' IP filter (its journal says so), or None."""
    log = sh(host, "journalctl -b -q --no-pager -o cat | grep -i firewall | grep -i 'not support' | tail -2",
             check=False).stdout.strip()
    return f"systemd on {host} cannot enforce IPAddressDeny= here (cgroup BPF): {log}" if log else None


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("unit", ["node_exporter", "cadvisor"])
def test_exporter_units_allow_localhost_prometheus_and_the_test_controller_only(host, unit):
    allow = sh(host, f"systemctl show -p IPAddressAllow --value {unit}").stdout.split()
    deny = sh(host, f"systemctl show -p IPAddressDeny --value {unit}").stdout.split()
    assert set(deny) == {"0.0.0.0/0", "::/0"}, deny
    assert f"{container_ip(MONITOR)}/32" in allow, allow
    assert "127.0.0.0/8" in allow and "::1/128" in allow, allow
    assert "10.231.0.1/32" in allow, allow  # the docker host: monstack_ip_allow of the scenario
    others = {container_ip(other) + "/32" for other in HOSTS if other != MONITOR}
    assert not others & set(allow), f"an application host is allowed: {allow}"


def test_blackbox_exporter_listens_on_loopback_only():
    listening = sh(MONITOR, "ss -Hltn 'sport = :9115'").stdout.split()
    assert "127.0.0.1:9115" in listening, listening
    assert not [word for word in listening if word.endswith(":9115") and not word.startswith("127.0.0.1")], listening


@pytest.mark.parametrize("app", APPS)
def test_an_application_host_cannot_reach_another_hosts_exporters_while_prometheus_scrapes_them(app, prom):
    blocked, open_ = {}, {}
    for other in HOSTS:
        if other == app:
            continue
        for job, port in PORTS.items():
            result = _reach(app, other, port)
            (open_ if result == "200" else blocked)[(job, other)] = result
    blackbox = _reach(app, MONITOR, 9115)
    (open_ if blackbox == "200" else blocked)[("blackbox", MONITOR)] = blackbox
    for _job, target in open_:
        reason = _not_enforced(target)
        if reason:
            pytest.skip(reason)
    assert not open_, f"{app} reached {open_} (blocked: {blocked})"
    # ... while Prometheus scrapes every one of them
    prom.wait_for(lambda: all(prom.health().get(key) == "up" for key in blocked), timeout=60)
    health = prom.health()
    for key in blocked:
        assert health.get(key) == "up", (key, health)


def test_the_test_controller_is_allowed_by_monstack_ip_allow():
    """The scenario's extra source (the docker host) reaches an application host's exporters."""
    for app in APPS:
        for port in PORTS.values():
            assert requests.get(f"http://{container_ip(app)}:{port}/metrics", timeout=10).status_code == 200
