"""Each component role's own preflight checks (action monstack.stack.preflight).

One pure function per role: ``<role>(v, facts=False)`` returns the problem messages
of one host's variables in that role's context (``v``: a read-only mapping, see
preflight_checks.py), empty when all is well. ``facts`` is true when the role runs
on the host (its facts gathered), false in the preflight play, which contacts no
host: the checks that need the host's facts run only then. The role-specific
inputs that are not variables (prometheus: the rule groups and alerts the role ships) are
keyword arguments. ``ROLE_CHECKS`` maps a role to its function; ``notes`` gives the
preflight play's notes (not problems) of a host.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.monstack.stack.plugins.module_utils import versions
from ansible_collections.monstack.stack.plugins.plugin_utils import exporter_catalogue
from ansible_collections.monstack.stack.plugins.plugin_utils import alert_overrides
from ansible_collections.monstack.stack.plugins.plugin_utils.preflight_checks import monstack_loopback

__all__ = ["ROLE_CHECKS", "alertmanager", "blackbox_exporter", "cadvisor", "exporters", "grafana", "journal",
           "node_exporter", "notes", "prometheus", "version_problems", "victoriametrics"]

_CERT = re.compile(r"-----BEGIN CERTIFICATE-----")
_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_TRIPLE_QUOTE = re.compile(r'"{3}')
_LINE_BREAK = re.compile(r"[\r\n]")
GRAFANA_BUILTIN_KEY = "SW2YcwTIb9zpOOhoPsMm"


def _abs(value) -> bool:
    return os.path.isabs(str(value))


def _bool(value) -> bool:
    return boolean(value, strict=False)


def _int(value, default=0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return default


def _len(value) -> int:
    try:
        return len(value)
    except TypeError:
        return len(str(value))


def _unique(items) -> list:
    seen: list = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def _as_dict(value) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _field(item, name, default=""):
    return item.get(name, default) if isinstance(item, Mapping) else default


def _join(items) -> str:
    return ", ".join(str(item) for item in items)


def _to_json(value) -> str:
    return json.dumps(value, default=str)


def version_problems(role, v, installed=None) -> list[str]:
    """The version matrix (plugins/module_utils/versions.py): a release outside the supported range,
    extra flags that release does not take, and a downgrade from the release installed on the host
    (``installed``: {component: version}, when known) across a data-format boundary unless
    <role>_force_downgrade is set. The preflight play contacts no host, so it passes no installed
    versions: the component action checks the downgrade on the host, with the same function
    (versions.downgrade_problem), before it changes anything there. A distribution package
    (install_method package) is not checked."""
    version = str(v.get(f"{role}_version", ""))
    if str(v.get(f"{role}_install_method", "archive")) == "package" or not version:
        return []
    problem = versions.range_problem(role, version)
    if problem:
        return [problem]
    problems = versions.flag_problems(role, version, _as_list(v.get(f"{role}_extra_flags", [])))
    have = str(_as_dict(installed or {}).get(role, ""))
    if have and not _bool(v.get(f"{role}_force_downgrade", False)):
        problem = versions.downgrade_problem(role, have, version)
        problems += [problem] if problem else []
    return problems


def node_exporter(v, facts=False):
    problems = version_problems("node_exporter", v, {})
    if not _abs(v["node_exporter_textfile_dir"]):
        problems.append(f"node_exporter_textfile_dir: '{v['node_exporter_textfile_dir']}' is not an absolute path. "
                        "Fix: use an absolute path such as /var/lib/node_exporter/textfile.")
    host = v["inventory_hostname"]
    scrape = v.get("monstack_scrape_address", host)
    others = [name for name in _as_dict(v.get("groups", {})).get("prometheus", []) if name != host]
    if monstack_loopback(scrape) and others:
        problems.append(f"monstack_scrape_address: '{scrape}' only reaches this host itself, so the Prometheus "
                        "server(s) on other hosts cannot scrape it. Fix: set monstack_scrape_address (or the "
                        "inventory name) to a name or IP address the other hosts reach.")
    return problems


def cadvisor(v, facts=False):
    """A cAdvisor that is installed from an archive needs a way to verify it; a removed one
    (cadvisor_state: absent) downloads nothing."""
    if v.get("cadvisor_state", "present") == "absent" or v["cadvisor_install_method"] != "archive":
        return []
    if _len(v["cadvisor_checksums"]) > 0 or _len(v["cadvisor_checksums_file"]) > 0:
        return []
    version = v["cadvisor_version"]
    return [f"cadvisor_checksums: empty, and cadvisor_checksums_file is empty too, so the cAdvisor {version} "
            "binary could not be verified (cAdvisor publishes its SHA-256 sums only in its release notes). "
            f"Fix: cadvisor_checksums: {{amd64: \"<sha256 from the release notes of v{version}>\"}}, "
            "or cadvisor_checksums_file: <name of a sums file your mirror serves beside the binary>."]


def blackbox_exporter(v, facts=False):
    problems = version_problems("blackbox_exporter", v, {})
    modules = v["blackbox_exporter_modules"]
    probers = list(v["blackbox_exporter_probers"])
    bad = [name for name, module in (modules.items() if isinstance(modules, Mapping) else [])
           if not isinstance(module, Mapping) or module.get("prober", "") not in probers]
    if bad:
        problems.append(f"blackbox_exporter_modules: {_join(bad)}: every module is a mapping whose prober is one of "
                        f"{_join(probers)}. Fix: e.g. http_2xx: {{prober: http, timeout: 5s}}.")
    health = v.get("prometheus_deployment_health_module", "http_2xx")
    if "prometheus" in v.get("group_names", []) and isinstance(modules, Mapping) and health not in modules:
        problems.append(f"prometheus_deployment_health_module: '{health}' is not one of blackbox_exporter_modules "
                        f"({_join(modules.keys())}), so every deployment health check would fail. "
                        "Fix: name one of them, or add the module.")
    return problems


def _agent_problems(v) -> list:
    """prometheus_mode agent: settings that contradict it."""
    problems = []
    if _len(v["prometheus_all_remote_write"]) == 0:
        problems.append("prometheus_mode: agent keeps no data to query, it only sends what it scrapes, but "
                        "prometheus_remote_write is empty and there is no global store "
                        f"(prometheus_global_store_group '{v['prometheus_global_store_group']}' has no host). "
                        "Fix: give it a remote_write endpoint (VictoriaMetrics or any store).")
    if _len(v["prometheus_rule_files"]) > 0:
        problems.append("prometheus_rule_files: an agent (prometheus_mode: agent) evaluates no rules. Fix: load the "
                        "rules where the samples are stored (a server or vmalert), or use prometheus_mode: server.")
    if _len(v["prometheus_remote_read"]) > 0:
        problems.append("prometheus_remote_read: an agent (prometheus_mode: agent) serves no queries, so it reads "
                        "nothing back. Fix: remove it.")
    if v["inventory_hostname"] in _as_list(_as_dict(v.get("groups", {})).get(v["prometheus_group"], [])):
        problems.append(f"prometheus_mode: agent on a host of prometheus_group '{v['prometheus_group']}', whose "
                        "servers Grafana queries and that are each other's replicas. Fix: put the agent in a group "
                        "of its own (e.g. prometheus_agent, docs/agent-mode.md).")
    return problems


def prometheus(v, facts=False, rule_groups=(), alerts=None):
    problems = version_problems("prometheus", v, {})
    if (str(v.get("prometheus_scrape_config_dir") or "") and not problems
            and str(v.get("prometheus_install_method", "archive")) != "package"
            and not versions.settings("prometheus", str(v["prometheus_version"]))["scrape_config_files"]):
        problems.append(f"prometheus_scrape_config_dir: Prometheus {v['prometheus_version']} has no "
                        "scrape_config_files (it came with 2.43.0). Fix: raise prometheus_version, or move the "
                        "jobs into prometheus_extra_scrape_configs.")
    if alerts is not None:  # the shipped alerts (alert_overrides.catalogue)
        problems += alert_overrides.problems(v.get("prometheus_alert_overrides"), alerts,
                                             _as_dict(v.get("prometheus_alert_thresholds")))
    rule_groups = sorted(rule_groups)
    if not (_abs(v["prometheus_config_dir"]) and _abs(v["prometheus_data_dir"])):
        problems.append(f"prometheus_config_dir / prometheus_data_dir: '{v['prometheus_config_dir']}', "
                        f"'{v['prometheus_data_dir']}' must both be absolute paths.")
    missing = [name for name in _as_list(v["prometheus_alert_rule_groups"]) if name not in rule_groups]
    if missing:
        problems.append(f"prometheus_alert_rule_groups: {_join(_unique(missing))} not shipped. "
                        f"Fix: choose among {_join(rule_groups)}.")
    jobs = [_field(target, "job", None) for target in _as_list(v["prometheus_inventory_targets"])]
    if len(_unique(jobs)) != len(jobs):
        problems.append("prometheus_inventory_targets: job names must be unique.")
    taken = [_field(job, "job") for job in _as_list(v.get("prometheus_exporter_jobs", [])) if _field(job, "job") in jobs]
    if taken:
        problems.append(f"prometheus_inventory_targets: {_join(taken)} is also the scrape job of an exporter catalogue "
                        "entry (exporters_entries). Fix: drop your own job, or give the entry's scrape.job another "
                        "name.")
    shards = {host: _int(shard) for host, shard in _as_dict(v["prometheus_shard_of_hosts"]).items()}
    count = _int(v["prometheus_shard_count"])
    unsharded = [host for host, shard in shards.items() if shard < 0]
    if count != 0 and unsharded:
        problems.append(f"prometheus_shard: {_join(unsharded)} have no shard while other hosts of the group "
                        f"'{v['prometheus_group']}' have one, so their targets would be scraped twice. Fix: give "
                        "every Prometheus host a prometheus_shard (hosts with the same shard are HA replicas), "
                        "or none.")
    numbers = sorted(set(shard for shard in shards.values() if shard >= 0))
    if count != 0 and numbers != list(range(count)):
        problems.append(f"prometheus_shard: the shards are {_join(numbers)}; they must be numbered 0 to N-1 "
                        f"without gaps (N = {v['prometheus_shard_count']} shards), or a gap's targets would be "
                        "scraped by no server. Fix: renumber them.")
    if v.get("prometheus_mode", "server") == "agent":
        problems += _agent_problems(v)
    if _len(v["prometheus_shard_source_labels"]) == 0:
        problems.append("prometheus_shard_source_labels: empty. Fix: name the target labels to hash, "
                        "e.g. [__address__].")
    return problems


def alertmanager(v, facts=False):
    problems = version_problems("alertmanager", v, {})
    receivers = _as_list(v["alertmanager_receivers"])
    names = [_field(receiver, "name") for receiver in receivers]
    secrets_dir = str(v["alertmanager_secrets_dir"])
    secret_files = _as_dict(v["alertmanager_secret_files"])
    sent = _to_json([v["alertmanager_global"]] + receivers)
    referenced = _unique(re.findall(re.escape(secrets_dir) + r'/([^"\\]+)', sent))
    missing = [name for name in referenced if name not in secret_files]
    sending = [receiver for receiver in receivers if isinstance(receiver, Mapping)
               and any(re.match(r".+_configs$", str(key)) and value for key, value in receiver.items())]
    if not _abs(v["alertmanager_data_dir"]):
        problems.append(f"alertmanager_data_dir: '{v['alertmanager_data_dir']}' must be an absolute path.")
    route = v["alertmanager_route"]
    if not (isinstance(route, Mapping) and "receiver" in route and route["receiver"] in names):
        problems.append(f"alertmanager_route.receiver: '{_field(route, 'receiver')}' is not one of "
                        f"alertmanager_receivers ({_join(names)}). Fix: name an existing receiver.")
    if len(_unique(names)) != len(names):
        problems.append(f"alertmanager_receivers: receiver names must be unique ({_join(names)}).")
    if not sending and not v["alertmanager_allow_no_receivers"]:
        problems.append("alertmanager_receivers: no receiver sends anywhere (none has email_configs, slack_configs, "
                        "pagerduty_configs, webhook_configs, ...), so every alert would reach nobody. Fix: configure "
                        "a receiver (see inventories/example/group_vars/all/main.yml), or set "
                        "alertmanager_allow_no_receivers: true to run Alertmanager without notifications on purpose.")
    slack_urls = [config for receiver in receivers for config in _as_list(_field(receiver, "slack_configs", []))
                  if isinstance(config, Mapping) and "api_url" in config]
    if re.search(str(v["alertmanager_inline_secret_pattern"]), sent) or slack_urls:
        problems.append("alertmanager_receivers / alertmanager_global: a secret is written inline (a password, "
                        "token, API or routing key, or a Slack/webhook URL). Fix: put it in alertmanager_secrets "
                        "(in the vault) and refer to it with the matching *_file key, e.g. routing_key_file: "
                        f"{secrets_dir}/<name> (or use alertmanager_smtp_auth_password and "
                        "alertmanager_slack_api_url).")
    if any(not re.match(r"^[A-Za-z0-9_.-]+$", str(name)) for name in secret_files):
        problems.append("alertmanager_secrets: names may hold only letters, digits, '.', '_' and '-'.")
    if missing:
        problems.append(f"alertmanager_secrets: the receivers refer to secret files that are not defined: "
                        f"{_join(missing)}. Fix: add them to alertmanager_secrets (in the vault).")
    templates = [str(name) for name in _as_list(v["alertmanager_template_names"])]
    if len(_unique(templates)) != len(templates) or any(not re.match(r"^[^/]+[.]tmpl$", t) for t in templates):
        problems.append("alertmanager_templates: every file must end in .tmpl and have a unique base name other than "
                        f"{v['alertmanager_default_template']}.")
    mode = v["alertmanager_cluster_tls_mode"]
    given = _bool(v["alertmanager_cluster_tls_given"])
    cert, key, ca_cert = (v["alertmanager_cluster_tls_cert"], v["alertmanager_cluster_tls_key"],
                          v["alertmanager_cluster_tls_ca_cert"])
    if mode not in ("auto", "required", "off"):
        problems.append(f"alertmanager_cluster_tls: '{v['alertmanager_cluster_tls']}' is not auto, required or off "
                        "(quote \"off\" in YAML).")
    if not (mode == "off" or given or not any([cert, key, ca_cert])):
        problems.append("alertmanager_cluster_tls_cert / _key / _ca_cert: only some are set. Fix: set all three "
                        "(gossip over mutual TLS: this member's certificate and key, the CA that signed every "
                        "member's certificate) or none.")
    if given and not (_CERT.search(str(cert)) and _CERT.search(str(ca_cert)) and _KEY.search(str(key))):
        problems.append("alertmanager_cluster_tls_cert / _key / _ca_cert: not PEM text. Fix: give the files' "
                        "contents (e.g. with lookup('ansible.builtin.file', ...)), not their paths.")
    if mode == "required" and _bool(v["alertmanager_cluster_enabled"]) and not given:
        problems.append(f"alertmanager_cluster_tls: 'required', but this host is one of "
                        f"{_len(v['alertmanager_cluster_members'])} members of the Alertmanager cluster (group "
                        f"{v['alertmanager_group']}) and has no alertmanager_cluster_tls_cert, _key and _ca_cert. "
                        "Fix: give them, or set alertmanager_cluster_tls: auto (plain gossip, warned) or \"off\".")
    return problems


def grafana(v, facts=False):
    problems = []
    password_defined = "grafana_admin_password" in v
    password = v.get("grafana_admin_password", "")
    password_set = password_defined and _len(password) > 0
    if password_defined and not password_set:
        problems.append("grafana_admin_password: not set (it has no default). Fix: put it in the vault, e.g. "
                        "`ansible-vault edit group_vars/all/vault.yml` with vault_grafana_admin_password: <password>, "
                        "and run with --ask-vault-pass or --vault-password-file.")
    if password_set and not (_len(password) >= 4 and not _TRIPLE_QUOTE.search(str(password))
                             and not _LINE_BREAK.search(str(password))):
        problems.append("grafana_admin_password: must be at least 4 characters long (Grafana refuses shorter ones) "
                        "and may contain neither a line break nor three double quotes in a row.")
    key_defined = "grafana_secret_key" in v
    key = str(v.get("grafana_secret_key", ""))
    if key_defined and not key:
        problems.append("grafana_secret_key: not set (it has no default; without it Grafana encrypts the secrets in "
                        "its database with its public built-in key). Fix: create one in the vault, e.g. "
                        "`openssl rand -hex 32 | ansible-vault encrypt_string --stdin-name grafana_secret_key` into "
                        "group_vars/all/vault.yml, and run with --ask-vault-pass or --vault-password-file. On a "
                        "Grafana that already has a database, read \"The secret key\" in docs/grafana.md first.")
    if key_defined and key and not (len(key) >= 16 and key != GRAFANA_BUILTIN_KEY
                                    and not _TRIPLE_QUOTE.search(key) and not _LINE_BREAK.search(key)):
        problems.append("grafana_secret_key: must be at least 16 characters, not the public built-in key of Grafana, "
                        "and contain neither a line break nor three double quotes in a row. Fix: `openssl rand -hex 32 "
                        "| ansible-vault encrypt_string --stdin-name grafana_secret_key` (docs/grafana.md, \"The secret "
                        "key\").")
    if _len(v["grafana_admin_user"]) == 0:
        problems.append("grafana_admin_user: must not be empty.")
    method = v["grafana_install_method"]
    if method == "local" and not re.search(r"[.](deb|tar[.]gz|tgz)$", str(v["grafana_local_package"])):
        problems.append(f"grafana_local_package: '{v['grafana_local_package']}' is not a .deb or a release .tar.gz. "
                        "Fix: give the path on the controller of a Grafana .deb or release tarball.")
    if not _abs(v["grafana_install_dir"]):
        problems.append(f"grafana_install_dir: '{v['grafana_install_dir']}' must be an absolute path.")
    if not all(_abs(v[name]) for name in ("grafana_config_dir", "grafana_data_dir", "grafana_logs_dir",
                                          "grafana_dashboards_dir", "grafana_database_path")):
        problems.append("grafana_config_dir, grafana_data_dir, grafana_logs_dir, grafana_dashboards_dir, "
                        "grafana_database_path: must be absolute paths.")
    if v["grafana_cookie_samesite"] not in ("lax", "strict", "none", "disabled"):
        problems.append(f"grafana_cookie_samesite: '{v['grafana_cookie_samesite']}' must be one of lax, strict, "
                        "none, disabled.")
    if v["grafana_log_format"] not in ("text", "json", "console"):
        problems.append(f"grafana_log_format: '{v['grafana_log_format']}' must be one of text, json, console.")
    extra = v["grafana_ini_extra"]
    if not (isinstance(extra, Mapping) and all(isinstance(section, Mapping) for section in extra.values())
            and "enabled" not in _as_dict(extra.get("alerting", {}))):
        problems.append("grafana_ini_extra: must map section names to dicts of keys, and may not set the legacy "
                        "[alerting] enabled (Grafana 11 and later refuse to start with it; use [unified_alerting]).")
    if facts:
        host_facts = _as_dict(v.get("ansible_facts", {}))
        if method == "apt" and host_facts.get("os_family") != "Debian":
            problems.append("grafana_install_method: 'apt' needs a Debian or Ubuntu host. Fix: use archive or local.")
        if not _bool(v["grafana_from_package"]) and v["grafana_arch"] not in _as_dict(v["grafana_arch_map"]).values():
            problems.append("Grafana releases exist for amd64, arm64, armv7 and armv6 only (this host: "
                            f"{host_facts.get('architecture', 'unknown')}).")
    return problems


def victoriametrics(v, facts=False):
    problems = []
    flags = [str(flag) for flag in _as_list(v["victoriametrics_extra_flags"])]
    managed = list(v["victoriametrics_managed_flags"])
    repeated = [name for name in (re.sub(r"^--?([^=]+).*$", r"\1", flag) for flag in flags) if name in managed]
    not_flags = [flag for flag in flags if not re.match(r"^-", flag)]
    cert, key, ca_cert = (str(v["victoriametrics_tls_cert"]), str(v["victoriametrics_tls_key"]),
                          str(v["victoriametrics_tls_ca_cert"]))
    user, password = str(v["victoriametrics_http_auth_username"]), str(v["victoriametrics_http_auth_password"])
    if not _abs(v["victoriametrics_data_dir"]):
        problems.append(f"victoriametrics_data_dir: '{v['victoriametrics_data_dir']}' must be an absolute path.")
    if not re.match(r"^[0-9]+(\.[0-9]+)?[hdwy]?$", str(v["victoriametrics_retention_period"])):
        problems.append(f"victoriametrics_retention_period: '{v['victoriametrics_retention_period']}' is not a "
                        "retention VictoriaMetrics accepts. Fix: a number with a suffix h, d, w or y (\"90d\", "
                        "\"1y\"); a bare number counts months.")
    if not re.match(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", str(v["victoriametrics_dedup_min_scrape_interval"])):
        problems.append("victoriametrics_dedup_min_scrape_interval: "
                        f"'{v['victoriametrics_dedup_min_scrape_interval']}' is not a duration. Fix: the Prometheus "
                        "scrape interval, e.g. \"15s\" (\"0s\": no deduplication).")
    if not_flags:
        problems.append(f"victoriametrics_extra_flags: {_join(not_flags)} not a flag. "
                        "Fix: write each as \"-name=value\".")
    if repeated:
        problems.append(f"victoriametrics_extra_flags: {_join(repeated)} set by the role already. Fix: use "
                        "victoriametrics_data_dir, _retention_period, _listen_address/_port, "
                        "_dedup_min_scrape_interval, _tls_cert/_tls_key, _http_auth_username/_http_auth_password.")
    if bool(cert) != bool(key):
        problems.append("victoriametrics_tls_cert / victoriametrics_tls_key: only one is set. Fix: set both (TLS: "
                        "the PEM text of the certificate and of its key, the key from the vault) or neither "
                        "(plain HTTP).")
    if cert and not (_CERT.search(cert) and _KEY.search(key)):
        problems.append("victoriametrics_tls_cert / victoriametrics_tls_key: not PEM text (a certificate "
                        "\"-----BEGIN CERTIFICATE-----\" and a key \"-----BEGIN ... PRIVATE KEY-----\"). Fix: give "
                        "the files' contents, e.g. \"{{ lookup('ansible.builtin.file', 'certs/vm1.pem') }}\", not "
                        "their paths.")
    if ca_cert and not _CERT.search(ca_cert):
        problems.append("victoriametrics_tls_ca_cert: not PEM text. Fix: give the CA certificate's contents, "
                        "not its path.")
    if bool(user) != bool(password):
        problems.append("victoriametrics_http_auth_username / victoriametrics_http_auth_password: only one is set. "
                        "Fix: set both (basic auth, the password from the vault) or neither.")
    if password and not cert and not monstack_loopback(v["victoriametrics_listen_address"]):
        problems.append("victoriametrics_http_auth_password: set, but VictoriaMetrics serves plain HTTP on "
                        f"'{v['victoriametrics_listen_address']}', so the password would cross the network in clear. "
                        "Fix: set victoriametrics_tls_cert and victoriametrics_tls_key too.")
    return problems


def journal(v, facts=False):
    """The journal role's checks (its preflight stops at the first, as its assert did)."""
    url, remote = str(v["journal_upload_url"]), _as_list(v["journal_remote_hosts"])
    tls = [_len(v[name]) > 0 for name in ("journal_tls_ca_file", "journal_tls_cert_file", "journal_tls_key_file")]
    host = v["inventory_hostname"]
    if not url and not remote:
        return [f"journal on {host}: no log host: put one host in the inventory group {v['journal_remote_group']} "
                "or set journal_upload_url."]
    if len(set(tls)) != 1:
        return [f"journal on {host}: journal_tls_ca_file, journal_tls_cert_file and journal_tls_key_file go "
                "together: set all three (your own certificates) or none (the role's CA)."]
    if url and not url.startswith("https://"):
        return [f"journal on {host}: journal_upload_url {url}: must be an https:// URL (systemd-journal-remote "
                "listens with TLS)."]
    return []


