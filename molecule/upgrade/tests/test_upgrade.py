"""Rolling upgrade of a Prometheus HA pair and an Alertmanager cluster (issue 27).

Converged (by molecule) at the oldest supported releases; here: samples and a silence are written,
site.yml is rerun with the newest releases while a 1-second probe watches both replicas of each
server, then the history, the silence, the previous release's files, a no-change rerun and the
refusal of a downgrade across the TSDB format boundary are checked. The tests run in
file order and build on each other (one upgrade).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HOSTS = ["monstack-up-a", "monstack-up-b"]
OLD = {"prometheus": "2.42.0", "alertmanager": "0.25.0"}
NEW = {"prometheus": "3.5.3", "alertmanager": "0.33.1", "node_exporter": "1.11.1", "blackbox_exporter": "0.28.0"}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
STATE: dict = {}


def ip(host: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                           host], check=True, capture_output=True, text=True).stdout.strip()


def get(url: str, data: bytes | None = None, timeout: float = 5):
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read() or b"null")


def prom(host: str, path: str):
    return get(f"http://{ip(host)}:9090{path}")


def am(host: str, path: str, data=None):
    return get(f"http://{ip(host)}:9093{path}", json.dumps(data).encode() if data is not None else None)


def site(*extra: str) -> tuple[subprocess.CompletedProcess, float]:
    """site.yml against the scenario's hosts, as molecule's converge runs it."""
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    env = dict(os.environ, ANSIBLE_CONFIG=str(ephemeral / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    start = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", str(ephemeral / "inventory"), str(ROOT / "site.yml"), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    took = time.monotonic() - start
    (ephemeral / f"upgrade-run-{len(STATE.get('runs', []))}.log").write_text(proc.stdout + proc.stderr)
    STATE.setdefault("runs", []).append((extra, took))
    print(f"== site.yml {' '.join(extra)}: rc={proc.returncode} in {took:.1f} s")
    print("\n".join(proc.stdout.splitlines()[-6:]))
    return proc, took


def by_instance(result: list[dict]) -> list[dict]:
    """An instant query's series in a fixed order (Prometheus does not promise one)."""
    return sorted(result, key=lambda series: sorted(series["metric"].items()))


def versions_of(**wanted) -> list[str]:
    return [f"-e{name}_version={version}" for name, version in wanted.items()]


