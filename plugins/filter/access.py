"""Filter plugins: who may connect to a service (systemd's IPAddressAllow=/IPAddressDeny=).

ip_allow turns the inventory hosts that need a service (the Prometheus
hosts for an exporter, ...) and a list of extra sources into the entries of the
unit's IPAddressAllow= line; ip_sources_unknown names the hosts whose
addresses must first be gathered (their network facts). Documented for
ansible-doc in one <filter name>.yml file each, beside this file.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# systemd's own names for address sets (systemd.resource-control(5)).
KEYWORDS = ("localhost", "link-local", "multicast", "any")


def _hostvars(hostvars, host: str):
    if host not in hostvars:
        raise AnsibleFilterError(f"ip_allow: '{host}' is not an inventory host")
    return hostvars[host]


def _explicit(hvars):
    value = hvars.get("monstack_ip_addresses")
    return None if value is None else value


def _facts(hvars) -> Mapping:
    facts = hvars.get("ansible_facts") or {}
    return facts if isinstance(facts, Mapping) else {}


def _entry(value, who: str) -> str:
    """One IPAddressAllow= entry: an address, a network (CIDR) or a systemd keyword."""
    text = str(value).strip()
    if text in KEYWORDS:
        return text
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise AnsibleFilterError(
            f"{who}: {value!r} is not an IP address or network (CIDR such as 10.0.8.0/24 or fd00::/64), "
            f"nor one of systemd's names {', '.join(KEYWORDS)}. Fix: give addresses, not host names") from None
    single = network.num_addresses == 1
    return str(network.network_address) if single else str(network)


def _sort_key(entry: str):
    if entry in KEYWORDS:
        return (0, KEYWORDS.index(entry), 0, "")
    network = ipaddress.ip_network(entry, strict=False)
    return (network.version, 0, int(network.network_address), entry)


def monstack_ip_sources_unknown(hosts, hostvars):
    """The hosts among ``hosts`` whose addresses are not known yet: no ``monstack_ip_addresses``
    and no network facts (``ansible_facts.all_ipv4_addresses``)."""
    unknown = []
    for host in sorted(set(hosts or [])):
        hvars = _hostvars(hostvars, host)
        if _explicit(hvars) is None and "all_ipv4_addresses" not in _facts(hvars):
            unknown.append(host)
    return unknown


def monstack_ip_allow(hosts, hostvars, extra=(), extra_var="ip_allow"):
    """The IPAddressAllow= entries for a service: ``localhost``, every address of each
    inventory host in ``hosts`` (its ``monstack_ip_addresses``, else its gathered network facts,
    without IPv6 link-local addresses) and the ``extra`` sources. Sorted, without duplicates."""
    if isinstance(hosts, str) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError("ip_allow expects a list of inventory host names")
    entries = {"localhost"}
    for host in sorted(set(hosts)):
        hvars = _hostvars(hostvars, host)
        explicit = _explicit(hvars)
        who = f"inventory host '{host}': monstack_ip_addresses"
        if explicit is not None:
            if isinstance(explicit, (str, bytes)) or not hasattr(explicit, "__iter__"):
                raise AnsibleFilterError(f"{who} must be a list of addresses, got {explicit!r}")
            entries.update(_entry(value, who) for value in explicit)
            continue
        facts = _facts(hvars)
        if "all_ipv4_addresses" not in facts:
            raise AnsibleFilterError(
                f"inventory host '{host}': its addresses are not known (no network facts gathered, no "
                "monstack_ip_addresses), so the services it connects to cannot allow it. Fix: set "
                "monstack_ip_addresses for it (the addresses it connects from), or run the whole play "
                "(the roles gather them once per run)")
        addresses = list(facts.get("all_ipv4_addresses") or []) + list(facts.get("all_ipv6_addresses") or [])
        for value in addresses:
            try:
                address = ipaddress.ip_address(str(value).split("%", maxsplit=1)[0])
            except ValueError:
                continue
            if address.is_link_local or address.is_loopback:
                continue
            entries.add(str(address))
    if isinstance(extra, (str, bytes)) or not hasattr(extra, "__iter__"):
        raise AnsibleFilterError(f"{extra_var}: expected a list of addresses or networks (CIDR), got {extra!r}")
    entries.update(_entry(value, extra_var) for value in extra)
    return sorted(entries, key=_sort_key)


class FilterModule:
    """monstack access filters."""

    def filters(self):
        return {"ip_allow": monstack_ip_allow,
                "ip_sources_unknown": monstack_ip_sources_unknown}
