# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""The exporter catalogue (role monstack.stack.exporters): any exporter as data.

A catalogue entry says where an exporter's release is, how it runs and how Prometheus
scrapes it; this module checks entries (errors name ``exporters_entries.<name>.<key>``),
merges the user's entries over the shipped ones (``SHIPPED``), and turns them into

- the component specs of the hosts of each entry's group (``components``), for the
  action monstack.stack.component: the same install, user, hardened unit, file sets
  and readiness wait as every other component of the stack;
- Prometheus' inventory scrape jobs (``scrape_jobs``), one file_sd file per entry, with
  the entry's labels and scrape settings.

Pure (no Ansible objects); CatalogueError is a ValueError whose message names the field.
The filters in plugins/filter/exporter_catalogue.py and the preflight use it.
"""
from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping

import yaml

from ansible_collections.monstack.stack.plugins.plugin_utils.component import (
    ComponentError, _bool, _known, _list, _mapping)
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import LABEL_NAME_RE
from ansible_collections.monstack.stack.plugins.plugin_utils.plain_data import plain as _plain

VAR = "exporters_entries"
ENTRY_KEYS = ("description", "documentation", "group", "version", "release", "port", "listen_address", "flags",
              "environment", "user", "capabilities", "hardening", "readiness_path", "config", "secrets", "data_dir",
              "scrape", "clients", "ip_allow", "ip_restrict")
RELEASE_KEYS = ("url", "base_url", "checksums", "checksums_file", "binary")
SCRAPE_KEYS = ("job", "labels", "settings", "enabled")
SECRET_KINDS = ("env", "file")
PLACEHOLDERS = ("listen", "port", "config_dir", "data_dir", "secrets_dir", "name")
URL_PLACEHOLDERS = ("base_url", "version", "arch")
# Names the stack's own components, and their scrape jobs, already take.
RESERVED_NAMES = ("prometheus", "alertmanager", "grafana", "node_exporter", "cadvisor", "blackbox_exporter",
                  "victoriametrics", "journal", "backup", "common", "exporters")
RESERVED_JOBS = ("prometheus", "node", "cadvisor", "alertmanager", "alertmanagers", "grafana", "blackbox",
                 "victoriametrics", "deployments", "deployment_health")
# Scrape config keys an entry may set (Prometheus' scrape_config, less what file_sd and the role own).
SCRAPE_SETTINGS = ("honor_labels", "honor_timestamps", "track_timestamps_staleness", "metrics_path", "scheme",
                   "params", "scrape_interval", "scrape_timeout", "basic_auth", "authorization", "tls_config",
                   "sample_limit", "label_limit", "label_name_length_limit", "label_value_length_limit",
                   "target_limit", "metric_relabel_configs", "relabel_configs", "enable_http2")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_CAP = re.compile(r"^CAP_[A-Z_]+$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_DIRECTIVE = re.compile(r"^[A-Z][A-Za-z]+$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
_GH = "{base_url}"

# The shipped entries. Versions are upstream's current releases; a mirror or an older
# release: exporters_entries.<name>.version (molecule/shared/group_vars pins the test mirror's).
SHIPPED = {
    "process_exporter": {
        "description": "process-exporter: CPU, memory, I/O and threads per named process group",
        "documentation": "https://github.com/ncabatoff/process-exporter",
        "group": "process_exporter",
        "version": "0.8.7",
        "release": {"url": _GH + "/ncabatoff/process-exporter/releases/download/v{version}/"
                    "process-exporter-{version}.linux-{arch}.tar.gz",
                    "checksums_file": "checksums.txt", "binary": "process-exporter"},
        "port": 9256,
        "flags": ["--web.listen-address={listen}", "--config.path={config_dir}/process-exporter.yml"],
        # /proc/<pid>/io and fd of other users' processes
        "capabilities": ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"],
        "config": {"process-exporter.yml": {"process_names": [
            # Model servers run by an interpreter: named by the script or module it runs
            # ("python3 /opt/app/serve.py" -> serve, "python -m vllm.entrypoints..." -> vllm.entrypoints...).
            {"name": "{{.Matches.server}}",
             "cmdline": [r"^\S*python[0-9.]*\s+(?:-[^m\s]\S*\s+)*(?:-m\s+)?(?:\S*/)?"
                         r"(?P<server>[A-Za-z0-9_][A-Za-z0-9_.-]*?)(?:\.py)?(?:\s|$)"]},
            # every other process by its program name (tritonserver, ollama, java, ...)
            {"name": "{{.Comm}}", "cmdline": [".+"]},
        ]}},
        "scrape": {"job": "process"},
    },
    "postgres_exporter": {
        "description": "postgres_exporter: PostgreSQL server metrics",
        "documentation": "https://github.com/prometheus-community/postgres_exporter",
        "group": "postgres_exporter",
        "version": "0.20.1",
        "release": {"url": _GH + "/prometheus-community/postgres_exporter/releases/download/v{version}/"
                    "postgres_exporter-{version}.linux-{arch}.tar.gz"},
        "port": 9187,
        "flags": ["--web.listen-address={listen}"],
        # The connection string (with its password): exporters_secrets.postgres_exporter.DATA_SOURCE_NAME,
        # given to the exporter in its environment from a root-owned file, never on its command line.
        "secrets": {"DATA_SOURCE_NAME": "env"},
        "scrape": {"job": "postgres"},
    },
    "pushgateway": {
        "description": "Pushgateway: the last-run metrics that batch and training jobs push",
        "documentation": "https://github.com/prometheus/pushgateway",
        "group": "pushgateway",
        "version": "1.11.3",
        "release": {"url": _GH + "/prometheus/pushgateway/releases/download/v{version}/"
                    "pushgateway-{version}.linux-{arch}.tar.gz"},
        "port": 9091,
        "flags": ["--web.listen-address={listen}", "--persistence.file={data_dir}/pushgateway.data",
                  "--persistence.interval=1m"],
        "data_dir": True,
        "readiness_path": "/-/ready",
        # the jobs push from the application hosts (add CI runners' networks to ip_allow)
        "clients": ["all"],
        # the pushed job and instance labels are the series' own
        "scrape": {"job": "pushgateway", "settings": {"honor_labels": True}},
    },
}


# An entry that is wrong: the component spec's error (the message names the field and the fix),
# with the spec's own checks of mappings, lists, known keys and booleans.
CatalogueError = ComponentError


def _where(name, *keys):
    return ".".join([VAR, str(name)] + [str(k) for k in keys])


def _placeholders(text, allowed, where):
    for found in re.findall(r"\{([A-Za-z_]+)\}", str(text)):
        if found not in allowed:
            raise CatalogueError("%s: unknown placeholder {%s} in %r; known: %s"
                                 % (where, found, str(text), ", ".join("{%s}" % a for a in allowed)))


def _fill(text, values):
    text = str(text)
    for key, value in values.items():
        text = text.replace("{%s}" % key, str(value))
    return text


def _merge(base, over):
    """``over`` merged into ``base``: mappings key by key, anything else (lists too) replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def check_entry(name, entry):
    """One entry with its defaults filled in, or CatalogueError naming the field."""
    name = str(name)
    if not _NAME.match(name):
        raise CatalogueError("%s: the name %r must be 1-40 lower-case letters, digits and _, starting with a letter "
                             "(it names the service, user, directories and tags)" % (VAR, name))
    if name in RESERVED_NAMES:
        raise CatalogueError("%s: %r is the name of a component of the stack itself; choose another"
                             % (_where(name), name))
    entry = _mapping(entry, _where(name))
    _known(entry, ENTRY_KEYS, _where(name))
    out = {"name": name}
    for key in ("description", "documentation"):
        out[key] = str(entry.get(key) or "")
    out["description"] = out["description"] or "%s (exporter catalogue entry)" % name
    out["group"] = str(entry.get("group") or name)
    version = str(entry.get("version") or "")
    if not _VERSION.match(version):
        raise CatalogueError("%s: %r is not a release version such as 1.2.3 (no leading v, no latest)"
                             % (_where(name, "version"), version))
    out["version"] = version

    release = dict(_mapping(entry.get("release"), _where(name, "release")))
    _known(release, RELEASE_KEYS, _where(name, "release"))
    url = str(release.get("url") or "")
    if not url:
        raise CatalogueError("%s: missing; the release asset's URL with {base_url}, {version} and {arch}, e.g. "
                             "{base_url}/owner/project/releases/download/v{version}/project-{version}"
                             ".linux-{arch}.tar.gz" % _where(name, "release", "url"))
    _placeholders(url, URL_PLACEHOLDERS, _where(name, "release", "url"))
    directory, _sep, asset = url.rpartition("/")
    if "{arch}" in directory or not asset:
        raise CatalogueError("%s: %r: {arch} may appear only in the file name, and the URL must end with the "
                             "asset's file name" % (_where(name, "release", "url"), url))
    checksums = {}
    for arch, digest in _mapping(release.get("checksums"), _where(name, "release", "checksums")).items():
        digest = str(digest).strip().lower()
        digest = digest[len("sha256:"):] if digest.startswith("sha256:") else digest
        if not re.match(r"^[0-9a-f]{64}$", digest):
            raise CatalogueError("%s: %r is not a SHA-256 digest (64 hex digits)"
                                 % (_where(name, "release", "checksums", arch), str(release["checksums"][arch])[:40]))
        checksums[str(arch)] = digest
    sums = str(release.get("checksums_file") or "sha256sums.txt")
    if not _FILE.match(sums):
        raise CatalogueError("%s: %r must be a file name beside the asset"
                             % (_where(name, "release", "checksums_file"), sums))
    binary = str(release.get("binary") or name)
    if not _FILE.match(binary):
        raise CatalogueError("%s: %r must be a file name" % (_where(name, "release", "binary"), binary))
    out["release"] = {"url": url, "base_url": str(release.get("base_url") or ""), "checksums": checksums,
                      "checksums_file": sums, "binary": binary}

    port = entry.get("port")
    if isinstance(port, bool) or not (isinstance(port, int) or str(port).isdigit()) or not 1 <= int(port) <= 65535:
        raise CatalogueError("%s: must be a port number 1-65535, got %r" % (_where(name, "port"), port))
    out["port"] = int(port)
    out["listen_address"] = str(entry.get("listen_address") or "0.0.0.0")

    flags = [str(flag) for flag in _list(entry.get("flags"), _where(name, "flags"))]
    for flag in flags:
        _placeholders(flag, PLACEHOLDERS, _where(name, "flags"))
        if "\n" in flag:
            raise CatalogueError("%s: a flag may not hold a line break: %r" % (_where(name, "flags"), flag))
    out["flags"] = flags
    environment = {}
    for key, value in _mapping(entry.get("environment"), _where(name, "environment")).items():
        if not _ENV.match(str(key)) or "\n" in str(value) or '"' in str(value):
            raise CatalogueError("%s: %r=%r: a variable name (letters, digits, _) and a one-line value without "
                                 "double quotes" % (_where(name, "environment"), key, value))
        _placeholders(value, PLACEHOLDERS, _where(name, "environment", key))
        environment[str(key)] = str(value)
    out["environment"] = environment

    user = str(entry.get("user") or name)
    if user != "root" and not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", user):
        raise CatalogueError("%s: %r is not a system user name" % (_where(name, "user"), user))
    out["user"] = user
    caps = [str(cap) for cap in _list(entry.get("capabilities"), _where(name, "capabilities"))]
    bad = [cap for cap in caps if not _CAP.match(cap)]
    if bad:
        raise CatalogueError("%s: %s: capabilities are written CAP_NAME, e.g. CAP_SYS_PTRACE"
                             % (_where(name, "capabilities"), ", ".join(bad)))
    out["capabilities"] = sorted(set(caps))
    hardening = dict(_mapping(entry.get("hardening"), _where(name, "hardening")))
    bad = [str(key) for key in hardening if not _DIRECTIVE.match(str(key))]
    if bad:
        raise CatalogueError("%s: %s: systemd directives, e.g. ProtectHome"
                             % (_where(name, "hardening"), ", ".join(bad)))
    out["hardening"] = hardening
    path = str(entry.get("readiness_path") or "/metrics")
    if not path.startswith("/") or any(c in path for c in " \n\"'"):
        raise CatalogueError("%s: %r must be a URL path such as /metrics or /-/ready"
                             % (_where(name, "readiness_path"), path))
    out["readiness_path"] = path

    config = {}
    for fname, content in _mapping(entry.get("config"), _where(name, "config")).items():
        if not _FILE.match(str(fname)) or str(fname) in ("secret", "web-config.yml"):
            raise CatalogueError("%s: %r must be a plain file name (not secret or web-config.yml)"
                                 % (_where(name, "config"), fname))
        if content is None or isinstance(content, (bool, int, float)):
            raise CatalogueError("%s: give the file's text, or data (a mapping or list) written as YAML"
                                 % _where(name, "config", fname))
        config[str(fname)] = content
    out["config"] = config
    secrets = {}
    for key, kind in _mapping(entry.get("secrets"), _where(name, "secrets")).items():
        if kind not in SECRET_KINDS:
            raise CatalogueError("%s: %r; say how the exporter reads it: env (an environment variable of that "
                                 "name) or file (a file of that name in {secrets_dir})"
                                 % (_where(name, "secrets", key), kind))
        if not (_ENV.match(str(key)) if kind == "env" else _FILE.match(str(key))) or str(key) == "env":
            raise CatalogueError("%s: %r is not a valid %s name"
                                 % (_where(name, "secrets"), key, "variable" if kind == "env" else "file"))
        secrets[str(key)] = kind
    out["secrets"] = secrets
    out["data_dir"] = _bool(entry.get("data_dir", False), _where(name, "data_dir"))

    scrape = dict(_mapping(entry.get("scrape"), _where(name, "scrape")))
    _known(scrape, SCRAPE_KEYS, _where(name, "scrape"))
    job = str(scrape.get("job") or name)
    if not LABEL_NAME_RE.fullmatch(job) or job in RESERVED_JOBS:
        raise CatalogueError("%s: %r must be a label value of letters, digits and _ that no job of the stack uses "
                             "(%s)" % (_where(name, "scrape", "job"), job, ", ".join(RESERVED_JOBS)))
    labels = {}
    for key, value in _mapping(scrape.get("labels"), _where(name, "scrape", "labels")).items():
        if not LABEL_NAME_RE.fullmatch(str(key)) or str(key).startswith("__") or str(key) in ("job", "instance"):
            raise CatalogueError("%s: %r is not a label name an entry may set (letters, digits, _; no __ prefix; "
                                 "not job or instance)" % (_where(name, "scrape", "labels"), key))
        labels[str(key)] = str(value)
    settings = dict(_mapping(scrape.get("settings"), _where(name, "scrape", "settings")))
    _known(settings, SCRAPE_SETTINGS, _where(name, "scrape", "settings"))
    out["scrape"] = {"job": job, "labels": labels, "settings": settings,
                     "enabled": _bool(scrape.get("enabled", True), _where(name, "scrape", "enabled"))}

    out["clients"] = [str(g) for g in _list(entry.get("clients"), _where(name, "clients"))]
    allow = []
    for item in _list(entry.get("ip_allow"), _where(name, "ip_allow")):
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise CatalogueError("%s: %r is not an address or network (CIDR)" % (_where(name, "ip_allow"), item))
        allow.append(str(item))
    out["ip_allow"] = allow
    out["ip_restrict"] = _bool(entry.get("ip_restrict", True), _where(name, "ip_restrict"))
    return out


