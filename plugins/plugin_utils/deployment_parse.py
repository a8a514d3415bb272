# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Reading and parsing deployment record files on the controller, as untrusted input.

read_records() reads record files (regular files only, size-limited, UTF-8) and
parse_texts() turns their texts (JSON or YAML, no anchors) into records, each with
its file as ``_source``. The lookup deployment_record_files, the filter
deployment_parse and tools/monstack-record use these. Errors are
deployment_records.RecordError and name the file, never its content.
Controller side (needs PyYAML); the record contract itself is deployment_records.
"""
from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from typing import Any

import yaml

from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import (
    Record, RecordError, kind_of, show)
# The file-set writer's words for a file's kind and its flags for opening one that
# someone else may have planted (no link followed, no FIFO waited on).
from ansible_collections.monstack.stack.plugins.module_utils.monstack_files import READ_FLAGS, kind

# libyaml's safe loader where it is built in (a thousand record files in well under a second).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The file names a records directory stands for.
PATTERNS = (".json", ".yml", ".yaml")
# The largest record file by default (the playbook's deployment_max_record_bytes).
MAX_BYTES = 65536


# --------------------------------------------------------------------------
# Reading record files (regular files only, size-limited)
# --------------------------------------------------------------------------
def read_record_file(path: str, max_bytes: int) -> str:
    """The text of one record file: a regular file (not a link) of at most max_bytes, UTF-8."""
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except OSError as exc:
        raise RecordError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(before.st_mode):
        raise RecordError(f"{path}: is {kind(before)}; a record must be a regular file "
                          f"(links, FIFOs and devices are refused)")
    if before.st_size > max_bytes:
        raise RecordError(f"{path}: {before.st_size} bytes, larger than deployment_max_record_bytes ({max_bytes})")
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as exc:
        raise RecordError(f"{path}: cannot be opened ({exc.strerror}); a record must be a regular file") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise RecordError(f"{path}: was replaced while being read; try again")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise RecordError(f"{path}: larger than deployment_max_record_bytes ({max_bytes})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: not UTF-8 text (at byte {exc.start})") from None


def record_paths(directory: str) -> list[str]:
    """The record files of a directory, by name; none of them is opened here."""
    try:
        names = sorted(entry.name for entry in os.scandir(directory))
    except NotADirectoryError:
        raise RecordError(f"{directory}: not a directory") from None
    except OSError as exc:
        raise RecordError(f"{directory}: cannot be listed ({exc.strerror})") from None
    return [os.path.join(directory, name) for name in names
            if name.endswith(PATTERNS) and not name.startswith(".")]


def read_records(term: str, expect: str, max_bytes: int) -> list[dict[str, str]]:
    """[{path, text}] of a record file or of the record files of a directory."""
    paths = record_paths(term) if expect == "directory" else [term]
    return [{"path": path, "text": read_record_file(path, max_bytes)} for path in paths]


# --------------------------------------------------------------------------
# Parsing their texts
# --------------------------------------------------------------------------
def _yaml_anchor(text: str) -> Any:
    """The position of the first anchor or alias of a YAML text, or None (no events built
    into objects: a 'billion laughs' costs nothing here)."""
    if "&" not in text and "*" not in text:
        return None
    for event in yaml.parse(text, Loader=YAML_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            return event.start_mark
    return None


def parse_record(text: str, source: str) -> Record:
    """One record file's text -> the record with ``_source``; errors name the file, line and
    column and the problem, never the file's content."""
    try:
        if source.endswith(".json"):
            record = json.loads(text)
        else:
            mark = _yaml_anchor(text)
            if mark is not None:
                raise RecordError(f"{source}: YAML anchors and aliases (&name, *name) are not allowed in a "
                                  f"record, at line {mark.line + 1}, column {mark.column + 1}")
            record = yaml.load(text, Loader=YAML_LOADER)  # noqa: S506 (a safe loader)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
                          f"fix the file or remove it") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or "not YAML")[:80]
        raise RecordError(f"{source}: not valid YAML{where}: {problem}; fix the file or remove it") from None
    except (ValueError, RecursionError):
        raise RecordError(f"{source}: not a usable record (too deeply nested or out of range); "
                          f"fix the file or remove it") from None
    if not isinstance(record, Mapping):
        raise RecordError(f"{source}: expected one deployment record (a mapping of its fields such as "
                          f"service, environment, version), got {kind_of(record)}")
    return dict(record, _source=source)


def parse_texts(contents: Any, sources: Any = None) -> list[Record]:
    """Records from the texts of record files (JSON or YAML), each with its file as ``_source``.

    ``contents`` is a list of texts with ``sources`` the file names, or (sources omitted)
    the list of ``{path, text}`` that the deployment_record_files lookup returns.
    """
    if isinstance(contents, (str, bytes)) or not isinstance(contents, (list, tuple)):
        raise RecordError(f"deployment_parse: expected the texts of the record files (a list), "
                          f"got {show(contents)}")
    if sources is None and all(isinstance(item, Mapping) for item in contents):
        sources = [item.get("path") for item in contents]
        contents = [item.get("text") for item in contents]
    if isinstance(sources, (str, bytes)) or not isinstance(sources, (list, tuple)) or len(sources) != len(contents):
        raise RecordError(f"deployment_parse: expected one file name per text ({len(contents)}), "
                          f"got {show(sources)}")
    records = []
    for text, source in zip(contents, sources):
        source = str(source)
        if not isinstance(text, str):
            raise RecordError(f"{source}: expected the file's text, got {kind_of(text)}")
        records.append(parse_record(text, source))
    return records
