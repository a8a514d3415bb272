"""plugins/filter/scrape_targets.py: file_sd target groups from inventory hosts."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from helpers import play_results
from ansible_collections.monstack.stack.plugins.filter.scrape_targets import FilterModule, monstack_scrape_targets


def targets(hostvars, hosts=None, port_var="node_exporter_port", default_port=9100, state_var=""):
    hosts = list(hostvars) if hosts is None else hosts
    return monstack_scrape_targets(hosts, hostvars, port_var, default_port, state_var)


def test_one_group_per_host_sorted_with_instance_and_host_labels():
    out = targets({"web2": {}, "web1": {}})
    assert out == [
        {"targets": ["web1:9100"], "labels": {"instance": "web1", "host": "web1"}},
        {"targets": ["web2:9100"], "labels": {"instance": "web2", "host": "web2"}},
    ]


def test_duplicate_host_names_give_one_group():
    assert targets({"a": {}}, hosts=["a", "a"]) == targets({"a": {}}, hosts=["a"])


def test_empty_inventory_gives_no_groups():
    assert targets({}, hosts=[]) == []


@pytest.mark.parametrize("address, target", [
    ("10.0.0.5", "10.0.0.5:9100"),
    ("app1.example.com", "app1.example.com:9100"),
    ("2001:db8::5", "[2001:db8::5]:9100"),
    ("[2001:db8::5]", "[2001:db8::5]:9100"),
    ("::1", "[::1]:9100"),
    (" 10.0.0.5 ", "10.0.0.5:9100"),
])
def test_scrape_address_overrides_the_inventory_name(address, target):
    out = targets({"h1": {"monstack_scrape_address": address}})
    assert out[0]["targets"] == [target]
    assert out[0]["labels"]["instance"] == "h1", "the label stays the inventory name"


def test_an_ipv6_inventory_name_is_bracketed():
    assert targets({"2001:db8::9": {}})[0]["targets"] == ["[2001:db8::9]:9100"]


@pytest.mark.parametrize("address", ["http://h1", "h1:9100", "h1/metrics", "h 1", "[h1]", "[10.0.0.1]", ""])
def test_bad_scrape_address_names_host_and_variable(address):
    with pytest.raises(AnsibleFilterError) as err:
        targets({"h1": {"monstack_scrape_address": address}})
    assert str(err.value).startswith("inventory host 'h1': monstack_scrape_address")


def test_per_host_port_overrides_the_default():
    out = targets({"a": {"node_exporter_port": 9101}, "b": {}, "c": {"node_exporter_port": "9200"}})
    assert [group["targets"][0] for group in out] == ["a:9101", "b:9100", "c:9200"]


def test_the_port_variable_is_the_one_named():
    hostvars = {"a": {"node_exporter_port": 1, "alertmanager_port": 9193}}
    assert targets(hostvars, port_var="alertmanager_port", default_port=9093)[0]["targets"] == ["a:9193"]


@pytest.mark.parametrize("port", [0, 65536, -1, "http", "", None, True, [9100]])
def test_bad_port_names_host_and_variable(port):
    with pytest.raises(AnsibleFilterError, match=r"^inventory host 'a': node_exporter_port must be a port number "
                                                 r"1-65535, got "):
        targets({"a": {"node_exporter_port": port}})


def test_bad_default_port_is_refused_too():
    with pytest.raises(AnsibleFilterError, match="node_exporter_port must be a port number"):
        targets({"a": {}}, default_port=0)


def test_hosts_whose_state_is_absent_are_left_out():
    hostvars = {"a": {"node_exporter_state": "absent"}, "b": {"node_exporter_state": "present"}, "c": {}}
    out = targets(hostvars, state_var="node_exporter_state")
    assert [group["labels"]["instance"] for group in out] == ["b", "c"]


def test_without_state_var_the_state_is_not_read():
    out = targets({"a": {"node_exporter_state": "absent"}})
    assert [group["labels"]["instance"] for group in out] == ["a"]


def test_an_absent_host_may_have_a_bad_address():
    # a host on its way out is not validated: removing it must not fail on its old values
    hostvars = {"a": {"node_exporter_state": "absent", "monstack_scrape_address": "bad:1", "node_exporter_port": 0}}
    assert targets(hostvars, state_var="node_exporter_state") == []


def test_environment_label_only_when_set():
    out = targets({"a": {"monstack_environment": "production"}, "b": {"monstack_environment": ""}, "c": {}})
    assert out[0]["labels"] == {"instance": "a", "host": "a", "environment": "production"}
    assert "environment" not in out[1]["labels"]
    assert "environment" not in out[2]["labels"]


def test_environment_label_is_a_string():
    assert targets({"a": {"monstack_environment": 2024}})[0]["labels"]["environment"] == "2024"


@pytest.mark.parametrize("hosts", ["web1", None, 5])
def test_hosts_must_be_a_list(hosts):
    with pytest.raises(AnsibleFilterError, match="expects a list of inventory host names"):
        monstack_scrape_targets(hosts, {}, "node_exporter_port", 9100)


def test_unknown_host_is_named():
    with pytest.raises(AnsibleFilterError, match=r"'ghost' is not an inventory host"):
        targets({"a": {}}, hosts=["a", "ghost"])


def test_result_is_independent_of_input_order():
    hostvars = {name: {"node_exporter_port": 9100 + i} for i, name in enumerate(["c", "a", "b"])}
    assert targets(hostvars, hosts=["c", "a", "b"]) == targets(hostvars, hosts=["b", "c", "a"])


def test_registered():
    assert FilterModule().filters() == {"scrape_targets": monstack_scrape_targets}


def test_with_ansible_hostvars(tmp_path):
    """Through Ansible: the real hostvars object, host and group variables."""
    (tmp_path / "inventory.yml").write_text("""
all:
  hosts:
    web1: {node_exporter_port: 9101, monstack_environment: staging}
    web2: {monstack_scrape_address: "2001:db8::2"}
    old1: {node_exporter_state: absent}
""")
    (tmp_path / "play.yml").write_text("""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: targets
      ansible.builtin.debug:
        msg: "{{ groups['all'] | monstack.stack.scrape_targets(hostvars, 'node_exporter_port', 9100, 'node_exporter_state') }}"
""")
    [task] = play_results(tmp_path, "play.yml", "-i", "inventory.yml", "-c", "local")
    assert task["localhost"]["msg"] == [
        {"targets": ["web1:9101"], "labels": {"instance": "web1", "host": "web1", "environment": "staging"}},
        {"targets": ["[2001:db8::2]:9100"], "labels": {"instance": "web2", "host": "web2"}},
    ]
