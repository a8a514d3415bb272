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
    """search() over REQUESTS as journalctl --reverse gives them (newest first), without `complete`."""
    pattern = re.compile(grep) if grep else None
    entries = [json.loads(line) for line in reversed(REQUESTS)]
    return jq.search(entries, pattern, [jq.parse_match(c) for c in conditions], limit)[:3]


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
    kept, matched, scanned = run(["event=request"], limit=1)
    assert matched == 1 and len(kept) == 1 and kept[0]["fields"]["duration_seconds"] == 0.5
    assert scanned == 3  # the two newest entries did not match; the search stopped at the first match
    kept, matched, _ = run(["event=request"], limit=2)
    assert [k["fields"]["duration_seconds"] for k in kept] == [0.001, 0.5]  # oldest first


def test_search_stops_at_the_limit_or_before_since_and_says_whether_complete():
    entries = [{"__REALTIME_TIMESTAMP": str(t), "MESSAGE": "m%d" % t} for t in (50, 40, 30, 20, 10)]
    assert jq.search(entries, None, [], 2)[1:] == (2, 2, False)
    assert jq.search(entries, None, [], 5)[1:] == (5, 5, True)
    kept, matched, scanned, complete = jq.search(iter(entries), None, [], 0, since_usec=30)
    assert [k["message"] for k in kept] == ["m30", "m40", "m50"] and complete


def test_pages_follow_the_cursor_until_a_short_page():
    journal = [{"__CURSOR": "c%d" % n, "__REALTIME_TIMESTAMP": str(n), "MESSAGE": "m%d" % n} for n in range(7, 0, -1)]
    calls = []

    def fake(command):
        calls.append(command)
        start = 0
        if "--after-cursor" in command:
            start = [e["__CURSOR"] for e in journal].index(command[command.index("--after-cursor") + 1]) + 1
        size = int(command[command.index("-n") + 1])
        return 0, "\n".join(json.dumps(e) for e in journal[start:start + size]), ""

    got = [e["MESSAGE"] for e in jq.journal_entries(fake, ["journalctl"], "today", 3)]
    assert got == ["m7", "m6", "m5", "m4", "m3", "m2", "m1"] and len(calls) == 3
    assert calls[0][-2:] == ["--until", "today"] and calls[1][-2:] == ["--after-cursor", "c5"]
    # stopping early reads no further page
    calls.clear()
    assert jq.search(jq.journal_entries(fake, ["journalctl"], None, 3), None, [], 2)[1] == 2
    assert len(calls) == 1


def test_journalctl_failure_and_bad_since_name_the_cause():
    with pytest.raises(jq.QueryError, match="journalctl failed .rc 1.: No journal files"):
        list(jq.journal_entries(lambda c: (1, "", "No journal files were found."), ["journalctl"], None, 10))
    with pytest.raises(jq.QueryError, match="since 'soon': not a time systemd understands"):
        jq.resolve_time(lambda c: (1, "", "Failed to parse \"soon\""), "soon")
    assert jq.resolve_time(lambda c: (0, "   UNIX seconds: @1795993200.5\n", ""), "today") == 1795993200500000


def test_non_utf8_message_is_decoded():
    line = json.dumps({"MESSAGE": list(b"caf\xc3\xa9 \xff"), "_HOSTNAME": "h"})
    kept, matched, _, _ = jq.search([json.loads(line)], re.compile("caf"), [], 10)
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
    assert command[command.index("-p") + 1] == "err" and "--since" not in command  # since: search() stops there
    with pytest.raises(jq.QueryError, match="journal field"):
        jq.build_command({"directory": "/d", "fields": {"status": "500"}})


@pytest.mark.skipif(shutil.which("ansible-doc") is None, reason="ansible-doc not on PATH")
def test_documentation_parses():
    result = subprocess.run(["ansible-doc", "-M", str(REPO / "library"), "monstack_journal_query"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
