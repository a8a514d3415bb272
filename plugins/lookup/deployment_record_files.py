# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Lookup plugin deployment_record_files: read deployment record files on the controller, safely.

A thin wrapper: the reading is plugins/plugin_utils/deployment_parse.py (read_records)."""
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

from ansible.errors import AnsibleLookupError  # noqa: E402  (ansible-test: imports after the documentation)
from ansible.plugins.lookup import LookupBase  # noqa: E402
# The reading is the record library's (tools/monstack-record reads with it too).
from ansible_collections.monstack.stack.plugins.plugin_utils.deployment_parse import read_records  # noqa: E402
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError  # noqa: E402


class LookupModule(LookupBase):
    """query('monstack.stack.deployment_record_files', path, expect=..., max_bytes=...)."""

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        expect, max_bytes = self.get_option("expect"), int(self.get_option("max_bytes"))
        found: list[dict[str, str]] = []
        try:
            for term in terms:
                found.extend(read_records(str(term), expect, max_bytes))
        except RecordError as exc:
            raise AnsibleLookupError(str(exc)) from None
        return found
