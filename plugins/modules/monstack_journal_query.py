#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Search a gathered systemd journal (monstack)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: monstack_journal_query
short_description: Search the journals gathered by systemd-journal-remote, with JSON and logfmt field matches
description:
  - Runs C(journalctl --directory) on the journal directory (by default the one
    systemd-journal-remote writes, C(/var/log/journal/remote)) with the journal's
    own indexed matches (host, unit, priority, time range), reads the entries as
    JSON and keeps those whose message matches O(grep) and the field conditions
    of O(match).
  - A message that is a JSON object (the sample inference API, components with
    C(--log.format=json)) or logfmt (C(key=value ...), the components' default)
    is parsed into fields, and O(match) compares them, for example C(status>=500).
  - The journal is read newest first, a page of O(page) entries per journalctl run,
    and the search stops once O(limit) entries matched, so a narrow search of a
    large journal reads little and memory stays bounded by one page.
  - Read only, the same in check mode.
version_added: "1.0.0"
author: monstack (!UNKNOWN)
options:
  directory:
    description: The journal directory to search.
    type: path
    default: /var/log/journal/remote
  host:
    description: Only entries of this host (the journal field C(_HOSTNAME)).
    type: str
  unit:
    description:
      - Only entries of this systemd unit (C(journalctl -u)); C(.service) is added to a
        name without a suffix.
    type: str
  identifier:
    description: Only entries of this syslog identifier (C(journalctl -t)).
    type: str
  priority:
    description:
      - "Only entries of this priority or more urgent (C(journalctl -p)), a name such as
        C(err) or C(warning), a number 0-7, or a range C(err..warning)."
    type: str
  since:
    description:
      - Entries from this time on, in systemd's time syntax (C(journalctl --since), e.g. C(-1h),
        C(2026-11-24 00:00), C(yesterday)); resolved once with C(systemd-analyze timestamp).
    type: str
  until:
    description: Entries up to this time (C(journalctl --until)).
    type: str
  page:
    description: How many entries one journalctl run reads (the memory bound of a search).
    type: int
    default: 2000
  grep:
    description: A regular expression (Python syntax) the message must match.
    type: str
  ignore_case:
    description: Match O(grep) without regard to case.
    type: bool
    default: false
  match:
    description:
      - Conditions on fields, all of which must hold. Each is C(FIELD OP VALUE) with OP one of
        C(=), C(!=), C(>=), C(<=), C(>), C(<) (numbers when both sides are numbers, else text)
        or C(~) (regular expression). FIELD is a field of the message (JSON or logfmt) or,
        in capitals, a journal field (C(_SYSTEMD_UNIT), C(SYSLOG_IDENTIFIER), ...).
      - An entry whose message has no such field does not match.
    type: list
    elements: str
    default: []
  fields:
    description: Further journal matches passed to journalctl as C(FIELD=value) (exact, indexed).
    type: dict
    default: {}
  limit:
    description:
      - How many matching entries to return, the newest ones; the search stops there.
        0 returns all, reading the whole time range.
    type: int
    default: 100
notes:
  - The journal's own matches (O(host), O(unit), O(identifier), O(priority), time range,
    O(fields)) are applied by journalctl on its indexes; O(grep) and O(match) by this
    module on the entries left, so narrow a search with those first.
attributes:
  diff_mode:
    description: Returns no diff (it changes nothing).
    support: none
  check_mode:
    description: Runs the same in check mode (it only reads).
    support: full
    details: read only
"""

EXAMPLES = r"""
- name: Every request of the inference API answered with a 5xx in the last hour
  monstack_journal_query:
    unit: inference-app
    since: -1h
    match: ["status>=500"]
  register: errors

- name: Errors of one host's Prometheus containing "scrape"
  monstack_journal_query:
    host: mon1
    unit: prometheus
    priority: err
    grep: scrape
