# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""The deployment record contract of monstack: validation, the policy, the latest record.

"Deployments drive discovery": a CI/CD pipeline writes one record per deployment.
This module says what a valid record is (its fields, the limits and allowed
destinations of the policy) and which record of a service counts (the latest by
deployed_at). It is the one place that knows the contract: the filters
(plugins/filter/deployment_*.py), the record store module, the lookup and
tools/monstack-record import it. Rendering is in deployment_render, reading
and parsing record files in deployment_parse, the post-deploy gate in deployment_gate.

Everything here is a pure function of its inputs: no I/O, no clock, no
randomness, and output order never depends on input order (except where a
tie would be ambiguous, which is reported as an error instead). Errors are
RecordError, whose message names the record's file and field; the filters turn
it into RecordError. Standard library only (it also runs on managed hosts).
"""
from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import posixpath
import re
import socket
import struct
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, NamedTuple, NoReturn
from urllib.parse import unquote, urlsplit

Record = dict[str, Any]
TargetGroup = dict[str, Any]


class RecordError(Exception):
    """A record (or an option) that breaks the contract; the message names the file and field."""


# --------------------------------------------------------------------------
# Constants (the record contract; keep docs/deployments.md in sync)
# --------------------------------------------------------------------------
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
NAME_MAX_LEN = 120  # keeps '<environment>--<service>.json' below NAME_MAX (255)
VERSION_MAX_LEN = 128
# deployed_at's written year: no UTC offset takes such a time out of Python's date range.
YEAR_MIN = 1970
YEAR_MAX = 9998
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
COMMIT_RE = re.compile(r"[0-9a-fA-F]{4,64}")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
METRICS_PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")
# [hH]... rather than (?i): Python's case folding would let 'ſ' (U+017F) stand for 's'.
# No '@' in the authority: user info (http://user:password@host/) is refused.
URL_RE = re.compile(r"[hH][tT][tT][pP][sS]?://[^/?#@\s\x00-\x1f\x7f-\x9f]+(?:[/?#][^\s\x00-\x1f\x7f-\x9f]*)?")
DNS_NAME_RE = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
    r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*"
)
DIGITS_AND_DOTS_RE = re.compile(r"[0-9.]+")
PORT_RE = re.compile(r"[0-9]{1,5}")

STATUS_DEPLOYED = "deployed"
STATUS_REMOVED = "removed"
STATUSES = (STATUS_DEPLOYED, STATUS_REMOVED)
SCHEMES = ("http", "https")
DEFAULT_METRICS_PATH = "/metrics"
DEFAULT_SCHEME = "http"

REQUIRED_FIELDS = ("service", "environment", "version", "deployed_at")
KNOWN_FIELDS = (
    "service", "environment", "version", "deployed_at", "status", "commit",
    "targets", "metrics_path", "scheme", "labels", "health_url", "pipeline", "slos",
)
_KNOWN_FIELDS_SET = frozenset(KNOWN_FIELDS)
TARGET_KEYS = ("host", "port")
# Label names a record's own fields (or Prometheus) own; user labels may not
# use them.  They are rejected, never renamed.
RESERVED_LABELS = frozenset(
    {"service", "environment", "version", "commit", "instance", "job"}
)
FILE_SEPARATOR = "--"
FILE_SUFFIX = ".json"

# --------------------------------------------------------------------------
# Policy (limits and allowed destinations; the playbook's deployment_* variables,
# docs/deployments.md "Limits and policy"). Records come from CI pipelines that
# anyone who can push a branch may run: they are untrusted input.
# --------------------------------------------------------------------------
# Never probed or scraped unless the operator opens them up (deployment_denied_targets):
# loopback, "this network"/unspecified, link-local (cloud metadata at 169.254.169.254,
# fd00:ec2::254), multicast and broadcast, and the names that mean this host or metadata.
DEFAULT_DENIED_TARGETS = (
    "127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128", "169.254.0.0/16", "fe80::/10",
    "224.0.0.0/4", "ff00::/8", "255.255.255.255/32", "fd00:ec2::254/128", "100.100.100.200/32",
    "localhost", "*.localhost", "localhost.localdomain", "metadata", "metadata.google.internal",
    "instance-data", "instance-data.ec2.internal",
)
# Paths (anywhere in metrics_path or a health_url's path, after decoding) that change
# state or cost a lot on a GET: VictoriaMetrics deletes series on a GET.
DEFAULT_DENIED_PATHS = (
    "/api/v1/admin/", "/-/reload", "/-/quit", "/snapshot/", "/internal/force_merge",
    "/internal/force_flush", "/internal/resetRollupResultCache", "/debug/pprof/", "/api/admin/",
)
DEFAULT_POLICY: dict[str, Any] = {
    "max_labels": 16,
    "max_label_name_length": 64,
    "max_label_value_length": 256,
    "max_clock_skew": 300,
    "now": None,  # seconds since the epoch; None: deployed_at is not checked against a clock
    "allowed_targets": {},
    "denied_targets": list(DEFAULT_DENIED_TARGETS),
    "denied_paths": list(DEFAULT_DENIED_PATHS),
}
# The playbook's variable behind each policy key, for messages.
POLICY_VARIABLES = {key: "now" if key == "now" else f"deployment_{key}" for key in DEFAULT_POLICY}
# A host name that inet_aton() would read as an address (0x7f.1, 2130706433, 127.1).
NUMERIC_NAME_RE = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*\.?")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


class Deployment(NamedTuple):
    """A validated record plus the parsed values the other filters need."""

    record: Record  # the normalized, public form (what deployment_validate returns)
    service: str
    environment: str
    version: str
    status: str
    commit: str | None
    epoch_us: int  # deployed_at as integer microseconds since the Unix epoch
    who: str  # "<source> (service 'x')" for error messages


# --------------------------------------------------------------------------
# Error helpers
# --------------------------------------------------------------------------
def show(value: Any) -> str:
    """Render a bad value for an error message, with its YAML type when useful."""
    if isinstance(value, str):
        text = str(value)
        return repr(text if len(text) <= 80 else text[:77] + "...")
    if value is None:
        return "null (empty value)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, datetime):
        return f"date/time {value.isoformat()}"
    if isinstance(value, date):
        return f"date {value.isoformat()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def fail(who: str, field: str, problem: str) -> NoReturn:
    raise RecordError(f"{who}: field '{field}': {problem}")


def expected(who: str, field: str, what: str, got: Any, hint: str = "") -> NoReturn:
    fail(who, field, f"expected {what}, got {show(got)}{'; ' + hint if hint else ''}")


def _quote_hint(field: str, value: Any) -> str:
    return f"quote it in YAML, e.g. {field}: \"{value}\""


# --------------------------------------------------------------------------
# Field validators (each returns the normalized value or raises)
# --------------------------------------------------------------------------
def check_name(who: str, field: str, value: Any) -> str:
    """service / environment: lower-case name safe for label values and file names."""
    if value is None:
        fail(who, field, "is required (a name matching ^[a-z0-9][a-z0-9_.-]*$)")
    if not isinstance(value, str):
        expected(who, field, "a name matching ^[a-z0-9][a-z0-9_.-]*$", value)
    if not NAME_RE.fullmatch(value) or len(value) > NAME_MAX_LEN:
        hint = ""
        if NAME_RE.fullmatch(value.lower().strip()):
            hint = f"did you mean {value.lower().strip()!r}?"
        expected(
            who, field,
            f"a name matching ^[a-z0-9][a-z0-9_.-]*$ (at most {NAME_MAX_LEN} characters)",
            value, hint,
        )
    return str(value)


def check_version(who: str, value: Any) -> str:
    if value is None:
        fail(who, "version", "is required (a string such as \"1.4.2\")")
    if not isinstance(value, str):
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        hint = _quote_hint("version", value) if numeric else ""
        if isinstance(value, float):
            hint += " (an unquoted 1.10 is read as the number 1.1)"
        expected(who, "version", "a string", value, hint)
    if not value or value != value.strip() or CONTROL_RE.search(value) or len(value) > VERSION_MAX_LEN:
        expected(
            who, "version",
            f"a non-empty string without surrounding spaces or control characters "
            f"(at most {VERSION_MAX_LEN} characters)",
            value,
        )
    return str(value)


def _format_utc(dt: datetime) -> str:
    text = (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
            f"T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def check_year(who: str, field: str, what: str, value: Any, year: int) -> None:
    if not YEAR_MIN <= year <= YEAR_MAX:
        expected(who, field, what, value, f"the year must be {YEAR_MIN}-{YEAR_MAX}")


def check_timestamp(who: str, value: Any) -> tuple[str, int]:
    """deployed_at -> (normalized RFC 3339 UTC string, epoch microseconds)."""
    field = "deployed_at"
    example = "an RFC 3339 date/time with a timezone such as '2026-11-20T10:15:00Z'"
    no_tz = "it has no timezone; add 'Z' for UTC or an offset like '+01:00'"
    if value is None:
        fail(who, field, f"is required ({example})")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            expected(who, field, example, value, no_tz)
        check_year(who, field, example, value, value.year)
        dt = value
    elif isinstance(value, date):
        expected(who, field, example, value, "a date alone is not enough; add the time and timezone")
    elif isinstance(value, str):
        if not RFC3339_RE.fullmatch(value):
            naive = re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?", value)
            expected(who, field, example, value, no_tz if naive else "")
        try:
            # The regex above admits only RFC 3339; Python >= 3.11 parses that
            # (upper() turns the allowed 't'/'z' into 'T'/'Z').
            dt = datetime.fromisoformat(value.upper())
        except ValueError as exc:
            expected(who, field, example, value, f"not a valid date/time ({exc})")
        check_year(who, field, example, value, dt.year)
        if len(value) == 20 and value[10] == "T" and value[19] == "Z":  # already canonical
            return str(value), (dt - _EPOCH) // _ONE_US
    else:
        expected(who, field, example, value)
    try:
        utc = dt.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        expected(who, field, example, value, "out of range")
    return _format_utc(utc), (utc - _EPOCH) // _ONE_US


def check_status(who: str, value: Any) -> str:
    if value is None:
        return STATUS_DEPLOYED
    if value not in STATUSES or not isinstance(value, str):
        expected(who, "status", "'deployed' or 'removed'", value)
    return str(value)


def check_commit(who: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        hint = _quote_hint("commit", value) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        expected(who, "commit", "a git commit hash (4-64 hex digits) as a string", value, hint)
    if not COMMIT_RE.fullmatch(value):
        expected(who, "commit", "a git commit hash (4-64 hex digits)", value)
    return value.lower()


def _ipv4(host: str) -> str | None:
    """Dotted-quad IPv4 without leading zeros, else None (faster than ipaddress)."""
    parts = host.split(".")
    if len(parts) != 4:
        return None
    for part in parts:
        if not part or len(part) > 3 or (part[0] == "0" and len(part) > 1) or int(part) > 255:
            return None
    return host


def _ipv6(host: str) -> str | None:
    """IPv6 address -> RFC 5952 text (lower case, longest zero run as '::'), else None.

    Formats the 8 groups itself so the result does not depend on the Python
    version (ipaddress prints IPv4-mapped addresses differently since 3.13).
    """
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError):  # also rejects zone ids ('%eth0')
        return None
    groups = struct.unpack("!8H", packed)
    best_start, best_len, start = -1, 1, -1
    for index, group in enumerate(groups + (1,)):
        if group == 0:
            if start < 0:
                start = index
        elif start >= 0:
            if index - start > best_len:
                best_start, best_len = start, index - start
            start = -1
    hexes = [f"{group:x}" for group in groups]
    if best_start < 0:
        return ":".join(hexes)
    return ":".join(hexes[:best_start]) + "::" + ":".join(hexes[best_start + best_len:])


@lru_cache(maxsize=16384)
def normalize_host(host: str) -> str | None:
    """DNS name / IPv4 / IPv6 -> normalized host (IPv6 bracketed), None if invalid.

    Pure; memoized because the same hosts recur in every deployment of a service.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        address = _ipv6(host)
        return None if address is None else f"[{address}]"
    if DIGITS_AND_DOTS_RE.fullmatch(host):
        return _ipv4(host)
    if not host.isascii():  # lower() would turn a Kelvin sign (U+212A) into 'k'
        return None
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    return name if DNS_NAME_RE.fullmatch(name) else None


