"""The grafana role's rendered configuration, checked for real.

The role's own templates are rendered by ansible-playbook (the role's
defaults and vars loaded as the role would, the inventory and settings of
each scenario as extra vars) into a temporary directory, then parsed:
grafana.ini with configparser (strict: no duplicate sections or keys), the
provisioning files with PyYAML against the format Grafana documents. The
preflight checks and the dashboard copy tasks run for real on this machine
(into a temporary directory).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import ansible_playbook  # noqa: E402  (tests/conftest.py puts tests/ on the path)

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "grafana"
DASHBOARDS = ROLE / "files" / "dashboards"

PASSWORD = 'Adm1n "#;pw'
SMTP_PASSWORD = "smtp;pass#1"
SECRET_KEY = "0123456789abcdef-test-secret-key"
GRAFANA_BUILTIN_KEY = "SW2YcwTIb9zpOOhoPsMm"  # Grafana's defaults.ini: public

# Keys of a data source in Grafana's provisioning format (administration/provisioning).
DATASOURCE_KEYS = {"name", "type", "access", "orgId", "uid", "url", "user", "database", "basicAuth",
                   "basicAuthUser", "withCredentials", "isDefault", "jsonData", "secureJsonData", "version",
                   "editable"}
PROVIDER_KEYS = {"name", "orgId", "folder", "folderUid", "type", "disableDeletion", "updateIntervalSeconds",
                 "allowUiUpdates", "options"}


def run_playbook(tmp: Path, inventory: dict, play: list, extra: dict, check: bool = True):
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))  # host order matters
    (tmp / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (tmp / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_LOCAL_TEMP=str(tmp / ".ansible-tmp"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run([ansible_playbook(), "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"),
                           "-e", f"@{tmp / 'extra.json'}"],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        pytest.fail(f"ansible-playbook failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}

TEMPLATES = ["grafana.ini", "datasources.yml", "dashboards.yml", "grafana.sources"]


def render(tmp: Path, groups: dict, extra: dict) -> dict[str, str]:
    """Render the role's templates for host graf1 (in group grafana) with these other groups."""
    inventory = {"all": {"hosts": {"graf1": LOCAL},
                         "children": {"grafana": {"hosts": {"graf1": {}}}, **groups}}}
    out = tmp / "out"
    out.mkdir()
    play = [{"name": "Render the grafana role's templates", "hosts": "grafana", "gather_facts": False, "tasks": [
        {"name": "Role defaults", "ansible.builtin.include_vars": str(ROLE / "defaults" / "main.yml")},
        {"name": "Role vars", "ansible.builtin.include_vars": str(ROLE / "vars" / "main.yml")},
        {"name": "Render", "ansible.builtin.template": {"src": str(ROLE / "templates" / "{{ item }}.j2"),
                                                         "dest": str(out / "{{ item }}"), "mode": "0600"},
         "loop": TEMPLATES}]}]
    run_playbook(tmp, inventory, play, extra)
    return {name: (out / name).read_text() for name in TEMPLATES}


LONG_HOST = "a-very-long-prometheus-host-name.datacenter-one.example.com"


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """Several Prometheus and Alertmanager hosts, TLS, basic auth, secrets with special characters."""
    groups = {
        "prometheus": {"hosts": {
            "prom1": {"monstack_scrape_address": "10.0.0.1", "prometheus_scrape_interval": "30s"},
            "prom2.example.com": {"prometheus_port": 9091, "prometheus_web_tls_cert_file": "/etc/p/cert.pem",
                                  "prometheus_basic_auth_users": {"zed": "z", "bob": "pa$s"},
                                  "prometheus_external_url": "https://p.example.com/prom/"},
            "prom3": {"prometheus_state": "absent"},
            LONG_HOST: {},
        }},
        "alertmanager": {"hosts": {
            "am1": {"alertmanager_state": "absent"},
            "am2": {"monstack_scrape_address": "fd00::2", "alertmanager_port": 9443},
            "am3": {},
        }},
    }
    extra = {
        "grafana_admin_password": PASSWORD,
        "grafana_admin_user": "root-admin",
        "grafana_secret_key": "k#1-0123456789abcdef",
        "grafana_http_addr": "127.0.0.1",
        "grafana_root_url": "https://grafana.example.com/",
        "grafana_cookie_secure": True,
        "grafana_smtp_enabled": True,
        "grafana_smtp_host": "mail.example.com:587",
        "grafana_smtp_user": "grafana",
        "grafana_smtp_password": SMTP_PASSWORD,
        "grafana_smtp_from_address": "grafana@example.com",
        "grafana_log_format": "json",
        "grafana_ini_extra": {"server": {"enable_gzip": True, "http_port": 3001},
                              "feature_toggles": {"enable": "fooBar"},
                              "auth.basic": {"enabled": False}},
        "grafana_datasource_tls_skip_verify": True,
        "grafana_datasources_extra": [{"name": "Loki", "type": "loki", "uid": "loki", "url": "http://loki:3100",
                                       "access": "proxy"}],
    }
    return render(tmp_path_factory.mktemp("grafana-full"), groups, extra)


