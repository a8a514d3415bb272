"""Filter plugin: Prometheus remote_write entries for the hosts of the global store.

Documented for ansible-doc in global_store_remote_write.yml beside this file.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def global_store_remote_write(hosts: Any, clients: Any, replica_label: str) -> list[dict[str, Any]]:
    """One remote_write entry per store host, in order: named global-<host>, to <url>/api/v1/write,
    dropping replica_label, with the client settings (basic auth, TLS) of clients[host]['http']."""
    if isinstance(hosts, (str, Mapping)) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError(f"global_store_remote_write: expected a list of inventory host names, got {hosts!r}")
    writes = []
    for host in hosts:
        client = clients.get(host) if isinstance(clients, Mapping) else None
        if not isinstance(client, Mapping) or "url" not in client:
            raise AnsibleFilterError(f"global_store_remote_write: no client settings (service_clients) "
                                     f"for the store host '{host}'")
        entry = {"name": f"global-{host}", "url": f"{client['url']}/api/v1/write",
                 "write_relabel_configs": [{"action": "labeldrop", "regex": replica_label}]}
        entry.update(client.get("http") or {})
        writes.append(entry)
    return writes


class FilterModule:
    """Prometheus remote_write to the global store."""

    def filters(self):
        return {"global_store_remote_write": global_store_remote_write}
