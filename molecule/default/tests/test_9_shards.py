"""Two Prometheus shards and a VictoriaMetrics global store, then a third shard.

Runs after test_9_ha (pytest sorts test_9_shards.py last): it turns the
scenario's Prometheus servers into shards with an extra inventory file, like
a user editing the inventory:

  phase A  hosts[0] shard 0, hosts[1] shard 1, hosts[2] VictoriaMetrics
           (the exporters, victoriametrics and prometheus playbooks): every node_exporter target is scraped by exactly one
           shard, the one tools/shard_plan.py predicts; so are deployment
           file_sd targets; every host's `up` reaches VictoriaMetrics exactly
           once (one replica per shard here), and the dashboards' queries
           run against VictoriaMetrics' Prometheus API (the "Global" data
           source) and return every host;
           Then a single-record registration (playbooks/deployments.yml) lands
           in the record stores of shards 0 and 1, the only Prometheus hosts;
  phase B  hosts[2] becomes shard 2 (playbooks/exporters.yml and prometheus.yml): targets move
           to the predicted shard, none lost, none doubled, and the existing
           shards reload, never restart; a rerun changes nothing. The new
           shard received the record store (deployment_store_copy): the
           registration's targets that hash to shard 2 are scraped there and
           the run reports no orphaned target. With the copy off (a fresh
           store on hosts[2]) the run names those targets and the alert
           DeploymentTargetsOrphaned is pending on the shards; on again, they
           are back.

Hosts come from MONSTACK_SHARD_HOSTS (three comma-separated names, default
the scenario's); outside molecule set MOLECULE_INVENTORY_FILE to an
inventory of those hosts (e.g. a copy of the scenario's).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests

from conftest import ROOT, TEST_CA, VM_AUTH, container_ip, playbook, recap_changed, sh

sys.path.insert(0, str(ROOT / "tools"))
from dashboard_queries import extract_queries, run_queries  # noqa: E402

from shard_plan import shard_of  # noqa: E402

HOSTS = os.environ.get("MONSTACK_SHARD_HOSTS", "monstack-monitor,monstack-app1,monstack-app2").split(",")
VM = HOSTS[2]
# The parts of site.yml that sharding changes: one run, one preflight. The exporters are there
# already; their units let the new Prometheus hosts connect (docs/network.md).
PLAYBOOKS = ("playbooks/exporters.yml", "playbooks/victoriametrics.yml", "playbooks/prometheus.yml")
DEPLOY_FILE = "/etc/prometheus/file_sd/deployments/shard-test--verify.json"
DEPLOY_TARGETS = [f"127.0.0.1:{40000 + i}" for i in range(120)]  # loopback: nothing leaves the host
# The single-record registration made before shard 2 exists (issue 27): targets on the test
# hosts' own addresses (ports nothing listens on), through playbooks/deployments.yml.
ORPHAN_TEST = {"service": "orphan-test", "environment": "verify"}
ORPHANS_NONE = "Orphaned deployment targets (scraped by no Prometheus): 0"


def inventory(tmp_path: Path, shards: dict[str, int]) -> str:
    """Shards as host variables; a host of HOSTS that is no shard has no Prometheus (state absent)."""
    lines = ["all:", "  vars:", "    ansible_connection: community.docker.docker", "prometheus:", "  hosts:"]
    lines += [f"    {host}:\n      prometheus_shard: {shard}" for host, shard in shards.items()]
    lines += [f"    {host}:\n      prometheus_state: absent\n      blackbox_exporter_state: absent"
              for host in HOSTS if host not in shards]
    lines += ["victoriametrics:", "  hosts:", f"    {VM}:"]
    path = tmp_path / f"shards-{len(shards)}.yml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def api(host: str, port: int, path: str, **params):
    # VictoriaMetrics serves https with basic auth in this scenario (group_vars/all/tls.yml)
    tls = dict(auth=VM_AUTH, verify=TEST_CA) if port == 8428 else {}
    scheme = "https" if tls else "http"
    resp = requests.get(f"{scheme}://{container_ip(host)}:{port}{path}", params=params, timeout=30, **tls)
    resp.raise_for_status()
    return resp.json()["data"]


def targets(host: str) -> dict[str, set[str]]:
    """job -> addresses of the active targets of one Prometheus."""
    out: dict[str, set[str]] = {}
    for t in api(host, 9090, "/api/v1/targets", state="active")["activeTargets"]:
        out.setdefault(t["labels"]["job"], set()).add(t["discoveredLabels"]["__address__"])
    return out


def start_time(host: str) -> str:
    return sh(host, "systemctl show -p ExecMainStartTimestampMonotonic --value prometheus").stdout.strip()


def reload_stamp(host: str) -> str:
    text = requests.get(f"http://{container_ip(host)}:9090/metrics", timeout=30).text
    return next(line.split()[1] for line in text.splitlines()
                if line.startswith("prometheus_config_last_reload_success_timestamp_seconds "))


def write_deployment_targets(shard_hosts) -> None:
    """A deployment record's file_sd file, as playbooks/deployments.yml writes it, on every shard."""
    content = json.dumps([{"targets": DEPLOY_TARGETS, "labels": {"service": "shard-test", "environment": "verify"}}])
    for host in shard_hosts:
        sh(host, f"printf '%s' '{content}' > {DEPLOY_FILE}.tmp && chgrp prometheus {DEPLOY_FILE}.tmp "
                 f"&& chmod 0640 {DEPLOY_FILE}.tmp && mv {DEPLOY_FILE}.tmp {DEPLOY_FILE}")