def exporters(v, facts=False):
    """The exporter catalogue: every entry (shipped and exporters_entries) checked, then this host's
    entries: ports taken twice, secrets missing from exporters_secrets, a loopback listen address."""
    try:
        entries = exporter_catalogue.catalogue(v["exporters_entries"])
    except exporter_catalogue.CatalogueError as err:
        return [f"{err}. See docs/exporters.md for the keys of an entry."]
    if v["exporters_state"] == "absent":
        return []
    host = v["inventory_hostname"]
    others = [name for name in _as_dict(v.get("groups", {})).get("prometheus", []) if name != host]
    return exporter_catalogue.host_problems(entries, v.get("group_names", []), _as_dict(v["exporters_secrets"]),
                                            bool(others))


ROLE_CHECKS = {
    "node_exporter": node_exporter,
    "cadvisor": cadvisor,
    "blackbox_exporter": blackbox_exporter,
    "prometheus": prometheus,
    "alertmanager": alertmanager,
    "grafana": grafana,
    "victoriametrics": victoriametrics,
    "journal": journal,
    "exporters": exporters,
}


def notes(role, v) -> list[str]:
    """What the preflight play says about a host without it being a problem."""
    if role == "grafana" and v["grafana_install_method"] == "apt":
        return [f"NOTE {v['inventory_hostname']}: grafana_install_method is apt, so this host downloads Grafana from "
                f"{v['grafana_apt_repo_url']} (and its key from {v['grafana_apt_key_url']}) itself: it needs internet "
                "access or an internal APT mirror (grafana_apt_repo_url). Hosts without internet: "
                "grafana_install_method archive (downloaded once on the controller) or local (a .deb or tarball on "
                "the controller)."]
    return []
