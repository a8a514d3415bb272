"""Filter plugins: 'host:port' strings, with IPv6 addresses in brackets.

hostport joins an address and a port the way Go programs (Prometheus,
Alertmanager, node_exporter, Grafana) and URLs expect them; local_host
says which address reaches a service on the host itself, given the address it
listens on; local_endpoint adds the scheme, route prefix, basic auth
and TLS verification a client on the host needs (the roles' own checks, and the
gate and annotations of playbooks/deployments.yml); service_endpoint
says how another host of the stack reaches a server (Prometheus' remote_write
and alerting, Grafana's data sources), from that server's own variables, and
service_clients turns that into a Prometheus client's settings and files;
peer_addresses lists the host:port of a cluster's other members (Alertmanager's
--cluster.peer flags).
Documented for ansible-doc in one <filter name>.yml file each, beside this file.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")


def _is_ipv6(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).version == 6
    except ValueError:
        return False


def host_part(address, who: str = "hostport") -> str:
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
    return f"{host_part(address, 'hostport')}:{_port(port, 'hostport')}"


def monstack_local_host(address):
    """The address that reaches, from the host itself, a service listening on address.

    '' and '0.0.0.0' give '127.0.0.1', '::' gives '::1'; any other address is
    returned as given (without brackets), since the service listens only there.
    """
    host = host_part(address, "local_host")
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


_ROUTE_PREFIX = re.compile(r"--web\.route-prefix(?:=|\s+)(\S*)")


def _endpoint_error(name: str, field: str, problem: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"local_endpoint ({name}): {field}: {problem}")


def route_prefix(name: str, external_url: Any, flags: Any) -> str:
    """The path served under: a --web.route-prefix flag if given, else the external URL's path."""
    if flags is not None and not isinstance(flags, (list, tuple)):
        raise _endpoint_error(name, "flags", f"expected a list of command-line flags, got {flags!r}")
    prefix = None
    for flag in flags or []:
        match = _ROUTE_PREFIX.fullmatch(str(flag).strip())
        if match:
            prefix = match.group(1)
    if prefix is None:
        if not isinstance(external_url or "", str):
            raise _endpoint_error(name, "external URL", f"expected a URL string, got {external_url!r}")
        prefix = urlsplit(external_url or "").path
    prefix = "/" + prefix.strip("/")
    return "" if prefix == "/" else prefix


def monstack_local_endpoint(listen_address: Any, port: Any, tls: Any = False, external_url: Any = "",
                            basic_auth_users: Any = None, flags: Any = None, ca_path: Any = "",
                            user: Any = "", password: Any = "", name: str = "component") -> dict[str, Any]:
    """{url, user, password, validate_certs, ca_path} for a client on the component's own host."""
    who = f"local_endpoint ({name}): listen address"
    if not isinstance(listen_address, str):
        raise AnsibleFilterError(f"{who}: expected an address or host name, got {listen_address!r}")
    host = host_part(monstack_local_host(host_part(listen_address, who)), who)
    number = _port(port, f"local_endpoint ({name}): port")
    # tls: a boolean, or the path of the server's certificate (non-empty: TLS is on).
    secure = bool(tls) if isinstance(tls, bool) or tls is None else len(str(tls)) > 0
    users = basic_auth_users or {}
    if not isinstance(users, Mapping):
        raise _endpoint_error(name, "basic auth users", "expected a mapping of user name to password")
    login = str(user or "") or (sorted(users)[0] if users else "")
    secret = password or (users.get(login, "") if login else "")
    if login and not secret:
        raise _endpoint_error(name, "basic auth", f"user {login!r} has no password "
                                                  "(set it in the basic auth users mapping)")
    if ca_path and not secure:
        raise _endpoint_error(name, "CA path", f"{ca_path!r} is set but the component does not serve TLS")
    return {
        "url": f"{'https' if secure else 'http'}://{host}:{number}{route_prefix(name, external_url, flags)}",
        "user": login,
        "password": str(secret) if login else "",
        # Without a CA the certificate is not verified, as in the roles' own checks: the
        # connection does not leave the host, and a certificate rarely names 127.0.0.1.
        "validate_certs": bool(ca_path),
        "ca_path": str(ca_path or ""),
    }


# How the stack's servers are reached by other hosts: the variables of the
# serving host (hostvars[host]) that say its port, whether it serves TLS, its
# route prefix, its basic auth and the CA its clients verify it with. Defaults
# are the roles' defaults (a host variable is only there when the inventory
# sets it).
_SERVICES: dict[str, dict[str, Any]] = {
    "prometheus": {"port_var": "prometheus_port", "port": 9090, "tls_var": "prometheus_web_tls_cert_file",
                   "url_var": "prometheus_external_url", "flags_var": "prometheus_extra_flags",
                   "users_var": "prometheus_basic_auth_users"},
    "alertmanager": {"port_var": "alertmanager_port", "port": 9093, "tls_var": "alertmanager_web_tls_cert_file",
                     "url_var": "alertmanager_external_url", "flags_var": "alertmanager_extra_flags",
                     "users_var": "alertmanager_basic_auth_users"},
    "victoriametrics": {"port_var": "victoriametrics_port", "port": 8428, "tls_var": "victoriametrics_tls_cert",
                        "user_var": "victoriametrics_http_auth_username",
                        "password_var": "victoriametrics_http_auth_password",
                        "ca_var": "victoriametrics_tls_ca_cert"},
}


