"""The preflight play: every common mistake in a copied example inventory is reported at once,
naming host, variable and fix, before any host is contacted or changed.

The hosts of these inventories point at 127.0.0.1 port 1, where nothing listens: a run that
got past the preflight would report them unreachable, so `unreachable=0 changed=0` for every
host proves that nothing was contacted, let alone changed.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from example_inventory import copy_example
from helpers import ansible_playbook

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOT_PATH = Path(ROOT)
HOSTS = [("mon1.corp.test", "127.0.0.1", 1), ("mon2.corp.test", "127.0.0.1", 1), ("app1.corp.test", "127.0.0.1", 1)]
MIRROR = {"prometheus": "3.5.3", "alertmanager": "0.33.1", "node_exporter": "1.11.1", "cadvisor": "0.38.7"}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def _inventory(tmp_path, mirror=True, grafana=True, allow_example_secrets=True):
    dest = tmp_path / "production"
    vault_pass = copy_example(dest, HOSTS, "ops", "127.0.0.1:25",
                              mirror_url="file:///var/cache/monstack/mirror" if mirror else None,
                              mirror_versions=MIRROR if mirror else None, grafana=grafana,
                              allow_example_secrets=allow_example_secrets)
    return dest, vault_pass


def _run(dest, vault_pass, playbook="site.yml", extra_group_vars="", host_vars=None):
    if extra_group_vars:
        (dest / "group_vars" / "all" / "zz-mistake.yml").write_text("---\n" + extra_group_vars)
    for host, text in (host_vars or {}).items():
        (dest / "host_vars").mkdir(exist_ok=True)
        (dest / "host_vars" / f"{host}.yml").write_text("---\n" + text)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_TIMEOUT="3")
    proc = subprocess.run([ansible_playbook(), "-i", str(dest), "--vault-password-file", str(vault_pass),
                           os.path.join(ROOT, playbook)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    out = proc.stdout + proc.stderr
    # Ansible folds long messages over several lines: compare on single spaces.
    return proc.returncode, out, " ".join(out.split())


def _assert_untouched(out):
    recaps = RECAP.findall(out)
    assert len(recaps) == 3, out[-2000:]
    for host, _ok, changed, unreachable, _failed in recaps:
        assert (changed, unreachable) == ("0", "0"), f"{host} was contacted or changed:\n{out[-2000:]}"


def test_example_with_the_readme_edits_passes_the_preflight(tmp_path):
    dest, vault_pass = _inventory(tmp_path)
    rc, out, _ = _run(dest, vault_pass, playbook="playbooks/preflight.yml")
    assert rc == 0, out[-3000:]


def test_example_without_a_cadvisor_checksum_is_stopped(tmp_path):
    """As shipped (upstream downloads), the placeholder checksum must be replaced first."""
    dest, vault_pass = _inventory(tmp_path, mirror=False)
    rc, out, flat = _run(dest, vault_pass)
    assert rc != 0
    assert "cadvisor_checksums.amd64: 'PASTE-the-SHA-256" in flat and "is not a SHA-256 digest" in flat
    _assert_untouched(out)


MISTAKES = [
    # (id, group_vars text, host_vars, expected message parts)
    ("missing-vault-file", None, None,
     ["grafana_admin_password: its value refers to a variable that is not defined", "ansible-vault"]),
    ("short-grafana-password", "grafana_admin_password: abc\n", None,
     ["grafana_admin_password: must be at least 4 characters"]),
    ("no-receiver-sends", "alertmanager_receivers: [{name: ops-email}]\n", None,
     ["alertmanager_receivers: no receiver sends anywhere", "alertmanager_allow_no_receivers: true"]),
    ("route-to-unknown-receiver", "alertmanager_route: {receiver: oncall}\n", None,
     ["alertmanager_route.receiver: 'oncall' is not one of alertmanager_receivers (ops-email)"]),
    ("port-not-a-number", "node_exporter_port: nine-one-hundred\n", None,
     ["node_exporter_port: is a str, expected int"]),
    ("unknown-install-method", "prometheus_install_method: zip\n", None,
     ["prometheus_install_method: 'zip' is not allowed. Fix: use one of archive, local, package"]),
    ("misspelt-variable", "prometheus_retention: 15d\n", None,
     ["prometheus_retention: not a variable of this role", "Did you mean prometheus_retention_time?"]),
    ("version-with-v", "node_exporter_version: v1.11.1\n", None,
     ["node_exporter_version: 'v1.11.1' is not a release version", "no leading 'v'"]),
    ("mirror-url-without-scheme", "monstack_download_base_url: artifacts.corp.test/github\n", None,
     ["_download_base_url: 'artifacts.corp.test/github' must start with https://"]),
    ("exporter-on-loopback", "node_exporter_listen_address: 127.0.0.1\n", None,
     ["node_exporter_listen_address: '127.0.0.1' is loopback", "cannot reach it"]),
    ("scrape-address-loopback", None, {"app1.corp.test": "monstack_scrape_address: localhost\n"},
     ["[app1.corp.test] monstack_scrape_address: 'localhost' only reaches this host itself"]),
    ("inline-slack-url", "alertmanager_receivers:\n  - name: ops-email\n    slack_configs:\n"
                         "      - channel: '#ops'\n        api_url: https://hooks.slack.test/LEAKED-SECRET\n", None,
     ["a secret is written inline", "alertmanager_secrets"]),
    ("tls-cert-without-key", "prometheus_web_tls_cert_file: /etc/ssl/prometheus.pem\n", None,
     ["prometheus_web_tls_cert_file / prometheus_web_tls_key_file: only one is set"]),
    ("local-without-file", "cadvisor_install_method: local\n", None,
     ["cadvisor_local_binary: empty, but cadvisor_install_method is 'local'"]),
    # issue 24 row 16: a plain-HTTP mirror's sums file proves nothing (same server as the archive)
    ("plain-http-mirror", "monstack_download_base_url: http://artifacts.corp.test/github\n", None,
     ["[mon1.corp.test] node_exporter_download_base_url: ", "http://artifacts.corp.test/github",
      "is plain HTTP", "use an https:// or file:// mirror, or pin the SHA-256 of each architecture",
      "asset in node_exporter_checksums", "[app1.corp.test] cadvisor_download_base_url: "]),
    ("shard-numbers-with-a-gap", None, {"mon1.corp.test": "prometheus_shard: 0\n",
                                        "mon2.corp.test": "prometheus_shard: 2\n"},
     ["prometheus_shard: the shards are 0, 2; they must be numbered 0 to N-1 without gaps"]),
    ("unknown-alert-override", "prometheus_alert_overrides: {TargetDwon: {enabled: false}, TargetDown: {fro: 5m}}\n",
     None, ["prometheus_alert_overrides.TargetDwon: no shipped alert has this name",
            "prometheus_alert_overrides.TargetDown.fro: unknown field"]),
    ("shard-on-one-server-only", None, {"mon1.corp.test": "prometheus_shard: 0\n"},
     ["prometheus_shard: mon2.corp.test have no shard while other hosts", "scraped twice"]),
]


@pytest.mark.parametrize("group_vars,host_vars,expected", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_mistake_is_reported_before_any_change(tmp_path, group_vars, host_vars, expected):
    dest, vault_pass = _inventory(tmp_path)
    if group_vars is None and host_vars is None:
        (dest / "group_vars" / "all" / "vault.yml").unlink()   # the user did not copy/create the vault
    rc, out, flat = _run(dest, vault_pass, extra_group_vars=group_vars or "", host_vars=host_vars)
    assert rc != 0, out[-3000:]
    for part in expected:
        assert part in flat, f"missing {part!r} in:\n{out[-4000:]}"
    assert "nothing has been changed on any host" in flat
    assert "LEAKED-SECRET" not in out
    _assert_untouched(out)


def test_all_problems_of_all_hosts_at_once(tmp_path):
    dest, vault_pass = _inventory(tmp_path)
    rc, out, flat = _run(dest, vault_pass,
                         extra_group_vars="node_exporter_port: x\nprometheus_retention: 15d\n"
                                          "alertmanager_receivers: [{name: ops-email}]\n",
                         host_vars={"app1.corp.test": "cadvisor_version: latest\n"})
    assert rc != 0
    # every host reports its own problems, in one run
    assert "3 problem(s) in the variables of mon1.corp.test" in flat, flat[-3000:]
    assert "2 problem(s) in the variables of app1.corp.test" in flat
    for part in ("[mon1.corp.test] node_exporter_port", "[mon1.corp.test] prometheus_retention",
                 "[mon1.corp.test] alertmanager_receivers", "[mon2.corp.test] node_exporter_port",
                 "[app1.corp.test] node_exporter_port", "[app1.corp.test] cadvisor_version: 'latest'"):
        assert part in flat, part
    _assert_untouched(out)


def test_apt_method_is_announced(tmp_path):
    """Grafana from apt.grafana.com needs internet on the host: the preflight says so, and passes."""
    dest, vault_pass = _inventory(tmp_path)
    rc, out, flat = _run(dest, vault_pass, playbook="playbooks/preflight.yml",
                         extra_group_vars="grafana_install_method: apt\n")
    assert rc == 0, out[-3000:]
    assert "NOTE mon1.corp.test: grafana_install_method is apt, so this host downloads Grafana from" in flat
    assert "NOTE mon2.corp.test" not in flat, "only the grafana hosts are named"


def test_plain_http_mirror_passes_with_pinned_checksums(tmp_path):
    """A plain-HTTP mirror is accepted for a role whose checksums the inventory pins; the other
    roles are still refused."""
    dest, vault_pass = _inventory(tmp_path)
    rc, out, flat = _run(dest, vault_pass, playbook="playbooks/preflight.yml",
                         extra_group_vars="monstack_download_base_url: http://artifacts.corp.test/github\n"
                                          f"node_exporter_checksums: {{amd64: \"{'a' * 64}\"}}\n")
    assert rc != 0
    assert "prometheus_download_base_url: " in flat and "is plain HTTP" in flat
    assert "node_exporter_download_base_url" not in flat, flat[-3000:]
    _assert_untouched(out)


PREFLIGHT_FILTERS = ["release", "release_problems", "unknown_vars",
                     "bad_checksums", "loopback", "spec_problems",
                     "checksum", "sums_problems", "example_secrets"]


def test_ansible_doc_documents_each_filter_on_its_own(tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "collections"))
    proc = subprocess.run([ansible_playbook().replace("ansible-playbook", "ansible-doc"), "-t", "filter", "--json",
                           *("monstack.stack." + n for n in PREFLIGHT_FILTERS)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json
    docs = {k.removeprefix("monstack.stack."): v for k, v in json.loads(proc.stdout).items()}
    for name in PREFLIGHT_FILTERS:
        assert docs[name]["doc"]["name"] == name
        assert docs[name]["examples"], name
    assert len({docs[n]["doc"]["short_description"] for n in PREFLIGHT_FILTERS}) == len(PREFLIGHT_FILTERS)


def test_filters_give_actionable_messages():
    from ansible_collections.monstack.stack.plugins.filter.preflight_filters import monstack_bad_checksums, monstack_loopback, monstack_spec_problems, monstack_unknown_vars
    assert monstack_unknown_vars(["prometheus_retention", "prometheus_port"], ["prometheus_port", "prometheus_retention_time"]) \
        == ["prometheus_retention: not a variable of this role, so it would be ignored. Did you mean prometheus_retention_time?"]
    assert monstack_bad_checksums({"amd64": "sha256:" + "a" * 64, "arm64": "A" * 64}, "x_checksums") == []
    assert monstack_bad_checksums({"amd64": "<paste>"}, "x_checksums")[0].startswith("x_checksums.amd64: '<paste>'")
    assert [monstack_loopback(a) for a in ("127.0.0.2", "::1", "[::1]", "localhost", "10.0.0.1", "mon1")] \
        == [True, True, True, True, False, False]
    assert monstack_spec_problems({"skipped": True}) == []
    assert monstack_spec_problems({"failed": True, "argument_errors": [
        "value of x_method must be one of: a, b, got: c"]}) == ["x_method: 'c' is not allowed. Fix: use one of a, b"]


def test_spec_check_on_values_of_subclassed_types():
    """Values arrive as Ansible's tagged str/dict/list subclasses; they are checked as plain ones."""
    from ansible_collections.monstack.stack.plugins.filter.preflight_filters import _plain, monstack_spec_problems

    class Tagged(str):
        pass

    class Lazy(dict):
        pass

    spec = {"x_port": {"type": "int"}, "x_rules": {"type": "list", "elements": "dict"},
            "x_method": {"type": "str", "choices": ["archive", "local"]}, "x_on": {"type": "bool"}}
    values = Lazy(x_port=9090, x_rules=[Lazy(alert=Tagged("Down"))], x_method=Tagged("zip"), x_on=True)
    plain = _plain(values)
    assert type(plain) is dict and type(plain["x_rules"][0]["alert"]) is str and plain["x_on"] is True
    assert monstack_spec_problems(values, spec) == ["x_method: 'zip' is not allowed. Fix: use one of archive, local"]
    assert monstack_spec_problems(Lazy(x_port=Tagged("nine")), spec)[0].startswith("x_port: is a str, expected int")