@pytest.fixture(scope="module")
def minimal(tmp_path_factory):
    """Only the required password; no Prometheus or Alertmanager hosts."""
    return render(tmp_path_factory.mktemp("grafana-minimal"), {},
                  {"grafana_admin_password": "changeme", "grafana_secret_key": SECRET_KEY})


def parse_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",),
                                       comment_prefixes=("#", ";"), inline_comment_prefixes=None)
    parser.optionxform = str
    parser.read_string(text)
    return parser


def grafana_value(raw: str) -> str:
    """What Grafana's INI parser reads: triple-quoted values are taken verbatim."""
    match = re.fullmatch(r'"""(.*)"""', raw, re.S)
    return match.group(1) if match else raw


# ------------------------------------------------------------- grafana.ini
INI_EXPECTED = [  # (section, key, value) of the full example's grafana.ini
    ("paths", "data", "/var/lib/grafana"),
    ("paths", "logs", "/var/log/grafana"),
    ("paths", "provisioning", "/etc/grafana/provisioning"),
    ("server", "http_addr", "127.0.0.1"),
    ("server", "http_port", "3001"),  # grafana_ini_extra wins over the role's own
    ("server", "root_url", "https://grafana.example.com/"),
    ("server", "enable_gzip", "true"),
    ("security", "admin_user", "root-admin"),
    ("security", "admin_password", PASSWORD),
    ("security", "secret_key", "k#1-0123456789abcdef"),
    ("security", "cookie_secure", "true"),
    ("security", "cookie_samesite", "lax"),
    ("security", "disable_gravatar", "true"),
    ("users", "allow_sign_up", "false"),
    ("auth.anonymous", "enabled", "false"),
    ("analytics", "reporting_enabled", "false"),
    ("analytics", "check_for_updates", "false"),
    ("database", "type", "sqlite3"),
    ("database", "path", "/var/lib/grafana/grafana.db"),
    ("smtp", "enabled", "true"),
    ("smtp", "host", "mail.example.com:587"),
    ("smtp", "user", "grafana"),
    ("smtp", "password", SMTP_PASSWORD),
    ("smtp", "from_address", "grafana@example.com"),
    ("log", "mode", "console"),
    ("log.console", "format", "json"),
    ("log.file", "format", "json"),
    ("feature_toggles", "enable", "fooBar"),
    ("auth.basic", "enabled", "false"),
]


def test_ini_holds_the_configured_values(full):
    ini = parse_ini(full["grafana.ini"])
    for section, key, value in INI_EXPECTED:
        assert grafana_value(ini.get(section, key)) == value, (section, key)


def test_ini_quotes_values_grafana_would_cut(full):
    # Grafana's INI parser takes # and ; for comments: such values are triple-quoted.
    lines = full["grafana.ini"].splitlines()
    assert f'admin_password = """{PASSWORD}"""' in lines
    assert f'password = """{SMTP_PASSWORD}"""' in lines
    assert 'secret_key = """k#1-0123456789abcdef"""' in lines
    assert "admin_user = root-admin" in lines


def test_ini_defaults(minimal):
    ini = parse_ini(minimal["grafana.ini"])
    assert ini.get("server", "http_port") == "3000"
    assert ini.get("server", "http_addr") == ""
    assert not ini.has_option("server", "root_url")
    assert ini.get("security", "secret_key") == SECRET_KEY
    assert ini.get("security", "admin_user") == "admin"
    assert ini.get("security", "admin_password") == "changeme"
    assert ini.get("security", "cookie_secure") == "false"
    assert ini.get("users", "allow_sign_up") == "false"
    assert ini.get("auth.anonymous", "enabled") == "false"
    assert ini.get("analytics", "reporting_enabled") == "false"
    assert ini.get("analytics", "check_for_updates") == "false"
    assert ini.get("smtp", "enabled") == "false"
    assert ini.get("log.console", "format") == "text"