def test_1_old_releases_run_with_samples_and_a_silence():
    for host in HOSTS:
        assert prom(host, "/api/v1/status/buildinfo")["data"]["version"].startswith(OLD["prometheus"])
        assert am(host, "/api/v2/status")["versionInfo"]["version"].startswith(OLD["alertmanager"])
    # samples: wait until both replicas have scraped a few times, then remember an instant query
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        up = prom(HOSTS[0], "/api/v1/query?query=count(up%3D%3D1)")["data"]["result"]
        if up and int(up[0]["value"][1]) >= 4:
            break
        time.sleep(2)
    time.sleep(6)
    at = time.time() - 5
    STATE["at"] = at
    STATE["before"] = {host: prom(host, f"/api/v1/query?query=prometheus_build_info&time={at}")["data"]["result"]
                       for host in HOSTS}
    for host, result in STATE["before"].items():
        assert result and result[0]["metric"]["version"].startswith(OLD["prometheus"]), (host, result)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 3600))
    silence = am(HOSTS[0], "/api/v2/silences", {
        "matchers": [{"name": "alertname", "value": "UpgradeTest", "isRegex": False}],
        "startsAt": now, "endsAt": later, "createdBy": "molecule upgrade", "comment": "kept through the upgrade"})
    STATE["silence"] = silence["silenceID"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if STATE["silence"] in [s["id"] for s in am(HOSTS[1], "/api/v2/silences")]:
            break
        time.sleep(1)
    else:
        pytest.fail("the silence did not reach the second Alertmanager")


class Probe(threading.Thread):
    """Every second: is each replica of Prometheus and of Alertmanager ready? (bounded: stops when told or
    after 20 minutes)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.rounds: list[dict] = []
        self.addresses = {host: ip(host) for host in HOSTS}

    def ready(self, host: str, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.addresses[host]}:{port}/-/ready", timeout=0.9) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def run(self):
        end = time.monotonic() + 1200
        while not self.stop.is_set() and time.monotonic() < end:
            start = time.monotonic()
            self.rounds.append({(host, port): self.ready(host, port) for host in HOSTS for port in (9090, 9093)})
            self.stop.wait(max(0.0, 1 - (time.monotonic() - start)))


def test_2_upgrade_rolls_one_member_at_a_time():
    probe = Probe()
    probe.start()
    try:
        proc, took = site(*versions_of(**NEW))
    finally:
        probe.stop.set()
        probe.join(5)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    STATE["upgrade_seconds"] = took
    rounds = probe.rounds
    assert len(rounds) >= took * 0.7, f"the probe ran {len(rounds)} rounds in {took:.0f} s"
    for port in (9090, 9093):
        down = [i for i, r in enumerate(rounds) if not any(r[(h, port)] for h in HOSTS)]
        assert not down, f"port {port}: both replicas down in probe rounds {down} of {len(rounds)}"
        # and each was restarted (down at least once) or at least upgraded (checked below)
    print(f"probe: {len(rounds)} rounds, replica down rounds: "
          + ", ".join(f"{h}:{p}={sum(not r[(h, p)] for r in rounds)}" for h in HOSTS for p in (9090, 9093)))


def test_3_new_releases_keep_history_silence_and_previous_files():
    for host in HOSTS:
        assert prom(host, "/api/v1/status/buildinfo")["data"]["version"].startswith(NEW["prometheus"])
        assert am(host, "/api/v2/status")["versionInfo"]["version"].startswith(NEW["alertmanager"])
        after = by_instance(prom(host, f"/api/v1/query?query=prometheus_build_info&time={STATE['at']}")["data"]["result"])
        assert after == by_instance(STATE["before"][host]), (host, after, STATE["before"][host])
        silences = {s["id"]: s["status"]["state"] for s in am(host, "/api/v2/silences")}
        assert silences.get(STATE["silence"]) == "active", (host, silences)
        status = am(host, "/api/v2/status")["cluster"]
        assert status["status"] == "ready" and len(status["peers"]) == 2, (host, status)
        # the previous release stays for a rollback by version pin
        for name in ("prometheus", "alertmanager"):
            listing = subprocess.run(["docker", "exec", host, "ls", f"/opt/monstack/{name}"],
                                     capture_output=True, text=True, check=True).stdout.split()
            assert OLD[name] in listing and NEW[name] in listing, (host, name, listing)


def test_4_rerun_changes_nothing():
    proc, took = site(*versions_of(**NEW))
    assert proc.returncode == 0, proc.stdout[-5000:]
    changed = {host: int(c) for host, _ok, c, _u, _f in RECAP.findall(proc.stdout)}
    assert changed and not any(changed.values()), changed
    print(f"no-change rerun: {took:.1f} s")


def test_5_downgrade_across_the_tsdb_boundary_is_refused():
    proc, _took = site(*versions_of(**{**NEW, "prometheus": OLD["prometheus"]}))
    assert proc.returncode != 0
    said = " ".join((proc.stdout + proc.stderr).split())  # the YAML callback wraps long messages
    for words in ("refused before any change", "Prometheus 2.55.0 or later", "prometheus_force_downgrade: true"):
        assert words in said, (words, said[-4000:])
    for host in HOSTS:
        assert prom(host, "/api/v1/status/buildinfo")["data"]["version"].startswith(NEW["prometheus"])
    print("runs: " + "; ".join(f"{' '.join(extra)}: {took:.1f} s" for extra, took in STATE.get("runs", [])))
