"""Logs next to metrics (roles/journal, playbooks/logs.yml): the journal of every host
gathered on the log host, searched there, kept there, and nothing lost while the log host
was away. ARA records a site.yml run with its changed tasks.

Host names come from the environment, with the scenario's names as defaults, so the
checks run against any set of hosts converged the same way:
  MONSTACK_LOG_HOST (monstack-monitor, in the `logs` group), MONSTACK_APP_HOST
  (monstack-app1, runs the sample inference API), MONSTACK_OTHER_HOST (monstack-app2, uploads
  under APP_HOST's name).
Runs last (file name): the outage check stops and starts the log host.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, playbook, recap_changed, sh

LOG_HOST = os.environ.get("MONSTACK_LOG_HOST", "monstack-monitor")
APP_HOST = os.environ.get("MONSTACK_APP_HOST", "monstack-app1")
OTHER_HOST = os.environ.get("MONSTACK_OTHER_HOST", "monstack-app2")
REMOTE = "/var/log/journal/remote"
OUTAGE_SECONDS = 60


def remote_messages(*matches: str, since: str = "-15min") -> list[str]:
    """Messages on the log host's gathered journal with these journal matches."""
    result = sh(LOG_HOST, f"journalctl --no-pager --directory={REMOTE} --since={since} -o cat "
                + " ".join(matches), check=False)
    return result.stdout.splitlines()


def wait_systemd(host: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["docker", "exec", host, "systemctl", "is-system-running"],
                               capture_output=True, text=True).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise AssertionError(f"{host}: systemd did not come up within {timeout} s")


def logs_playbook(*extra: str) -> str:
    run = playbook("playbooks/logs.yml", *extra)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return run.stdout


def test_marker_reaches_the_log_host_within_10_s():
    marker = f"monstack-marker-{uuid.uuid4().hex[:12]}"
    unit = f"monstack-marker-{marker[-6:]}"
    sh(APP_HOST, f"systemd-run --quiet --unit={unit} --wait sh -c 'echo {marker}'")
    started = time.monotonic()
    found = []
    while time.monotonic() - started < 10 and not found:
        found = [line for line in remote_messages(f"_HOSTNAME={APP_HOST}", f"-u {unit}.service")
                 if marker in line]
        if not found:
            time.sleep(0.5)
    elapsed = time.monotonic() - started
    assert found, f"{marker} of {APP_HOST} ({unit}) not on {LOG_HOST} after {elapsed:.1f} s"
    print(f"marker found on the log host after {elapsed:.1f} s")
    # The same question through the documented search: host, unit and text.
    out = logs_playbook("-e", f"logs_host={APP_HOST}", "-e", f"logs_unit={unit}", "-e", f"logs_grep={marker}")
    # (journalctl -u also shows systemd's own lines about the unit, which name the command)
    assert f"{APP_HOST} {unit}.service: {marker}" in out, out[-3000:]
    assert re.search(r"\b[1-9]\d* matching entries", out), out[-3000:]


def test_json_field_query_finds_the_sample_api_500s():
    """The sample inference API (a second instance that answers every /predict with a 500)
    logs one JSON object per request; a field query finds exactly those requests."""
    unit = f"inference-app-faults-{uuid.uuid4().hex[:6]}"
    sh(APP_HOST, f"systemd-run --quiet --unit={unit} -p DynamicUser=yes /usr/bin/python3 "
                 "/opt/inference-app/inference_app.py --listen 127.0.0.1 --port 8019 --error-rate 1 "
                 "--self-traffic 0 --model-version 9.9.9")
    try:
        sh(APP_HOST, "for i in $(seq 1 150); do curl -s -o /dev/null http://127.0.0.1:8019/health && break; "
                     "sleep 0.2; done; curl -sf -o /dev/null http://127.0.0.1:8019/health; "
                     "for i in 1 2 3 4 5; do curl -s -o /dev/null -X POST http://127.0.0.1:8019/predict; done; "
                     "curl -s -o /dev/null http://127.0.0.1:8019/health")
    finally:
        sh(APP_HOST, f"systemctl stop {unit}", check=False)
    deadline = time.monotonic() + 15
    requests = []
    while time.monotonic() < deadline and len(requests) < 7:
        requests = [json.loads(line) for line in remote_messages(f"_HOSTNAME={APP_HOST}", f"-u {unit}.service")
                    if line.startswith("{")]
        time.sleep(1)
    assert len(requests) >= 7, requests  # 1+ health waits, 5 predictions, 1 health
    for entry in requests:
        assert {"method", "path", "status", "duration_seconds", "model_version"} <= set(entry), entry
    out = logs_playbook("-e", f"logs_unit={unit}", "-e", "logs_since=-1h", "-e", f"logs_host={APP_HOST}",
                        "-e", '{"logs_match": ["status>=500", "path=/predict", "model_version=9.9.9"]}')
    assert "5 matching entries" in out, out[-3000:]
    assert out.count('"status":500') == 5, out[-3000:]


