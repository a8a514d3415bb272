"""The preflight's checks as pure functions (plugins/plugin_utils/preflight_checks.py and
preflight_roles.py), and the action that runs them (plugins/action/preflight.py): its
documentation, and that it reads each role's files once per process.

The end-to-end behaviour (messages in a run of playbooks/preflight.yml, the ten-mistake
table) is tests/unit/test_preflight.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "collections") not in sys.path:
    sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.monstack.stack.plugins.plugin_utils import preflight_checks as checks  # noqa: E402
from ansible_collections.monstack.stack.plugins.plugin_utils import preflight_roles as roles  # noqa: E402

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
HOSTS = {"inventory_hostname": "app1", "group_names": ["apps"],
         "groups": {"all": ["mon1", "app1"], "prometheus": ["mon1"], "apps": ["app1"]}}


# ------------------------------------------------------------------ shared checks
def _shared(role="node_exporter", **values):
    v = {f"{role}_install_method": "archive", f"{role}_version": "1.11.1", f"{role}_checksums": {},
         f"{role}_download_base_url": "https://github.com", f"{role}_listen_address": "0.0.0.0", **values}
    return checks.shared_problems(role, v, "app1", ["mon1"])


def test_shared_checks_pass_on_defaults():
    assert _shared() == []


@pytest.mark.parametrize("values, expected", [
    ({"node_exporter_checksums": {"amd64": "<paste>"}}, "node_exporter_checksums.amd64: '<paste>' is not a SHA-256"),
    ({"node_exporter_version": "v1.11.1"}, "node_exporter_version: 'v1.11.1' is not a release version"),
    ({"node_exporter_download_base_url": "mirror/github"}, "must start with https://"),
    ({"node_exporter_download_base_url": "http://mirror"}, "node_exporter_download_base_url: 'http://mirror' is plain HTTP"),
    ({"node_exporter_install_method": "local"}, "node_exporter_local_archive: empty, but node_exporter_install_method"),
    ({"node_exporter_web_tls_key_file": "/k"}, "node_exporter_web_tls_cert_file / node_exporter_web_tls_key_file: only one"),
    ({"node_exporter_listen_address": "::1"}, "node_exporter_listen_address: '::1' is loopback, so the Prometheus server(s) "
                                              "on other hosts (mon1) cannot reach it."),
])
def test_shared_check_messages(values, expected):
    problems = _shared(**values)
    assert len(problems) == 1 and expected in problems[0], problems


def test_shared_checks_know_each_roles_exceptions():
    # cadvisor and grafana name their local file differently; grafana has no upstream release check;
    # blackbox_exporter may listen on loopback (only the Prometheus beside it scrapes it)
    assert "cadvisor_local_binary: empty" in _shared("cadvisor", cadvisor_install_method="local")[0]
    assert "grafana_local_package: empty" in _shared("grafana", grafana_install_method="local")[0]
    assert _shared("grafana", grafana_version="latest") == []
    assert _shared("blackbox_exporter", blackbox_exporter_listen_address="127.0.0.1") == []
    # a pinned checksum allows a plain-HTTP mirror
    assert _shared(node_exporter_download_base_url="http://m", node_exporter_checksums={"amd64": "a" * 64}) == []
    # loopback is fine when the only Prometheus is this host
    assert checks.shared_problems("node_exporter", {"node_exporter_listen_address": "127.0.0.1"}, "mon1", ["mon1"]) == []


def test_unresolved_become_and_report():
    assert checks.unresolved_problems(["grafana_admin_password"]) == [
        "grafana_admin_password" + checks.UNRESOLVED]
    assert checks.become_password_problems(True, False)[0].startswith("ansible_become_password: its value refers")
    assert checks.become_password_problems(True, True) == checks.become_password_problems(False, False) == []
    assert checks.host_report("h", []) == []
    assert checks.host_report("h", ["a", "b"]) == [
        "2 problem(s) in the variables of h; nothing has been changed on any host. Fix them and rerun:", "[h] a", "[h] b"]


def test_spec_unknown_and_example_secrets():
    spec = {"x_port": {"type": "int"}, "x_method": {"type": "str", "choices": ["archive", "local"]}}
    assert checks.spec_problems({"x_port": 1, "x_method": "zip"}, spec) == [
        "x_method: 'zip' is not allowed. Fix: use one of archive, local"]
    assert checks.spec_problems({}, spec) == []
    assert checks.unknown_var_problems("x", ["x_prot", "y_z", "x_port"], ["x_port"]) == [
        "x_prot: not a variable of this role, so it would be ignored. Did you mean x_port?"]
    assert checks.example_secret_problems({"grafana_admin_password": "example-grafana-admin-password"})[0].startswith(
        "grafana_admin_password: still holds the example inventory's value")
    assert checks.example_secret_problems({"grafana_admin_password": "example-grafana-admin-password"}, True) == []


# ------------------------------------------------------------------ role checks
NODE = {**HOSTS, "node_exporter_textfile_dir": "/var/lib/node_exporter/textfile"}
CADVISOR = {"cadvisor_install_method": "archive", "cadvisor_checksums": {"amd64": "a" * 64},
            "cadvisor_checksums_file": "", "cadvisor_version": "0.52.1"}
BLACKBOX = {**HOSTS, "group_names": ["prometheus"], "blackbox_exporter_modules": {"http_2xx": {"prober": "http"}},
            "blackbox_exporter_probers": ["http", "tcp", "icmp", "dns", "grpc", "unix"]}
PROMETHEUS = {"prometheus_config_dir": "/etc/prometheus", "prometheus_data_dir": "/var/lib/prometheus",
              "prometheus_alert_rule_groups": ["node"], "prometheus_inventory_targets": [{"job": "a"}, {"job": "b"}],
              "prometheus_shard_of_hosts": {"mon1": -1, "mon2": -1}, "prometheus_shard_count": 0,
              "prometheus_group": "prometheus", "prometheus_shard_source_labels": ["__address__"]}
ALERTMANAGER = {
    "alertmanager_data_dir": "/var/lib/alertmanager", "alertmanager_route": {"receiver": "ops"},
    "alertmanager_receivers": [{"name": "ops", "email_configs": [{"to": "ops@example.org"}]}],
    "alertmanager_global": {}, "alertmanager_allow_no_receivers": False,
    "alertmanager_secrets_dir": "/etc/alertmanager/secrets", "alertmanager_secret_files": {"pd": "x"},
    "alertmanager_inline_secret_pattern": '"([a-z_]*(password|secret|api_key|token|credentials|routing_key'
                                          '|service_key|webhook_url)|slack_api_url)":',
    "alertmanager_template_names": ["monstack.tmpl", "extra.tmpl"], "alertmanager_default_template": "monstack.tmpl",
    "alertmanager_cluster_tls": "auto", "alertmanager_cluster_tls_mode": "auto", "alertmanager_cluster_tls_given": False,
    "alertmanager_cluster_tls_cert": "", "alertmanager_cluster_tls_key": "", "alertmanager_cluster_tls_ca_cert": "",
    "alertmanager_cluster_enabled": True, "alertmanager_cluster_members": ["mon1", "mon2"],
    "alertmanager_group": "alertmanager"}
GRAFANA = {"grafana_admin_password": "long enough", "grafana_secret_key": "0123456789abcdef0123",
           "grafana_admin_user": "admin", "grafana_install_method": "archive", "grafana_local_package": "",
           "grafana_install_dir": "/opt/grafana", "grafana_config_dir": "/etc/grafana", "grafana_data_dir": "/var/lib/g",
           "grafana_logs_dir": "/var/log/g", "grafana_dashboards_dir": "/var/lib/g/d", "grafana_database_path": "/v/g.db",
           "grafana_cookie_samesite": "lax", "grafana_log_format": "text", "grafana_ini_extra": {},
           "ansible_facts": {"os_family": "Debian", "architecture": "x86_64"}, "grafana_from_package": False,
           "grafana_arch": "amd64", "grafana_arch_map": {"x86_64": "amd64", "aarch64": "arm64"},
           "inventory_hostname": "mon1", "grafana_apt_repo_url": "https://apt.grafana.com",
           "grafana_apt_key_url": "https://apt.grafana.com/gpg.key"}
VM = {"victoriametrics_extra_flags": [], "victoriametrics_tls_cert": "", "victoriametrics_tls_key": "",
      "victoriametrics_tls_ca_cert": "", "victoriametrics_http_auth_username": "",
      "victoriametrics_http_auth_password": "", "victoriametrics_data_dir": "/var/lib/vm",
      "victoriametrics_retention_period": "1y", "victoriametrics_dedup_min_scrape_interval": "15s",
      "victoriametrics_listen_address": "0.0.0.0",
      "victoriametrics_managed_flags": ["storageDataPath", "retentionPeriod", "httpAuth.password"]}
JOURNAL = {"inventory_hostname": "app1", "journal_upload_url": "", "journal_remote_hosts": ["log1"],
           "journal_remote_group": "journal_remote", "journal_tls_ca_file": "", "journal_tls_cert_file": "",
           "journal_tls_key_file": ""}
GOOD = {"node_exporter": NODE, "cadvisor": CADVISOR, "blackbox_exporter": BLACKBOX, "prometheus": PROMETHEUS,
        "alertmanager": ALERTMANAGER, "grafana": GRAFANA, "victoriametrics": VM, "journal": JOURNAL}
AGENT = {"prometheus_mode": "agent", "prometheus_all_remote_write": [{"url": "http://vm:8428/api/v1/write"}],
         "prometheus_rule_files": [], "prometheus_remote_read": [], "prometheus_global_store_group": "victoriametrics",
         "inventory_hostname": "dmz1", "groups": {"prometheus": ["mon1", "mon2"], "prometheus_agent": ["dmz1"]}}
EXTRA = {"prometheus": {"rule_groups": ["node", "prometheus"],
                        "alerts": {"NodeDown": {"group": "node", "thresholds": ["node_down_for"]}}}}


def _check(role, facts=False, **changes):
    return roles.ROLE_CHECKS[role]({**GOOD[role], **changes}, facts=facts, **EXTRA.get(role, {}))


@pytest.mark.parametrize("role", sorted(GOOD))
def test_role_checks_pass_on_good_values(role):
    assert _check(role, facts=True) == []


def test_a_removed_cadvisor_needs_no_checksum():
    """cadvisor_state: absent downloads nothing, so no checksum is asked for (molecule/upgrade)."""
    assert _check("cadvisor", cadvisor_checksums={}, cadvisor_state="absent") == []
    assert _check("cadvisor", cadvisor_checksums={}, cadvisor_state="present") != []


def test_an_agent_with_a_store_and_no_rules_passes():
    assert _check("prometheus", **AGENT) == []


MISTAKES = [
    ("node_exporter", {"node_exporter_textfile_dir": "textfile"},
     "node_exporter_textfile_dir: 'textfile' is not an absolute path."),
    ("node_exporter", {"monstack_scrape_address": "localhost"},
     "monstack_scrape_address: 'localhost' only reaches this host itself"),
    ("cadvisor", {"cadvisor_checksums": {}}, "cadvisor_checksums: empty, and cadvisor_checksums_file is empty too, "
                                             "so the cAdvisor 0.52.1 binary"),
    ("blackbox_exporter", {"blackbox_exporter_modules": {"a": {"prober": "ftp"}, "http_2xx": {"prober": "http"}}},
     "blackbox_exporter_modules: a: every module is a mapping whose prober is one of http, tcp"),
    ("blackbox_exporter", {"prometheus_deployment_health_module": "icmp"},
     "prometheus_deployment_health_module: 'icmp' is not one of blackbox_exporter_modules (http_2xx)"),
    ("prometheus", {"prometheus_data_dir": "data"}, "prometheus_config_dir / prometheus_data_dir: '/etc/prometheus', "
                                                    "'data' must both be absolute paths."),
    ("prometheus", {"prometheus_alert_rule_groups": ["node", "nope"]},
     "prometheus_alert_rule_groups: nope not shipped. Fix: choose among node, prometheus."),
    ("prometheus", {"prometheus_alert_overrides": {"NodeUp": {"enabled": False}}},
     "prometheus_alert_overrides.NodeUp: no shipped alert has this name. The shipped alerts: NodeDown"),
    ("prometheus", {"prometheus_alert_overrides": {"NodeDown": {"thresholds": {"node_down_for": 3}}},
                    "prometheus_alert_thresholds": {"node_down_for": "5m"}},
     "prometheus_alert_overrides.NodeDown.thresholds.node_down_for: must be a Prometheus duration like '5m', got 3"),
    ("prometheus", {"prometheus_scrape_config_dir": "/srv/scrape", "prometheus_version": "2.42.0"},
     "prometheus_scrape_config_dir: Prometheus 2.42.0 has no scrape_config_files (it came with 2.43.0)."),
    ("prometheus", dict(AGENT, prometheus_all_remote_write=[]),
     "prometheus_mode: agent keeps no data to query, it only sends what it scrapes, but prometheus_remote_write is "
     "empty and there is no global store (prometheus_global_store_group 'victoriametrics' has no host)"),
    ("prometheus", dict(AGENT, prometheus_rule_files=["/x.rules.yml"]),
     "prometheus_rule_files: an agent (prometheus_mode: agent) evaluates no rules."),
    ("prometheus", dict(AGENT, prometheus_remote_read=[{"url": "http://vm:8428/api/v1/read"}]),
     "prometheus_remote_read: an agent (prometheus_mode: agent) serves no queries"),
    ("prometheus", dict(AGENT, inventory_hostname="mon1"),
     "prometheus_mode: agent on a host of prometheus_group 'prometheus'"),
    ("prometheus", {"prometheus_inventory_targets": [{"job": "a"}, {"job": "a"}]},
     "prometheus_inventory_targets: job names must be unique."),
    ("prometheus", {"prometheus_shard_of_hosts": {"mon1": 0, "mon2": -1}, "prometheus_shard_count": 1},
     "prometheus_shard: mon2 have no shard while other hosts of the group 'prometheus' have one"),
    ("prometheus", {"prometheus_shard_of_hosts": {"mon1": 0, "mon2": 2}, "prometheus_shard_count": 2},
     "prometheus_shard: the shards are 0, 2; they must be numbered 0 to N-1 without gaps (N = 2 shards)"),
    ("prometheus", {"prometheus_shard_source_labels": []}, "prometheus_shard_source_labels: empty."),
    ("alertmanager", {"alertmanager_data_dir": "d"}, "alertmanager_data_dir: 'd' must be an absolute path."),
    ("alertmanager", {"alertmanager_route": {"receiver": "oncall"}},
     "alertmanager_route.receiver: 'oncall' is not one of alertmanager_receivers (ops). Fix: name an existing receiver."),
    ("alertmanager", {"alertmanager_receivers": [{"name": "ops", "email_configs": [{}]}, {"name": "ops"}]},
     "alertmanager_receivers: receiver names must be unique (ops, ops)."),
    ("alertmanager", {"alertmanager_receivers": [{"name": "ops", "email_configs": []}]},
     "alertmanager_receivers: no receiver sends anywhere"),
    ("alertmanager", {"alertmanager_receivers": [{"name": "ops", "pagerduty_configs": [{"routing_key": "k"}]}]},
     "a secret is written inline"),
    ("alertmanager", {"alertmanager_receivers": [{"name": "ops", "slack_configs": [{"api_url": "https://h"}]}]},
     "a secret is written inline"),
    ("alertmanager", {"alertmanager_secret_files": {"a/b": "x"}}, "alertmanager_secrets: names may hold only"),
    ("alertmanager", {"alertmanager_receivers": [{"name": "ops", "pagerduty_configs": [
        {"routing_key_file": "/etc/alertmanager/secrets/missing"}]}]},
     "alertmanager_secrets: the receivers refer to secret files that are not defined: missing."),
    ("alertmanager", {"alertmanager_template_names": ["monstack.tmpl", "x.txt"]},
     "alertmanager_templates: every file must end in .tmpl and have a unique base name other than monstack.tmpl."),
    ("alertmanager", {"alertmanager_cluster_tls": "maybe", "alertmanager_cluster_tls_mode": "maybe"},
     "alertmanager_cluster_tls: 'maybe' is not auto, required or off"),
    ("alertmanager", {"alertmanager_cluster_tls_cert": CERT}, "_key / _ca_cert: only some are set."),
    ("alertmanager", {"alertmanager_cluster_tls_given": True, "alertmanager_cluster_tls_cert": "/c",
                      "alertmanager_cluster_tls_key": "/k", "alertmanager_cluster_tls_ca_cert": "/ca"}, "not PEM text"),
    ("alertmanager", {"alertmanager_cluster_tls_mode": "required", "alertmanager_cluster_tls": "required"},
     "alertmanager_cluster_tls: 'required', but this host is one of 2 members of the Alertmanager cluster "
     "(group alertmanager)"),
    ("grafana", {"grafana_admin_password": ""}, "grafana_admin_password: not set (it has no default)."),
    ("grafana", {"grafana_admin_password": "abc"}, "grafana_admin_password: must be at least 4 characters"),
    ("grafana", {"grafana_secret_key": ""}, "grafana_secret_key: not set (it has no default;"),
    ("grafana", {"grafana_secret_key": "SW2YcwTIb9zpOOhoPsMm"}, "grafana_secret_key: must be at least 16 characters"),
    ("grafana", {"grafana_admin_user": ""}, "grafana_admin_user: must not be empty."),
    ("grafana", {"grafana_install_method": "local", "grafana_local_package": "/g.zip"},
     "grafana_local_package: '/g.zip' is not a .deb or a release .tar.gz."),
    ("grafana", {"grafana_install_dir": "opt"}, "grafana_install_dir: 'opt' must be an absolute path."),
    ("grafana", {"grafana_logs_dir": "log"}, "grafana_database_path: must be absolute paths."),
    ("grafana", {"grafana_cookie_samesite": "x"}, "grafana_cookie_samesite: 'x' must be one of lax, strict"),
    ("grafana", {"grafana_log_format": "xml"}, "grafana_log_format: 'xml' must be one of text, json, console."),
    ("grafana", {"grafana_ini_extra": {"alerting": {"enabled": True}}}, "legacy [alerting] enabled"),
    ("victoriametrics", {"victoriametrics_data_dir": "d"}, "victoriametrics_data_dir: 'd' must be an absolute path."),
    ("victoriametrics", {"victoriametrics_retention_period": "1 year"}, "victoriametrics_retention_period: '1 year'"),
    ("victoriametrics", {"victoriametrics_dedup_min_scrape_interval": "15"}, "is not a duration."),
    ("victoriametrics", {"victoriametrics_extra_flags": ["search.maxUniqueTimeseries=1"]},
     "victoriametrics_extra_flags: search.maxUniqueTimeseries=1 not a flag."),
    ("victoriametrics", {"victoriametrics_extra_flags": ["--retentionPeriod=2"]},
     "victoriametrics_extra_flags: retentionPeriod set by the role already."),
    ("victoriametrics", {"victoriametrics_tls_cert": CERT}, "victoriametrics_tls_key: only one is set."),
    ("victoriametrics", {"victoriametrics_tls_cert": "/c", "victoriametrics_tls_key": "/k"},
     "\"{{ lookup('ansible.builtin.file', 'certs/vm1.pem') }}\", not their paths."),
    ("victoriametrics", {"victoriametrics_tls_ca_cert": "/ca"}, "victoriametrics_tls_ca_cert: not PEM text."),
    ("victoriametrics", {"victoriametrics_http_auth_username": "u"}, "victoriametrics_http_auth_password: only one"),
    ("victoriametrics", {"victoriametrics_http_auth_username": "u", "victoriametrics_http_auth_password": "p"},
     "VictoriaMetrics serves plain HTTP on '0.0.0.0', so the password would cross the network in clear."),
    ("journal", {"journal_remote_hosts": []}, "journal on app1: no log host: put one host in the inventory group "
                                              "journal_remote or set journal_upload_url."),
    ("journal", {"journal_tls_ca_file": "/ca"}, "journal_tls_ca_file, journal_tls_cert_file and journal_tls_key_file "
                                                "go together"),
    ("journal", {"journal_upload_url": "http://log1:19532"}, "journal_upload_url http://log1:19532: must be an https://"),
]


@pytest.mark.parametrize("role, changes, expected", MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_role_check_reports_the_mistake(role, changes, expected):
    problems = _check(role, **changes)
    # the first problem is this one (a certificate without its key is also not a PEM pair)
    assert problems and expected in problems[0], problems
    assert len(problems) == 1 or role == "victoriametrics", problems


def test_grafana_fact_checks_only_with_facts():
    arm = {"ansible_facts": {"os_family": "RedHat", "architecture": "s390x"}, "grafana_arch": "s390x"}
    assert _check("grafana", **arm) == []
    assert _check("grafana", facts=True, grafana_install_method="apt", grafana_from_package=True, **arm) == [
        "grafana_install_method: 'apt' needs a Debian or Ubuntu host. Fix: use archive or local."]
    assert _check("grafana", facts=True, **arm) == [
        "Grafana releases exist for amd64, arm64, armv7 and armv6 only (this host: s390x)."]
    # an undefined password or key is the vault check's business, not these
    assert roles.grafana({k: v for k, v in GRAFANA.items() if k not in ("grafana_admin_password",
                                                                          "grafana_secret_key")}) == []


def test_notes_name_the_hosts_that_download_grafana():
    assert roles.notes("grafana", GRAFANA) == []
    (note,) = roles.notes("grafana", {**GRAFANA, "grafana_install_method": "apt"})
    assert note.startswith("NOTE mon1: grafana_install_method is apt, so this host downloads Grafana from "
                           "https://apt.grafana.com (and its key from https://apt.grafana.com/gpg.key) itself")
    assert roles.notes("prometheus", PROMETHEUS) == []


def test_every_component_role_has_checks_and_one_preflight_task():
    import yaml
    for role in roles.ROLE_CHECKS:
        (task,) = yaml.safe_load((ROOT / "roles" / role / "tasks" / "preflight.yml").read_text())
        assert task["monstack.stack.preflight"] == {"role": role}, role


# ------------------------------------------------------------------ the action
def test_action_is_documented_for_ansible_doc(tmp_path):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    doc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "--json",
                          "monstack.stack.preflight"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert doc.returncode == 0, doc.stderr
    info = json.loads(doc.stdout)["monstack.stack.preflight"]
    assert set(info["doc"]["options"]) == {"hosts", "roles", "role"}
    assert info["examples"] and set(info["return"]) >= {"problems", "reports", "notes"}


def test_action_reads_each_roles_files_once_per_process(monkeypatch):
    from ansible.parsing.dataloader import DataLoader
    from ansible_collections.monstack.stack.plugins.action import preflight as action

    loads = []
    loader = DataLoader()
    original = loader.load_from_file

    def counting(path, *args, **kwargs):
        loads.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(loader, "load_from_file", counting)
    monkeypatch.setattr(action, "_ROLE_FILES", {})
    plugin = action.ActionModule.__new__(action.ActionModule)
    plugin._loader = loader
    first = plugin._files("prometheus")
    assert plugin._files("prometheus") is first and plugin._files("prometheus", first.path) is first
    assert len([p for p in loads if p.endswith("argument_specs.yml")]) == 1
    assert "prometheus_version" in first.spec and "prometheus_version" in first.defaults
    assert "prometheus_shard_of_hosts" in first.vars and "prometheus_shard_of_hosts" in first.known
    assert "node" in first.rule_groups
    assert first.alerts["TargetDown"] == {"group": "availability", "thresholds": ["target_down_for"]}


def test_one_templar_for_all_hosts_compiles_a_shared_template_once(monkeypatch):
    """Each host's values are templated in its own variables, with the compiled templates of
    the strings every host shares (group_vars, role defaults) kept."""
    import jinja2
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    from ansible_collections.monstack.stack.plugins.action import preflight as action

    compiled = []
    compile_source = jinja2.Environment.compile

    def counting(self, source, *args, **kwargs):
        compiled.append(source)
        return compile_source(self, source, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    templar = action._shared_templar(Templar(loader=DataLoader()))
    shared = trust_as_template("{{ base }}/{{ inventory_hostname }}")
    results = []
    for host in ("app1", "app2", "app3"):
        v = action._Vars(templar, [{"inventory_hostname": host, "url": shared, "base": trust_as_template("{{ b }}"),
                                    "b": "file://m", "groups": {"all": [host]}}])
        results.append(v["url"])
        assert v["groups"] is v._raw["groups"], "inventory facts are not templated"
    assert results == ["file://m/app1", "file://m/app2", "file://m/app3"]
    assert sorted(str(source) for source in compiled) == ["{{ b }}", "{{ base }}/{{ inventory_hostname }}"]