# ------------------------------------------------- issue 24 row 14: example vault
EXAMPLE_VALUES = ["example-sudo-password", "example-grafana-admin-password", "example-smtp-password",
                  "example-grafana-secret-key-replace-me"]


def _example_vault(vault_pass):
    """The example vault, decrypted: variable -> value."""
    import yaml
    from ansible.parsing.vault import VaultLib, VaultSecret
    secret = VaultSecret(vault_pass.read_text().strip().encode())
    text = VaultLib([("default", secret)]).decrypt((ROOT_PATH / "inventories/example/group_vars/all/vault.yml").read_bytes())
    return yaml.safe_load(text)


def test_example_vault_values_are_refused_naming_each_variable(tmp_path):
    """A copy of the example that kept the vault's public values stops in the preflight, with
    each variable that still holds one on each host that uses it, before any host is contacted."""
    dest, vault_pass = _inventory(tmp_path, allow_example_secrets=False)
    assert not (dest / "group_vars" / "all" / "zz-example-test.yml").exists()
    rc, out, flat = _run(dest, vault_pass, playbook="playbooks/preflight.yml")
    assert rc != 0, out[-3000:]
    expected = {"mon1.corp.test": ["ansible_become_password", "alertmanager_smtp_auth_password",
                                   "grafana_admin_password", "grafana_secret_key"],
                "mon2.corp.test": ["ansible_become_password", "alertmanager_smtp_auth_password"],
                "app1.corp.test": ["ansible_become_password"]}
    for host, names in expected.items():
        for name in names:
            assert f"[{host}] {name}: still holds the example inventory's value (vault_{name} of" in flat, \
                (host, name, out[-4000:])
        for name in {"alertmanager_smtp_auth_password", "grafana_admin_password", "grafana_secret_key"} - set(names):
            assert f"[{host}] {name}: still holds" not in flat
    assert "ansible-vault edit group_vars/all/vault.yml" in flat and "ansible-vault rekey" in flat
    assert "nothing has been changed on any host" in flat
    for value in EXAMPLE_VALUES:
        assert value not in out


