"""journal_query: journalctl command, field matches on JSON and logfmt messages."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("journal_query", REPO / "plugins" / "modules" / "journal_query.py")
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
    assert kept[0]["hostname"] == "app1" and kept[0]["unit"] == "inference-app.service"
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
    assert "SYSLOG_IDENTIFIER=x" in command
    assert not [arg for arg in command if "_HOSTNAME" in arg], "the host is never searched by _HOSTNAME"
    assert command[command.index("-p") + 1] == "err" and "--since" not in command  # since: search() stops there
    with pytest.raises(jq.QueryError, match="journal field"):
        jq.build_command({"directory": "/d", "fields": {"status": "500"}})


@pytest.mark.skipif(shutil.which("ansible-doc") is None, reason="ansible-doc not on PATH")
def test_documentation_parses():
    result = subprocess.run(["ansible-doc", "monstack.stack.journal_query"], capture_output=True, text=True,
                            env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections")}, timeout=120)
    assert result.returncode == 0, result.stderr


# ------------------------------------------- issue 24 row 15: the sender, not _HOSTNAME
APP1, MON2 = "10.0.0.21", "10.0.0.22"
SEQNUM = {APP1: "a1" * 16, MON2: "b2" * 16, "10.0.0.210": "c3" * 16, "CN=app1": "d4" * 16}
DNS = {"app1": [APP1, "::ffff:" + APP1], "mon2": [MON2]}


def resolve(name):
    return DNS.get(name, [])


def journal_dir(tmp_path):
    """Files named as systemd-journal-remote names them (SplitMode=host), each with a journal
    header holding its sequence number id (what the entries' cursors carry)."""
    names = {f"remote-{APP1}.journal": APP1,
             f"remote-{APP1}@{'a1' * 16}-0000000000000001-0005f0f0f0f0f0f0.journal": APP1,
             f"remote-{MON2}.journal": MON2,
             "remote-10.0.0.210.journal": "10.0.0.210",
             "remote-CN=app1.journal": "CN=app1",
             "system.journal": None}
    for name, sender in names.items():
        header = b"LPKSHHRH" + bytes(64) + bytes.fromhex(SEQNUM[sender]) if sender else b"LPKSHHRH" + bytes(80)
        (tmp_path / name).write_bytes(header + bytes(64))
    return tmp_path


def remote_entry(sender, n, hostname, message):
    return {"__CURSOR": f"s={SEQNUM[sender]};i={n:x};b=0;m=0;t=0;x=0", "__REALTIME_TIMESTAMP": str(1764514800000000 + n),
            "_HOSTNAME": hostname, "_SYSTEMD_UNIT": "app.service", "PRIORITY": "6", "MESSAGE": message}


# What each sender uploaded: mon2 (10.0.0.22) also logs under app1's name.
UPLOADS = {APP1: [remote_entry(APP1, 1, "app1", "app1 says hello")],
           MON2: [remote_entry(MON2, 2, "mon2", "mon2 says hello"),
                  remote_entry(MON2, 3, "app1", "FORGED: app1 deleted the database")],
           "10.0.0.210": [remote_entry("10.0.0.210", 4, "app10", "app10 says hello")],
           "CN=app1": [remote_entry("CN=app1", 5, "app1", "app1 via a checked certificate")]}


def fake_journalctl(directory):
    """journalctl over UPLOADS: --directory reads every sender, --file=... only those files."""
    def run(command):
        files = [arg[len("--file="):] for arg in command if arg.startswith("--file=")]
        senders = set()
        for path in files or [str(p) for p in Path(directory).iterdir()]:
            found = jq.REMOTE_FILE_RE.match(Path(path.replace("[", "").replace("]", "")).name)
            if found:
                senders.add(found.group("sender"))
        entries = sorted((e for s in senders for e in UPLOADS.get(s, [])),
                         key=lambda e: e["__REALTIME_TIMESTAMP"], reverse=True)
        return 0, "\n".join(json.dumps(e) for e in entries), ""
    return run


def query(directory, **params):
    base = {"directory": str(directory), "host": None, "senders": {}, "unit": None, "identifier": None,
            "priority": None, "since": None, "until": None, "grep": None, "ignore_case": False, "match": [],
            "fields": {}, "limit": 100, "page": 2000}
    warnings = []
    result = jq.query(base | params, fake_journalctl(directory), resolve, warn=warnings.append)
    return result, warnings


def test_host_files_are_the_senders_files_not_hostname(tmp_path):
    directory = journal_dir(tmp_path)
    files, known = jq.host_files(str(directory), "app1", [], resolve)
    assert sorted(Path(f).name for f in files) == sorted([
        f"remote-{APP1}.journal", f"remote-{APP1}@{'a1' * 16}-0000000000000001-0005f0f0f0f0f0f0.journal",
        "remote-CN=app1.journal"])
    assert known == ["10.0.0.21", "10.0.0.210", "10.0.0.22", "CN=app1"]
    # an address from the inventory counts too; a longer address with the same prefix never does
    files, _ = jq.host_files(str(directory), "app1-new-name", ["10.0.0.22"], resolve)
    assert [Path(f).name for f in files] == [f"remote-{MON2}.journal"]
    assert jq.certificate_names("O=Example\\, Inc,CN=app1") == ["app1"]
    assert jq.normal_address("[::ffff:10.0.0.21]") == APP1


def test_a_host_logging_with_a_forged_hostname_is_not_returned_for_the_other_host(tmp_path):
    """Issue 24 row 15: mon2 uploads an entry with _HOSTNAME=app1; the search for app1 reads
    only app1's files, so it is not there; the search of all shows it as mon2's, with the claim."""
    directory = journal_dir(tmp_path)
    senders = {"app1": [], "mon2": ["mon2"]}
    result, warnings = query(directory, host="app1", senders=senders)
    assert [e["message"] for e in result["entries"]] == ["app1 says hello", "app1 via a checked certificate"]
    assert all(e["host"] == "app1" for e in result["entries"]) and not warnings
    assert "--directory" not in result["command"] and not [a for a in result["command"] if "_HOSTNAME" in a]
    assert f"--file={directory}/remote-{MON2}.journal" not in result["command"]
    assert "FORGED" not in json.dumps(result)

    result, _ = query(directory, senders=senders)
    forged = [e for e in result["entries"] if e["message"].startswith("FORGED")]
    assert len(forged) == 1
    assert (forged[0]["host"], forged[0]["sender"], forged[0]["hostname"]) == ("mon2", MON2, "app1")
    line = [x for x in result["lines"] if "FORGED" in x][0]
    assert " mon2 [_HOSTNAME=app1] app.service: FORGED" in line
    honest = [x for x in result["lines"] if "app1 says hello" in x][0]
    assert " app1 app.service: app1 says hello" in honest and "_HOSTNAME" not in honest
    unknown = [e for e in result["entries"] if e["message"] == "app10 says hello"][0]
    assert (unknown["host"], unknown["sender"]) == ("10.0.0.210", "10.0.0.210")  # not in senders: its address


def test_a_host_without_files_returns_nothing_and_says_why(tmp_path):
    directory = journal_dir(tmp_path)
    result, warnings = query(directory, host="app9")
    assert result["entries"] == [] and result["command"] == [] and result["files"] == []
    assert "host app9: no journal files of it" in warnings[0] and "not _HOSTNAME" in warnings[0]
    assert "10.0.0.21, 10.0.0.210, 10.0.0.22, CN=app1" in warnings[0]


def test_file_names_with_glob_characters_are_matched_literally():
    command = jq.build_command({"directory": "/d", "fields": {}}, ["/d/remote-CN=a*b?[c].journal"])
    assert command[:3] == ["journalctl", "--no-pager", "--file=/d/remote-CN=a[*]b[?][[]c].journal"]
    assert "--directory" not in command