"""

RETURN = r"""
entries:
  description: The matching entries, oldest first (at most O(limit), the newest ones).
  returned: always
  type: list
  elements: dict
  contains:
    time: {description: 'Time of the entry (UTC, ISO 8601)', type: str}
    host: {description: _HOSTNAME, type: str}
    unit: {description: _SYSTEMD_UNIT (or the syslog identifier), type: str}
    priority: {description: Priority 0-7, type: int}
    message: {description: MESSAGE, type: str}
    fields: {description: The message's fields when it is JSON or logfmt, type: dict}
  sample:
    - time: "2026-11-30T15:04:05.123456Z"
      host: app1
      unit: inference-app.service
      priority: 6
      message: '{"event":"request","method":"POST","path":"/predict","status":500}'
      fields: {event: request, method: POST, path: /predict, status: 500}
lines:
  description: "The entries as text lines, C(time host unit: message)."
  returned: always
  type: list
  elements: str
matched:
  description: How many entries matched among those read.
  returned: always
  type: int
scanned:
  description: How many entries journalctl returned before O(grep) and O(match).
  returned: always
  type: int
complete:
  description: Whether the whole time range was read (false when the search stopped at O(limit)).
  returned: always
  type: bool
command:
  description: The first journalctl command that ran (later pages add C(--after-cursor)).
  returned: always
  type: list
  elements: str
"""

import datetime
import json
import re

from ansible.module_utils.basic import AnsibleModule

OPERATORS = ("!=", ">=", "<=", "=", ">", "<", "~")
MATCH_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(!=|>=|<=|=|>|<|~)\s*(.*?)\s*$")
LOGFMT_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')


class QueryError(Exception):
    pass


def parse_match(expression):
    """'status>=500' -> ('status', '>=', '500'); QueryError with the fix otherwise."""
    found = MATCH_RE.match(expression or "")
    if not found:
        raise QueryError("match %r: expected FIELD OP VALUE with OP one of %s, for example status>=500"
                         % (expression, " ".join(OPERATORS)))
    field, operator, value = found.groups()
    if operator == "~":
        try:
            re.compile(value)
        except re.error as error:
            raise QueryError("match %r: %s is not a valid regular expression (%s)" % (expression, value, error))
    return field, operator, value


def message_text(value):
    """MESSAGE as text: journalctl gives non-UTF-8 messages as a list of byte values."""
    if isinstance(value, list):
        try:
            return bytes(value).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return ""
    return "" if value is None else str(value)


def parse_logfmt(text):
    fields = {}
    for key, value in LOGFMT_RE.findall(text):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        fields[key] = value
    return fields


def message_fields(text):
    """The fields of a JSON object message, else of a logfmt one, else {}."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    if "=" in stripped:
        return parse_logfmt(stripped)
    return {}


def number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(str(value))
    except ValueError:
        return None


def compare(actual, operator, expected):
    if operator == "~":
        return re.search(expected, str(actual)) is not None
    left, right = number(actual), number(expected)
    if left is not None and right is not None:
        pair = (left, right)
    else:
        pair = (str(actual).lower() if isinstance(actual, bool) else str(actual), expected)
    if operator == "=":
        return pair[0] == pair[1]
    if operator == "!=":
        return pair[0] != pair[1]
    if left is None or right is None:
        return False  # order comparisons on text are not meaningful here
    return {">=": left >= right, "<=": left <= right, ">": left > right, "<": left < right}[operator]


def entry_matches(entry, fields, pattern, conditions):
    if pattern is not None and not pattern.search(message_text(entry.get("MESSAGE"))):
        return False
    for field, operator, expected in conditions:
        source = entry if field.isupper() or field.startswith("_") else fields
        if field not in source:
            return False
        if not compare(source[field], operator, expected):
            return False
    return True


def summary(entry, fields):
    try:
        stamp = datetime.datetime.fromtimestamp(int(entry.get("__REALTIME_TIMESTAMP", 0)) / 1e6,
                                                datetime.timezone.utc)
        when = stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (TypeError, ValueError, OverflowError):
        when = ""
    try:
        priority = int(entry.get("PRIORITY", 6))
    except (TypeError, ValueError):
        priority = 6
    return {
        "time": when,
        "host": message_text(entry.get("_HOSTNAME")),
        "unit": message_text(entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER")),
        "priority": priority,
        "message": message_text(entry.get("MESSAGE")),
        "fields": fields,
    }


def line_of(item):
    return "%s %s %s: %s" % (item["time"], item["host"], item["unit"], item["message"])


def build_command(params):
    command = ["journalctl", "--no-pager", "--directory", params["directory"], "-o", "json"]
    unit = params.get("unit")
    if unit:
        command += ["-u", unit if "." in unit else unit + ".service"]
    if params.get("identifier"):
        command += ["-t", params["identifier"]]
    if params.get("priority"):
        command += ["-p", params["priority"]]
    matches = dict(params.get("fields") or {})
    if params.get("host"):
        matches["_HOSTNAME"] = params["host"]
    for field in sorted(matches):
        if not re.match(r"^[A-Z0-9_]+$", field):
            raise QueryError("fields: %r is not a journal field name (capitals, digits and _ only, "
                             "e.g. _SYSTEMD_UNIT); put message fields in match instead" % field)
        command.append("%s=%s" % (field, matches[field]))
    return command


def search(entries, pattern, conditions, limit, since_usec=None):
    """(kept entries oldest first, matched, scanned, complete) of journal entries given newest first.

    Stops once `limit` entries matched (0: no limit) or at the first entry older than `since_usec`.
    """
    kept = []
    matched = scanned = 0
    for entry in entries:
        if since_usec is not None and int(entry.get("__REALTIME_TIMESTAMP") or 0) < since_usec:
            return kept[::-1], matched, scanned, True
        if 0 < limit <= matched:
            return kept[::-1], matched, scanned, False
        scanned += 1
        fields = message_fields(message_text(entry.get("MESSAGE")))
        if entry_matches(entry, fields, pattern, conditions):
            matched += 1
            kept.append(summary(entry, fields))
    return kept[::-1], matched, scanned, True


def journal_entries(run, command, until, page):
    """The entries of `command` newest first, read `page` entries per journalctl run."""
    cursor = None
    while True:
        paged = command + ["--reverse", "-n", str(page)]
        paged += ["--after-cursor", cursor] if cursor else (["--until", until] if until else [])
        rc, out, err = run(paged)
        if rc != 0:
            raise QueryError("journalctl failed (rc %s): %s" % (rc, err.strip()))
        count = 0
        for line in out.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            count += 1
            cursor = entry.get("__CURSOR") or cursor
            yield entry
        if count < page or not cursor:
            return


UNIX_SECONDS_RE = re.compile(r"UNIX seconds:\s*@(\d+)(?:\.(\d{1,6}))?")


def resolve_time(run, value):
    """Microseconds since the epoch of a time in systemd's syntax (systemd-analyze timestamp)."""
    rc, out, err = run(["systemd-analyze", "timestamp", "--", value])
    found = UNIX_SECONDS_RE.search(out or "")
    if rc != 0 or not found:
        raise QueryError("since %r: not a time systemd understands (%s); e.g. -1h, yesterday, "
                         "2026-11-24 00:00" % (value, (err or out).strip()))
    return int(found.group(1)) * 1000000 + int((found.group(2) or "0").ljust(6, "0"))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directory=dict(type="path", default="/var/log/journal/remote"),
            host=dict(type="str"),
            unit=dict(type="str"),
            identifier=dict(type="str"),
            priority=dict(type="str"),
            since=dict(type="str"),
            until=dict(type="str"),
            grep=dict(type="str"),
            ignore_case=dict(type="bool", default=False),
            match=dict(type="list", elements="str", default=[]),
            fields=dict(type="dict", default={}),
            limit=dict(type="int", default=100),
            page=dict(type="int", default=2000),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def run(command):
        return module.run_command(command, environ_update={"LC_ALL": "C"})

    command = []
    try:
        if params["page"] < 1:
            raise QueryError("page must be 1 or more, got %s" % params["page"])
        conditions = [parse_match(expression) for expression in params["match"]]
        pattern = None
        if params["grep"]:
            try:
                pattern = re.compile(params["grep"], re.IGNORECASE if params["ignore_case"] else 0)
            except re.error as error:
                raise QueryError("grep %r: not a valid regular expression (%s)" % (params["grep"], error))
        command = build_command(params)
        since_usec = resolve_time(run, params["since"]) if params["since"] else None
        entries, matched, scanned, complete = search(
            journal_entries(run, command, params["until"], params["page"]),
            pattern, conditions, params["limit"], since_usec)
    except QueryError as error:
        module.fail_json(msg=str(error), command=command)
    module.exit_json(changed=False, entries=entries, lines=[line_of(item) for item in entries],
                     matched=matched, scanned=scanned, complete=complete, command=command)


if __name__ == "__main__":
    main()