def test_a_host_logging_under_another_hosts_name_is_not_returned_for_that_host():
    """Issue 24 row 15: OTHER_HOST uploads an entry claiming _HOSTNAME=APP_HOST (with its own
    certificate, as any host of the inventory could). The search by APP_HOST reads APP_HOST's
    journal files only (named after its address by journal-remote), so the entry is not there;
    a search of every host shows it as OTHER_HOST's, with the claimed name beside it."""
    marker = f"monstack-forged-{uuid.uuid4().hex[:12]}"
    sh(OTHER_HOST, "printf '__REALTIME_TIMESTAMP=%s\\n_HOSTNAME=%s\\n_SYSTEMD_UNIT=forged.service\\nMESSAGE=%s\\n\\n' "
                   f"{int(time.time() * 1e6)} {APP_HOST} {marker} > /tmp/forged.export")
    code = sh(OTHER_HOST, "cert=; [ -r /etc/monstack-journal/host.pem ] && "
                          "cert='--cert /etc/monstack-journal/host.pem --key /etc/monstack-journal/host.key'; "
                          "curl -sS -k $cert -o /dev/null -w '%{http_code}' -H 'Content-Type: application/vnd.fdo.journal' "
                          f"--data-binary @/tmp/forged.export https://{LOG_HOST}:19532/upload").stdout
    assert code == "202", code
    time.sleep(2)
    assert any(marker in line for line in remote_messages(f"_HOSTNAME={APP_HOST}")), "the upload did not arrive"
    search = ["-e", f"logs_grep={marker}", "-e", "logs_since=-15min"]
    as_app = " ".join(logs_playbook("-e", f"logs_host={APP_HOST}", *search).split())
    assert "0 matching entries" in as_app and marker not in as_app.replace(f"logs_grep={marker}", ""), as_app[-2000:]
    # Of one unit: each search also logs its own arguments (the marker among them) on the
    # log host, and that journal is gathered too.
    everyone = " ".join(logs_playbook("-e", "logs_unit=forged.service", *search).split())
    assert "1 matching entries" in everyone, everyone[-2000:]
    assert f"{OTHER_HOST} [_HOSTNAME={APP_HOST}] forged.service: {marker}" in everyone, everyone[-2000:]
    as_other = " ".join(logs_playbook("-e", f"logs_host={OTHER_HOST}", *search).split())
    assert "1 matching entries" in as_other, as_other[-2000:]


def test_retention_settings_in_effect():
    config = sh(LOG_HOST, "systemd-analyze cat-config systemd/journal-remote.conf").stdout
    for key in ("MaxUse=", "MaxFileSize=", "MaxFiles=", "KeepFree=", "TrustedCertificateFile="):
        assert key in config, config
    timer = sh(LOG_HOST, "systemctl is-active monstack-journal-vacuum.timer; "
                         "systemctl cat monstack-journal-vacuum.service").stdout
    assert timer.startswith("active"), timer
    assert "--vacuum-size=" in timer and "--vacuum-time=" in timer and "--vacuum-files=" in timer, timer
    print(config, timer, sep="\n")
    # An archived journal older than the age limit goes at the next vacuum; the active ones stay.
    active = sh(LOG_HOST, f"ls {REMOTE}").stdout.split()
    aged = "remote-aged@0123456789abcdef0123456789abcdef-0000000000000001-0005800000000000.journal"
    sh(LOG_HOST, f"cp {REMOTE}/{active[0]} {REMOTE}/{aged} && chown systemd-journal-remote: {REMOTE}/{aged}")
    sh(LOG_HOST, "systemctl start monstack-journal-vacuum.service")
    left = sh(LOG_HOST, f"ls {REMOTE}").stdout.split()
    assert aged not in left and set(active) <= set(left), left
    usage = sh(LOG_HOST, f"journalctl --directory={REMOTE} --disk-usage").stdout
    print(usage)


