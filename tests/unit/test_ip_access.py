"""Who may connect to each service (issue 24, row 12): systemd's IPAddressAllow=/IPAddressDeny=any.

The filters (monstack_ip_allow, ip_sources_unknown) are tested on their own; then the
units themselves are made as the monstack.stack.component action makes them (plugin_utils/
component.py unit_text, the allow list from monstack_ip_allow over hostvars) from each role's
<role>_component (its defaults and vars, templated by Ansible) for a demo-like inventory: a
monitoring host (prometheus, alertmanager) and two application hosts. The Prometheus host's
addresses come from its monstack_ip_addresses or from the network facts that each role's task
"Addresses of the hosts that may connect to <role>" gathers (once per run).
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import importlib.util

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from helpers import ansible_playbook, check_filter_sidecar
from ansible_collections.monstack.stack.plugins.filter.access import monstack_ip_allow, monstack_ip_sources_unknown
from ansible_collections.monstack.stack.plugins.filter import access as monstack_access

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("monstack_component_logic", REPO / "plugins/plugin_utils/component.py")
component_logic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(component_logic)
FACTS = {"ansible_facts": {"all_ipv4_addresses": ["10.0.0.5", "172.17.0.1"],
                           "all_ipv6_addresses": ["fe80::1", "fd00::5"]}}


# ---------------------------------------------------------------- the filters
def test_addresses_from_facts_without_link_local_sorted_and_unique():
    hostvars = {"mon1": FACTS, "mon2": {"monstack_ip_addresses": ["10.0.0.6", "10.0.0.5"]}}
    assert monstack_ip_allow(["mon2", "mon1", "mon1"], hostvars) == \
        ["localhost", "10.0.0.5", "10.0.0.6", "172.17.0.1", "fd00::5"]


def test_explicit_addresses_win_over_facts_and_extra_sources_are_added():
    hostvars = {"mon1": dict(FACTS, monstack_ip_addresses=["192.0.2.10"])}
    assert monstack_ip_allow(["mon1"], hostvars, ["198.51.100.0/24", "2001:db8::/64", "198.51.100.7/32"]) == \
        ["localhost", "192.0.2.10", "198.51.100.0/24", "198.51.100.7", "2001:db8::/64"]


def test_no_hosts_is_localhost_only():
    assert monstack_ip_allow([], {}) == ["localhost"]


def test_a_host_without_addresses_is_named_with_the_fix():
    with pytest.raises(AnsibleFilterError) as err:
        monstack_ip_allow(["mon1"], {"mon1": {}})
    assert str(err.value).startswith("inventory host 'mon1': its addresses are not known")
    assert "set monstack_ip_addresses" in str(err.value)


@pytest.mark.parametrize("value", ["prometheus.example.com", "10.0.0.300", "10.0.0.0/33", ""])
def test_an_extra_source_that_is_no_address_is_refused(value):
    with pytest.raises(AnsibleFilterError, match=r"^node_exporter_ip_allow: .* is not an IP address or network"):
        monstack_ip_allow([], {}, [value], "node_exporter_ip_allow")


def test_bad_explicit_addresses_name_host_and_variable():
    with pytest.raises(AnsibleFilterError, match=r"^inventory host 'mon1': monstack_ip_addresses: 'mon1.lan'"):
        monstack_ip_allow(["mon1"], {"mon1": {"monstack_ip_addresses": ["mon1.lan"]}})
    with pytest.raises(AnsibleFilterError, match=r"monstack_ip_addresses must be a list"):
        monstack_ip_allow(["mon1"], {"mon1": {"monstack_ip_addresses": "10.0.0.1"}})


def test_sources_unknown_are_those_without_facts_or_explicit_addresses():
    hostvars = {"a": FACTS, "b": {"monstack_ip_addresses": []}, "c": {}, "d": {"ansible_facts": {}}}
    assert monstack_ip_sources_unknown(["d", "c", "b", "a"], hostvars) == ["c", "d"]


def test_registered_and_documented():
    check_filter_sidecar(monstack_access, "ip_allow")
    check_filter_sidecar(monstack_access, "ip_sources_unknown")


# ------------------------------------------------- the units, rendered by Ansible
DEMO = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: {python}
    monstack_environment: demo
  hosts:
    monstack-demo-monitor: {monitor}
    monstack-demo-app1:
    monstack-demo-app2:
  children:
    prometheus:
      hosts:
        monstack-demo-monitor:
    alertmanager:
      hosts:
        monstack-demo-monitor:
        monstack-demo-app1:
    grafana:
      hosts: {{}}
    apps:
      hosts:
        monstack-demo-app1:
        monstack-demo-app2:
"""
ROLES = ["node_exporter", "cadvisor", "victoriametrics", "prometheus", "alertmanager"]


