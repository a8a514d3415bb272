#!/usr/bin/env python3
"""Write docs/deployment-record.schema.json, the JSON Schema of one deployment record.

The schema states, for a record written as JSON, exactly what the deployment_validate
filter (plugins/module_utils/deployment_records.py) accepts. tests/unit/test_record_schema.py keeps
the two equal: it checks that this script's output is the committed file and runs a
generated corpus of records through both. After changing a rule of the validator,
change the pieces below to match and rerun:  hacking/gen_record_schema.py

The patterns are ECMA-262 regular expressions (what JSON Schema specifies), written so
that Python's re reads them the same way, except for '$', which in Python also matches
before a final newline (docs/deployments.md, "JSON Schema").
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "docs" / "deployment-record.schema.json"

CONTROL = r"\x00-\x1f\x7f-\x9f"
# The characters Python's str.isspace() (and so str.strip()) counts as white space,
# apart from the control characters above. Spelled out: ECMA-262's \s differs (U+FEFF).
SPACE = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# deployed_at: RFC 3339 with a timezone, a real calendar date, years 1970-9998.
YEAR = r"(?:19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
LEAP_YEAR = r"(?:19(?:7[26]|8[048]|9[26])|[2-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[3579][26])00)"
MONTH_DAY = (r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
             r"|02-(?:0[1-9]|1[0-9]|2[0-8]))")
TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
OFFSET = r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
DEPLOYED_AT = rf"^(?:{YEAR}-{MONTH_DAY}|{LEAP_YEAR}-02-29)[Tt ]{TIME}{OFFSET}$"

# Hosts: an IPv4 address without leading zeros, an IPv6 address (what inet_pton
# accepts: '::' stands for at least one group, an IPv4 tail counts as two), or a DNS
# name (at most 253 characters without one trailing dot; not only digits and dots).
OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4 = rf"{OCTET}(?:\.{OCTET}){{3}}"
GROUP = r"[0-9a-fA-F]{1,4}"


def _ipv6() -> str:
    """8 groups, 6 groups and an IPv4 tail, or '::' between at most 7 (5 with a tail) groups."""
    forms = [f"(?:{GROUP}:){{7}}{GROUP}", f"(?:{GROUP}:){{6}}{IPV4}"]
    for most, tail in ((7, ""), (5, IPV4)):
        for left in range(most + 1):
            head = f"{GROUP}(?::{GROUP}){{{left - 1}}}" if left > 1 else GROUP * left
            room = most - left
            if tail:
                rest = (f"(?:{GROUP}:){{0,{room}}}" if room else "") + tail
            else:
                rest = (f"(?:{GROUP}(?::{GROUP}){{0,{room - 1}}})?" if room else "")
            forms.append(f"{head}::{rest}")
    return "(?:" + "|".join(forms) + ")"


IPV6 = _ipv6()
LABEL = r"[a-zA-Z0-9_](?:[a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?"


def dns(end: str) -> str:
    """A DNS name followed by `end` (not consumed)."""
    return (rf"(?=[a-zA-Z0-9_.-]{{1,253}}\.?{end})(?![0-9.]*{end})"
            rf"{LABEL}(?:\.{LABEL})*\.?")


def host(end: str) -> str:
    return rf"(?:{IPV4}(?={end})|{dns(end)})"


CLOSE = r"\]"
BRACKETED = rf"\[(?:{IPV6}|{host(CLOSE)}){CLOSE}"
PORT = r"(?=[0-9]{1,5}$)0*(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
HOST_FIELD = rf"^(?:{BRACKETED}|{IPV6}$|{host('$')})$"
TARGET_STRING = rf"^(?:{BRACKETED}|{host(':')}):{PORT}$"
URL = rf"[hH][tT][tT][pP][sS]?://[^/?#@{CONTROL}{SPACE}]+(?:[/?#][^{CONTROL}{SPACE}]*)?"  # no user info
RESERVED_LABELS = ["commit", "environment", "instance", "job", "service", "version"]


def optional(schema: dict) -> dict:
    """null means "not given" for the optional fields."""
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*kinds, "null"]}


def schema() -> dict:
    name = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]*$", "maxLength": 120}
    url = {"type": ["string", "null"], "pattern": f"^(?:{URL})?$",
           "description": "An http(s) URL; null or \"\" mean not given."}
    target = {"anyOf": [
        {"type": "string", "pattern": TARGET_STRING,
         "description": "'host:port' or '[ipv6]:port'; port 1-65535"},
        {"type": "object", "required": ["host", "port"], "additionalProperties": False,
         "properties": {
             "host": {"type": "string", "pattern": HOST_FIELD,
                      "description": "A DNS name, an IPv4 or an IPv6 address (brackets optional)"},
             "port": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535},
                                {"type": "string", "pattern": f"^{PORT}$"}]}}},
    ]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "monstack deployment record",
        "description": (
            "One deployment of one service to one environment, as a CI/CD pipeline writes it "
            "(docs/deployments.md). Generated by hacking/gen_record_schema.py; a test keeps it equal to "
            "the deployment_validate filter. Differences: a number written with a zero fraction (8000.0) "
            "is an integer to JSON Schema but rejected by the filter (write 8000); Python's re lets '$' "
            "match before a final newline; two SLOs of one record with the same name are rejected by the filter "
            "only. tools/monstack-record validates with the filter itself."),
        "type": "object",
        "required": ["service", "environment", "version", "deployed_at"],
        "properties": {
            "service": {**name, "description": "^[a-z0-9][a-z0-9_.-]*$, at most 120 characters"},
            "environment": {**name, "description": "^[a-z0-9][a-z0-9_.-]*$, at most 120 characters"},
            "version": {"type": "string", "maxLength": 128,
                        "pattern": f"^[^{CONTROL}{SPACE}](?:[^{CONTROL}]*[^{CONTROL}{SPACE}])?$",
                        "description": "A string (quote numbers), no surrounding spaces or control characters"},
            "deployed_at": {"type": "string", "pattern": DEPLOYED_AT,
                            "description": "RFC 3339 with a timezone, e.g. 2026-11-20T10:15:00Z; years 1970-9998"},
            "status": {"enum": ["deployed", "removed", None], "description": "Default: deployed"},
            "commit": optional({"type": "string", "pattern": "^(?:[0-9a-fA-F]{4,64})?$",
                                "description": "4-64 hex digits; null or \"\" mean not given"}),
            "targets": {"type": ["array", "null"], "items": target,
                        "description": "Required (non-empty) unless status is removed"},
            "metrics_path": optional({"type": "string", "pattern": "^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$",
                                      "description": "Default: /metrics"}),
            "scheme": {"enum": ["http", "https", None], "description": "Default: http"},
            "labels": {
                "type": ["object", "null"],
                "propertyNames": {"pattern": "^(?!__)[a-zA-Z_][a-zA-Z0-9_]*$", "not": {"enum": RESERVED_LABELS}},
                "additionalProperties": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"},
                                                   {"type": "boolean"}]},
                "description": "Extra target labels: Prometheus label names (not __*, not reserved), "
                               "values non-empty strings, integers or booleans"},
            "health_url": url,
            "slos": {
                "type": ["array", "null"], "maxItems": 10,
                "items": {
                    "type": "object", "required": ["name", "objective"], "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]*$", "maxLength": 64},
                        "objective": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
                        "window": {"type": ["string", "null"], "pattern": "^(?:[1-9][0-9]{0,2}d|[1-9][0-9]?w)$",
                                   "description": "Default: 30d"},
                        "threshold_seconds": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 3600,
                                              "description": "Makes it a latency SLO: a bucket boundary of the "
                                                             "latency histogram"}}},
                "description": "Objectives (docs/deployments.md, SLOs): availability, or latency with "
                               "threshold_seconds; names unique within the record"},
            "pipeline": {"type": ["object", "null"], "properties": {"url": url},
                         "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
                         "description": "CI metadata: provider, run_id, url, ..."},
        },
        "patternProperties": {"^_": {"description": "Private fields, passed through (e.g. _source)"}},
        "additionalProperties": False,
        "if": {"required": ["status"], "properties": {"status": {"const": "removed"}}},
        "else": {"required": ["targets"], "properties": {"targets": {"type": "array", "minItems": 1}}},
    }


def render() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=True) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if OUT.read_text() == render() else f"{OUT} is out of date: run {sys.argv[0]}")
    OUT.write_text(render())
    print(f"wrote {OUT}")
