"""The alertmanager role's configuration, rendered by Ansible itself and
checked with the real amtool.

alertmanager.yml.j2 is rendered with `ansible-playbook` (the role's defaults
and vars, plus scenario variables as extra vars), exactly as the role does.
The result goes through `amtool check-config` and `amtool config routes test`
(binary: $AMTOOL, else /var/cache/monstack/bin/amtool; those tests are
skipped, with the reason, when it is missing). The preflight checks and the
cluster flags are exercised through ansible-playbook as well.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "alertmanager"
AMTOOL = os.environ.get("AMTOOL") or (
    os.path.join(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack"), "bin", "amtool")
)


def _ansible_playbook() -> str:
    exe = shutil.which("ansible-playbook") or os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(exe):
        pytest.skip("ansible-playbook is not installed")
    return exe


def _env() -> dict:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env.setdefault("ANSIBLE_LOCALHOST_WARNING", "false")
    env.setdefault("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false")
    return env


def _need_amtool() -> str:
    if not os.access(AMTOOL, os.X_OK):
        pytest.skip(f"amtool not found at {AMTOOL} (set $AMTOOL to a real amtool binary)")
    return AMTOOL


def _amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_need_amtool(), *args], capture_output=True, text=True, timeout=60)


def _run_playbook(tmp: Path, tasks: list, extra: str | None = None, inventory: str | None = None,
                  hosts: str = "localhost") -> subprocess.CompletedProcess:
    """Run `tasks` with the role's variables at their real precedence.

    The role's defaults become group_vars/all (below inventory host vars, as
    role defaults are), its vars/main.yml a vars file (above them, as role
    vars are), and scenario variables are extra vars.
    """
    play = [{
        "name": "alertmanager role unit test",
        "hosts": hosts,
        "connection": "local",
        "gather_facts": False,
        "vars_files": [str(ROLE / "vars" / "main.yml")],
        "tasks": tasks,
    }]
    (tmp / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (tmp / "group_vars").mkdir(exist_ok=True)
    shutil.copy(ROLE / "defaults" / "main.yml", tmp / "group_vars" / "all.yml")
    (tmp / "inventory.yml").write_text(inventory or "all:\n  hosts:\n    localhost:\n")
    # Local connection: run modules with this Python (it has Ansible's deps).
    cmd = [_ansible_playbook(), str(tmp / "play.yml"), "-i", str(tmp / "inventory.yml"),
           "-e", json.dumps({"ansible_python_interpreter": sys.executable})]
    if extra:
        # A YAML file keeps !unsafe tags (Go templates) intact.
        (tmp / "extra.yml").write_text(extra)
        cmd += ["-e", "@" + str(tmp / "extra.yml")]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, cwd=tmp)


def render(tmp: Path, extra: str | dict | None = None) -> Path:
    """Render alertmanager.yml into tmp/etc with the shipped template beside it."""
    etc = tmp / "etc"
    (etc / "templates").mkdir(parents=True)
    shutil.copy(ROLE / "files" / "monstack.tmpl", etc / "templates" / "monstack.tmpl")
    out = etc / "alertmanager.yml"
    extra_text = extra if isinstance(extra, str) else (yaml.safe_dump(extra) if extra else "")
    # Point the role's fixed layout at the temporary directory (templates glob).
    extra_text += f"\nalertmanager_config_dir: {json.dumps(str(etc))}\n"
    proc = _run_playbook(tmp, [{
        "name": "Render alertmanager.yml",
        "ansible.builtin.template": {
            "src": str(ROLE / "templates" / "alertmanager.yml.j2"),
            "dest": str(out),
            "mode": "0640",
        },
    }], extra=extra_text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


SECRETS = {
    "smtp": "smtp-Pa55word-do-not-log",
    "slack": "https://hooks.slack.com/services/T000/B000/SLACKSECRETTOKEN",
    "pagerduty": "pdRoutingKeySecret0123456789abcdef",
    "slack_web": "https://hooks.slack.com/services/T000/B111/WEBSLACKSECRET",
}

# A full example as a user would write it in group_vars (Go templates are
# marked !unsafe so that Ansible leaves them alone).
FULL_EXAMPLE = textwrap.dedent(f"""\
    alertmanager_smtp_smarthost: smtp.example.org:587
    alertmanager_smtp_from: alertmanager@example.org
    alertmanager_smtp_auth_username: alertmanager
    alertmanager_smtp_auth_password: {SECRETS['smtp']}
    alertmanager_slack_api_url: {SECRETS['slack']}
    alertmanager_secrets:
      pagerduty_ml: {SECRETS['pagerduty']}
      slack_web: {SECRETS['slack_web']}
    alertmanager_global:
      smtp_hello: mon.example.org
    alertmanager_route:
      receiver: ops-email
      group_by: [alertname, team]
      group_wait: 30s
      group_interval: 5m
      repeat_interval: 4h
      routes:
        - matchers: ['team="ml"']
          receiver: team-ml-slack
          routes:
            - matchers: ['severity="critical"']
              receiver: team-ml-pager
        - matchers: ['team="web"']
          receiver: team-web-slack
        - matchers: ['service="billing"']
          receiver: billing-webhook
          continue: true
        - matchers: ['severity="warning"']
          receiver: ops-email
          mute_time_intervals: [nights]
    alertmanager_receivers:
      - name: ops-email
        email_configs:
          - to: ops@example.org
            send_resolved: true
            headers:
              Subject: !unsafe '{{{{ template "monstack.title" . }}}}'
      - name: team-ml-pager
        pagerduty_configs:
          - routing_key_file: /etc/alertmanager/secrets/pagerduty_ml
            description: !unsafe '{{{{ template "monstack.title" . }}}}'
      - name: team-ml-slack
        slack_configs:
          - channel: '#ml-alerts'
            send_resolved: true
            title: !unsafe '{{{{ template "monstack.title" . }}}}'
            text: !unsafe '{{{{ template "monstack.text" . }}}}'
      - name: team-web-slack
        slack_configs:
          - channel: '#web-alerts'
            api_url_file: /etc/alertmanager/secrets/slack_web
      - name: billing-webhook
        webhook_configs:
          - url: http://127.0.0.1:9095/alerts
            send_resolved: true
    alertmanager_time_intervals:
      - name: nights
        time_intervals:
          - times: [{{start_time: '22:00', end_time: '24:00'}}]
    """)


# --------------------------------------------------------------------------
# (a) defaults
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def default_config(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("am-default"))


def test_defaults_render_the_documented_config(default_config):
    text = default_config.read_text()
    assert text.startswith("#"), "the file starts with the ansible_managed comment"
    cfg = yaml.safe_load(text)
    assert cfg["route"] == {
        "receiver": "default", "group_by": ["alertname", "job"], "group_wait": "30s",
        "group_interval": "5m", "repeat_interval": "4h", "routes": [],
    }
    assert cfg["receivers"] == [{"name": "default"}]
    assert cfg["inhibit_rules"] == [{
        "source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
        "equal": ["alertname", "instance"],
    }]
    assert cfg["global"] == {"resolve_timeout": "5m", "smtp_require_tls": True}
    assert cfg["templates"] == [str(default_config.parent / "templates" / "*.tmpl")]
    assert "time_intervals" not in cfg


def test_defaults_pass_amtool_check_config(default_config):
    proc = _amtool("check-config", str(default_config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    assert "1 inhibit rules" in proc.stdout


# --------------------------------------------------------------------------
# (b) a full example: e-mail, Slack, PagerDuty and webhook receivers, team routes
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_config(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("am-full"), FULL_EXAMPLE)


def test_full_example_passes_amtool_check_config(full_config):
    proc = _amtool("check-config", str(full_config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 receivers" in proc.stdout
    assert "1 templates" in proc.stdout


def test_full_example_keeps_secrets_out_of_alertmanager_yml(full_config):
    text = full_config.read_text()
    for name, secret in SECRETS.items():
        assert secret not in text, f"the {name} secret leaked into alertmanager.yml"
    cfg = yaml.safe_load(text)
    assert cfg["global"]["smtp_auth_password_file"] == str(full_config.parent / "secrets" / "smtp_auth_password")
    assert cfg["global"]["slack_api_url_file"] == str(full_config.parent / "secrets" / "slack_api_url")
    assert cfg["global"]["smtp_smarthost"] == "smtp.example.org:587"
    assert cfg["global"]["smtp_hello"] == "mon.example.org"
    assert "smtp_auth_password" not in cfg["global"] and "slack_api_url" not in cfg["global"]


def test_full_example_keeps_go_templates_verbatim(full_config):
    cfg = yaml.safe_load(full_config.read_text())
    slack = next(r for r in cfg["receivers"] if r["name"] == "team-ml-slack")["slack_configs"][0]
    assert slack["title"] == '{{ template "monstack.title" . }}'
    assert slack["text"] == '{{ template "monstack.text" . }}'


@pytest.mark.parametrize("labels, receiver", [
    (["severity=critical", "team=ml"], "team-ml-pager"),
    (["severity=warning", "team=ml"], "team-ml-slack"),
    (["severity=critical", "team=web"], "team-web-slack"),
    (["severity=critical", "team=ml", "service=billing"], "team-ml-pager"),
    (["severity=warning", "service=billing"], "billing-webhook,ops-email"),
    (["severity=critical", "team=unknown"], "ops-email"),
])
def test_full_example_routes(full_config, labels, receiver):
    proc = _amtool("config", "routes", "test", f"--config.file={full_config}",
                   f"--verify.receivers={receiver}", *labels)
    assert proc.returncode == 0, f"{labels}: {proc.stdout}{proc.stderr}"


def test_route_test_fails_on_a_mismatch(full_config):
    # Critical alerts of team ml must not go to its Slack channel: amtool exits 1.
    proc = _amtool("config", "routes", "test", f"--config.file={full_config}",
                   "--verify.receivers=team-ml-slack", "severity=critical", "team=ml")
    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_shipped_template_renders(full_config):
    glob = str(full_config.parent / "templates" / "*.tmpl")
    proc = _amtool("template", "render", f"--template.glob={glob}",
                   '--template.text={{ template "monstack.title" . }}|{{ template "monstack.text" . }}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Firing:" in proc.stdout and "Labels:" in proc.stdout


def test_route_to_an_undefined_receiver_fails_check_config(tmp_path):
    out = render(tmp_path, {"alertmanager_route": {"receiver": "nobody"}})
    proc = _amtool("check-config", str(out))
    assert proc.returncode != 0
    assert 'undefined receiver "nobody"' in proc.stdout + proc.stderr


# --------------------------------------------------------------------------
# Preflight: secrets must not be written inline, references must exist
# --------------------------------------------------------------------------
def _preflight(tmp: Path, extra: str) -> subprocess.CompletedProcess:
    return _run_playbook(tmp, [{
        "name": "Preflight",
        "ansible.builtin.include_role": {"name": str(ROLE), "tasks_from": "preflight"},
    }], extra=extra)


def test_preflight_accepts_the_full_example(tmp_path):
    proc = _preflight(tmp_path, FULL_EXAMPLE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for secret in SECRETS.values():
        assert secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize("receiver", [
    {"name": "pd", "pagerduty_configs": [{"routing_key": "inline-key-LEAK"}]},
    {"name": "mail", "email_configs": [{"to": "a@example.org", "auth_password": "inline-key-LEAK"}]},
    {"name": "slack", "slack_configs": [{"channel": "#x", "api_url": "https://hooks.example/inline-key-LEAK"}]},
    {"name": "hook", "webhook_configs": [{"url": "http://x", "http_config": {
        "basic_auth": {"username": "u", "password": "inline-key-LEAK"}}}]},
])
def test_preflight_refuses_inline_secrets(tmp_path, receiver):
    extra = yaml.safe_dump({"alertmanager_receivers": [receiver],
                            "alertmanager_route": {"receiver": receiver["name"]}})
    proc = _preflight(tmp_path, extra)
    assert proc.returncode != 0
    assert "a secret is written inline" in proc.stdout
    assert "inline-key-LEAK" not in proc.stdout + proc.stderr


def test_preflight_refuses_an_undefined_secret_file(tmp_path):
    extra = yaml.safe_dump({
        "alertmanager_route": {"receiver": "pd"},
        "alertmanager_receivers": [{"name": "pd", "pagerduty_configs": [
            {"routing_key_file": "/etc/alertmanager/secrets/pagerduty_missing"}]}],
    })
    proc = _preflight(tmp_path, extra)
    assert proc.returncode != 0
    assert "pagerduty_missing" in proc.stdout


# --------------------------------------------------------------------------
# Cluster flags from the inventory
# --------------------------------------------------------------------------
def _flags(tmp: Path, inventory: str) -> dict:
    proc = _run_playbook(tmp, [
        {"name": "Pretend preflight chose the advertise address",
         "ansible.builtin.set_fact": {"alertmanager_cluster_advertise_ip": "192.0.2.{{ groups['all'].index(inventory_hostname) + 1 }}"}},
        {"name": "Write the flags", "ansible.builtin.copy": {
            "content": "{{ alertmanager_flags | to_json }}",
            "dest": str(tmp) + "/{{ inventory_hostname }}.json", "mode": "0644"}},
    ], inventory=inventory, hosts="all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {p.stem: json.loads(p.read_text()) for p in tmp.glob("am*.json")}


def test_single_host_disables_clustering(tmp_path):
    flags = _flags(tmp_path, "alertmanager:\n  hosts:\n    am1:\n")
    assert "--cluster.listen-address=" in flags["am1"]
    assert not [f for f in flags["am1"] if f.startswith(("--cluster.peer", "--cluster.advertise"))]
    assert "--web.listen-address=0.0.0.0:9093" in flags["am1"]


def test_three_hosts_form_one_cluster(tmp_path):
    inventory = textwrap.dedent("""\
        alertmanager:
          hosts:
            am1:
            am2: {monstack_scrape_address: 10.0.0.2}
            am3: {alertmanager_cluster_port: 9194}
        """)
    flags = _flags(tmp_path, inventory)
    assert "--cluster.listen-address=0.0.0.0:9094" in flags["am1"]
    assert "--cluster.advertise-address=192.0.2.1:9094" in flags["am1"]
    assert [f for f in flags["am1"] if f.startswith("--cluster.peer=")] == [
        "--cluster.peer=10.0.0.2:9094", "--cluster.peer=am3:9194"]
    assert [f for f in flags["am2"] if f.startswith("--cluster.peer=")] == [
        "--cluster.peer=am1:9094", "--cluster.peer=am3:9194"]
    assert "--cluster.listen-address=0.0.0.0:9194" in flags["am3"]
    assert [f for f in flags["am3"] if f.startswith("--cluster.peer=")] == [
        "--cluster.peer=am1:9094", "--cluster.peer=10.0.0.2:9094"]


# --------------------------------------------------------------------------
# meta/argument_specs.yml documents exactly the defaults
# --------------------------------------------------------------------------
def test_argument_specs_match_defaults():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    types = {"str": str, "int": int, "bool": bool, "dict": dict, "list": list}
    for name, value in defaults.items():
        assert name.startswith("alertmanager_")
        assert options[name]["default"] == value, name
        assert type(value) is types[options[name]["type"]], name
        assert options[name].get("description"), name
    for secret in ("alertmanager_smtp_auth_password", "alertmanager_slack_api_url",
                   "alertmanager_secrets", "alertmanager_basic_auth_users"):
        assert options[secret].get("no_log") is True, secret