def _gather_task(role: str) -> dict:
    """The role's task that gathers the network facts of the hosts that may connect (run_once)."""
    tasks = []
    for task in yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text()):
        imported = task.get("ansible.builtin.import_tasks")  # tasks/addresses.yml
        tasks += yaml.safe_load((REPO / "roles" / role / "tasks" / imported).read_text()) if imported else [task]
    [gather] = [t for t in tasks if t["name"].startswith("Addresses of the hosts that may connect to")]
    return gather


def _render(tmp_path: Path, monitor: dict | None = None, group_vars: dict | None = None,
            roles: list[str] = ROLES) -> tuple[dict, list[dict]]:
    """Render every role's unit for every host: {(role, host): unit text}, and the gather task's results."""
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "group_vars" / "all" / "zz-test.yml").write_text(yaml.safe_dump(group_vars or {}))
    (tmp_path / "inventory.yml").write_text(DEMO.format(python=sys.executable, monitor=yaml.safe_dump(
        monitor, default_flow_style=True).strip() if monitor else ""))
    plays = []
    for role in roles:
        defaults = REPO / "roles" / role / "defaults"
        default_files = [defaults / "main.yml"] if (defaults / "main.yml").exists() else sorted((defaults / "main").glob("*.yml"))
        for path in default_files:  # role defaults: below the inventory's variables
            shutil.copy(path, tmp_path / "group_vars" / "all" / f"1-{role}-{path.name}")
        gather = _gather_task(role)
        assert gather["ansible.builtin.setup"]["gather_subset"] == ["!all", "!min", "network"]
        assert gather["run_once"] is True and gather["delegate_facts"] is True
        gather.pop("tags")
        spec = f"{role}_component"
        # what the action computes: the allow list over hostvars, then the unit (below, in Python)
        wanted = ("{{ {'spec': %s, 'allow': (%s.service.ip_allow_hosts | monstack.stack.ip_allow(hostvars, "
                  "%s.service.ip_allow, '%s_ip_allow')) if %s.service.ip_restrict | bool else []} | to_json }}"
                  % (spec, spec, spec, role, spec))
        plays.append({
            "name": role, "hosts": "all", "gather_facts": False,
            "vars_files": [str(REPO / "roles" / role / "vars" / "main.yml")],
            "tasks": [gather, {"name": "unit", "ansible.builtin.copy": {
                "content": wanted, "dest": f"{tmp_path}/{role}--{{{{ inventory_hostname }}}}.json", "mode": "0644"}}],
        })
    (tmp_path / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    results = _play_results(tmp_path)
    units = {}
    for path in tmp_path.glob("*--*.json"):
        wanted = json.loads(path.read_text())
        comp = component_logic.normalise(wanted["spec"])
        units[tuple(path.name.removesuffix(".json").split("--"))] = component_logic.unit_text(
            comp, comp["user"]["name"] or "root", wanted["allow"])
    return units, results


def _play_results(cwd: Path) -> list[list[dict]]:
    """Per play, per task, the per-host results (json callback)."""
    result = subprocess.run([ansible_playbook(), "-i", "inventory.yml", "play.yml"], cwd=cwd,
                            env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
                                     ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    plays = json.loads(result.stdout[result.stdout.index("{"):])["plays"]
    return [[task["hosts"] for task in play["tasks"]] for play in plays]


def _lines(unit: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", unit, re.M)


def test_demo_units_allow_localhost_and_the_prometheus_host(tmp_path):
    units, results = _render(tmp_path, monitor={"monstack_ip_addresses": ["10.231.1.2"]},
                             group_vars={"monstack_ip_allow": ["10.231.1.1"]})
    gather = results[0][0]
    assert all(r.get("skipped") for r in gather.values()), "explicit addresses: no facts to gather"
    for host in ("monstack-demo-monitor", "monstack-demo-app1", "monstack-demo-app2"):
        for role in ("node_exporter", "cadvisor", "victoriametrics"):
            unit = units[(role, host)]
            assert _lines(unit, "IPAddressDeny") == ["any"], (role, host)
            assert _lines(unit, "IPAddressAllow") == ["localhost 10.231.1.2 10.231.1.1"] or \
                _lines(unit, "IPAddressAllow") == ["localhost 10.231.1.1 10.231.1.2"], (role, host, unit)
            assert "# Who may connect: localhost, the addresses of monstack-demo-monitor" in unit
        # the servers that connect out to unknown addresses are not restricted by default
        for role in ("prometheus", "alertmanager"):
            assert "IPAddress" not in units[(role, host)], (role, host)
    assert _lines(units[("node_exporter", "monstack-demo-app1")], "IPAddressAllow") == ["localhost 10.231.1.1 10.231.1.2"]


def test_the_prometheus_hosts_facts_are_gathered_once_per_run(tmp_path):
    units, results = _render(tmp_path, roles=["node_exporter", "cadvisor"])
    gather = results[0][0]
    ran = [r for r in gather.values() if not r.get("skipped")]
    assert len(ran) == 1, gather  # run_once, for every host of the play
    [item] = ran[0]["results"]
    assert item["monstack_ip_source"] == "monstack-demo-monitor"
    facts = item["ansible_facts"]
    addresses = [a for a in facts["ansible_all_ipv4_addresses"] + facts.get("ansible_all_ipv6_addresses", [])
                 if not ipaddress.ip_address(a.split("%")[0]).is_link_local]
    for role in ("node_exporter", "cadvisor"):
        for host in ("monstack-demo-app1", "monstack-demo-app2"):
            [allow] = _lines(units[(role, host)], "IPAddressAllow")
            assert allow.split()[0] == "localhost"
            assert sorted(allow.split()[1:]) == sorted(set(addresses)), (role, host, allow)
    # the cAdvisor play found the facts the node_exporter play gathered: nothing more to gather
    assert all(r.get("skipped") for r in results[1][0].values()), results[1][0]


def test_one_variable_turns_the_restriction_off(tmp_path):
    units, results = _render(tmp_path, group_vars={"monstack_ip_restrict": False}, roles=["node_exporter", "cadvisor"])
    assert all(r.get("skipped") for play in results for r in play[0].values())
    for (role, host), unit in units.items():
        assert "IPAddress" not in unit and "Who may connect" not in unit, (role, host)


def test_per_role_switch_and_extra_sources(tmp_path):
    units, _ = _render(tmp_path, monitor={"monstack_ip_addresses": ["10.0.0.5"]},
                       group_vars={"cadvisor_ip_restrict": False, "node_exporter_ip_allow": ["192.0.2.0/28"],
                                   "prometheus_ip_restrict": True, "prometheus_ip_allow": ["10.20.0.0/16"],
                                   "alertmanager_ip_restrict": True},
                       roles=["node_exporter", "cadvisor", "prometheus", "alertmanager"])
    host = "monstack-demo-app2"
    assert _lines(units[("node_exporter", host)], "IPAddressAllow") == ["localhost 10.0.0.5 192.0.2.0/28"]
    assert "IPAddress" not in units[("cadvisor", host)]
    # Prometheus opened on purpose: its peers and the hosts it sends to, and the networks it scrapes
    prom = units[("prometheus", "monstack-demo-monitor")]
    assert _lines(prom, "IPAddressDeny") == ["any"]
    assert "10.20.0.0/16" in _lines(prom, "IPAddressAllow")[0]


def test_a_host_without_known_addresses_fails_with_a_clear_message(tmp_path):
    """A Prometheus host outside the play's reach and without monstack_ip_addresses: the filter
    names it (here the gather task cannot run: the inventory gives it no usable connection)."""
    hostvars = {"mon1": {"ansible_facts": {"architecture": "x86_64"}}}
    with pytest.raises(AnsibleFilterError, match="inventory host 'mon1': its addresses are not known"):
        monstack_ip_allow(["mon1"], hostvars)


# ------------------------------------- blackbox_exporter: loopback, scraped by its own Prometheus
def _blackbox_targets(tmp_path: Path, group_vars: dict) -> dict:
    role = REPO / "roles" / "prometheus"
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))
    (tmp_path / "inventory.yml").write_text(
        "all:\n  vars: {ansible_connection: local, ansible_python_interpreter: %s}\n"
        "  children:\n    prometheus:\n      hosts: {mon1: {monstack_environment: prod}, mon2: }\n" % sys.executable)
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "hosts": "prometheus", "gather_facts": False,
        "vars_files": [str(role / "defaults/main/main.yml"), str(role / "defaults/main/alert_rules.yml"),
                       str(role / "vars/main.yml")],
        "tasks": [{"name": "blackbox targets", "ansible.builtin.copy": {
            "content": "{{ prometheus_target_files['blackbox.yml'] }}", "dest": f"{tmp_path}/{{{{ inventory_hostname }}}}.yml",
            "mode": "0644"}}]}]))
    _play_results(tmp_path)
    return {host: yaml.safe_load((tmp_path / f"{host}.yml").read_text()) for host in ("mon1", "mon2")}


def test_blackbox_on_loopback_is_scraped_by_the_prometheus_beside_it(tmp_path):
    defaults = yaml.safe_load((REPO / "roles/blackbox_exporter/defaults/main.yml").read_text())
    assert defaults["blackbox_exporter_listen_address"] == "127.0.0.1"
    targets = _blackbox_targets(tmp_path, {})
    assert targets["mon1"] == [{"targets": ["127.0.0.1:9115"],
                                "labels": {"instance": "mon1", "host": "mon1", "environment": "prod"}}]
    assert targets["mon2"] == [{"targets": ["127.0.0.1:9115"], "labels": {"instance": "mon2", "host": "mon2"}}]


def test_blackbox_opened_is_scraped_by_every_prometheus(tmp_path):
    targets = _blackbox_targets(tmp_path, {"blackbox_exporter_listen_address": "0.0.0.0"})
    assert [group["targets"] for group in targets["mon1"]] == [["mon1:9115"], ["mon2:9115"]]
    assert targets["mon1"] == targets["mon2"]