@pytest.mark.parametrize("scenario", ["full", "minimal"])
def test_ini_has_no_legacy_alerting_section(scenario, request):
    ini = parse_ini(request.getfixturevalue(scenario)["grafana.ini"])
    assert not ini.has_section("alerting"), "Grafana 11+ refuses [alerting] enabled"


@pytest.mark.parametrize("scenario", ["full", "minimal"])
def test_secrets_only_in_grafana_ini(scenario, request):
    files = request.getfixturevalue(scenario)
    password = PASSWORD if scenario == "full" else "changeme"
    assert password in files["grafana.ini"]
    key = "k#1-0123456789abcdef" if scenario == "full" else SECRET_KEY
    assert key in files["grafana.ini"]
    for name, text in files.items():
        if name != "grafana.ini":
            assert password not in text, f"admin password in {name}"
            assert SMTP_PASSWORD not in text, f"SMTP password in {name}"
            assert key not in text, f"secret key in {name}"


@pytest.mark.parametrize("name", TEMPLATES)
def test_rendered_files_carry_the_managed_header(full, name):
    assert full[name].startswith("#\n# Ansible managed")


# --------------------------------------------------------------- data sources
def test_datasources_follow_grafanas_provisioning_format(full):
    doc = yaml.safe_load(full["datasources.yml"])
    assert doc["apiVersion"] == 1
    assert doc["prune"] is True
    sources = doc["datasources"]
    for ds in sources:
        assert {"name", "type", "uid", "url", "access", "isDefault"} <= set(ds) or ds["type"] == "loki"
        assert set(ds) <= DATASOURCE_KEYS, set(ds) - DATASOURCE_KEYS
        assert ds["access"] == "proxy"
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", ds["uid"]), ds["uid"]
    assert len({ds["uid"] for ds in sources}) == len(sources)
    assert len({ds["name"] for ds in sources}) == len(sources)
    assert [ds["uid"] for ds in sources if ds.get("isDefault")] == ["monstack-prometheus"]


def test_one_prometheus_per_host_first_is_default(full):
    sources = {ds["uid"]: ds for ds in yaml.safe_load(full["datasources.yml"])["datasources"]}
    first = sources["monstack-prometheus"]
    assert first["type"] == "prometheus" and first["isDefault"] is True and first["name"] == "Prometheus"
    assert first["url"] == "http://10.0.0.1:9090"
    assert first["jsonData"]["timeInterval"] == "30s"
    assert first["jsonData"]["httpMethod"] == "POST"
    assert first["jsonData"]["tlsSkipVerify"] is True
    assert first["editable"] is False
    assert "basicAuth" not in first

    second = sources["monstack-prometheus-prom2-example-com"]
    assert second["isDefault"] is False
    assert second["url"] == "https://prom2.example.com:9091/prom"  # TLS, own port, route prefix
    assert second["basicAuth"] is True and second["basicAuthUser"] == "bob"  # first user by name
    assert second["secureJsonData"]["basicAuthPassword"] == "pa$$s"  # $ escaped for Grafana

    prometheus = [ds for ds in sources.values() if ds["type"] == "prometheus"]
    assert len(prometheus) == 3, "prom3 is absent and must be left out"
    long_uid = [uid for uid in sources if uid not in ("monstack-prometheus", "monstack-prometheus-prom2-example-com")
                and sources[uid]["type"] == "prometheus"][0]
    assert len(long_uid) <= 40 and long_uid.startswith("monstack-prometheus-")
    assert sources[long_uid]["url"] == f"http://{LONG_HOST}:9090"


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """Two Prometheus shards and a VictoriaMetrics global store (and one that is absent)."""
    groups = {
        "prometheus": {"hosts": {"shard0": {"prometheus_shard": 0, "prometheus_scrape_interval": "30s"},
                                 "shard1": {"prometheus_shard": 1}}},
        "victoriametrics": {"hosts": {"vm-old": {"victoriametrics_state": "absent"},
                                      "vm1": {"monstack_scrape_address": "10.0.0.9", "victoriametrics_port": 8429}}},
    }
    return render(tmp_path_factory.mktemp("grafana-sharded"), groups,
                  {"grafana_admin_password": "changeme", "grafana_secret_key": SECRET_KEY})


