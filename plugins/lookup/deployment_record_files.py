# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Lookup plugin deployment_record_files: read deployment record files on the controller, safely."""
from __future__ import annotations

DOCUMENTATION = r"""
name: deployment_record_files
author: monstack (!UNKNOWN)
short_description: Read deployment record files (a record file or a directory of them) as untrusted input
description:
  - Returns the path and text of each record file, for P(monstack.stack.deployment_parse#filter).
  - With O(expect=directory) a term is a directory; its C(*.json), C(*.yml) and C(*.yaml) files (not those
    starting with C(.)) are read in name order. With O(expect=file) a term is one record file.
  - Every record file must be a regular file. A symbolic link, FIFO, socket, device or directory is refused
    by C(lstat) before it is opened (a FIFO never blocks the run), and the file is opened with C(O_NOFOLLOW).
  - A file larger than O(max_bytes) is refused before it is read or parsed; a file that is not UTF-8 is refused.
  - Errors name the file and the problem, never its content.
  - The texts are data, never templates (Ansible does not template what a lookup returns).
options:
  _terms:
    description: Directories (O(expect=directory)) or record files (O(expect=file)).
    type: list
    elements: str
    required: true
  expect:
    description: What each term is.
    type: str
    choices: [file, directory]
    default: directory
  max_bytes:
    description: The largest record file accepted, in bytes (the playbook's C(deployment_max_record_bytes)).
    type: int
    default: 65536
"""

EXAMPLES = r"""
- name: Read and parse every record of a directory
  ansible.builtin.set_fact:
    records: "{{ query('monstack.stack.deployment_record_files', '/srv/deployments') | monstack.stack.deployment_parse }}"

- name: One record file
  ansible.builtin.set_fact:
    records: >-
      {{ query('monstack.stack.deployment_record_files', 'record.json', expect='file', max_bytes=16384)
         | monstack.stack.deployment_parse }}
"""

RETURN = r"""
_raw:
  description: One C({path, text}) per record file, in name order within a directory.
  type: list
  elements: dict
"""

import os  # noqa: E402  (ansible-test: imports after the documentation)
import stat  # noqa: E402

from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402
# The file-set writer's words for a file's kind and its flags for opening one that
# someone else may have planted (no link followed, no FIFO waited on).
from ansible_collections.monstack.stack.plugins.module_utils.monstack_files import READ_FLAGS, kind  # noqa: E402

PATTERNS = (".json", ".yml", ".yaml")


class RecordFileError(Exception):
    """A record file that may not be read; the message names it."""


def read_record_file(path: str, max_bytes: int) -> str:
    """The text of one record file: a regular file (not a link) of at most max_bytes, UTF-8."""
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        raise RecordFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise RecordFileError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(before.st_mode):
        raise RecordFileError(f"{path}: is {kind(before)}; a record must be a regular file "
                              f"(links, FIFOs and devices are refused)")
    if before.st_size > max_bytes:
        raise RecordFileError(f"{path}: {before.st_size} bytes, larger than deployment_max_record_bytes ({max_bytes})")
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as exc:
        raise RecordFileError(f"{path}: cannot be opened ({exc.strerror}); a record must be a regular file") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise RecordFileError(f"{path}: was replaced while being read; try again")
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
        raise RecordFileError(f"{path}: larger than deployment_max_record_bytes ({max_bytes})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordFileError(f"{path}: not UTF-8 text (at byte {exc.start})") from None


def record_paths(directory: str) -> list[str]:
    """The record files of a directory, by name; none of them is opened here."""
    try:
        names = sorted(entry.name for entry in os.scandir(directory))
    except NotADirectoryError:
        raise RecordFileError(f"{directory}: not a directory") from None
    except OSError as exc:
        raise RecordFileError(f"{directory}: cannot be listed ({exc.strerror})") from None
    return [os.path.join(directory, name) for name in names
            if name.endswith(PATTERNS) and not name.startswith(".")]


def read_records(term: str, expect: str, max_bytes: int) -> list[dict[str, str]]:
    """[{path, text}] of a record file or of the record files of a directory."""
    paths = record_paths(term) if expect == "directory" else [term]
    return [{"path": path, "text": read_record_file(path, max_bytes)} for path in paths]


class LookupModule(LookupBase):
    """query('monstack.stack.deployment_record_files', path, expect=..., max_bytes=...)."""

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        expect, max_bytes = self.get_option("expect"), int(self.get_option("max_bytes"))
        found: list[dict[str, str]] = []
        try:
            for term in terms:
                found.extend(read_records(str(term), expect, max_bytes))
        except RecordFileError as exc:
            raise AnsibleLookupError(str(exc)) from None
        return found
