"""Filter plugin: Prometheus file_sd target groups from the Ansible inventory."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.filter.hostport import host_part

DOCUMENTATION = r"""
name: scrape_targets
short_description: Build Prometheus file_sd target groups from inventory hosts
description:
  - Turns a list of inventory hosts into file_sd target groups, one group per host, so that
    adding a host to the inventory adds a target and removing it removes the target.
  - The scrape address of a host is its C(monstack_scrape_address) host variable, or its
    inventory name. IPv6 addresses are bracketed.
  - The port is the host's O(port_var) variable (for example C(node_exporter_port)) or
    O(default_port).
  - Hosts whose O(state_var) is C(absent) are left out.
  - Every group carries the labels C(instance) (the inventory name, so series of different
    jobs on one host join on C(instance)), C(host) (the same) and, when the host defines
    C(monstack_environment), C(environment).
positional: hostvars, port_var, default_port
options:
  _input:
    description: Inventory host names (for example C(groups['all'])).
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  port_var:
    description: Name of the host variable that holds the port.
    type: str
    required: true
  default_port:
    description: Port used when the host does not set O(port_var).
    type: int
    required: true
  state_var:
    description: Name of a host variable; hosts where it is C(absent) are skipped.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: node_exporter targets of every host
  ansible.builtin.copy:
    dest: /etc/prometheus/file_sd/node.yml
    content: "{{ groups['all'] | monstack.stack.scrape_targets(hostvars, 'node_exporter_port', 9100, 'node_exporter_state') | to_nice_yaml }}"
    mode: "0644"
"""

RETURN = r"""
_value:
  description: file_sd target groups, sorted by host.
  type: list
  elements: dict
  sample: [{"targets": ["app1.example.com:9100"], "labels": {"instance": "app1.example.com", "host": "app1.example.com"}}]
"""


def _address(host: str, value) -> str:
    who = f"inventory host '{host}': monstack_scrape_address"
    if not str(value).strip():
        raise AnsibleFilterError(f"{who} is empty; set it to a host name or an IP address, or remove it")
    return host_part(str(value), who)


def _port(host: str, port_var: str, value) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if not 1 <= port <= 65535 or isinstance(value, bool):
        raise AnsibleFilterError(
            f"inventory host '{host}': {port_var} must be a port number 1-65535, got {value!r}")
    return port


def monstack_scrape_targets(hosts, hostvars, port_var, default_port, state_var=""):
    """Return one file_sd target group per inventory host."""
    if isinstance(hosts, str) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError("scrape_targets expects a list of inventory host names")
    groups = []
    for host in sorted(set(hosts)):
        if host not in hostvars:
            raise AnsibleFilterError(
                f"scrape_targets: '{host}' is not an inventory host; pass inventory host "
                "names, for example groups['all']")
        hvars = hostvars[host]
        if state_var and hvars.get(state_var, "present") == "absent":
            continue
        address = _address(host, hvars.get("monstack_scrape_address", host))
        port = _port(host, port_var, hvars.get(port_var, default_port))
        labels = {"instance": host, "host": host}
        if hvars.get("monstack_environment"):
            labels["environment"] = str(hvars["monstack_environment"])
        groups.append({"targets": [f"{address}:{port}"], "labels": labels})
    return groups


class FilterModule:
    """monstack inventory target filters."""

    def filters(self):
        return {"scrape_targets": monstack_scrape_targets}