def test_the_global_store_is_the_default_datasource_of_the_dashboards(sharded):
    sources = yaml.safe_load(sharded["datasources.yml"])["datasources"]
    by_uid = {ds["uid"]: ds for ds in sources}
    assert [ds["uid"] for ds in sources if ds.get("isDefault")] == ["monstack-prometheus"]
    globl = by_uid["monstack-prometheus"]
    assert globl["name"] == "Global" and globl["type"] == "prometheus"
    assert globl["url"] == "http://10.0.0.9:8429"  # vm-old is absent
    assert globl["jsonData"]["timeInterval"] == "30s"
    assert set(DATASOURCE_KEYS) >= set(globl)
    for host in ("shard0", "shard1"):  # every shard stays reachable on its own
        assert by_uid[f"monstack-prometheus-{host}"]["isDefault"] is False
        assert by_uid[f"monstack-prometheus-{host}"]["name"] == f"Prometheus ({host})"


def test_without_global_store_hosts_nothing_changes(full, minimal):
    for files in (full, minimal):
        assert "Global" not in [ds["name"] for ds in yaml.safe_load(files["datasources.yml"])["datasources"]]


def test_alertmanager_datasource(full):
    sources = yaml.safe_load(full["datasources.yml"])["datasources"]
    alertmanagers = [ds for ds in sources if ds["type"] == "alertmanager"]
    assert len(alertmanagers) == 1
    am = alertmanagers[0]
    assert am["uid"] == "monstack-alertmanager"
    assert am["jsonData"]["implementation"] == "prometheus"
    assert am["url"] == "http://[fd00::2]:9443"  # am1 is absent; IPv6 in brackets
    assert am["isDefault"] is False


def test_extra_datasources_are_appended(full):
    sources = yaml.safe_load(full["datasources.yml"])["datasources"]
    assert sources[-1] == {"name": "Loki", "type": "loki", "uid": "loki", "url": "http://loki:3100",
                           "access": "proxy"}


def test_no_prometheus_group_no_datasources(minimal):
    doc = yaml.safe_load(minimal["datasources.yml"])
    assert doc["apiVersion"] == 1 and doc["datasources"] == []


def test_dashboard_uids_refer_to_the_provisioned_datasource(full):
    uids = {ds["uid"] for ds in yaml.safe_load(full["datasources.yml"])["datasources"]}
    for path in DASHBOARDS.rglob("*.json"):
        for uid in set(re.findall(r'"uid": "(monstack-[a-z-]+)"', path.read_text())):
            if uid.startswith("monstack-prometheus") or uid == "monstack-alertmanager":
                assert uid in uids, f"{path.name} refers to {uid}, which is not provisioned"


# ------------------------------------------------------------ dashboard provider
def test_dashboard_provider_follows_grafanas_format(full):
    doc = yaml.safe_load(full["dashboards.yml"])
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert set(provider) <= PROVIDER_KEYS
    assert provider["name"] == "monstack"
    assert provider["type"] == "file"
    assert provider["orgId"] == 1
    assert provider["allowUiUpdates"] is False
    assert provider["disableDeletion"] is False
    assert isinstance(provider["updateIntervalSeconds"], int) and provider["updateIntervalSeconds"] > 0
    assert provider["options"] == {"path": "/var/lib/grafana/dashboards", "foldersFromFilesStructure": True}
    # foldersFromFilesStructure needs folder and folderUid empty.
    assert not provider.get("folder") and not provider.get("folderUid")


def test_apt_sources_file_is_deb822_with_signed_by(full):
    fields = dict(line.split(": ", 1) for line in full["grafana.sources"].splitlines()
                  if line and not line.startswith("#"))
    assert fields == {"Types": "deb", "URIs": "https://apt.grafana.com", "Suites": "stable",
                      "Components": "main", "Signed-By": "/etc/apt/keyrings/grafana.asc"}


# ------------------------------------------------------------------ preflight
def run_preflight(tmp: Path, extra: dict):
    play = [{"name": "Grafana preflight", "hosts": "graf1", "gather_facts": False, "tasks": [
        {"name": "Facts", "ansible.builtin.setup": {"gather_subset": ["min"]}},
        {"name": "Preflight", "ansible.builtin.include_role": {"name": "grafana", "tasks_from": "preflight"}}]}]
    return run_playbook(tmp, {"all": {"hosts": {"graf1": LOCAL}}}, play, extra, check=False)


def test_preflight_requires_the_admin_password(tmp_path):
    proc = run_preflight(tmp_path, {"grafana_secret_key": SECRET_KEY})
    assert proc.returncode != 0
    assert "grafana_admin_password: not set (it has no default)" in proc.stdout