def shard_targets(host: str) -> dict[str, set[str]]:
    """targets(host), the deployments job narrowed to this test's own file: the records that
    earlier tests registered on the monitor alone are not on the other shards' hosts."""
    seen = targets(host)
    seen["deployments"] = seen.get("deployments", set()) & set(DEPLOY_TARGETS)
    return seen


def wait_for_split(shards: dict[str, int], timeout: float = 120):
    """Poll until every shard's node and deployment targets are exactly the predicted ones."""
    count = len(set(shards.values()))
    want_node = {host: {f"{h}:9100" for h in HOSTS if shard_of(f"{h}:9100", count) == shards[host]} for host in shards}
    want_deploy = {host: {a for a in DEPLOY_TARGETS if shard_of(a, count) == shards[host]} for host in shards}
    deadline, seen = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        seen = {host: shard_targets(host) for host in shards}
        if all(seen[h].get("node", set()) == want_node[h] and seen[h].get("deployments", set()) == want_deploy[h]
               for h in shards):
            break
        time.sleep(3)
    return seen, want_node, want_deploy


def check_split(shards: dict[str, int]) -> None:
    seen, want_node, want_deploy = wait_for_split(shards)
    for job, want in (("node", want_node), ("deployments", want_deploy)):
        got = {host: seen[host].get(job, set()) for host in shards}
        wrong = {host: {"extra": sorted(got[host] - want[host]), "missing": sorted(want[host] - got[host])}
                 for host in shards if got[host] != want[host]}
        assert not wrong, (job, wrong)
        every = [a for addresses in got.values() for a in addresses]
        assert len(every) == len(set(every)), f"{job}: a target is scraped by two shards"
        expected = {f"{h}:9100" for h in HOSTS} if job == "node" else set(DEPLOY_TARGETS)
        assert set(every) == expected, f"{job}: targets lost: {expected - set(every)}"


def vm_up_series(count: int, timeout: float = 180) -> dict[str, list[dict]]:
    """instance -> the `up{job="node"}` series VictoriaMetrics holds now, once every host has
    one, from its predicted shard (after a reshard the old shard's series lasts until its
    staleness marker arrives, and the new shard's first sample may come after it)."""
    deadline, by_instance = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        by_instance = {}
        for series in api(VM, 8428, "/api/v1/query", query='up{job="node"}')["result"]:
            by_instance.setdefault(series["metric"]["instance"], []).append(series["metric"])
        if sorted(by_instance) == sorted(HOSTS) and all(
                [s.get("shard") for s in series] == [str(shard_of(f"{host}:9100", count))]
                for host, series in by_instance.items()):
            break
        time.sleep(5)
    return by_instance


def check_global_store(shards: dict[str, int]) -> None:
    count = len(set(shards.values()))
    by_instance = vm_up_series(count)
    assert sorted(by_instance) == sorted(HOSTS), by_instance
    for host, series in by_instance.items():
        assert len(series) == 1, f"{host}: up reaches VictoriaMetrics {len(series)} times: {series}"
        assert series[0]["shard"] == str(shard_of(f"{host}:9100", count)), series
        assert "replica" not in series[0], "one replica per shard: no replica label"


def test_two_shards_and_a_global_store(tmp_path):
    shards = {HOSTS[0]: 0, HOSTS[1]: 1}
    run = playbook(*PLAYBOOKS, extra_inventory=inventory(tmp_path, shards))
    assert run.returncode == 0, run.stdout[-4000:]
    for host, shard in shards.items():
        config = api(host, 9090, "/api/v1/status/config")["yaml"]
        assert f"shard: \"{shard}\"" in config and "replica:" not in config, config[:800]
        assert "action: hashmod" in config and "modulus: 2" in config
        assert f"url: https://{VM}:8428/api/v1/write" in config
    write_deployment_targets(shards)
    check_split(shards)
    check_global_store(shards)
    # VictoriaMetrics' unit: the hardened sandbox, its own user, the checked flags
    unit = sh(VM, "systemctl cat victoriametrics").stdout
    assert "User=victoriametrics" in unit and "ProtectSystem=strict" in unit and "NoNewPrivileges=yes" in unit
    assert "-dedup.minScrapeInterval=" in unit and "-retentionPeriod=" in unit
    assert sh(VM, "stat -c %a /etc/victoriametrics/flags").stdout.strip() == "640"


