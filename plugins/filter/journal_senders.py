"""Filter plugin: the addresses each inventory host may send its journal from (playbooks/logs.yml).

Documented for ansible-doc in journal_senders.yml beside this file.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def journal_senders(hosts: Any, hostvars: Any) -> dict[str, list[str]]:
    """{host: [monstack_scrape_address, ansible_host]}, the unset or empty ones left out, without
    repeats (compared without case, first kept)."""
    if isinstance(hosts, (str, Mapping)) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError(f"journal_senders: expected a list of inventory host names, got {hosts!r}")
    out = {}
    for host in hosts:
        host_vars = hostvars[host] if host in hostvars else {}
        addresses: list[str] = []
        for key in ("monstack_scrape_address", "ansible_host"):
            value = host_vars.get(key, "")
            if value and str(value).lower() not in [a.lower() for a in addresses]:
                addresses.append(str(value))
        out[host] = addresses
    return out


class FilterModule:
    """Journal senders."""

    def filters(self):
        return {"journal_senders": journal_senders}