def check_host(who: str, field: str, value: Any) -> str:
    """A DNS name, an IPv4 or an IPv6 address -> normalized host (IPv6 in brackets)."""
    host = normalize_host(str(value)) if isinstance(value, str) and value else None
    if host is not None:
        return host
    what = "a DNS name, an IPv4 or an IPv6 address"
    hint = ""
    if isinstance(value, str):
        bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
        if bare.count(":") == 1 and not value.startswith("["):
            hint = "put the port in the 'port' key, not in the host"
        elif "%" in bare:
            hint = "IPv6 zone ids ('%eth0') are not supported"
        elif ":" in bare:
            hint = "not a valid IPv6 address"
        elif DIGITS_AND_DOTS_RE.fullmatch(bare):
            hint = "not a valid IPv4 address"
        elif "/" in bare:
            hint = "give only the host name, without scheme or path"
    expected(who, field, what, value, hint)


def _port(text: str) -> int | None:
    if PORT_RE.fullmatch(text):
        port = int(text)
        if 1 <= port <= 65535:
            return port
    return None


def check_port(who: str, field: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= 65535:
            return int(value)
    elif isinstance(value, str):
        port = _port(value)
        if port is not None:
            return port
    expected(who, field, "an integer 1-65535", value)


@lru_cache(maxsize=16384)
def normalize_target(value: str) -> str | None:
    """'host:port' or '[ipv6]:port' -> normalized 'host:port', None if invalid."""
    if value.startswith("["):
        host, sep, port_text = value.rpartition(":")
        if not sep or not host.endswith("]"):
            return None
    else:
        host, sep, port_text = value.partition(":")
        if not sep or ":" in port_text:
            return None
    port = _port(port_text)
    host = normalize_host(host) if host else None
    return None if port is None or host is None else f"{host}:{port}"


def parse_target_string(who: str, field: str, value: str) -> str:
    """'host:port' or '[ipv6]:port' -> normalized 'host:port', or an error saying why not."""
    target = normalize_target(str(value))
    if target is not None:
        return target
    what = "'host:port' (or '[ipv6]:port') with a port 1-65535"
    if "/" in value:
        expected(who, field, what, value, "give only host and port, without scheme or path")
    if value.startswith("["):
        host, sep, port_text = value.rpartition(":")
        if not sep or not host.endswith("]"):
            expected(who, field, what, value)
    else:
        colons = value.count(":")
        if colons == 0:
            expected(who, field, what, value, "the port is missing")
        if colons > 1:
            expected(who, field, what, value, "write IPv6 addresses in brackets, e.g. '[2001:db8::1]:8000'")
        host, _sep, port_text = value.partition(":")
    if _port(port_text) is None:
        expected(who, field, what, value)
    check_host(who, field, host)
    expected(who, field, what, value)  # not reached: one of the checks above fails


def check_target(who: str, field: str, value: Any) -> str:
    if isinstance(value, str):
        return parse_target_string(who, field, value)
    if isinstance(value, Mapping):
        if len(value) != 2 or "host" not in value or "port" not in value:
            for key in value:
                if key not in TARGET_KEYS:
                    fail(who, f"{field}.{key}", "unknown key; a target mapping has only 'host' and 'port'")
            for key in TARGET_KEYS:
                if key not in value:
                    fail(who, f"{field}.{key}", "is required")
        host = check_host(who, f"{field}.host", value["host"])
        return f"{host}:{check_port(who, f'{field}.port', value['port'])}"
    expected(who, field, "'host:port' or a mapping with 'host' and 'port'", value)


def check_targets(who: str, value: Any, required: bool) -> list[str]:
    """-> normalized 'host:port' strings, duplicates removed, first-seen order kept."""
    what = "a non-empty list of targets ('host:port' strings or {host, port} mappings)"
    if value is None or (isinstance(value, (list, tuple)) and not value):
        if required:
            fail(who, "targets", f"is required unless status is 'removed' ({what})")
        return []
    if not isinstance(value, (list, tuple)):
        expected(who, "targets", what, value)
    seen: dict[str, None] = {}
    for index, item in enumerate(value):
        target = None
        if isinstance(item, str):  # fast paths first; check_target explains failures
            target = normalize_target(item)
        elif isinstance(item, Mapping) and len(item) == 2:
            host, port = item.get("host"), item.get("port")
            if isinstance(host, str) and type(port) is int and 1 <= port <= 65535:  # pylint: disable=unidiomatic-typecheck  # not bool
                host = normalize_host(host)
                target = None if host is None else f"{host}:{port}"
        if target is None:
            target = check_target(who, f"targets[{index}]", item)
        seen[target] = None
    return list(seen)


def check_metrics_path(who: str, value: Any) -> str:
    if value is None:
        return DEFAULT_METRICS_PATH
    if not isinstance(value, str) or not METRICS_PATH_RE.fullmatch(value):
        hint = "it must start with '/'" if isinstance(value, str) and not value.startswith("/") else ""
        expected(who, "metrics_path", "a URL path such as '/metrics' (no spaces, query string or fragment)",
                 value, hint)
    return str(value)


def check_scheme(who: str, value: Any) -> str:
    if value is None:
        return DEFAULT_SCHEME
    if not isinstance(value, str) or value not in SCHEMES:
        expected(who, "scheme", "'http' or 'https'", value)
    return str(value)


def check_label_name(who: str, name: Any) -> str:
    field = f"labels.{name}"
    if not isinstance(name, str) or not LABEL_NAME_RE.fullmatch(name):
        suggestion = re.sub(r"[^a-zA-Z0-9_]", "_", str(name))
        if suggestion[:1].isdigit():
            suggestion = "_" + suggestion
        expected(who, field, "a Prometheus label name matching [a-zA-Z_][a-zA-Z0-9_]*", name,
                 f"labels are never renamed; use e.g. {suggestion!r}")
    if name.startswith("__"):
        fail(who, field, "label names starting with '__' are reserved for Prometheus internals; "
                         "use metrics_path/scheme for __metrics_path__/__scheme__")
    if name in RESERVED_LABELS:
        fail(who, field, f"'{name}' is a reserved label set from the record itself "
                         f"(reserved: {', '.join(sorted(RESERVED_LABELS))}); pick another name")
    return str(name)


def check_label_value(who: str, name: str, value: Any) -> str:
    """Label values are strings; integers and booleans are converted ('true'/'false')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str) and value:
        return str(value)
    hint = ""
    if isinstance(value, float):
        hint = _quote_hint(name, value)
    elif value is None or value == "":
        hint = "an empty value means 'no label' in Prometheus; remove the label instead"
    expected(who, f"labels.{name}", "a non-empty string, an integer or a boolean", value, hint)


@lru_cache(maxsize=4096)
def label_name_ok(name: str) -> bool:
    """Valid Prometheus label name that a user may set (memoized; names recur)."""
    return bool(LABEL_NAME_RE.fullmatch(name)) and not name.startswith("__") and name not in RESERVED_LABELS


def check_labels(who: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        expected(who, "labels", "a mapping of label names to values", value)
    labels: dict[str, str] = {}
    for name, val in value.items():
        if not (isinstance(name, str) and label_name_ok(name)):
            check_label_name(who, name)  # raises with the reason
        labels[name] = val if type(val) is str and val else check_label_value(who, name, val)  # pylint: disable=unidiomatic-typecheck
    return dict(sorted(labels.items()))


def check_url(who: str, field: str, value: Any) -> str:
    what = "an http(s) URL such as 'http://app1.example.com:8000/health'"
    if not isinstance(value, str):
        expected(who, field, what, value)
    if not URL_RE.fullmatch(value):
        authority = re.split(r"[/?#]", value.partition("://")[2], maxsplit=1)[0]
        if "://" in value and "@" in authority:
            # never shown: the part before '@' is a user name and often a password
            fail(who, field, "user info ('user:password@') is not allowed in a URL; "
                             "a record is not the place for credentials")
        expected(who, field, what, value)
    return str(value)


def check_pipeline(who: str, value: Any) -> dict[str, Any] | None:
    """Free-form CI metadata; known keys are checked, others must be scalars."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        expected(who, "pipeline", "a mapping such as {provider: github-actions, run_id: '4242', url: 'https://...'}",
                 value)
    out: dict[str, Any] = {}
    for key, val in value.items():
        if not isinstance(key, str):
            expected(who, "pipeline", "string keys", key)
        if val is None or val == "":
            continue
        if key == "url":
            out[key] = check_url(who, "pipeline.url", val)
        elif isinstance(val, str):
            out[key] = val
        elif key == "run_id" and isinstance(val, int) and not isinstance(val, bool):
            out[key] = str(val)
        elif isinstance(val, (bool, int, float)):
            out[key] = val
        else:
            expected(who, f"pipeline.{key}", "a string, number or boolean", val)
    return dict(sorted(out.items())) or None


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------
def describe(record: Mapping[str, Any], number: int) -> str:
    """'<_source or record #N> (service 'x')' -- used as the prefix of every error."""
    source = record.get("_source")
    where = str(source) if source else f"record #{number}"
    service = record.get("service")
    if isinstance(service, str) and service:
        text = str(service)
        return f"{where} (service {text[:60]!r})"
    return f"{where} (service unknown)"