def test_log_host_away_for_a_minute_loses_nothing():
    run_id = uuid.uuid4().hex[:8]
    count = 2 * (OUTAGE_SECONDS + 10)  # one marker every 0.5 s, longer than the outage
    unit = f"monstack-markers-{run_id}"
    sh(APP_HOST, f"systemd-run --quiet --unit={unit} sh -c 'i=0; while [ $i -lt {count} ]; do "
                 f"i=$((i+1)); echo \"outage-{run_id} $i\"; sleep 0.5; done'")
    time.sleep(2)
    stopped = time.monotonic()
    subprocess.run(["docker", "kill", "--signal=SIGRTMIN+3", LOG_HOST], check=True, capture_output=True)
    while time.monotonic() - stopped < 20:
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", LOG_HOST],
                               capture_output=True, text=True).stdout.strip()
        if state == "false":
            break
        time.sleep(0.5)
    else:
        subprocess.run(["docker", "stop", "-t", "1", LOG_HOST], check=True, capture_output=True)
    time.sleep(max(0.0, OUTAGE_SECONDS - 15 - (time.monotonic() - stopped)))
    # While the log host is away the upload lag grows on the app host (the alert's metric).
    sh(APP_HOST, "systemctl start monstack-journal-metrics.service", check=False)
    lag_text = sh(APP_HOST, "cat /var/lib/node_exporter/textfile/journal_upload.prom", check=False).stdout
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    subprocess.run(["docker", "start", LOG_HOST], check=True, capture_output=True)
    away = time.monotonic() - stopped
    wait_systemd(LOG_HOST)
    lag = re.search(r"^journal_upload_lag_seconds (\S+)$", lag_text, re.M)
    assert lag and float(lag.group(1)) >= 20, f"lag while the log host was away:\n{lag_text}"
    deadline = time.monotonic() + 45
    numbers: list[int] = []
    while time.monotonic() < deadline:
        numbers = [int(line.split()[1]) for line in remote_messages(f"_HOSTNAME={APP_HOST}", f"-u {unit}.service",
                                                                    since="-10min")
                   if line.startswith(f"outage-{run_id} ")]
        if set(numbers) == set(range(1, count + 1)):
            break
        time.sleep(2)
    missing = sorted(set(range(1, count + 1)) - set(numbers))
    print(f"log host away {away:.0f} s; {count} markers sent, {len(set(numbers))} received "
          f"({len(numbers) - len(set(numbers))} duplicates), {len(missing)} missing")
    assert not missing, f"markers lost while the log host was away: {missing}"


def ara_environment(tmp_path: Path) -> dict[str, str] | None:
    """The environment variables that enable ARA's callback with a private SQLite database, or None."""
    probe = subprocess.run([sys.executable, "-m", "ara.setup.callback_plugins"], capture_output=True, text=True)
    if probe.returncode != 0:
        return None
    return {"ANSIBLE_CALLBACK_PLUGINS": probe.stdout.strip(), "ARA_API_CLIENT": "offline",
            "ARA_BASE_DIR": str(tmp_path / "ara"), "ARA_DATABASE_NAME": str(tmp_path / "ara" / "ansible.sqlite")}


def test_site_run_recorded_by_ara(tmp_path):
    env = ara_environment(tmp_path)
    if env is None:
        pytest.skip("ara is not installed (pip install -r requirements.txt)")
    # A change to record: node_exporter's log format, on the app host only.
    run = playbook("site.yml", "--limit", APP_HOST, "--tags", "node_exporter",
                   "-e", "node_exporter_log_format=json", env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert recap_changed(run.stdout).get(APP_HOST, 0) > 0, run.stdout[-2000:]
    # The documented question: what changed on this host (today)?
    today = time.strftime("%Y-%m-%d", time.gmtime())
    query = subprocess.run([sys.executable, str(ROOT / "tools" / "ara_changes.py"), "--host", APP_HOST,
                            "--since", today], env=dict(os.environ, **env), capture_output=True, text=True,
                           timeout=300)
    assert query.returncode == 0, query.stderr[-2000:]
    print(query.stdout)
    assert "site.yml" in query.stdout and "node_exporter" in query.stdout, query.stdout + query.stderr
    # node_exporter logs JSON now, and that reaches the log host too.
    time.sleep(3)
    lines = remote_messages(f"_HOSTNAME={APP_HOST}", "-u node_exporter.service", since="-2min")
    assert any(line.startswith("{") and '"level"' in line for line in lines), lines[-5:]