def catalogue(user_entries=None, shipped=None):
    """The shipped entries with the user's merged over them (a user key of a shipped entry changes
    that key only; a new name is a new entry), each checked: name -> entry."""
    shipped = SHIPPED if shipped is None else shipped
    user_entries = _mapping(user_entries, VAR)
    merged = {name: copy.deepcopy(dict(entry)) for name, entry in shipped.items()}
    for name, entry in user_entries.items():
        entry = _mapping(entry, _where(name))
        merged[str(name)] = _merge(merged.get(str(name), {}), entry)
    out = {name: check_entry(name, entry) for name, entry in sorted(merged.items())}
    jobs = {}
    for name, entry in out.items():
        if entry["scrape"]["job"] in jobs:
            raise CatalogueError("%s: the scrape job %r is %s's too; give each entry its own job"
                                 % (_where(name, "scrape", "job"), entry["scrape"]["job"], jobs[entry["scrape"]["job"]]))
        jobs[entry["scrape"]["job"]] = name
    return out


def host_entries(entries, group_names):
    """The entries whose group the host is in (every host is in all), by name."""
    groups = set(group_names or []) | {"all"}
    return [entries[name] for name in sorted(entries) if entries[name]["group"] in groups]


def host_problems(entries, group_names, secrets=None, listen_remote=False):
    """What is wrong with the entries of one host (not with an entry as such): ports taken twice, a
    secret the entry needs and exporters_secrets does not give, a loopback listen address that the
    Prometheus servers elsewhere cannot reach (``listen_remote``)."""
    problems = []
    secrets = secrets if isinstance(secrets, Mapping) else {}
    ports = {}
    for entry in host_entries(entries, group_names):
        name = entry["name"]
        if entry["port"] in ports:
            problems.append("%s: port %d is %s's too on this host. Fix: give one of them another port"
                            % (_where(name, "port"), entry["port"], ports[entry["port"]]))
        ports[entry["port"]] = name
        given = secrets.get(name) if isinstance(secrets.get(name), Mapping) else {}
        for key, kind in entry["secrets"].items():
            value = given.get(key)
            if value is None or str(value) == "":
                problems.append("exporters_secrets.%s.%s: not set, and %s needs it (%s). Fix: put it in the vault, "
                                "e.g. exporters_secrets: {%s: {%s: \"{{ vault_%s_%s }}\"}}"
                                % (name, key, name, "its environment" if kind == "env" else "a file",
                                   name, key, name, key.lower()))
            elif kind == "env" and ("\n" in str(value) or "\r" in str(value)):
                problems.append("exporters_secrets.%s.%s: holds a line break, which an environment variable "
                                "cannot" % (name, key))
        if listen_remote and _loopback(entry["listen_address"]):
            problems.append("%s: %r is loopback, so the Prometheus server(s) on other hosts cannot scrape it. Fix: "
                            "0.0.0.0 (the unit lets only Prometheus and the entry's clients connect)"
                            % (_where(name, "listen_address"), entry["listen_address"]))
    return problems


