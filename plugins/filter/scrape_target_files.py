"""Filter plugin: the file_sd file of each inventory scrape job (roles/prometheus, prometheus_target_files).

Documented for ansible-doc in scrape_target_files.yml beside this file.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_nice_yaml

from ansible_collections.monstack.stack.plugins.filter.scrape_targets import monstack_scrape_targets

TARGET_FILE_HEADER = "# Managed by Ansible (monstack): changes here are overwritten.\n"
JOB_KEYS = ("job", "group", "port_var", "default_port")


def scrape_target_files(jobs: Any, groups: Any, hostvars: Any, local: Any = None,
                        header: str = TARGET_FILE_HEADER) -> dict[str, str]:
    """{'<job>.yml': file_sd text} for each inventory job {job, group, port_var, default_port, state_var?,
    labels?} (labels: added to every target of the job).

    The hosts of a job are its group's (none when the group does not exist); a job named in local
    has the hosts of local[job] instead, with those host variables (a scraper's own exporter).
    """
    if isinstance(jobs, (str, Mapping)) or not hasattr(jobs, "__iter__"):
        raise AnsibleFilterError(f"scrape_target_files: expected a list of jobs, got {jobs!r}")
    local = local or {}
    files = {}
    for index, job in enumerate(jobs):
        missing = [key for key in JOB_KEYS if not isinstance(job, Mapping) or key not in job]
        if missing:
            raise AnsibleFilterError(f"scrape_target_files: job #{index + 1} {job!r} lacks {', '.join(missing)}")
        name = job["job"]
        if name in local:
            hosts, host_vars = list(local[name]), local[name]
        else:
            hosts, host_vars = list(groups.get(job["group"]) or []), hostvars
        groups_of_job = monstack_scrape_targets(hosts, host_vars, job["port_var"], job["default_port"],
                                                job.get("state_var") or "") if hosts else []
        for group in groups_of_job:  # the job's own labels (exporter catalogue entries), under the host's
            group["labels"] = dict(job.get("labels") or {}, **group["labels"])
        targets = to_nice_yaml(groups_of_job, indent=2) if groups_of_job else "[]\n"
        files[f"{name}.yml"] = header + targets
    return files


class FilterModule:
    """Prometheus file_sd files."""

    def filters(self):
        return {"scrape_target_files": scrape_target_files}
