"""Filter plugin: the shard of every Prometheus host (roles/prometheus, prometheus_shard).

Documented for ansible-doc in prometheus_shards.yml beside this file.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def _shard(host: str, value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        value = None
    try:
        return int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, AttributeError):
        raise AnsibleFilterError(f"prometheus_shards: inventory host '{host}': prometheus_shard must be an "
                                 f"integer (-1: not sharded, 0, 1, ...: the shard), got {value!r}") from None


def prometheus_shards(hosts: Any, hostvars: Any) -> dict[str, int]:
    """{host: its prometheus_shard (-1 when unset)} for the hosts whose prometheus_state is not 'absent'."""
    if isinstance(hosts, (str, Mapping)) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError(f"prometheus_shards: expected a list of inventory host names, got {hosts!r}")
    shards = {}
    for host in hosts:
        host_vars = hostvars[host] if host in hostvars else {}
        if host_vars.get("prometheus_state", "present") != "absent":
            shards[host] = _shard(host, host_vars.get("prometheus_shard", -1))
    return shards


class FilterModule:
    """Prometheus sharding."""

    def filters(self):
        return {"prometheus_shards": prometheus_shards}
