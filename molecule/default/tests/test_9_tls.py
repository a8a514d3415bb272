"""The links between the stack's own servers are encrypted and authenticated (issue 24, row 12).

The scenario turns them on in molecule/shared/group_vars/all/tls.yml with certificates from the
test CA (molecule/shared/prepare.yml). Runs after test_9_shards (pytest sorts test_9_tls.py after
it), which leaves VictoriaMetrics on HOSTS[2] with every Prometheus shard writing to it:
  - VictoriaMetrics refuses plain HTTP and anonymous requests; its password is in no unit, no
    process argument, only in a 0640 file;
  - remote_write samples of every shard still arrive (https, basic auth, the test CA);
  - the Alertmanager pair gossips over mutual TLS: both members see each other, the cluster
    port presents the member's certificate signed by the test CA.
"""
from __future__ import annotations

import time

import requests

from conftest import HOSTS, MONITOR, TEST_CA, VM_AUTH, container_ip, sh

VM = HOSTS[2]
PEER = "monstack-app1"  # the other Alertmanager (molecule.yml)


def vm_url(path: str) -> str:
    return f"https://{container_ip(VM)}:8428{path}"


def test_victoriametrics_refuses_plain_http_and_anonymous_requests():
    plain = requests.get(f"http://{container_ip(VM)}:8428/api/v1/query", params={"query": "up"}, timeout=10)
    assert plain.status_code == 400, plain.text[:200]  # "client sent an HTTP request to an HTTPS server"
    anonymous = requests.get(vm_url("/api/v1/query"), params={"query": "up"}, verify=TEST_CA, timeout=10)
    assert anonymous.status_code == 401
    wrong = requests.get(vm_url("/api/v1/query"), params={"query": "up"}, verify=TEST_CA, timeout=10,
                         auth=(VM_AUTH[0], "wrong"))
    assert wrong.status_code == 401


def test_victoriametrics_password_stays_in_its_file():
    password = VM_AUTH[1]
    assert password not in sh(VM, "systemctl cat victoriametrics").stdout
    assert password not in sh(VM, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value victoriametrics)/cmdline").stdout
    assert "-httpAuth.password=file:///etc/victoriametrics/secrets/http_auth_password" in \
        sh(VM, "systemctl cat victoriametrics").stdout
    listing = sh(VM, "stat -c '%n %a %U %G' /etc/victoriametrics/secrets/*").stdout.split("\n")
    assert sorted(line.split()[0].rsplit("/", 1)[1] for line in listing if line) == \
        ["http_auth_password", "tls.crt", "tls.key"]
    assert all(line.split()[1:] == ["640", "root", "victoriametrics"] for line in listing if line), listing


def test_remote_write_samples_arrive_over_tls():
    """Every shard's newest `up` sample reached VictoriaMetrics within the last minute."""
    shards = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = requests.get(vm_url("/api/v1/query"), verify=TEST_CA, auth=VM_AUTH, timeout=10,
                              params={"query": 'max by (shard) (timestamp(up{job="node"})) > time() - 60'}).json()
        shards = {series["metric"].get("shard") for series in answer["data"]["result"]}
        if len(shards) >= 2:
            break
        time.sleep(5)
    assert len(shards) >= 2, f"fresh samples only from shards {shards}"
    # and the store's own metrics are scraped (by the shard that has the target) over https
    # with basic auth
    store = []
    for host in HOSTS:
        targets = requests.get(f"http://{container_ip(host)}:9090/api/v1/targets", timeout=10).json()
        store += [t for t in targets["data"]["activeTargets"] if t["labels"]["job"] == "victoriametrics"]
    assert store and all(t["scrapeUrl"].startswith("https://") for t in store), store


def test_alertmanager_pair_gossips_over_mutual_tls():
    for host in (MONITOR, PEER):
        unit = sh(host, "systemctl cat alertmanager").stdout
        assert "--cluster.tls-config=/etc/alertmanager/cluster-tls/cluster-tls.yml" in unit, host
        mode = sh(host, "stat -c '%a %U %G' /etc/alertmanager/cluster-tls/tls.key").stdout.split()
        assert mode == ["640", "root", "alertmanager"], (host, mode)
    deadline, peers = time.monotonic() + 90, []
    while time.monotonic() < deadline:
        status = requests.get(f"http://{container_ip(MONITOR)}:9093/api/v2/status", timeout=10).json()
        peers = status["cluster"].get("peers") or []
        if len(peers) == 2 and status["cluster"]["status"] == "ready":
            break
        time.sleep(3)
    assert len(peers) == 2, peers
    # The peer's cluster port speaks TLS with its certificate from the test CA, and accepts
    # this member's client certificate.
    tls = "/etc/alertmanager/cluster-tls"
    out = sh(MONITOR, f"openssl s_client -connect {container_ip(PEER)}:9094 -CAfile {tls}/ca.crt "
                      f"-cert {tls}/tls.crt -key {tls}/tls.key -verify_return_error </dev/null 2>&1",
             check=False).stdout
    assert "Verify return code: 0 (ok)" in out and f"CN = {PEER}" in out, out[-2000:]
