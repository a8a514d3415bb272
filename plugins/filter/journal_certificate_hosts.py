"""Filter plugin: the hosts the journal role's CA certifies, with their subject alternative names.

Documented for ansible-doc in journal_certificate_hosts.yml beside this file.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

_IP = re.compile(r"^([0-9.]+|[0-9a-fA-F]*:[0-9a-fA-F:.]*)$")


def unique_ignoring_case(values: list) -> list:
    """values without repeats, first kept, strings compared without case (Ansible's unique filter)."""
    seen, out = set(), []
    for value in values:
        key = value.lower() if isinstance(value, str) else value
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


def journal_certificate_hosts(hosts: Any, hostvars: Any) -> list[dict[str, Any]]:
    """[{name, sans}] for each host that has no journal_tls_ca_file of its own: DNS:<name>, its
    monstack_scrape_address (IP: or DNS:), then its journal_cert_extra_sans, without repeats."""
    if isinstance(hosts, (str, Mapping)) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError(f"journal_certificate_hosts: expected a list of inventory host names, got {hosts!r}")
    out = []
    for host in hosts:
        host_vars = hostvars[host] if host in hostvars else {}
        if str(host_vars.get("journal_tls_ca_file") or ""):
            continue
        address = str(host_vars.get("monstack_scrape_address") or "")
        extra = host_vars.get("journal_cert_extra_sans") or []
        if isinstance(extra, (str, Mapping)) or not isinstance(extra, (list, tuple)):
            raise AnsibleFilterError(f"journal_certificate_hosts: inventory host '{host}': journal_cert_extra_sans "
                                     f"must be a list such as ['DNS:logs.example.com'], got {extra!r}")
        sans = [f"DNS:{host}"]
        if address:
            sans.append(f"IP:{address}" if _IP.match(address) else f"DNS:{address}")
        out.append({"name": host, "sans": unique_ignoring_case(sans + list(extra))})
    return out


class FilterModule:
    """journal role certificates."""

    def filters(self):
        return {"journal_certificate_hosts": journal_certificate_hosts}