def test_the_dashboards_run_against_the_global_store():
    """What the Grafana data source "Global" (uid monstack-prometheus) would send: every
    dashboard query through VictoriaMetrics' Prometheus API, every host in the host list."""
    url = f"https://{container_ip(VM)}:8428"
    queries = extract_queries(ROOT / "roles" / "grafana" / "files" / "dashboards")
    results = list(run_queries(url, queries, basic_auth=VM_AUTH, ca_file=TEST_CA))
    rejected = [(r["dashboard"], r["panel"], r.get("error")) for r in results if r["status"] != "ok"]
    assert not rejected, rejected
    by_name = {f"{r['dashboard']}/{r['panel']}": r for r in results}
    variable = next(q for q in queries if q["dashboard"].endswith("hosts.json") and q["panel"] == "$instance")
    # remote_write delivers asynchronously (and a scrape that times out on a loaded machine marks
    # the host's series stale for a moment): poll until the host list has every host
    deadline, found = time.monotonic() + 120, set()
    while time.monotonic() < deadline:
        answer = api(VM, 8428, "/api/v1/query", query=variable["expr"])["result"]
        found = {s["metric"].get("instance") for s in answer}
        if found >= set(HOSTS):
            break
        time.sleep(5)
    assert found >= set(HOSTS), (variable["expr"], found)
    assert by_name, "no dashboard query ran"


def orphan_test_targets() -> list[str]:
    """Twelve addresses of the test hosts, at least one of them on shard 2 of 3."""
    targets = [f"{container_ip(host)}:{41000 + i}" for host in HOSTS for i in range(4)]
    assert any(shard_of(t, 3) == 2 for t in targets), targets
    return targets


