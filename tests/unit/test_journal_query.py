"""monstack_journal_query: journalctl command, field matches on JSON and logfmt messages."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("monstack_journal_query", REPO / "library" / "monstack_journal_query.py")
jq = importlib.util.module_from_spec(spec)
spec.loader.exec_module(jq)


def entry(message, **fields):
    base = {"__REALTIME_TIMESTAMP": "1764514800000000", "_HOSTNAME": "app1",
            "_SYSTEMD_UNIT": "inference-app.service", "PRIORITY": "6", "MESSAGE": message}
    return json.dumps(base | fields)


REQUESTS = [
    entry('{"event":"request","method":"POST","path":"/predict","status":500,"duration_seconds":0.02}'),
    entry('{"event":"request","method":"GET","path":"/health","status":200,"duration_seconds":0.001}'),
    entry('{"event":"request","method":"POST","path":"/predict","status":200,"duration_seconds":0.5}'),
    entry('time=2026-11-30T15:00:00Z level=ERROR source=main.go:1 msg="Error on ingesting samples" err="out of order"',
          _SYSTEMD_UNIT="prometheus.service", PRIORITY="3"),
    entry("plain text line mentioning status=500 in passing", _HOSTNAME="app2"),
]


def run(conditions=(), grep=None, limit=100):
    pattern = re.compile(grep) if grep else None
    return jq.search(REQUESTS, pattern, [jq.parse_match(c) for c in conditions], limit)


def test_json_field_match_finds_the_500s():
    kept, matched, scanned = run(["status>=500", "path=/predict"])
    assert (matched, scanned) == (1, 5)
    assert kept[0]["fields"]["status"] == 500
    assert kept[0]["host"] == "app1" and kept[0]["unit"] == "inference-app.service"
    assert kept[0]["time"] == "2025-11-30T15:00:00.000000Z"


def test_numbers_compare_as_numbers_and_text_as_text():
    assert run(["duration_seconds>0.1"])[1] == 1
    assert run(["status!=200"])[1] == 2  # the 500 and the plain line's logfmt-looking status=500
    assert run(["method=POST"])[1] == 2
    assert run(["method>POST"])[1] == 0  # order on text never matches


def test_logfmt_messages_are_fields_too():
    kept, matched, _ = run(["level=ERROR", "err~order"])
    assert matched == 1
    assert kept[0]["fields"]["msg"] == "Error on ingesting samples"


def test_journal_fields_in_capitals_and_grep():
    assert run(["_HOSTNAME=app2"])[1] == 1
    assert run(["PRIORITY<=3"])[1] == 1
    assert run(grep="passing")[1] == 1


def test_missing_field_does_not_match_and_limit_keeps_the_newest():
    assert run(["nosuchfield=1"])[1] == 0
    kept, matched, _ = run(["event=request"], limit=1)
    assert matched == 3 and len(kept) == 1 and kept[0]["fields"]["duration_seconds"] == 0.5


def test_non_utf8_message_is_decoded():
    line = json.dumps({"MESSAGE": list(b"caf\xc3\xa9 \xff"), "_HOSTNAME": "h"})
    kept, matched, _ = jq.search([line], re.compile("caf"), [], 10)
    assert matched == 1 and kept[0]["message"].startswith("café")


@pytest.mark.parametrize("bad", ["status", "=5", "st atus=5", "path~("])
def test_bad_match_names_the_fix(bad):
    with pytest.raises(jq.QueryError, match="match"):
        jq.parse_match(bad)


def test_command_uses_the_journal_indexes():
    command = jq.build_command({"directory": "/var/log/journal/remote", "unit": "inference-app", "host": "app1",
                                "priority": "err", "since": "-1h", "until": None, "identifier": None,
                                "fields": {"SYSLOG_IDENTIFIER": "x"}})
    assert command[:6] == ["journalctl", "--no-pager", "--directory", "/var/log/journal/remote", "-o", "json"]
    assert ["-u", "inference-app.service"] == command[6:8]
    assert "_HOSTNAME=app1" in command and "SYSLOG_IDENTIFIER=x" in command
    assert command[command.index("-p") + 1] == "err" and command[command.index("--since") + 1] == "-1h"
    with pytest.raises(jq.QueryError, match="journal field"):
        jq.build_command({"directory": "/d", "fields": {"status": "500"}})


@pytest.mark.skipif(shutil.which("ansible-doc") is None, reason="ansible-doc not on PATH")
def test_documentation_parses():
    result = subprocess.run(["ansible-doc", "-M", str(REPO / "library"), "monstack_journal_query"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
