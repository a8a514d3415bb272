"""plugins/filter/hostport.py: host:port with IPv6 brackets, and the local address of a listener."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.filter import hostport as hp
from helpers import check_filter_sidecar, filter_docs, play_results
from ansible_collections.monstack.stack.plugins.filter.hostport import monstack_hostport, monstack_local_host

REPO = Path(__file__).resolve().parents[2]
FILTERS = ["hostport", "local_endpoint", "local_host", "service_clients",
           "service_endpoint", "peer_addresses"]


@pytest.mark.parametrize("address, port, expected", [
    ("mon1.example.com", 9093, "mon1.example.com:9093"),
    ("mon1.example.com.", 9093, "mon1.example.com.:9093"),
    ("app_1", 80, "app_1:80"),
    ("10.0.0.5", 9100, "10.0.0.5:9100"),
    ("0.0.0.0", 9090, "0.0.0.0:9090"),
    ("2001:db8::1", 9093, "[2001:db8::1]:9093"),
    ("::", 9100, "[::]:9100"),
    ("::1", "3000", "[::1]:3000"),
    ("[2001:db8::1]", 9094, "[2001:db8::1]:9094"),
    ("[::]", 9094, "[::]:9094"),
    ("fe80::1%eth0", 9100, "[fe80::1%eth0]:9100"),
    ("::ffff:192.0.2.1", 9100, "[::ffff:192.0.2.1]:9100"),
    ("  10.0.0.5 ", " 9100 ", "10.0.0.5:9100"),
    ("", 9100, ":9100"),
    ("h", 1, "h:1"),
    ("h", 65535, "h:65535"),
])
def test_hostport(address, port, expected):
    assert monstack_hostport(address, port) == expected


def test_hostport_keeps_the_address_text():
    # no normalisation: the value a person wrote stays recognisable in flags and files
    assert monstack_hostport("2001:DB8:0:0::1", 80) == "[2001:DB8:0:0::1]:80"
    assert monstack_hostport("Mon1.Example.COM", 80) == "Mon1.Example.COM:80"


@pytest.mark.parametrize("address, message", [
    ("mon1:9093", "is not an IPv6 address; give the port separately"),
    ("10.0.0.5:9100", "is not an IPv6 address"),
    ("[mon1]", "has brackets but no IPv6 address inside them"),
    ("[10.0.0.5]", "has brackets but no IPv6 address"),
    ("[2001:db8::1]:9093", "is not an IPv6 address"),
    ("http://mon1", "is not an IPv6 address"),
    ("mon1/metrics", "is not a host name or an IP address"),
    ("mon 1", "is not a host name or an IP address"),
    ("-mon1", "is not a host name or an IP address"),
])
def test_hostport_refuses_what_is_not_an_address(address, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)) as err:
        monstack_hostport(address, 80)
    assert repr(address) in str(err.value), "the message names the value"
    assert str(err.value).startswith("hostport: ")


@pytest.mark.parametrize("address", [None, 10, ["mon1"], {"host": "mon1"}])
def test_hostport_refuses_other_types(address):
    with pytest.raises(AnsibleFilterError, match="the address must be a string"):
        monstack_hostport(address, 80)


@pytest.mark.parametrize("port", [0, 65536, -1, "", "http", "80a", None, True, False, 9.5, [80]])
def test_hostport_refuses_bad_ports(port):
    with pytest.raises(AnsibleFilterError, match=r"the port must be a number 1-65535, got "):
        monstack_hostport("mon1", port)


def test_hostport_accepts_integral_floats_and_digit_strings():
    assert monstack_hostport("mon1", 9090.0) == "mon1:9090"
    assert monstack_hostport("mon1", "09090") == "mon1:9090"


@pytest.mark.parametrize("address, expected", [
    ("", "127.0.0.1"),
    ("0.0.0.0", "127.0.0.1"),
    ("::", "::1"),
    ("[::]", "::1"),
    ("0:0:0:0:0:0:0:0", "::1"),
    ("127.0.0.1", "127.0.0.1"),
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("10.0.0.5", "10.0.0.5"),
    ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("mon1.example.com", "mon1.example.com"),
    ("localhost", "localhost"),
])
def test_local_host(address, expected):
    assert monstack_local_host(address) == expected


def test_local_host_then_hostport():
    assert monstack_hostport(monstack_local_host("::"), 9093) == "[::1]:9093"
    assert monstack_hostport(monstack_local_host(""), 3000) == "127.0.0.1:3000"
    assert monstack_hostport(monstack_local_host("[2001:db8::5]"), 9090) == "[2001:db8::5]:9090"


@pytest.mark.parametrize("address", ["mon1:80", "[mon1]", None, "a b"])
def test_local_host_refuses_what_is_not_an_address(address):
    with pytest.raises(AnsibleFilterError, match=r"^local_host: "):
        monstack_local_host(address)


# ---------------------------------------------------------------------------
# registration, documentation, a real template run

@pytest.mark.parametrize("name", FILTERS)
def test_each_filter_is_registered_and_documented(name):
    check_filter_sidecar(hp, name)


def test_the_module_registers_exactly_the_documented_filters():
    assert sorted(hp.FilterModule().filters()) == sorted(FILTERS)


def test_ansible_doc_renders_each_filter(tmp_path):
    docs = filter_docs(FILTERS, tmp_path)
    for name in FILTERS:
        assert docs[name]["doc"]["name"] == name
        assert docs[name]["examples"], name


def test_ansible_runs_the_filters(tmp_path):
    (tmp_path / "play.yml").write_text("""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: join
      ansible.builtin.debug:
        msg: "{{ ['2001:db8::1', '[::1]', 'mon1', ''] | map('monstack.stack.hostport', 9093) | list
                 + [':: ' | trim | monstack.stack.local_host | monstack.stack.hostport('9090')] }}"
    - name: refuse
      ansible.builtin.debug:
        msg: "{{ 'mon1:80' | monstack.stack.hostport(9093) }}"
      ignore_errors: true
""")
    joined, refused = (hosts["localhost"] for hosts in play_results(tmp_path, "play.yml", "-i", "localhost,",
                                                                    "-c", "local"))
    assert joined["msg"] == ["[2001:db8::1]:9093", "[::1]:9093", "mon1:9093", ":9093", "[::1]:9090"]
    assert refused["failed"]
    assert "'mon1:80' is not an IPv6 address; give the port separately" in refused["msg"]


def test_no_role_or_playbook_brackets_addresses_by_hand():
    """Every host:port goes through hostport: no copy of the bracket logic."""
    pattern = re.compile(r"""'\['\s*~|~\s*'\]'|if\s+':'\s+in\s""")
    found = []
    for root in ("roles", "playbooks"):
        for path in sorted((REPO / root).rglob("*")):
            if path.suffix in {".yml", ".yaml", ".j2"} and path.is_file():
                for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if pattern.search(line) and "inventory_hostname ~ '] '" not in line:
                        found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "use hostport instead:\n" + "\n".join(found)