def _loopback(address):
    address = str(address).strip("[]")
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _hostport(address, port):
    address = str(address)
    return "[%s]:%d" % (address, port) if ":" in address else "%s:%d" % (address, port)


def _local(address):
    address = str(address)
    if address in ("0.0.0.0", "", "::"):
        return "127.0.0.1" if address != "::" else "::1"
    return address


def _env_line(key, value):
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return '%s="%s"' % (key, escaped)


def config_text(content):
    """A config entry's file text: text as it is, data as YAML."""
    if isinstance(content, str):
        return content
    return yaml.safe_dump(_plain(content), default_flow_style=False, sort_keys=False, allow_unicode=True, width=1000)


def component(entry, base_url, secrets=None, prometheus_hosts=(), client_hosts=(), ip_allow=(), ip_restrict=True,
              tags=("exporters",)):
    """The monstack.stack.component spec of one (checked) entry on one host.

    ``secrets``: the entry's values (exporters_secrets.<name>); ``prometheus_hosts`` and
    ``client_hosts``: the inventory hosts whose addresses the unit lets connect; ``ip_allow``: more
    addresses (monstack_ip_allow); ``ip_restrict``: the inventory-wide switch (monstack_ip_restrict)."""
    name, user = entry["name"], entry["user"]
    config_dir, data_dir, secrets_dir = "/etc/" + name, "/var/lib/" + name, "/etc/%s/secret" % name
    values = {"listen": _hostport(entry["listen_address"], entry["port"]), "port": entry["port"],
              "config_dir": config_dir, "data_dir": data_dir, "secrets_dir": secrets_dir, "name": name}
    release = entry["release"]
    base = str(release["base_url"] or base_url or "https://github.com").rstrip("/")
    url = _fill(release["url"], {"base_url": base, "version": entry["version"]})
    directory, _sep, asset = url.rpartition("/")
    prefix = _where(name, "release")
    spec_release = {"name": name, "version": entry["version"], "method": "archive", "release_url": directory,
                    "asset": asset, "checksums": dict(release["checksums"]), "checksums_file": release["checksums_file"],
                    "binaries": [release["binary"]], "var_prefix": _where(name),
                    "vars": {"version": _where(name, "version"), "base_url": prefix + ".base_url",
                             "asset_name": prefix + ".url", "checksums": prefix + ".checksums",
                             "method": prefix, "download_on": prefix, "local_path": prefix}}
    dirs = {config_dir: {"owner": "root", "group": user, "mode": "0750"}}
    if entry["data_dir"]:
        dirs[data_dir] = {"owner": user, "group": user, "mode": "0750"}
    file_sets = {}
    if entry["config"]:
        file_sets["config"] = {"path": config_dir, "owner": "root", "group": user, "mode": "0640",
                               "on_change": "restart", "prune_patterns": [],
                               "files": {fname: config_text(content) for fname, content in entry["config"].items()}}
    environment = {key: _fill(value, values) for key, value in entry["environment"].items()}
    environment_files = []
    if entry["secrets"]:
        given = secrets if isinstance(secrets, Mapping) else {}
        files = {key: str(given.get(key, "")) for key, kind in entry["secrets"].items() if kind == "file"}
        env = [_env_line(key, given.get(key, "")) for key, kind in sorted(entry["secrets"].items()) if kind == "env"]
        if env:
            files["env"] = "\n".join(env) + "\n"
            environment_files.append(secrets_dir + "/env")
        dirs[secrets_dir] = {"owner": "root", "group": user, "mode": "0750"}
        file_sets["secrets"] = {"path": secrets_dir, "owner": "root", "group": user, "mode": "0640",
                                "on_change": "restart", "secret": True, "prune_patterns": ["*"], "files": files}
    hardening = {}
    if entry["capabilities"]:
        caps = " ".join(entry["capabilities"])
        hardening.update(CapabilityBoundingSet=caps, AmbientCapabilities=caps)
    if entry["data_dir"]:
        hardening["ReadWritePaths"] = data_dir
    if environment_files:
        hardening["EnvironmentFile"] = environment_files
    hardening.update(entry["hardening"])
    service = {"name": name, "description": entry["description"],
               "documentation": entry["documentation"] or "https://prometheus.io/docs/instrumenting/exporters/",
               "exec": "/usr/local/bin/" + release["binary"], "flags": [_fill(f, values) for f in entry["flags"]],
               "environment": environment, "hardening": hardening,
               "ip_restrict": bool(entry["ip_restrict"] and ip_restrict),
               "ip_allow_hosts": sorted(set(list(prometheus_hosts) + list(client_hosts))),
               "ip_allow": list(ip_allow) + entry["ip_allow"]}
    return {"name": name, "tags": list(tags), "release": spec_release, "user": {"name": user}, "dirs": dirs,
            "file_sets": file_sets, "service": service,
            "check": {"ready_url": "http://%s%s" % (_hostport(_local(entry["listen_address"]), entry["port"]),
                                                    entry["readiness_path"])}}