def test_own_vault_values_pass_without_the_test_switch(tmp_path):
    dest, vault_pass = _inventory(tmp_path, allow_example_secrets=False)
    from ansible.parsing.vault import VaultLib, VaultSecret
    own = {name: f"my-own-{name}-0123456789" for name in _example_vault(vault_pass)}
    import yaml
    secret = VaultSecret(vault_pass.read_text().strip().encode())
    (dest / "group_vars" / "all" / "vault.yml").write_bytes(
        VaultLib([("default", secret)]).encrypt(yaml.safe_dump(own), secret))
    rc, out, _ = _run(dest, vault_pass, playbook="playbooks/preflight.yml")
    assert rc == 0, out[-3000:]


def test_example_secret_hashes_match_the_example_vault(tmp_path):
    """The preflight's hash list (plugins/filter/preflight_filters.py) knows every value of the
    example vault, under its variable's name."""
    from ansible_collections.monstack.stack.plugins.filter.preflight_filters import EXAMPLE_SECRETS, monstack_example_secrets
    _dest, vault_pass = _inventory(tmp_path)
    vault = _example_vault(vault_pass)
    assert sorted(vault.values()) == sorted(EXAMPLE_VALUES)
    assert {hashlib.sha256(value.encode()).hexdigest(): name for name, value in vault.items()} == EXAMPLE_SECRETS
    messages = monstack_example_secrets({"grafana_admin_password": vault["vault_grafana_admin_password"],
                                         "grafana_secret_key": "my own", "x": 1})
    assert len(messages) == 1 and messages[0].startswith(
        "grafana_admin_password: still holds the example inventory's value (vault_grafana_admin_password")