def check_keys(who: str, record: Mapping[str, Any]) -> list[str]:
    """Reject unknown fields; return the private ('_'-prefixed) ones, which are kept."""
    extra = record.keys() - _KNOWN_FIELDS_SET
    if not extra:
        return []
    private = []
    for key in sorted(extra, key=str):
        if not isinstance(key, str):
            fail(who, str(key), "field names must be strings")
        if key.startswith("_"):
            private.append(key)
            continue
        close = difflib.get_close_matches(key, KNOWN_FIELDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        fail(who, key, f"unknown field; {hint}known fields: {', '.join(KNOWN_FIELDS)} "
                       f"(fields starting with '_' are ignored)")
    return private


def check_record(record: Any, number: int) -> Deployment:
    """Validate and normalize one record (``number`` is 1-based, for messages)."""
    if not isinstance(record, Mapping):
        raise RecordError(
            f"record #{number}: expected a deployment record (a mapping), got {kind_of(record)}"
        )
    who = describe(record, number)
    private = check_keys(who, record)
    service = check_name(who, "service", record.get("service"))
    environment = check_name(who, "environment", record.get("environment"))
    version = check_version(who, record.get("version"))
    deployed_at, epoch_us = check_timestamp(who, record.get("deployed_at"))
    status = check_status(who, record.get("status"))
    commit = check_commit(who, record.get("commit"))
    targets = check_targets(who, record.get("targets"), required=status == STATUS_DEPLOYED)

    out: Record = {
        "service": service,
        "environment": environment,
        "version": version,
        "deployed_at": deployed_at,
        "status": status,
    }
    if commit is not None:
        out["commit"] = commit
    out["targets"] = targets
    # Optional fields: the common "absent" case without a function call.
    get = record.get
    value = get("metrics_path")
    out["metrics_path"] = DEFAULT_METRICS_PATH if value is None else check_metrics_path(who, value)
    value = get("scheme")
    out["scheme"] = DEFAULT_SCHEME if value is None else check_scheme(who, value)
    value = get("labels")
    out["labels"] = {} if value is None else check_labels(who, value)
    value = get("health_url")
    if value is not None and value != "":
        out["health_url"] = check_url(who, "health_url", value)
    value = get("pipeline")
    if value is not None:
        pipeline = check_pipeline(who, value)
        if pipeline is not None:
            out["pipeline"] = pipeline
    value = get("slos")
    if value is not None:  # objectives: their contract and rules are deployment_slo's
        from ansible_collections.monstack.stack.plugins.module_utils.deployment_slo import check_slos
        slos = check_slos(who, value)
        if slos:
            out["slos"] = slos
    for key in private:
        out[key] = record[key]
    return Deployment(out, service, environment, version, status, commit, epoch_us, who)


def check_records(records: Any, policy: Any = None) -> list[Deployment]:
    """A list of records (a single mapping is accepted as a list of one), each checked
    against the record contract and, when a policy is given, the policy ({}: the default one)."""
    if isinstance(records, Mapping):
        records = [records]
    if not isinstance(records, (list, tuple)):
        raise RecordError(
            f"expected a list of deployment records, got {show(records)}"
        )
    rules = None if policy is None else compile_policy(policy)
    deps = [check_record(record, number) for number, record in enumerate(records, 1)]
    if rules is not None:
        seen: dict[tuple[str, str], str | None] = {}  # (host or URL, environment) -> problem
        for dep in deps:
            check_policy(dep, rules, seen)
    return deps


# --------------------------------------------------------------------------
# Policy: limits, the clock, allowed and denied destinations and paths
# --------------------------------------------------------------------------
class Rule(NamedTuple):
    """One entry of deployment_allowed_targets / deployment_denied_targets."""

    text: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    glob: str | None  # a lower-case host name pattern (fnmatch) when not a network


class Policy(NamedTuple):
    max_labels: int
    max_label_name_length: int
    max_label_value_length: int
    max_clock_skew: int
    now_us: int | None
    allowed: tuple[tuple[str, tuple[Rule, ...]], ...]  # (environment or '*', rules)
    denied: tuple[Rule, ...]
    denied_paths: tuple[str, ...]  # '/segment/.../' lower case


def _option_int(key: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(f"{POLICY_VARIABLES[key]}: expected a whole number >= 0, got {show(value)}")
    return int(value)


def _option_list(key: str, value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise RecordError(f"{POLICY_VARIABLES[key]}: expected a list, got {show(value)}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise RecordError(f"{POLICY_VARIABLES[key]}: expected non-empty strings, got {show(item)}")
    return [str(item).strip() for item in value]


def _rule(key: str, text: str) -> Rule:
    try:
        return Rule(text, ipaddress.ip_network(text.lower(), strict=False), None)
    except ValueError:
        pass
    glob = text.lower().rstrip(".")
    if not re.fullmatch(r"[a-z0-9_*?.-]+", glob):
        raise RecordError(f"{POLICY_VARIABLES[key]}: {text!r} is neither a network (such as "
                          f"'10.1.0.0/16') nor a host name pattern (such as '*.prod.example.com')")
    return Rule(text, None, glob)


def _path_pattern(key: str, text: str) -> str:
    inner = text.strip("/").lower()
    if not inner:
        raise RecordError(f"{POLICY_VARIABLES[key]}: {text!r}: expected a path such as '/api/v1/admin/'")
    return f"/{inner}/"


def compile_policy(policy: Any) -> Policy:
    """The policy mapping (keys of DEFAULT_POLICY; missing keys take the defaults) -> Policy."""
    if not isinstance(policy, Mapping):
        raise RecordError(f"policy: expected a mapping with keys {', '.join(DEFAULT_POLICY)}, "
                          f"got {show(policy)}")
    unknown = sorted(str(key) for key in policy if key not in DEFAULT_POLICY)
    if unknown:
        raise RecordError(f"policy: unknown keys {', '.join(unknown)}; known: {', '.join(DEFAULT_POLICY)}")
    given = {**DEFAULT_POLICY, **policy}
    now = given["now"]
    if now is not None:
        try:
            if isinstance(now, bool):
                raise ValueError
            now_us = int(float(now) * 1_000_000)
        except (TypeError, ValueError):
            raise RecordError(f"policy: now: expected seconds since the epoch, got {show(now)}") from None
    else:
        now_us = None
    allowed = given["allowed_targets"]
    if allowed is None:
        allowed = {}
    if not isinstance(allowed, Mapping):
        raise RecordError(f"deployment_allowed_targets: expected a mapping of environment (or '*') to a "
                          f"list of networks and host name patterns, got {show(allowed)}")
    return Policy(
        max_labels=_option_int("max_labels", given["max_labels"]),
        max_label_name_length=_option_int("max_label_name_length", given["max_label_name_length"]),
        max_label_value_length=_option_int("max_label_value_length", given["max_label_value_length"]),
        max_clock_skew=_option_int("max_clock_skew", given["max_clock_skew"]),
        now_us=now_us,
        allowed=tuple(sorted(
            (str(env), tuple(_rule("allowed_targets", text) for text in _option_list("allowed_targets", rules)))
            for env, rules in allowed.items())),
        denied=tuple(_rule("denied_targets", text) for text in _option_list("denied_targets", given["denied_targets"])),
        denied_paths=tuple(_path_pattern("denied_paths", text)
                           for text in _option_list("denied_paths", given["denied_paths"])),
    )


def _addresses(host: str) -> tuple[Any, ...]:
    """The IP addresses a normalized host stands for (an IPv4-mapped IPv6 address is also its IPv4)."""
    text = host[1:-1] if host.startswith("[") else host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return ()
    mapped = getattr(address, "ipv4_mapped", None)
    return (address, mapped) if mapped is not None else (address,)


def _matches(rule: Rule, host: str, addresses: tuple[Any, ...]) -> bool:
    if rule.network is not None:
        return any(a.version == rule.network.version and a in rule.network for a in addresses)
    return not addresses and fnmatch.fnmatchcase(host, rule.glob or "")


def destination_problem(host: str, environment: str, policy: Policy) -> str | None:
    """Why a normalized host may not be a target or health check in environment, or None."""
    addresses = _addresses(host)
    if not addresses and NUMERIC_NAME_RE.fullmatch(host):
        return (f"host {host!r} would be read as an IP address in a non-standard form; "
                f"write the address as a dotted quad")
    for rule in policy.denied:
        if _matches(rule, host, addresses):
            return (f"host {host} is refused by deployment_denied_targets ({rule.text}): by default "
                    f"loopback, link-local (cloud metadata), unspecified, multicast and broadcast addresses and "
                    f"localhost names; an operator opens one up by setting deployment_denied_targets")
    rules = dict(policy.allowed)
    chosen = rules.get(environment, rules.get("*"))
    if chosen is not None and not any(_matches(rule, host, addresses) for rule in chosen):
        shown = ", ".join(rule.text for rule in chosen) or "nothing"
        return (f"host {host} is not allowed in environment {environment!r} "
                f"(deployment_allowed_targets: {shown})")
    return None


def path_problem(path: str, policy: Policy) -> str | None:
    """The denied path pattern that path contains (after decoding and normalizing), or None."""
    text = path
    for _round in range(3):  # %252e... decoded twice by two proxies
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    text = re.sub(r"/+", "/", "/" + text.replace("\\", "/").lower())
    text = posixpath.normpath(text).rstrip("/") + "/"
    for pattern in policy.denied_paths:
        if pattern in text:
            return (f"the path contains {pattern.rstrip('/')!r}, an administrative endpoint "
                    f"(deployment_denied_paths)")
    return None


def check_policy(dep: Deployment, policy: Policy, seen: dict[tuple[str, str], str | None] | None = None) -> None:
    """The limits and destinations a record must keep to beyond its contract."""
    rec, who = dep.record, dep.who
    labels = rec["labels"]
    if len(labels) > policy.max_labels:
        fail(who, "labels", f"{len(labels)} labels, more than deployment_max_labels ({policy.max_labels})")
    for name, value in labels.items():
        if len(name) > policy.max_label_name_length:
            fail(who, f"labels.{name[:40]}...",
                 f"a label name of {len(name)} characters, longer than "
                 f"deployment_max_label_name_length ({policy.max_label_name_length})")
        if len(value) > policy.max_label_value_length:
            fail(who, f"labels.{name}", f"a value of {len(value)} characters, longer than "
                                        f"deployment_max_label_value_length ({policy.max_label_value_length})")
    if policy.now_us is not None and dep.epoch_us > policy.now_us + policy.max_clock_skew * 1_000_000:
        ahead = (dep.epoch_us - policy.now_us) // 1_000_000
        fail(who, "deployed_at", f"{rec['deployed_at']} is {ahead} s ahead of the controller's clock, more than "
                                 f"deployment_max_clock_skew ({policy.max_clock_skew} s); a record from the future "
                                 f"would hide every later deployment of the service")
    seen = {} if seen is None else seen
    for target in rec["targets"]:
        host = target.rpartition(":")[0]
        key = (host, dep.environment)
        if key not in seen:
            seen[key] = destination_problem(host, dep.environment, policy)
        if seen[key]:
            fail(who, "targets", f"target {target}: {seen[key]}")
    problem = path_problem(rec["metrics_path"], policy)
    if problem:
        fail(who, "metrics_path", problem)
    url = rec.get("health_url")
    if url is not None:
        key = (url, dep.environment)
        if key not in seen:
            seen[key] = health_url_problem(url, dep.environment, policy)
        if seen[key]:
            fail(who, "health_url", seen[key])


def health_url_problem(url: str, environment: str, policy: Policy) -> str | None:
    """Why a health_url (of the record format) may not be probed in environment, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # pylint: disable=pointless-statement  # raises on a bad port
    except ValueError:
        return "not a valid URL (host or port)"
    host = normalize_host(parts.hostname or "")
    if host is None:
        return "expected a DNS name, an IPv4 or an IPv6 address as the URL's host"
    return destination_problem(host, environment, policy) or path_problem(parts.path or "/", policy)


def record_content(dep: Deployment) -> dict[str, Any]:
    return {k: v for k, v in dep.record.items() if not k.startswith("_")}


def latest_records(deployments: list[Deployment]) -> list[Deployment]:
    """Latest record per (service, environment) by deployed_at, removals included.

    A later record always wins, even if its version is older (a rollback).
    Two different records with the same, latest deployed_at are ambiguous and
    raise an error; identical duplicates are fine.
    """
    latest: dict[tuple[str, str], Deployment] = {}
    ties: dict[tuple[str, str], Deployment] = {}
    for dep in deployments:
        key = (dep.service, dep.environment)
        best = latest.get(key)
        if best is None or dep.epoch_us > best.epoch_us:
            latest[key] = dep
            ties.pop(key, None)
        elif dep.epoch_us == best.epoch_us and key not in ties and record_content(dep) != record_content(best):
            ties[key] = dep
    for key, other in sorted(ties.items()):
        best = latest[key]
        raise RecordError(
            f"{best.who} and {other.who}: both are the latest deployment of service "
            f"'{key[0]}' in environment '{key[1]}' (deployed_at {best.record['deployed_at']}) "
            f"but differ; make deployed_at distinct or remove one of them"
        )
    return sorted(latest.values(), key=lambda dep: (dep.environment, dep.service))


def current(deployments: list[Deployment]) -> list[Deployment]:
    """Latest record per (service, environment) by deployed_at, removed ones dropped."""
    return [dep for dep in latest_records(deployments) if dep.status != STATUS_REMOVED]


def kind_of(value: Any) -> str:
    """The kind of a parsed value, never the value itself (a file may hold a secret)."""
    if value is None:
        return "nothing (an empty document)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def check_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise RecordError(f"option '{name}': expected a boolean, got {show(value)}")


def file_name(dep: Deployment) -> str:
    return f"{dep.environment}{FILE_SEPARATOR}{dep.service}{FILE_SUFFIX}"


def named(deps: list[Deployment]) -> list[tuple[str, Deployment]]:
    """(file name, deployment) pairs sorted by name; two deployments with one file name are an error."""
    owners: dict[str, Deployment] = {}
    for dep in deps:
        name = file_name(dep)
        if name in owners:
            other = owners[name]
            raise RecordError(
                f"{other.who} in '{other.environment}' and {dep.who} in '{dep.environment}' "
                f"would both be written to file_sd file '{name}'; rename one of them "
                f"(avoid '{FILE_SEPARATOR}' in service and environment names)"
            )
        owners[name] = dep
    return sorted(owners.items())