def components(entries, group_names, groups, base_url, secrets=None, ip_allow=(), ip_restrict=True,
               prometheus_group="prometheus"):
    """The component specs of the entries of one host (its ``group_names``)."""
    secrets = secrets if isinstance(secrets, Mapping) else {}
    groups = groups if isinstance(groups, Mapping) else {}
    out = []
    for entry in host_entries(entries, group_names):
        clients = [host for group in entry["clients"] for host in groups.get(group) or []]
        out.append(component(entry, base_url, secrets.get(entry["name"]), groups.get(prometheus_group) or [],
                             clients, ip_allow, ip_restrict))
    return out


def scrape_jobs(entries, groups):
    """Prometheus' inventory jobs of the entries that have hosts (scrape.enabled): the input of the
    scrape_target_files filter, with the entry's labels and scrape settings."""
    groups = groups if isinstance(groups, Mapping) else {}
    jobs = []
    for name in sorted(entries):
        entry = entries[name]
        if not entry["scrape"]["enabled"] or not groups.get(entry["group"]):
            continue
        jobs.append({"job": entry["scrape"]["job"], "group": entry["group"], "port_var": "",
                     "default_port": entry["port"], "state_var": "exporters_state",
                     "labels": dict(entry["scrape"]["labels"]), "scrape_settings": dict(entry["scrape"]["settings"])})
    return jobs