def register(tmp_path: Path, shards: dict[str, int], status: str = "deployed") -> subprocess.CompletedProcess:
    """playbooks/deployments.yml with one record file, as a pipeline runs it (single-record mode)."""
    record = dict(ORPHAN_TEST, version="1.0.0", status=status,
                  deployed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if status == "deployed":
        record["targets"] = orphan_test_targets()
    path = tmp_path / f"orphan-test-{status}.json"
    path.write_text(json.dumps(record))
    return playbook("playbooks/deployments.yml", "-e", f"deployment_record_file={path}", "-e", "deployment_gate=false",
                    extra_inventory=inventory(tmp_path, shards))


def orphan_test_seen(shards: dict[str, int]) -> dict[str, set[str]]:
    """host -> the orphan-test targets its Prometheus scrapes (active)."""
    seen = {}
    for host in shards:
        seen[host] = {t["discoveredLabels"]["__address__"]
                      for t in api(host, 9090, "/api/v1/targets", state="active")["activeTargets"]
                      if t["labels"].get("service") == ORPHAN_TEST["service"]}
    return seen


def wait_orphan_test_split(shards: dict[str, int], timeout: float = 120) -> None:
    count = len(set(shards.values()))
    want = {host: {t for t in orphan_test_targets() if shard_of(t, count) == shards[host]} for host in shards}
    deadline, seen = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        seen = orphan_test_seen(shards)
        if seen == want:
            return
        time.sleep(3)
    assert seen == want, {"seen": seen, "want": want}


def poll(look, done, timeout: float = 120):
    """look() every 3 s until done(its value), at most timeout seconds; -> the last value."""
    deadline, value = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        value = look()
        if done(value):
            break
        time.sleep(3)
    return value


def one_line(text: str) -> str:
    """The playbook's output with every run of white space as one space (YAML folds long messages)."""
    return " ".join(text.split())


def test_a_single_record_registration_before_the_third_shard(tmp_path):
    """Registered while hosts[0] and hosts[1] are the only Prometheus hosts: in their stores only."""
    shards = {HOSTS[0]: 0, HOSTS[1]: 1}
    run = register(tmp_path, shards)
    assert run.returncode == 0, run.stdout[-4000:]
    wait_orphan_test_split(shards)
    assert sh(HOSTS[2], "test -e /var/lib/monstack/deployments/store.json", check=False).returncode != 0


def test_a_third_shard_moves_targets_and_restarts_nothing(tmp_path):
    before = {host: (start_time(host), reload_stamp(host)) for host in HOSTS[:2]}
    shards = {HOSTS[0]: 0, HOSTS[1]: 1, HOSTS[2]: 2}
    run = playbook("playbooks/exporters.yml", "playbooks/prometheus.yml", extra_inventory=inventory(tmp_path, shards))
    assert run.returncode == 0, run.stdout[-4000:]
    # the registration made before shard 2 existed: copied into its store, scraped there
    assert ORPHANS_NONE in one_line(run.stdout), run.stdout[-4000:]
    wait_orphan_test_split(shards)
    for host in HOSTS[:2]:
        assert start_time(host) == before[host][0], f"{host}: Prometheus was restarted"
        assert reload_stamp(host) != before[host][1], f"{host}: the new shard count was not loaded"
    write_deployment_targets(shards)
    check_split(shards)
    check_global_store(shards)
    rerun = playbook(*PLAYBOOKS, extra_inventory=inventory(tmp_path, shards))
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert set(recap_changed(rerun.stdout).values()) == {0}, rerun.stdout[-4000:]
    for host in shards:
        sh(host, f"rm -f {DEPLOY_FILE}")


def orphan_alert_value(host: str, timeout: float = 120, want: float | None = None) -> dict[str, float]:
    """shard -> value of the deployed rule DeploymentTargetsOrphaned's expression on host's Prometheus,
    polled until it is ``want`` for shard 2 (None: until it is empty)."""
    rule = next(r for g in api(host, 9090, "/api/v1/rules", type="alert")["groups"] for r in g["rules"]
                if r["name"] == "DeploymentTargetsOrphaned")
    deadline, values = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        values = {s["metric"].get("shard", ""): float(s["value"][1])
                  for s in api(host, 9090, "/api/v1/query", query=rule["query"])["result"]}
        if (want is None and not values) or (want is not None and values.get("2") == want):
            break
        time.sleep(5)
    return values


def test_the_orphan_check_names_the_targets_when_the_store_copy_is_off(tmp_path):
    shards = {HOSTS[0]: 0, HOSTS[1]: 1, HOSTS[2]: 2}
    on_shard_2 = sorted(t for t in orphan_test_targets() if shard_of(t, 3) == 2)
    # hosts[2] as a host that has never had a store (a fresh replacement)
    sh(HOSTS[2], "rm -f /var/lib/monstack/deployments/store.json "
                 "/etc/prometheus/file_sd/deployments/verify--orphan-test.json")
    off = playbook("playbooks/prometheus.yml", "-e", "deployment_store_copy=false",
                   extra_inventory=inventory(tmp_path, shards))
    assert off.returncode == 0, off.stdout[-4000:]
    out = one_line(off.stdout)
    # ours, and the targets of any other record of the scenario that hash to shard 2 (the earlier
    # tests' services were in the removed store too): all named, all counted
    found = re.search(r"Orphaned deployment targets \(scraped by no Prometheus\): (\d+): ", out)
    assert found, out[-3000:]
    orphans = int(found.group(1))
    assert orphans >= len(on_shard_2), out[-3000:]
    for target in on_shard_2:
        assert f"{target} (service orphan-test, environment verify, shard 2)" in out
    assert "(deployment_store_copy is false)" in out
    assert poll(lambda: orphan_test_seen(shards)[HOSTS[2]], lambda seen: not seen) == set()
    # Prometheus knows too: the rule's expression on every shard, and the alert pending
    for host in shards:
        assert orphan_alert_value(host, want=float(orphans)) == {"2": float(orphans)}, host
    def orphaned(alerts):
        return any(a["labels"]["alertname"] == "DeploymentTargetsOrphaned" and a["labels"].get("shard") == "2"
                   for a in alerts)
    alerts = poll(lambda: api(HOSTS[2], 9090, "/api/v1/alerts")["alerts"], orphaned)
    assert orphaned(alerts), alerts
    # the copy on again: back on shard 2, nothing orphaned
    on = playbook("playbooks/prometheus.yml", extra_inventory=inventory(tmp_path, shards))
    assert on.returncode == 0, on.stdout[-4000:]
    assert ORPHANS_NONE in one_line(on.stdout)
    wait_orphan_test_split(shards)
    assert orphan_alert_value(HOSTS[2]) == {}
    # the service's removal, as a pipeline writes it, from every shard
    gone = register(tmp_path, shards, status="removed")
    assert gone.returncode == 0, gone.stdout[-4000:]
    none = {host: set() for host in shards}
    assert poll(lambda: orphan_test_seen(shards), lambda seen: seen == none) == none
