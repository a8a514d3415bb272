"""Journal upload lag for node_exporter's textfile collector (monstack journal role).

systemd-journal-upload --save-state keeps the cursor of the last entry the log
host accepted in its state file (LAST_CURSOR=...). This writes, atomically:

  journal_upload_state_present            1 when the state file holds a cursor
  journal_upload_last_entry_timestamp_seconds
                                          time of the last entry uploaded (cursor t=)
  journal_upload_state_timestamp_seconds  when the state file was last written (an upload)
  journal_upload_pending_entries          entries after the cursor, not uploaded yet (counted up to --max-count)
  journal_upload_lag_seconds              age of the oldest entry not uploaded yet (0: none)

Usage: journal_upload_metrics.py --state /var/lib/systemd/journal-upload/state
           --output /var/lib/node_exporter/textfile/journal_upload.prom
Standard library only (python3 of Debian 11-13).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterable, List, Optional, Tuple

HELP = {
    "journal_upload_state_present": ("gauge", "1 when systemd-journal-upload saved a cursor, else 0."),
    "journal_upload_last_entry_timestamp_seconds": (
        "gauge", "Time of the last journal entry the log host accepted (from the saved cursor)."),
    "journal_upload_state_timestamp_seconds": ("gauge", "When systemd-journal-upload last saved its cursor."),
    "journal_upload_pending_entries": ("gauge", "Journal entries after the saved cursor, not uploaded yet."),
    "journal_upload_lag_seconds": ("gauge", "Age of the oldest journal entry not uploaded yet (0 when none)."),
}


def parse_state(text: str) -> Optional[str]:
    """The cursor of a journal-upload state file, or None."""
    for line in text.splitlines():
        if line.startswith("LAST_CURSOR="):
            cursor = line[len("LAST_CURSOR="):].strip()
            return cursor or None
    return None


def cursor_timestamp(cursor: str) -> Optional[float]:
    """Seconds since the epoch of a journal cursor's realtime field (t=, hex microseconds)."""
    for part in cursor.split(";"):
        if part.startswith("t="):
            try:
                return int(part[2:], 16) / 1e6
            except ValueError:
                return None
    return None


def pending(entries: Iterable[str], now: float, max_count: int) -> Tuple[int, float]:
    """(count, lag seconds) of journal JSON lines after the cursor: lag from the first one."""
    count, lag = 0, 0.0
    for line in entries:
        if not line.strip():
            continue
        if count == 0:
            try:
                first = int(json.loads(line)["__REALTIME_TIMESTAMP"]) / 1e6
                lag = max(0.0, now - first)
            except (ValueError, KeyError, TypeError):
                lag = 0.0
        count += 1
        if count >= max_count:
            break
    return count, lag


def render(values: Dict[str, float]) -> str:
    out: List[str] = []
    for name in HELP:
        if name not in values:
            continue
        kind, text = HELP[name]
        value = values[name]
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}",
                f"{name} {int(value) if float(value).is_integer() else round(value, 3)}"]
    return "\n".join(out) + "\n"


def journal_after(cursor: str, max_count: int) -> List[str]:
    """The first max_count entries after cursor, as JSON lines, from the local journal."""
    lines: List[str] = []
    with subprocess.Popen(
            ["journalctl", "--no-pager", "-o", "json", "--output-fields=__REALTIME_TIMESTAMP",
             "--after-cursor", cursor], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        for line in proc.stdout:
            lines.append(line)
            if len(lines) >= max_count:
                proc.kill()
                break
    return lines


def collect(state_path: str, now: float, max_count: int, reader=journal_after) -> Dict[str, float]:
    try:
        with open(state_path, encoding="utf-8") as handle:
            cursor = parse_state(handle.read())
        state_time = os.stat(state_path).st_mtime
    except OSError:
        cursor, state_time = None, None
    if cursor is None:
        return {"journal_upload_state_present": 0}
    values = {"journal_upload_state_present": 1, "journal_upload_state_timestamp_seconds": state_time}
    stamp = cursor_timestamp(cursor)
    if stamp is not None:
        values["journal_upload_last_entry_timestamp_seconds"] = stamp
    count, lag = pending(reader(cursor, max_count), now, max_count)
    values["journal_upload_pending_entries"] = count
    values["journal_upload_lag_seconds"] = lag
    return values


def write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    fd, temp = tempfile.mkstemp(prefix=".journal_upload.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", default="/var/lib/systemd/journal-upload/state")
    parser.add_argument("--output", required=True, help="the .prom file to write")
    parser.add_argument("--max-count", type=int, default=100000, help="count pending entries up to this many")
    args = parser.parse_args(argv)
    write_atomic(args.output, render(collect(args.state, time.time(), args.max_count)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
