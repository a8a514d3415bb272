#!/usr/bin/env python
"""What changed on a host between two times, from the runs ARA recorded (docs/logs.md).

    tools/ara_changes.py --host app1 --since 2026-11-24 --until 2026-11-25

prints one line per changed task result: when it started, the playbook, the
task and its action. Times are ISO 8601 (UTC; a bare date is midnight). Reads
ARA's database through its API client: offline (the SQLite database of
ARA_DATABASE_NAME / ARA_BASE_DIR, the default) or http (ARA_API_CLIENT=http,
ARA_API_SERVER=http://ara.example:8000). Needs ara (pip install "ara[server]").
"""
from __future__ import annotations

import argparse
import os
import sys


def changes(client, host: str, since: str, until: str) -> list[dict]:
    """Changed results of host (exact name) started in [since, until], oldest first."""
    params = {"host_name": host, "changed": True, "order": "started", "limit": 1000}
    if since:
        params["started_after"] = since
    if until:
        params["started_before"] = until
    results = client.get("/api/v1/results", **params)["results"]
    tasks: dict[int, dict] = {}
    playbooks: dict[int, dict] = {}
    out = []
    for result in results:
        task = tasks.setdefault(result["task"], client.get(f"/api/v1/tasks/{result['task']}"))
        playbook = playbooks.setdefault(result["playbook"], client.get(f"/api/v1/playbooks/{result['playbook']}"))
        out.append({"started": result["started"], "playbook": playbook["path"], "playbook_id": playbook["id"],
                    "task": task["name"], "action": task["action"], "result": result["id"]})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="inventory name of the host")
    parser.add_argument("--since", default="", help="ISO 8601 date or time (UTC)")
    parser.add_argument("--until", default="", help="ISO 8601 date or time (UTC)")
    args = parser.parse_args(argv)
    try:
        from ara.clients.utils import get_client
    except ImportError:
        print("ara is not installed: pip install 'ara[server]'", file=sys.stderr)
        return 2
    kind = os.environ.get("ARA_API_CLIENT", "offline")
    kwargs = {"run_sql_migrations": False} if kind == "offline" else {}
    client = get_client(client=kind, endpoint=os.environ.get("ARA_API_SERVER", "http://127.0.0.1:8000"), **kwargs)
    found = changes(client, args.host, args.since, args.until)
    for item in found:
        print(f"{item['started']}  {item['playbook']} (run {item['playbook_id']})  {item['task']}  "
              f"[{item['action']}]  result {item['result']}")
    print(f"{len(found)} changed task result(s) on {args.host}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