def test_preflight_requires_a_secret_key_from_the_vault(tmp_path):
    """Issue 24 row 13: without grafana_secret_key Grafana would encrypt the secrets in
    grafana.db (and its backups) with its public built-in key."""
    proc = run_preflight(tmp_path, {"grafana_admin_password": PASSWORD})
    assert proc.returncode != 0
    flat = " ".join(proc.stdout.split())
    assert "grafana_secret_key: not set (it has no default" in flat
    assert "openssl rand -hex 32 | ansible-vault encrypt_string --stdin-name grafana_secret_key" in flat


@pytest.mark.parametrize("key", [GRAFANA_BUILTIN_KEY, "short-key", 'sixteen chars """ or more', "line\nbreak-0123456789"])
def test_preflight_refuses_the_builtin_or_a_weak_secret_key(tmp_path, key):
    proc = run_preflight(tmp_path, {"grafana_admin_password": PASSWORD, "grafana_secret_key": key})
    assert proc.returncode != 0
    flat = " ".join(proc.stdout.split())
    assert "grafana_secret_key: must be at least 16 characters, not the public built-in key of Grafana" in flat, proc.stdout[-3000:]
    assert key not in proc.stdout


def test_preflight_refuses_legacy_alerting(tmp_path):
    proc = run_preflight(tmp_path, {"grafana_admin_password": "long enough", "grafana_secret_key": SECRET_KEY,
                                    "grafana_ini_extra": {"alerting": {"enabled": True}}})
    assert proc.returncode != 0
    assert "legacy [alerting] enabled" in proc.stdout


def test_preflight_refuses_a_short_password(tmp_path):
    proc = run_preflight(tmp_path, {"grafana_admin_password": "abc", "grafana_secret_key": SECRET_KEY})
    assert proc.returncode != 0
    assert "at least 4 characters" in proc.stdout


def test_preflight_accepts_valid_settings(tmp_path):
    proc = run_preflight(tmp_path, {"grafana_admin_password": PASSWORD, "grafana_secret_key": SECRET_KEY,
                                    "grafana_install_method": "archive"})
    assert proc.returncode == 0, proc.stdout


# ------------------------------------------------------- dashboard copy tasks
def run_dashboard_tasks(tmp: Path, extra: dict):
    play = [{"name": "Grafana dashboards", "hosts": "graf1", "gather_facts": False, "tasks": [
        {"name": "Dashboards", "ansible.builtin.include_role": {"name": "grafana", "tasks_from": "dashboards"}}]}]
    proc = run_playbook(tmp, {"all": {"hosts": {"graf1": LOCAL}}}, play, extra)
    recap = re.search(r"graf1\s*:\s*ok=(\d+)\s+changed=(\d+)", proc.stdout)
    return int(recap.group(2))


@pytest.mark.skipif(os.geteuid() != 0, reason="the dashboard copy sets root ownership; run as root")
def test_dashboards_copied_idempotently_and_pruned(tmp_path):
    dest = tmp_path / "dashboards"
    own = tmp_path / "own"
    (own / "Inference").mkdir(parents=True)
    (own / "Inference" / "drift.json").write_text('{"title": "my drift"}\n')  # overrides the bundled one
    (own / "Custom").mkdir()
    (own / "Custom" / "mine.json").write_text('{"title": "mine"}\n')
    extra = {"grafana_install_method": "archive", "grafana_user": "root", "grafana_dashboards_dir": str(dest),
             "grafana_dashboards_sources": [str(DASHBOARDS), str(own) + "/"]}
    assert run_dashboard_tasks(tmp_path, extra) > 0
    bundled = {p.relative_to(DASHBOARDS).as_posix() for p in DASHBOARDS.rglob("*.json")}
    copied = {p.relative_to(dest).as_posix() for p in dest.rglob("*.json")}
    assert copied == bundled | {"Custom/mine.json"}
    assert (dest / "Inference" / "drift.json").read_text() == '{"title": "my drift"}\n'
    assert (dest / "Infrastructure" / "hosts.json").read_bytes() == (DASHBOARDS / "Infrastructure" / "hosts.json").read_bytes()
    # The default contract is the one the files hold: nothing to change in these.
    for rel in ("Inference/inference-api.json", "Inference/model-performance.json"):
        assert (dest / rel).read_bytes() == (DASHBOARDS / rel).read_bytes(), rel
    for path in dest.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o750 if path.is_dir() else 0o640), f"{path}: {oct(mode)}"
    # A second run changes nothing.
    assert run_dashboard_tasks(tmp_path, extra) == 0
    # A file no source holds any more is removed.
    (dest / "Custom" / "stale.json").write_text("{}")
    assert run_dashboard_tasks(tmp_path, extra) == 1
    assert not (dest / "Custom" / "stale.json").exists()
    # Without pruning it stays.
    (dest / "Custom" / "stale.json").write_text("{}")
    assert run_dashboard_tasks(tmp_path, {**extra, "grafana_dashboards_prune": False}) == 0
    assert (dest / "Custom" / "stale.json").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the dashboard copy sets root ownership; run as root")
