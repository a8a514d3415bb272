"""Filter plugin: the hosts of a list whose state variable is not 'absent'.

Documented for ansible-doc in present_hosts.yml beside this file.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def present_hosts(hosts: Any, hostvars: Any, state_var: str) -> list[str]:
    """hosts, in order, but those whose host variable state_var is 'absent' (unset: present)."""
    if isinstance(hosts, (str, Mapping)) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError(f"present_hosts: expected a list of inventory host names, got {hosts!r}")
    if not isinstance(state_var, str) or not state_var:
        raise AnsibleFilterError(f"present_hosts: state_var must name a host variable, got {state_var!r}")
    return [host for host in hosts
            if (hostvars[host] if host in hostvars else {}).get(state_var, "present") != "absent"]


class FilterModule:
    """Inventory host selection."""

    def filters(self):
        return {"present_hosts": present_hosts}
