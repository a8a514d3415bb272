#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Search a gathered systemd journal (monstack)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: journal_query
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
    description:
      - Only entries this host sent. systemd-journal-remote writes the uploads of each sender
        into its own journal files, named after the sender as the log host saw it
        (C(remote-<address>.journal) and its archived C(remote-<address>@....journal); a
        journal-remote that checks client certificates names them after the certificate,
        C(remote-CN=<name>....journal)). The search reads only the files of this host, those
        of the addresses it resolves to on the log host, of its O(senders) entry, or of a
        certificate whose C(CN) is this name.
      - Not the journal field C(_HOSTNAME), which the sending host writes itself; any host
        that can upload can claim another's name there. C(_HOSTNAME) is returned as
        C(hostname), untrusted.
    type: str
  senders:
    description:
      - Names and addresses of the hosts that upload, a mapping of inventory name to a list of addresses or names,
        resolved on the log host. They name the sender of each entry in the result (C(host)) and
        add to the addresses of O(host). playbooks/logs.yml gives every inventory host with its
        C(monstack_scrape_address) and C(ansible_host).
    type: dict
    default: {}
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
  - The journal's own matches (O(unit), O(identifier), O(priority), time range, O(fields)) and
    the choice of files (O(host)) are applied by journalctl; O(grep) and O(match) by this
    module on the entries left, so narrow a search with those first.
  - Hosts behind one NAT address upload as one sender and cannot be told apart.
  - O(fields) and O(match) may still use C(_HOSTNAME); it is what the sender claims.
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
  monstack.stack.journal_query:
    unit: inference-app
    since: -1h
    match: ["status>=500"]
  register: errors

- name: Errors of one host's Prometheus containing "scrape" (the files mon1 sent, not _HOSTNAME)
  monstack.stack.journal_query:
    host: mon1
    senders: {mon1: [10.0.0.11]}
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
    host: {description: 'The sender: O(host) when given, else the inventory name of the sender (O(senders)), else its address or certificate name', type: str}
    sender: {description: 'Whom systemd-journal-remote received the entry from (the name of its journal file: an address or a certificate name)', type: str}
    hostname: {description: '_HOSTNAME, the host name the sender claims (untrusted)', type: str}
    unit: {description: _SYSTEMD_UNIT (or the syslog identifier), type: str}
    priority: {description: Priority 0-7, type: int}
    message: {description: MESSAGE, type: str}
    fields: {description: The message's fields when it is JSON or logfmt, type: dict}
  sample:
    - time: "2026-11-30T15:04:05.123456Z"
      host: app1
      sender: 10.0.0.21
      hostname: app1
      unit: inference-app.service
      priority: 6
      message: '{"event":"request","method":"POST","path":"/predict","status":500}'
      fields: {event: request, method: POST, path: /predict, status: 500}
lines:
  description: "The entries as text lines, C(time host unit: message); C([_HOSTNAME=x]) after the host when the
    sender claims another name."
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
files:
  description: With O(host), the journal files searched (none when the host sent nothing).
  returned: always
  type: list
  elements: str
"""

import datetime
import ipaddress
import json
import os
import re
import socket

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


# The journal files systemd-journal-remote writes with SplitMode=host:
# remote-<sender>.journal, archived as remote-<sender>@<seqnum id>-<seqnum>-<time>.journal,
# and remote-<sender>@<time>-<random>.journal~ when it was found corrupt.
REMOTE_FILE_RE = re.compile(
    r"^remote-(?P<sender>.+?)(?:@[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{16}|@[0-9a-f]{16}-[0-9a-f]{16})?\.journal~?$")
JOURNAL_SIGNATURE = b"LPKSHHRH"


def sender_files(directory):
    """{sender: [file paths]} of the journal files of `directory`, from their names."""
    senders = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError as error:
        raise QueryError("directory %s: %s" % (directory, error.strerror))
    for name in names:
        found = REMOTE_FILE_RE.match(name)
        if found:
            senders.setdefault(found.group("sender"), []).append(os.path.join(directory, name))
    return senders


def seqnum_id(path):
    """The sequence number id of a journal file (its header, bytes 72-88), as in cursors (s=...)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(88)
    except OSError:
        return None
    if len(header) < 88 or header[:8] != JOURNAL_SIGNATURE:
        return None
    return header[72:88].hex()


def normal_address(value):
    """An address in one spelling (IPv4-mapped IPv6 as IPv4, no brackets), or None."""
    try:
        address = ipaddress.ip_address(str(value).strip().strip("[]"))
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def addresses_of(names, resolve):
    """The addresses of names or addresses, names resolved on this host."""
    found = set()
    for name in names:
        literal = normal_address(name)
        if literal:
            found.add(literal)
            continue
        for address in resolve(str(name)):
            normal = normal_address(address)
            if normal:
                found.add(normal)
    return found


def resolve_name(name):
    try:
        return [info[4][0] for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)]
    except (OSError, UnicodeError):
        return []


def certificate_names(sender):
    """The CN values of a sender that is a certificate's distinguished name (CN=app1,O=x)."""
    return [part.strip()[3:] for part in re.split(r"(?<!\\),", sender) if part.strip().upper().startswith("CN=")]


def is_sender_of(sender, host, addresses):
    """Whether a file's sender (an address or a certificate name) is this host."""
    address = normal_address(sender)
    if address is not None:
        return address in addresses
    return host in certificate_names(sender)