def monstack_service_endpoint(host: Any, host_vars: Any, service: str, user: Any = "",
                              password: Any = "") -> dict[str, Any]:
    """{url, scheme, address, tls, user, password, ca_cert} for a client on another host of the stack."""
    spec = _SERVICES.get(str(service))
    if spec is None:
        raise AnsibleFilterError(f"service_endpoint: unknown service {service!r} "
                                 f"(one of {', '.join(sorted(_SERVICES))})")
    if not isinstance(host, str) or not host:
        raise AnsibleFilterError(f"service_endpoint ({service}): expected an inventory host name, got {host!r}")
    if host_vars is None:
        host_vars = {}
    if not isinstance(host_vars, Mapping):
        raise AnsibleFilterError(f"service_endpoint ({service}): expected hostvars[{host!r}], got {host_vars!r}")
    name = f"{service} on {host}"

    def get(key: str, default: Any = None) -> Any:
        value = host_vars.get(key, default) if key else default
        return default if value is None else value

    address = host_part(str(get("monstack_scrape_address", host)),
                        f"service_endpoint ({name}): monstack_scrape_address")
    number = _port(get(spec["port_var"], spec["port"]), f"service_endpoint ({name}): {spec['port_var']}")
    tls = len(str(get(spec["tls_var"], "") or "")) > 0
    prefix = route_prefix(name, get(spec.get("url_var", ""), ""), get(spec.get("flags_var", ""), []))
    login, secret = str(user or ""), str(password or "")
    if not login:
        if "users_var" in spec:
            users = get(spec["users_var"], {}) or {}
            if not isinstance(users, Mapping):
                raise _endpoint_error(name, spec["users_var"], "expected a mapping of user name to password")
            login = sorted(users)[0] if users else ""
            secret = str(users.get(login, "")) if login else ""
        else:
            login = str(get(spec.get("user_var", ""), "") or "")
            secret = str(get(spec.get("password_var", ""), "") or "") if login else ""
    return {
        "url": f"{'https' if tls else 'http'}://{address}:{number}{prefix}",
        "scheme": "https" if tls else "http",
        "address": f"{address}:{number}",
        "tls": tls,
        "user": login,
        "password": secret if login else "",
        "ca_cert": str(get(spec.get("ca_var", ""), "") or "") if tls else "",
    }


def monstack_service_clients(hosts: Any, hostvars: Any, service: str, files_dir: str) -> dict[str, Any]:
    """{host: endpoint + {http, files}} for a Prometheus client of each host (remote_write, scrape).

    http: the client settings Prometheus takes (basic_auth with a password_file, tls_config with a
    ca_file), files: {file name: content} to write in files_dir (the password and the CA), one pair
    per host, named after it.
    """
    if isinstance(hosts, str) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError("service_clients: expected a list of inventory host names")
    if not isinstance(files_dir, str) or not files_dir.startswith("/"):
        raise AnsibleFilterError(f"service_clients: files_dir must be an absolute path, got {files_dir!r}")
    out: dict[str, Any] = {}
    for host in hosts:
        endpoint = monstack_service_endpoint(host, hostvars[host] if host in hostvars else {}, service)
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", host)
        http: dict[str, Any] = {}
        files: dict[str, str] = {}
        if endpoint["user"]:
            http["basic_auth"] = {"username": endpoint["user"],
                                  "password_file": f"{files_dir.rstrip('/')}/{base}.password"}
            files[f"{base}.password"] = endpoint["password"]
        if endpoint["ca_cert"]:
            http["tls_config"] = {"ca_file": f"{files_dir.rstrip('/')}/{base}.ca.pem"}
            files[f"{base}.ca.pem"] = endpoint["ca_cert"]
        out[host] = {**endpoint, "http": http, "files": files}
    return out


def peer_addresses(hosts: Any, hostvars: Any, self_host: Any, port_var: str, default_port: Any) -> list[str]:
    """host:port of every host but self_host, in order: the host's monstack_scrape_address (or its
    inventory name) and its port_var (or default_port)."""
    who = "peer_addresses"
    if isinstance(hosts, (str, Mapping)) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError(f"{who}: expected a list of inventory host names, got {hosts!r}")
    if not isinstance(port_var, str) or not port_var:
        raise AnsibleFilterError(f"{who}: port_var must name a host variable, got {port_var!r}")
    out = []
    for host in hosts:
        if host == self_host:
            continue
        host_vars = hostvars[host] if host in hostvars else {}
        address = host_vars.get("monstack_scrape_address", host)
        port = host_vars.get(port_var, default_port)
        name = f"{who}: inventory host '{host}'"
        out.append(f"{host_part(address, name + ': monstack_scrape_address')}:{_port(port, name + ': ' + port_var)}")
    return out


class FilterModule:
    """monstack host:port filters."""

    def filters(self):
        return {
            "hostport": monstack_hostport,
            "local_host": monstack_local_host,
            "local_endpoint": monstack_local_endpoint,
            "service_clients": monstack_service_clients,
            "service_endpoint": monstack_service_endpoint,
            "peer_addresses": peer_addresses,
        }
