"""roles/journal/files/journal_upload_metrics.py: the upload lag from journal-upload's saved cursor."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "journal_upload_metrics", REPO / "roles" / "journal" / "files" / "journal_upload_metrics.py")
jm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(jm)

CURSOR = "s=94d7;i=132;b=f088;m=5b165a513;t=66180133c03ef;x=12a0"
STATE = "# This is private data. Do not parse.\nLAST_CURSOR=" + CURSOR + "\n"


def line(seconds):
    return json.dumps({"__REALTIME_TIMESTAMP": str(int(seconds * 1e6))}) + "\n"


def test_cursor_and_its_time():
    assert jm.parse_state(STATE) == CURSOR
    assert jm.parse_state("# nothing yet\n") is None
    assert abs(jm.cursor_timestamp(CURSOR) - 0x66180133c03ef / 1e6) < 1e-6
    assert jm.cursor_timestamp("s=1;i=2") is None


def test_lag_is_the_age_of_the_oldest_entry_not_uploaded(tmp_path):
    state = tmp_path / "state"
    state.write_text(STATE)
    seen = []

    def reader(cursor, max_count):
        seen.append(cursor)
        return [line(1000.0), line(1010.0), line(1020.0)]

    values = jm.collect(str(state), 1100.0, 10, reader)
    assert seen == [CURSOR]
    assert values["journal_upload_state_present"] == 1
    assert values["journal_upload_pending_entries"] == 3
    assert values["journal_upload_lag_seconds"] == 100.0
    assert values["journal_upload_state_timestamp_seconds"] == state.stat().st_mtime
    text = jm.render(values)
    assert "# TYPE journal_upload_lag_seconds gauge\njournal_upload_lag_seconds 100\n" in text


def test_caught_up_and_missing_state(tmp_path):
    state = tmp_path / "state"
    state.write_text(STATE)
    assert jm.collect(str(state), 5.0, 10, lambda c, n: [])["journal_upload_lag_seconds"] == 0
    assert jm.collect(str(tmp_path / "none"), 5.0, 10) == {"journal_upload_state_present": 0}
    assert jm.render({"journal_upload_state_present": 0}).endswith("journal_upload_state_present 0\n")


def test_pending_count_is_bounded():
    count, lag = jm.pending([line(1.0)] * 50, 2.0, 10)
    assert (count, lag) == (10, 1.0)


def test_write_is_atomic_and_world_readable(tmp_path):
    out = tmp_path / "journal_upload.prom"
    jm.write_atomic(str(out), "x 1\n")
    assert out.read_text() == "x 1\n" and oct(out.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["journal_upload.prom"]