def host_files(directory, host, names, resolve):
    """The journal files `host` sent (see is_sender_of) and the senders found in the directory."""
    senders = sender_files(directory)
    addresses = addresses_of([host] + list(names), resolve)
    files = [path for sender, paths in sorted(senders.items()) if is_sender_of(sender, host, addresses)
             for path in paths]
    return files, sorted(senders)


class SenderNames:
    """Sender of an entry (from the file its cursor's seqnum id belongs to) -> a name to show:
    the inventory name of `senders` whose addresses include it, else the sender itself."""

    def __init__(self, directory, senders, resolve):
        self.directory, self.senders, self.resolve = directory, senders or {}, resolve
        self._by_seqnum = None
        self._names = {}

    def sender_of(self, entry):
        if self._by_seqnum is None:
            self._by_seqnum = {}
            try:
                files = sender_files(self.directory)
            except QueryError:
                files = {}
            for sender, paths in files.items():
                for path in paths:
                    found = seqnum_id(path)
                    if found:
                        self._by_seqnum[found] = sender
        cursor = str(entry.get("__CURSOR") or "")
        found = re.match(r"^s=([0-9a-f]{32});", cursor)
        return self._by_seqnum.get(found.group(1), "") if found else ""

    def name_of(self, sender):
        if sender not in self._names:
            name = sender
            for host, names in sorted(self.senders.items()):
                if is_sender_of(sender, host, addresses_of([host] + list(names or []), self.resolve)):
                    name = host
                    break
            self._names[sender] = name
        return self._names[sender]


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
        "host": "",
        "sender": "",
        "hostname": message_text(entry.get("_HOSTNAME")),
        "unit": message_text(entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER")),
        "priority": priority,
        "message": message_text(entry.get("MESSAGE")),
        "fields": fields,
    }


def line_of(item):
    host = item["host"] or item["sender"] or "?"
    if item.get("hostname") and item["hostname"] not in (host, item["sender"]):
        host += " [_HOSTNAME=%s]" % item["hostname"]
    return "%s %s %s: %s" % (item["time"], host, item["unit"], item["message"])


def glob_escape(path):
    """A path as a journalctl --file glob that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def build_command(params, files=None):
    """journalctl reading the directory, or only `files` (a host's journal files) when given."""
    command = ["journalctl", "--no-pager"]
    if files is None:
        command += ["--directory", params["directory"]]
    else:
        command += ["--file=" + glob_escape(path) for path in files]
    command += ["-o", "json"]
    unit = params.get("unit")
    if unit:
        command += ["-u", unit if "." in unit else unit + ".service"]
    if params.get("identifier"):
        command += ["-t", params["identifier"]]
    if params.get("priority"):
        command += ["-p", params["priority"]]
    matches = dict(params.get("fields") or {})
    for field in sorted(matches):
        if not re.match(r"^[A-Z0-9_]+$", field):
            raise QueryError("fields: %r is not a journal field name (capitals, digits and _ only, "
                             "e.g. _SYSTEMD_UNIT); put message fields in match instead" % field)
        command.append("%s=%s" % (field, matches[field]))
    return command


def search(entries, pattern, conditions, limit, since_usec=None, who=None):
    """(kept entries oldest first, matched, scanned, complete) of journal entries given newest first.

    Stops once `limit` entries matched (0: no limit) or at the first entry older than `since_usec`.
    `who(entry)` -> (host, sender) names the sender of a kept entry.
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
            item = summary(entry, fields)
            if who is not None:
                item["host"], item["sender"] = who(entry)
            kept.append(item)
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


def query(params, run, resolve=resolve_name, warn=None):
    """The module's result for `params`; QueryError names what is wrong."""
    if params["page"] < 1:
        raise QueryError("page must be 1 or more, got %s" % params["page"])
    conditions = [parse_match(expression) for expression in params["match"] or []]
    pattern = None
    if params.get("grep"):
        try:
            pattern = re.compile(params["grep"], re.IGNORECASE if params.get("ignore_case") else 0)
        except re.error as error:
            raise QueryError("grep %r: not a valid regular expression (%s)" % (params["grep"], error))
    senders = params.get("senders") or {}
    names = SenderNames(params["directory"], senders, resolve)
    host, files = params.get("host"), None
    if host:
        files, known = host_files(params["directory"], host, senders.get(host) or [], resolve)
        if not files:
            if warn:
                warn("host %s: no journal files of it in %s (senders there: %s); the search by host reads the "
                     "files of the host's addresses or certificate name, not _HOSTNAME"
                     % (host, params["directory"], ", ".join(known) or "none"))
            return dict(changed=False, entries=[], lines=[], matched=0, scanned=0, complete=True, command=[],
                        files=[])
    command = build_command(params, files)
    since_usec = resolve_time(run, params["since"]) if params.get("since") else None

    def who(entry):
        sender = names.sender_of(entry)
        return (host or names.name_of(sender)), sender

    entries, matched, scanned, complete = search(
        journal_entries(run, command, params.get("until"), params["page"]),
        pattern, conditions, params["limit"], since_usec, who)
    return dict(changed=False, entries=entries, lines=[line_of(item) for item in entries], matched=matched,
                scanned=scanned, complete=complete, command=command, files=files or [])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directory=dict(type="path", default="/var/log/journal/remote"),
            host=dict(type="str"),
            senders=dict(type="dict", default={}),
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

    def run(command):
        return module.run_command(command, environ_update={"LC_ALL": "C"})

    try:
        result = query(module.params, run, warn=module.warn)
    except QueryError as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