def test_dashboards_follow_the_metric_contract(tmp_path):
    """The instrumentator's contract file, as a user copies it into group_vars."""
    dest = tmp_path / "dashboards"
    contract = yaml.safe_load((ROOT / "examples" / "metric-contracts" / "fastapi-instrumentator.yml").read_text())
    extra = {"grafana_install_method": "archive", "grafana_user": "root", "grafana_dashboards_dir": str(dest),
             "grafana_ml_metrics": contract["grafana_ml_metrics"], "grafana_ml_labels": contract["grafana_ml_labels"]}
    assert run_dashboard_tasks(tmp_path, extra) > 0
    api = json.loads((dest / "Inference" / "inference-api.json").read_text())
    constants = {v["name"]: v["query"] for v in api["templating"]["list"] if v["type"] == "constant"}
    assert constants == {"ml_metric_requests_total": "http_requests_total",
                         "ml_metric_request_duration_seconds": "http_request_duration_seconds",
                         "ml_label_status": "status", "ml_label_endpoint": "handler"}
    legends = [t.get("legendFormat", "") for p in api["panels"] for t in p.get("targets", [])]
    assert "{{handler}} {{status}}" in legends and not any("{{endpoint}}" in legend for legend in legends)
    model = json.loads((dest / "Inference" / "model-performance.json").read_text())
    exprs = json.dumps([t["expr"] for p in model["panels"] for t in p.get("targets", [])])
    assert "request_duration_seconds" in exprs and "model_info" not in exprs and "predictions_total" not in exprs
    assert not model["annotations"]["list"][2:], "the model-loaded annotation needs model_info"
    drift = json.loads((dest / "Inference" / "drift.json").read_text())
    assert [p["type"] for p in drift["panels"]] == ["text"]
    assert (dest / "Infrastructure" / "hosts.json").read_bytes() == (DASHBOARDS / "Infrastructure" / "hosts.json").read_bytes()
    assert run_dashboard_tasks(tmp_path, extra) == 0


# --------------------------------------------------------------- systemd unit
def test_unit_runs_grafana_server_hardened(tmp_path):
    """The unit the component action makes (plugin_utils/component.py) from the grafana role's
    grafana_component (vars/main.yml), templated by Ansible with the role's defaults."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("monstack_component_logic", ROOT / "plugins/plugin_utils/component.py")
    logic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(logic)
    play = [{"name": "Render the unit", "hosts": "graf1", "gather_facts": False, "tasks": [
        {"name": "Role defaults", "ansible.builtin.include_vars": str(ROLE / "defaults" / "main.yml")},
        {"name": "Role vars", "ansible.builtin.include_vars": str(ROLE / "vars" / "main.yml")},
        {"name": "The component", "ansible.builtin.copy": {
            "content": "{{ grafana_component | to_json }}",
            "dest": str(tmp_path / "grafana.json"), "mode": "0600"}}]}]
    extra = {"grafana_install_method": "archive", "ansible_facts": {"architecture": "x86_64"}}
    run_playbook(tmp_path, {"all": {"hosts": {"graf1": LOCAL}}}, play, extra)
    component = logic.normalise(json.loads((tmp_path / "grafana.json").read_text()))
    assert component["service"]["manage_unit"] is True
    unit = logic.unit_text(component, component["user"]["name"])
    assert "User=grafana\nGroup=grafana\n" in unit
    assert ("ExecStart=/opt/monstack/grafana/12.4.6/bin/grafana server \\\n"
            "    --homepath=/opt/monstack/grafana/12.4.6 \\\n"
            "    --config=/etc/grafana/grafana.ini\n") in unit
    for line in ("ProtectSystem=strict", "ReadWritePaths=/var/lib/grafana", "ReadWritePaths=/var/log/grafana",
                 "NoNewPrivileges=yes", "ProtectHome=yes", "MemoryDenyWriteExecute=no", "CapabilityBoundingSet="):
        assert line in unit.splitlines(), line
