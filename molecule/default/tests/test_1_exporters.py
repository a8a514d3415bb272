"""node_exporter and cAdvisor on every host: units, users, metrics, unit hygiene."""
import re

import pytest

from conftest import HOSTS, metrics, sh

UNITS = {"node_exporter": ("node_exporter", 9100), "cadvisor": ("root", 8080)}


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_active_enabled_and_user(host, unit):
    user, _ = UNITS[unit]
    assert sh(host, f"systemctl is-active {unit}").stdout.strip() == "active"
    assert sh(host, f"systemctl is-enabled {unit}").stdout.strip() == "enabled"
    pid = sh(host, f"systemctl show -p MainPID --value {unit}").stdout.strip()
    assert sh(host, f"ps -o user= -p {pid}").stdout.strip() == user


@pytest.mark.parametrize("host", HOSTS)
def test_node_exporter_metrics(host):
    text = metrics(host, 9100)
    assert "node_cpu_seconds_total{" in text
    assert "node_filesystem_avail_bytes{" in text
    assert "node_systemd_unit_state{" in text  # the systemd collector is on


@pytest.mark.parametrize("host", HOSTS)
def test_cadvisor_metrics(host):
    text = metrics(host, 8080)
    assert "container_cpu_usage_seconds_total{" in text
    assert "container_memory_working_set_bytes{" in text
    # Plain host: systemd units show up as cgroups, labelled id (no container/pod
    # labels). Test hosts share the machine's cgroup tree (cgroup v1, host
    # cgroupns), so the unit's id carries the test container's prefix here.
    assert re.search(r'container_memory_working_set_bytes\{id="[^"]*/system.slice/node_exporter.service"', text)
    assert 'container="' not in text and 'pod="' not in text
    # High-cardinality sets are off by default: no per-CPU series.
    assert 'cpu="cpu0"' not in text


@pytest.mark.parametrize("host", HOSTS)
def test_node_exporter_user_and_textfile_dir(host):
    entry = sh(host, "getent passwd node_exporter").stdout.strip().split(":")
    assert entry[6] == "/usr/sbin/nologin"
    assert sh(host, "test -e /nonexistent", check=False).returncode != 0
    stat = sh(host, "stat -c '%U %G %a' /var/lib/node_exporter/textfile").stdout.split()
    assert stat == ["root", "node_exporter_textfile", "2775"]
    assert sh(host, "stat -L -c %U /usr/local/bin/node_exporter").stdout.strip() == "root"


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_file_verifies(host, unit, record_property):
    result = sh(host, f"systemd-analyze verify /etc/systemd/system/{unit}.service", check=False)
    assert result.returncode == 0, result.stderr
    score = sh(host, f"systemd-analyze security {unit} --no-pager | tail -1", check=False).stdout
    record_property("systemd_security", score.strip())
    print(f"{host} {unit}: {score.strip()}")
    assert "Overall exposure level" in score
