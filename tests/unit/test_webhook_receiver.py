"""tests/webhook_receiver/webhook_receiver.py, started as a process on a loopback port.

The last test puts a real Alertmanager (also on loopback; $ALERTMANAGER or
/var/cache/monstack/bin/alertmanager, skipped when missing) in front of it to check
that real notifications arrive.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "webhook_receiver" / "webhook_receiver.py"
ALERTMANAGER = os.environ.get("ALERTMANAGER") or os.path.join(
    os.environ.get("MONSTACK_CACHE", "/var/cache/monstack"), "bin", "alertmanager")

SAMPLE = {
    "version": "4",
    "groupKey": '{}/{team="ml"}:{alertname="NodeFilesystemAlmostOutOfSpace"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "team-ml-webhook",
    "groupLabels": {"alertname": "NodeFilesystemAlmostOutOfSpace"},
    "commonLabels": {"alertname": "NodeFilesystemAlmostOutOfSpace", "severity": "critical", "team": "ml"},
    "commonAnnotations": {"summary": "Filesystem has less than 5% space left."},
    "externalURL": "http://am1:9093",
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "NodeFilesystemAlmostOutOfSpace", "severity": "critical", "team": "ml",
                   "instance": "app1:9100", "mountpoint": "/"},
        "annotations": {"summary": "Filesystem has less than 5% space left."},
        "startsAt": "2026-11-22T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "0123456789abcdef",
    }],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, method: str = "GET", body: bytes | None = None, timeout: float = 5):
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, _decode(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, _decode(err.read())


def _decode(raw: bytes):
    """JSON if the body is JSON (the receiver), else the text (Alertmanager's /-/ready)."""
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode("utf-8", "replace")


def wait_until(check, timeout: float = 15.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)



def stop(proc: subprocess.Popen) -> None:
    """Stop a process this test started: terminate, then kill after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()

@pytest.fixture
def receiver(tmp_path):
    port = free_port()
    out = tmp_path / "state" / "notifications.jsonl"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--address", "127.0.0.1", "--port", str(port),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: request(base + "/health")[0] == 200, timeout=10)
        yield base, out
    finally:
        stop(proc)


def test_health(receiver):
    base, out = receiver
    assert request(base + "/health") == (200, {"status": "ok"})
    assert out.exists() and out.read_text() == ""


def test_stores_a_notification_as_one_json_line(receiver):
    base, out = receiver
    status, body = request(base + "/alerts", "POST", json.dumps(SAMPLE).encode())
    assert (status, body) == (200, {"status": "stored"})
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == SAMPLE
    assert request(base + "/notifications") == (200, [SAMPLE])


def test_lists_in_order_and_filters_by_receiver(receiver):
    base, _ = receiver
    resolved = dict(SAMPLE, status="resolved", receiver="ops-webhook")
    for payload in (SAMPLE, resolved, SAMPLE):
        assert request(base + "/", "POST", json.dumps(payload).encode())[0] == 200
    status, items = request(base + "/notifications")
    assert status == 200 and [n["status"] for n in items] == ["firing", "resolved", "firing"]
    assert request(base + "/notifications?receiver=ops-webhook") == (200, [resolved])
    assert request(base + "/notifications", "DELETE") == (200, {"status": "cleared"})
    assert request(base + "/notifications") == (200, [])


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_rejects_bodies_that_are_not_json_objects(receiver, body):
    base, out = receiver
    status, reply = request(base + "/alerts", "POST", body)
    assert status == 400 and "error" in reply
    assert out.read_text() == ""


def test_unknown_path_is_404(receiver):
    base, _ = receiver
    assert request(base + "/nope")[0] == 404


def test_real_alertmanager_notifications_arrive(receiver, tmp_path):
    if not os.access(ALERTMANAGER, os.X_OK):
        pytest.skip(f"alertmanager not found at {ALERTMANAGER} (set $ALERTMANAGER)")
    base, _ = receiver
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "route": {"receiver": "test-webhook", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "test-webhook",
                       "webhook_configs": [{"url": base + "/alerts", "send_resolved": True}]}],
    }))
    log = open(tmp_path / "alertmanager.log", "w+")
    am = subprocess.Popen([ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                           f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                          stdout=log, stderr=subprocess.STDOUT)
    am_url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if am.poll() is not None:
            log.seek(0)
            output = log.read()
            if "default.tmpl: no such file" in output:
                # Debian's build reads its default templates from
                # /usr/share/prometheus/alertmanager/ instead of embedding them.
                pytest.skip("this alertmanager is Debian's build and its default templates "
                            "(/usr/share/prometheus/alertmanager/default.tmpl) are not installed here")
            raise AssertionError(f"alertmanager exited: {output}")
        return request(am_url + "/-/ready")[0] == 200

    try:
        wait_until(ready)
        alert = [{"labels": {"alertname": "WebhookReceiverTest", "severity": "warning", "instance": "x:1"},
                  "annotations": {"summary": "end to end"}}]
        assert request(am_url + "/api/v2/alerts", "POST", json.dumps(alert).encode())[0] == 200
        items = wait_until(lambda: request(base + "/notifications?receiver=test-webhook")[1], timeout=20)
        note = items[0]
        assert note["version"] == "4" and note["status"] == "firing"
        assert note["commonLabels"]["alertname"] == "WebhookReceiverTest"
        assert note["alerts"][0]["annotations"]["summary"] == "end to end"
    finally:
        stop(am)
        log.close()
