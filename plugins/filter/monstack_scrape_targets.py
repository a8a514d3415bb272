"""Filter plugins: Prometheus file_sd target groups from the Ansible inventory.

monstack_scrape_targets makes the target groups of one job; scrape_target_files
makes the file_sd file of each job of a list (roles/prometheus,
prometheus_target_files). Documented for ansible-doc in one <filter name>.yml file
each, beside this file.
"""
from __future__ import annotations

import importlib.util
import os
import sys

from ansible.errors import AnsibleFilterError


def _sibling(name: str):
    """A filter plugin file beside this one (filter_plugins/ is no package, and Ansible
    loads each file on its own)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def _address(host: str, value) -> str:
    who = f"inventory host '{host}': monstack_scrape_address"
    if not str(value).strip():
        raise AnsibleFilterError(f"{who} is empty; set it to a host name or an IP address, or remove it")
    return _sibling("monstack_hostport").host_part(str(value), who)


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
        raise AnsibleFilterError("monstack_scrape_targets expects a list of inventory host names")
    groups = []
    for host in sorted(set(hosts)):
        if host not in hostvars:
            raise AnsibleFilterError(
                f"monstack_scrape_targets: '{host}' is not an inventory host; pass inventory host "
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


TARGET_FILE_HEADER = "# Managed by Ansible (monstack): changes here are overwritten.\n"


def scrape_target_files(jobs, groups, hostvars, local=None, header=TARGET_FILE_HEADER):
    """{'<job>.yml': file_sd text} for each inventory job {job, group, port_var, default_port, state_var?}.

    The hosts of a job are its group's (none when the group does not exist); a job named in local
    has the hosts of local[job] instead, with those host variables (a scraper's own exporter).
    """
    from ansible.plugins.filter.core import to_nice_yaml

    if isinstance(jobs, (str, dict)) or not hasattr(jobs, "__iter__"):
        raise AnsibleFilterError(f"scrape_target_files: expected a list of jobs, got {jobs!r}")
    local = local or {}
    files = {}
    for index, job in enumerate(jobs):
        missing = [key for key in ("job", "group", "port_var", "default_port")
                   if not isinstance(job, dict) or key not in job]
        if missing:
            raise AnsibleFilterError(f"scrape_target_files: job #{index + 1} {job!r} lacks {', '.join(missing)}")
        name = job["job"]
        if name in local:
            hosts, host_vars = list(local[name]), local[name]
        else:
            hosts, host_vars = list(groups.get(job["group"]) or []), hostvars
        targets = (to_nice_yaml(monstack_scrape_targets(hosts, host_vars, job["port_var"], job["default_port"],
                                                        job.get("state_var") or ""), indent=2)
                   if hosts else "[]\n")
        files[f"{name}.yml"] = header + targets
    return files


class FilterModule:
    """monstack inventory target filters."""

    def filters(self):
        return {"monstack_scrape_targets": monstack_scrape_targets, "scrape_target_files": scrape_target_files}
