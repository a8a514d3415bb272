"""Filter plugins: the user's own scrape config files (roles/prometheus, prometheus_scrape_config_dir).

user_scrape_files checks the files read from the user's directory and, when sharding is asked,
puts the shard's hashmod relabelling first in every job; user_scrape_jobs lists their jobs (for
the copy of prometheus.yml that promtool checks with them inlined). Documented for ansible-doc in
user_scrape_files.yml and user_scrape_jobs.yml beside this file.
"""
from __future__ import annotations

from collections.abc import Mapping

import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.monstack.stack.plugins.plugin_utils.plain_data import plain as _plain

VARIABLE = "prometheus_scrape_config_dir"
MAX_FILES = 100
MAX_BYTES = 1024 * 1024
# Settings that would write a secret inline into files every run shows in its diff:
# each has a *_file form that names a file on the host instead.
INLINE_SECRETS = ("password", "credentials", "bearer_token", "client_secret")


class _Loader(yaml.SafeLoader):
    """Refuses a key twice in one mapping, as Prometheus does (YAML loaders keep the last)."""

    def construct_mapping(self, node, deep=False):
        keys = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in keys:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            keys.add(key)
        return super().construct_mapping(node, deep)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_multi_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", str.__str__(v)))


def _secrets(value, where):
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in INLINE_SECRETS and isinstance(item, str) and item:
                yield f"{where}.{key}"
            else:
                yield from _secrets(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secrets(item, f"{where}[{index}]")


def _jobs(name, text) -> list:
    if not isinstance(text, str):
        raise AnsibleFilterError(f"{VARIABLE}: file {name}: expected its text, got {type(text).__name__}")
    if len(text.encode("utf-8", "surrogateescape")) > MAX_BYTES:
        raise AnsibleFilterError(f"{VARIABLE}: file {name}: larger than {MAX_BYTES} bytes")
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        raise AnsibleFilterError(f"{VARIABLE}: file {name}: not YAML: {exc}") from None
    if not isinstance(doc, Mapping) or set(doc) != {"scrape_configs"}:
        keys = ", ".join(sorted(map(str, doc))) if isinstance(doc, Mapping) else type(doc).__name__
        raise AnsibleFilterError(f"{VARIABLE}: file {name}: must be a mapping with the one key scrape_configs "
                                 f"(what Prometheus' scrape_config_files take), got {keys}")
    jobs = doc["scrape_configs"] or []
    if not isinstance(jobs, list) or not all(isinstance(j, Mapping) for j in jobs):
        raise AnsibleFilterError(f"{VARIABLE}: file {name}: scrape_configs must be a list of scrape configs")
    for index, job in enumerate(jobs):
        if not isinstance(job.get("job_name"), str) or not job["job_name"]:
            raise AnsibleFilterError(f"{VARIABLE}: file {name}: scrape_configs[{index}] has no job_name")
        found = list(_secrets(job, f"{job['job_name']}"))
        if found:
            raise AnsibleFilterError(f"{VARIABLE}: file {name}: job {', '.join(found)}: a secret written inline; "
                                     "use the *_file form (e.g. basic_auth.password_file) naming a file on the host")
    return jobs


def user_scrape_files(files, shard_relabel_configs=None):
    """{file name: text} -> {file name: text}: every file checked (YAML, only scrape_configs, a
    job_name per job, job names unique across the files, no inline secret, limits); with
    ``shard_relabel_configs`` (the shard's hashmod relabelling) each job gets them first and the
    file is written anew, otherwise its text is kept as it is."""
    if not isinstance(files, Mapping):
        raise AnsibleFilterError(f"user_scrape_files: expected a mapping of file name to text, got {type(files).__name__}")
    if len(files) > MAX_FILES:
        raise AnsibleFilterError(f"{VARIABLE}: {len(files)} files, at most {MAX_FILES}")
    shard = _plain(list(shard_relabel_configs or []))
    seen, out = {}, {}
    for name in sorted(files):
        jobs = _jobs(name, files[name])
        for job in jobs:
            if job["job_name"] in seen:
                raise AnsibleFilterError(f"{VARIABLE}: job name {job['job_name']!r} is in files {seen[job['job_name']]} "
                                         f"and {name}; Prometheus refuses two jobs of one name")
            seen[job["job_name"]] = name
        if shard:
            jobs = [dict(_plain(job), relabel_configs=shard + _plain(list(job.get("relabel_configs") or [])))
                    for job in jobs]
            out[name] = "# Sharded by the prometheus role (prometheus_scrape_config_files_shard).\n" + yaml.dump(
                {"scrape_configs": jobs}, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
        else:
            out[name] = str.__str__(files[name])
    return out


def user_scrape_jobs(files):
    """{file name: text} (user_scrape_files' result) -> the list of their scrape configs, in file order."""
    if not isinstance(files, Mapping):
        raise AnsibleFilterError(f"user_scrape_jobs: expected a mapping of file name to text, got {type(files).__name__}")
    return [_plain(job) for name in sorted(files) for job in _jobs(name, files[name])]


class FilterModule:
    """The user's scrape config files."""

    def filters(self):
        return {"user_scrape_files": user_scrape_files, "user_scrape_jobs": user_scrape_jobs}
