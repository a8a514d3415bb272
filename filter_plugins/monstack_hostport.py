"""Filter plugins: 'host:port' strings, with IPv6 addresses in brackets.

monstack_hostport joins an address and a port the way Go programs (Prometheus,
Alertmanager, node_exporter, Grafana) and URLs expect them; monstack_local_host
says which address reaches a service on the host itself, given the address it
listens on. Documented for ansible-doc in one <filter name>.yml file each,
beside this file.
"""
from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError

_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")


def _is_ipv6(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).version == 6
    except ValueError:
        return False


def host_part(address, who: str = "monstack_hostport") -> str:
    """The address as it goes before ':port': IPv6 in brackets, the rest unchanged.

    Shared with the other filter plugins of this package; who starts the error messages.
    """
    if not isinstance(address, str):
        raise AnsibleFilterError(
            f"{who}: the address must be a string (a host name, an IPv4 or an IPv6 address), "
            f"got {type(address).__name__} {address!r}")
    value = address.strip()
    if value.startswith("[") and value.endswith("]"):
        if _is_ipv6(value[1:-1]):
            return value
        raise AnsibleFilterError(
            f"{who}: {address!r} has brackets but no IPv6 address inside them; "
            "brackets are only for IPv6 addresses such as '[2001:db8::1]'")
    if ":" in value:
        if _is_ipv6(value):
            return f"[{value}]"
        raise AnsibleFilterError(
            f"{who}: {address!r} is not an IPv6 address; give the port separately "
            "and the host alone (a name, an IPv4 or an IPv6 address)")
    if value and not _HOSTNAME.match(value):
        raise AnsibleFilterError(
            f"{who}: {address!r} is not a host name or an IP address "
            "(give the host alone, without scheme, path or spaces)")
    return value


def _port(port, who: str) -> int:
    if isinstance(port, bool) or (isinstance(port, float) and not port.is_integer()):
        raise AnsibleFilterError(f"{who}: the port must be a number 1-65535, got {port!r}")
    try:
        number = int(str(port).strip()) if isinstance(port, str) else int(port)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= 65535:
        raise AnsibleFilterError(f"{who}: the port must be a number 1-65535, got {port!r}")
    return number


def monstack_hostport(address, port):
    """'host:port' from an address and a port; IPv6 addresses in brackets.

    An empty address gives ':port' (every interface, in Go's listen flags).
    """
    return f"{host_part(address, 'monstack_hostport')}:{_port(port, 'monstack_hostport')}"


def monstack_local_host(address):
    """The address that reaches, from the host itself, a service listening on address.

    '' and '0.0.0.0' give '127.0.0.1', '::' gives '::1'; any other address is
    returned as given (without brackets), since the service listens only there.
    """
    host = host_part(address, "monstack_local_host")
    bare = host[1:-1] if host.startswith("[") else host
    if not bare:
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return bare
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return bare


class FilterModule:
    """monstack host:port filters."""

    def filters(self):
        return {
            "monstack_hostport": monstack_hostport,
            "monstack_local_host": monstack_local_host,
        }
