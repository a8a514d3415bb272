"""The filters that compute the roles' derived variables (issue 26: no Jinja loops in vars/).

prometheus_shards, present_hosts, global_store_remote_write and scrape_target_files
(roles/prometheus/vars), peer_addresses (roles/alertmanager/vars),
journal_certificate_hosts (roles/journal/vars) and journal_senders (playbooks/logs.yml):
each function on its own, its registration and documentation, and the variables
rendered through Ansible for an inventory with the edge cases (no hosts, shards, absent
hosts, a store with TLS and basic auth, a blackbox_exporter on loopback or not).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from helpers import ansible_playbook, check_filter_sidecar, filter_docs

REPO = Path(__file__).resolve().parents[2]
# The plugins by the collection's name, as Ansible imports them (collections/ links to this checkout).
if str(REPO / "collections") not in sys.path:
    sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.monstack.stack.plugins.filter import global_store_remote_write as gsrw  # noqa: E402
from ansible_collections.monstack.stack.plugins.filter import journal_certificate_hosts as jch  # noqa: E402
from ansible_collections.monstack.stack.plugins.filter import journal_senders as js  # noqa: E402
from ansible_collections.monstack.stack.plugins.filter import hostport as hp  # noqa: E402
from ansible_collections.monstack.stack.plugins.filter import present_hosts as ph  # noqa: E402
from ansible_collections.monstack.stack.plugins.filter import prometheus_shards as ps  # noqa: E402
from ansible_collections.monstack.stack.plugins.filter import scrape_target_files as stf  # noqa: E402
from ansible_collections.monstack.stack.plugins.filter.scrape_targets import (  # noqa: E402
    monstack_scrape_targets)

HEADER = "# Managed by Ansible (monstack): changes here are overwritten.\n"
FILTERS = {
    "prometheus_shards": ps, "present_hosts": ph, "global_store_remote_write": gsrw, "scrape_target_files": stf,
    "peer_addresses": hp, "journal_certificate_hosts": jch, "journal_senders": js,
}


# ---------------------------------------------------------------------------
# prometheus_shards

def test_shards_of_hosts_default_minus_one_and_absent_left_out():
    hostvars = {"p1": {"prometheus_shard": 0}, "p2": {"prometheus_shard": "1"}, "p3": {},
                "p4": {"prometheus_shard": 1, "prometheus_state": "absent"}, "p5": {"prometheus_state": "present"}}
    assert ps.prometheus_shards(["p1", "p2", "p3", "p4", "p5"], hostvars) == {"p1": 0, "p2": 1, "p3": -1, "p5": -1}


def test_shards_keep_the_group_order_and_accept_no_hosts():
    assert list(ps.prometheus_shards(["b", "a"], {"a": {}, "b": {}})) == ["b", "a"]
    assert ps.prometheus_shards([], {}) == {}


@pytest.mark.parametrize("value", ["x", True, 1.5, None, [1]])
def test_a_shard_that_is_no_integer_names_the_host(value):
    with pytest.raises(AnsibleFilterError, match=r"inventory host 'p1': prometheus_shard must be an integer"):
        ps.prometheus_shards(["p1"], {"p1": {"prometheus_shard": value}})


@pytest.mark.parametrize("hosts", ["p1", None, {"p1": {}}])
def test_shards_want_a_list(hosts):
    with pytest.raises(AnsibleFilterError, match="expected a list of inventory host names"):
        ps.prometheus_shards(hosts, {})


# ---------------------------------------------------------------------------
# present_hosts

def test_present_hosts_leave_out_absent_ones_in_order():
    hostvars = {"vm1": {}, "vm2": {"victoriametrics_state": "absent"}, "vm3": {"victoriametrics_state": "present"}}
    assert ph.present_hosts(["vm3", "vm2", "vm1"], hostvars, "victoriametrics_state") == ["vm3", "vm1"]
    assert ph.present_hosts([], hostvars, "victoriametrics_state") == []


def test_present_hosts_want_a_list_and_a_variable_name():
    with pytest.raises(AnsibleFilterError, match="expected a list"):
        ph.present_hosts("vm1", {}, "victoriametrics_state")
    with pytest.raises(AnsibleFilterError, match="state_var must name a host variable"):
        ph.present_hosts(["vm1"], {}, "")


# ---------------------------------------------------------------------------
# global_store_remote_write

def test_remote_write_per_store_host_with_its_client_settings_in_order():
    clients = {
        "vm1": {"url": "https://vm1:8428", "http": {
            "basic_auth": {"username": "prometheus", "password_file": "/etc/prometheus/global_store/vm1.password"},
            "tls_config": {"ca_file": "/etc/prometheus/global_store/vm1.ca.pem"}}},
        "vm2": {"url": "http://vm2:8428", "http": {}},
    }
    out = gsrw.global_store_remote_write(["vm2", "vm1"], clients, "replica")
    assert out == [
        {"name": "global-vm2", "url": "http://vm2:8428/api/v1/write",
         "write_relabel_configs": [{"action": "labeldrop", "regex": "replica"}]},
        {"name": "global-vm1", "url": "https://vm1:8428/api/v1/write",
         "write_relabel_configs": [{"action": "labeldrop", "regex": "replica"}],
         "basic_auth": {"username": "prometheus", "password_file": "/etc/prometheus/global_store/vm1.password"},
         "tls_config": {"ca_file": "/etc/prometheus/global_store/vm1.ca.pem"}},
    ]
    # the order of the keys is the order prometheus.yml shows them in (to_nice_yaml, sort_keys=false)
    assert list(out[1]) == ["name", "url", "write_relabel_configs", "basic_auth", "tls_config"]
    assert gsrw.global_store_remote_write([], {}, "replica") == []


def test_remote_write_needs_the_client_of_each_host():
    with pytest.raises(AnsibleFilterError, match="no client settings .* for the store host 'vm9'"):
        gsrw.global_store_remote_write(["vm9"], {"vm1": {"url": "http://vm1:8428", "http": {}}}, "replica")


# ---------------------------------------------------------------------------
# scrape_target_files

NODE = {"job": "node", "group": "all", "port_var": "node_exporter_port", "default_port": 9100,
        "state_var": "node_exporter_state"}
BLACKBOX = {"job": "blackbox", "group": "prometheus", "port_var": "blackbox_exporter_port", "default_port": 9115,
            "state_var": "blackbox_exporter_state"}


def test_target_files_one_per_job_with_header_and_yaml():
    hostvars = {"a": {"monstack_environment": "prod"}, "b": {"node_exporter_port": 9101}}
    files = stf.scrape_target_files([NODE], {"all": ["a", "b"]}, hostvars)
    assert list(files) == ["node.yml"]
    assert files["node.yml"].startswith(HEADER)
    assert yaml.safe_load(files["node.yml"]) == monstack_scrape_targets(["a", "b"], hostvars, "node_exporter_port",
                                                                        9100, "node_exporter_state")
    assert "\n- labels:\n    environment: prod\n" in files["node.yml"], "to_nice_yaml with indent 2"


def test_target_files_of_a_missing_or_empty_group_or_only_absent_hosts_are_empty_lists():
    job = {"job": "grafana", "group": "grafana", "port_var": "grafana_http_port", "default_port": 3000}
    assert stf.scrape_target_files([job], {}, {}) == {"grafana.yml": HEADER + "[]\n"}
    assert stf.scrape_target_files([job], {"grafana": []}, {}) == {"grafana.yml": HEADER + "[]\n"}
    absent = stf.scrape_target_files([NODE], {"all": ["a"]}, {"a": {"node_exporter_state": "absent"}})
    assert absent == {"node.yml": HEADER + "[]\n"}
    assert stf.scrape_target_files([], {}, {}) == {}


def test_a_local_job_scrapes_only_its_own_hosts_with_their_variables():
    hostvars = {"p1": {"monstack_scrape_address": "10.0.0.1"}, "p2": {"monstack_scrape_address": "10.0.0.2"}}
    groups = {"prometheus": ["p1", "p2"], "all": ["p1", "p2"]}
    local = {"blackbox": {"p1": {"monstack_scrape_address": "127.0.0.1", "blackbox_exporter_port": 9115,
                                 "blackbox_exporter_state": "present", "monstack_environment": ""}}}
    files = stf.scrape_target_files([NODE, BLACKBOX], groups, hostvars, local=local)
    assert yaml.safe_load(files["blackbox.yml"]) == [
        {"targets": ["127.0.0.1:9115"], "labels": {"instance": "p1", "host": "p1"}}]
    assert len(yaml.safe_load(files["node.yml"])) == 2, "other jobs keep their group"
    remote = stf.scrape_target_files([BLACKBOX], groups, hostvars)
    assert [g["targets"] for g in yaml.safe_load(remote["blackbox.yml"])] == [["10.0.0.1:9115"], ["10.0.0.2:9115"]]
    absent = dict(local, blackbox={"p1": {**local["blackbox"]["p1"], "blackbox_exporter_state": "absent"}})
    assert stf.scrape_target_files([BLACKBOX], groups, hostvars, local=absent) == {"blackbox.yml": HEADER + "[]\n"}


def test_a_job_without_its_keys_is_named():
    with pytest.raises(AnsibleFilterError, match=r"job #2 .* lacks group, default_port"):
        stf.scrape_target_files([NODE, {"job": "x", "port_var": "p"}], {}, {})


# ---------------------------------------------------------------------------
# peer_addresses

def test_peers_are_the_other_members_with_their_address_and_port():
    hostvars = {"am1": {}, "am2": {"monstack_scrape_address": "2001:db8::2", "alertmanager_cluster_port": 9999},
                "am3": {"monstack_scrape_address": "10.0.0.3"}}
    members = ["am1", "am2", "am3"]
    assert hp.peer_addresses(members, hostvars, "am1", "alertmanager_cluster_port", 9094) == [
        "[2001:db8::2]:9999", "10.0.0.3:9094"]
    assert hp.peer_addresses(members, hostvars, "am2", "alertmanager_cluster_port", 9094) == [
        "am1:9094", "10.0.0.3:9094"]
    assert hp.peer_addresses(["am1"], hostvars, "am1", "alertmanager_cluster_port", 9094) == []
    assert hp.peer_addresses([], {}, "am1", "alertmanager_cluster_port", 9094) == []


def test_a_bad_peer_address_or_port_names_the_host_and_variable():
    with pytest.raises(AnsibleFilterError, match=r"inventory host 'am2': alertmanager_cluster_port"):
        hp.peer_addresses(["am1", "am2"], {"am2": {"alertmanager_cluster_port": 0}}, "am1",
                          "alertmanager_cluster_port", 9094)
    with pytest.raises(AnsibleFilterError, match=r"inventory host 'am2': monstack_scrape_address"):
        hp.peer_addresses(["am2"], {"am2": {"monstack_scrape_address": "http://am2"}}, "am1",
                          "alertmanager_cluster_port", 9094)


# ---------------------------------------------------------------------------
# journal_certificate_hosts and journal_senders

def test_certificate_hosts_and_their_names():
    hostvars = {
        "log1": {"monstack_scrape_address": "10.0.0.5", "journal_cert_extra_sans": ["DNS:logs.example.com", "DNS:LOG1"]},
        "app1": {"journal_tls_ca_file": "/etc/pki/ca.pem"},
        "app2": {"monstack_scrape_address": "app2.example.com"},
        "app3": {"monstack_scrape_address": "2001:db8::3"},
        "app4": {"monstack_scrape_address": "::ffff:10.0.0.4"},
        "app5": {},
    }
    assert jch.journal_certificate_hosts(list(hostvars), hostvars) == [
        {"name": "log1", "sans": ["DNS:log1", "IP:10.0.0.5", "DNS:logs.example.com"]},
        {"name": "app2", "sans": ["DNS:app2", "DNS:app2.example.com"]},
        {"name": "app3", "sans": ["DNS:app3", "IP:2001:db8::3"]},
        {"name": "app4", "sans": ["DNS:app4", "IP:::ffff:10.0.0.4"]},
        {"name": "app5", "sans": ["DNS:app5"]},
    ]
    assert jch.journal_certificate_hosts([], {}) == []


def test_extra_names_must_be_a_list():
    with pytest.raises(AnsibleFilterError, match=r"inventory host 'log1': journal_cert_extra_sans must be a list"):
        jch.journal_certificate_hosts(["log1"], {"log1": {"journal_cert_extra_sans": "DNS:x"}})


def test_senders_are_the_scrape_address_and_ansible_host_without_repeats():
    hostvars = {"a": {"monstack_scrape_address": "10.0.0.1", "ansible_host": "a.example.com"},
                "b": {"monstack_scrape_address": "B.example.com", "ansible_host": "b.example.com"},
                "c": {"monstack_scrape_address": "", "ansible_host": "10.0.0.3"}, "d": {}}
    assert js.journal_senders(list(hostvars), hostvars) == {
        "a": ["10.0.0.1", "a.example.com"], "b": ["B.example.com"], "c": ["10.0.0.3"], "d": []}
    assert js.journal_senders([], {}) == {}


# ---------------------------------------------------------------------------
# Registration and documentation

@pytest.mark.parametrize("name", sorted(FILTERS))
def test_each_filter_is_registered_and_documented(name):
    check_filter_sidecar(FILTERS[name], name)


def test_ansible_doc_renders_each_filter(tmp_path):
    docs = filter_docs(sorted(FILTERS), tmp_path)
    for name in FILTERS:
        assert docs[name]["doc"]["name"] == name
        assert docs[name]["examples"], name


# ---------------------------------------------------------------------------
# No Jinja statements in the roles' vars/ (issue 26)

# Still Jinja loops, each replaced by another branch of issue 26: remove an entry once it is gone.
PENDING: set[tuple[str, str]] = set()  # none left: every role's vars/ is free of Jinja statements


def _jinja_statements():
    found = set()
    for path in sorted(REPO.glob("roles/*/vars/*.yml")) + [REPO / "playbooks" / "logs.yml"]:
        text = path.read_text()
        if "{%" not in text:
            continue
        data = yaml.safe_load(text)
        items = data.items() if isinstance(data, dict) else [("tasks", data)]
        for name, value in items:
            if "{%" in json.dumps(value):
                found.add((str(path.relative_to(REPO)), name))
    return found


def test_no_jinja_statements_in_vars_but_the_pending_ones():
    assert _jinja_statements() <= PENDING


# ---------------------------------------------------------------------------
# The variables through Ansible: the roles' defaults below the inventory, their vars above it

LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """prometheus (4 hosts in 2 shards, one absent; p1 sees no store and no Alertmanager group),
    alertmanager (3 members), journal (every host) and logs.yml's senders, rendered for one inventory."""
    tmp = tmp_path_factory.mktemp("vars-filters")
    out = tmp / "out"
    out.mkdir()
    (tmp / "extra.tmpl").write_text('{{ define "extra" }}x{{ end }}\n')
    hosts = {
        "p1": {"prometheus_shard": 0, "monstack_scrape_address": "10.0.0.1", "ansible_host": "10.9.9.1",
               "prometheus_global_store_group": "nostore", "prometheus_alertmanager_group": "noalertmanager"},
        "p2": {"prometheus_shard": 0, "monstack_scrape_address": "2001:db8::2", "blackbox_exporter_listen_address": "::"},
        "p3": {"prometheus_shard": 1, "prometheus_remote_write": [{"url": "http://mine:9201/write"}]},
        "p4": {"prometheus_shard": 1, "prometheus_state": "absent"},
        "vm1": {"victoriametrics_tls_cert": "CERT", "victoriametrics_tls_ca_cert": "CA", "victoriametrics_port": 8443,
                "victoriametrics_http_auth_username": "prom", "victoriametrics_http_auth_password": "pw"},
        "vm2": {"victoriametrics_state": "absent"},
        "vm3": {"monstack_scrape_address": "vm3.example.com"},
        "am1": {"alertmanager_templates": [str(tmp / "extra.tmpl")]},
        "am2": {"monstack_scrape_address": "2001:db8::5", "alertmanager_cluster_port": 9999},
        "am3": {"alertmanager_state": "absent"},
        "log1": {"monstack_scrape_address": "fe80::1", "journal_cert_extra_sans": ["DNS:logs.example.com", "DNS:LOG1"]},
        "app1": {"journal_tls_ca_file": "/x/ca.pem", "ansible_host": "app1.example.com"},
    }
    groups = {"prometheus": ["p1", "p2", "p3", "p4"], "victoriametrics": ["vm1", "vm2", "vm3"],
              "alertmanager": ["am1", "am2", "am3"], "logs": ["log1"], "apps": ["app1"]}
    inventory = {"all": {"vars": {"monstack_environment": "edge", "prometheus_global_store_group": "victoriametrics"},
                         "hosts": {name: {**LOCAL, **hvars} for name, hvars in hosts.items()},
                         "children": {group: {"hosts": {name: {} for name in members}}
                                      for group, members in groups.items()}}}
    defaults = {}
    for path in ("alertmanager/defaults/main.yml", "journal/defaults/main.yml", "victoriametrics/defaults/main.yml",
                 "prometheus/defaults/main/main.yml", "prometheus/defaults/main/alert_rules.yml"):
        defaults.update(yaml.safe_load((REPO / "roles" / path).read_text()))
    (tmp / "group_vars").mkdir()
    (tmp / "group_vars" / "all.yml").write_text(yaml.safe_dump(defaults))
    (tmp / "files").symlink_to(REPO / "roles" / "alertmanager" / "files")  # the lookups of monstack.tmpl

    def dump(role: str, names: list[str]) -> dict:
        return {"name": "Dump", "ansible.builtin.copy": {
            "content": "{{ {%s} | to_json }}" % ", ".join(f"'{n}': {n}" for n in names),
            "dest": f"{out}/{role}-{{{{ inventory_hostname }}}}.json", "mode": "0600"}}

    senders = yaml.safe_load((REPO / "playbooks" / "logs.yml").read_text())[0]["tasks"][0][
        "monstack.stack.journal_query"]["senders"]
    plays = [
        {"name": "Prometheus", "hosts": "prometheus", "gather_facts": False,
         "vars_files": [str(REPO / "roles/prometheus/vars/main.yml")],
         "tasks": [dump("prometheus", ["prometheus_shard_of_hosts", "prometheus_shard_count", "prometheus_replicas",
                                       "prometheus_global_store_hosts", "prometheus_all_remote_write",
                                       "prometheus_target_files"])]},
        {"name": "Alertmanager", "hosts": "alertmanager", "gather_facts": False,
         "vars_files": [str(REPO / "roles/alertmanager/vars/main.yml")],
         "tasks": [dump("alertmanager", ["alertmanager_cluster_peers", "alertmanager_template_texts"])]},
        {"name": "Journal", "hosts": "all", "gather_facts": False,
         "vars_files": [str(REPO / "roles/journal/vars/main.yml")],
         "tasks": [dump("journal", ["journal_ca_hosts"])]},
        {"name": "Logs", "hosts": "log1", "gather_facts": False, "vars": {"senders": senders},
         "tasks": [dump("logs", ["senders"])]},
    ]
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    (tmp / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCAL_TEMP=str(tmp / ".ansible-tmp"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run([ansible_playbook(), "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml")], cwd=tmp,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return lambda role, host: json.loads((out / f"{role}-{host}.json").read_text())


def test_rendered_shards_replicas_and_an_absent_server(rendered):
    for host, replicas in (("p1", ["p1", "p2"]), ("p2", ["p1", "p2"]), ("p3", ["p3"])):
        values = rendered("prometheus", host)
        assert values["prometheus_shard_of_hosts"] == {"p1": 0, "p2": 0, "p3": 1}, "p4 is absent"
        assert values["prometheus_shard_count"] == 2
        assert values["prometheus_replicas"] == replicas


def test_rendered_store_and_remote_write(rendered):
    p1, p3 = rendered("prometheus", "p1"), rendered("prometheus", "p3")
    assert p1["prometheus_global_store_hosts"] == [] and p1["prometheus_all_remote_write"] == []
    assert p3["prometheus_global_store_hosts"] == ["vm1", "vm3"]
    drop = [{"action": "labeldrop", "regex": "replica"}]
    assert p3["prometheus_all_remote_write"] == [
        {"url": "http://mine:9201/write"},
        {"name": "global-vm1", "url": "https://vm1:8443/api/v1/write", "write_relabel_configs": drop,
         "basic_auth": {"username": "prom", "password_file": "/etc/prometheus/global_store/vm1.password"},
         "tls_config": {"ca_file": "/etc/prometheus/global_store/vm1.ca.pem"}},
        {"name": "global-vm3", "url": "http://vm3.example.com:8428/api/v1/write", "write_relabel_configs": drop}]


def test_rendered_target_files(rendered):
    p1, p2, p3 = (rendered("prometheus", host)["prometheus_target_files"] for host in ("p1", "p2", "p3"))
    assert sorted(p3) == ["alertmanager.yml", "alertmanagers.yml", "blackbox.yml", "cadvisor.yml",
                          "deployment_stores.yml", "grafana.yml", "node.yml", "prometheus.yml", "victoriametrics.yml"]
    assert sorted(p1) == sorted(set(p3) - {"victoriametrics.yml"}), "no store job without store hosts"
    assert all(text.startswith(HEADER) for text in p3.values())
    assert p3["grafana.yml"] == HEADER + "[]\n", "an empty group"
    assert p1["alertmanagers.yml"] == HEADER + "[]\n", "a group that does not exist"
    targets = {name[:-4]: [g["targets"][0] for g in yaml.safe_load(text)] for name, text in p3.items()}
    assert targets["alertmanagers"] == ["am1:9093", "[2001:db8::5]:9093"], "am3 is absent"
    assert targets["victoriametrics"] == ["vm1:8443", "vm3.example.com:8428"]
    assert targets["prometheus"] == ["10.0.0.1:9090", "[2001:db8::2]:9090", "p3:9090"]
    # blackbox_exporter on loopback (the default): each Prometheus scrapes its own only; p2's listens on
    # all, and p2 scrapes the group's (p4's too: its blackbox_exporter_state is not absent)
    assert targets["blackbox"] == ["127.0.0.1:9115"]
    assert yaml.safe_load(p3["blackbox.yml"])[0]["labels"] == {"instance": "p3", "host": "p3", "environment": "edge"}
    assert [g["targets"][0] for g in yaml.safe_load(p2["blackbox.yml"])] == [
        "10.0.0.1:9115", "[2001:db8::2]:9115", "p3:9115", "p4:9115"]


def test_rendered_cluster_peers_and_templates(rendered):
    assert rendered("alertmanager", "am1")["alertmanager_cluster_peers"] == "[2001:db8::5]:9999,am3:9094"
    assert rendered("alertmanager", "am2")["alertmanager_cluster_peers"] == "am1:9094,am3:9094"
    texts = rendered("alertmanager", "am1")["alertmanager_template_texts"]
    assert list(texts) == ["monstack.tmpl", "extra.tmpl"]
    # entries the component action reads as they are (plugins/action/component.py), the
    # shipped one from the role's files/
    assert texts["extra.tmpl"] == {"src": texts["extra.tmpl"]["src"]}
    assert Path(texts["extra.tmpl"]["src"]).read_text() == '{{ define "extra" }}x{{ end }}\n'
    assert texts["monstack.tmpl"] == {"src": "monstack.tmpl"}
    assert (REPO / "roles/alertmanager/files/monstack.tmpl").is_file()
    assert list(rendered("alertmanager", "am2")["alertmanager_template_texts"]) == ["monstack.tmpl"]


def test_rendered_journal_certificates_and_log_senders(rendered):
    ca_hosts = rendered("journal", "app1")["journal_ca_hosts"]
    assert "app1" not in [entry["name"] for entry in ca_hosts], "app1 brings its own CA"
    by_name = {entry["name"]: entry["sans"] for entry in ca_hosts}
    assert by_name["log1"] == ["DNS:log1", "IP:fe80::1", "DNS:logs.example.com"]
    assert by_name["p1"] == ["DNS:p1", "IP:10.0.0.1"] and by_name["vm3"] == ["DNS:vm3", "DNS:vm3.example.com"]
    assert by_name["vm1"] == ["DNS:vm1"]
    senders = rendered("logs", "log1")["senders"]
    assert senders["p1"] == ["10.0.0.1", "10.9.9.1"] and senders["app1"] == ["app1.example.com"]
    assert senders["vm1"] == [] and senders["log1"] == ["fe80::1"]
