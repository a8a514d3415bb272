#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Documentation of the action plugin deployment_records (plugins/action/deployment_records.py)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: deployment_records
short_description: Read, check and plan deployment records on the controller, in one step
description:
  - Reads the record files of O(directory) (its C(*.json), C(*.yml) and C(*.yaml) files, not those starting with
    C(.), in name order) and the record file O(file) as P(monstack.stack.deployment_record_files#lookup) does (regular
    files only, at most O(max_bytes), UTF-8), parses them as data (P(monstack.stack.deployment_parse#filter), JSON or
    YAML without anchors or aliases), checks every record against the record contract and O(policy), and returns
    the plan P(monstack.stack.deployment_plan#filter) returns, as data (register it), RV(records), RV(entries),
    RV(files), RV(health) and RV(annotations).
  - One bad record fails the task, naming its file and field (never its content); nothing is planned.
  - The records are data, never templates. The result (every record) is not displayed; an error is.
  - Runs on the controller; the record library is plugins/module_utils/deployment_*.py.
version_added: "1.0.0"
author: monstack (!UNKNOWN)
options:
  directory:
    description: A directory of record files (the playbook's C(deployment_records_dir)).
    type: path
  file:
    description: One record file (the playbook's C(deployment_record_file)).
    type: path
  max_bytes:
    description: The largest record file accepted, in bytes (C(deployment_max_record_bytes)).
    type: int
    default: 65536
  info_labels:
    description: Put C(version) and C(commit) on every target, see P(monstack.stack.deployment_targets#filter).
    type: bool
    default: true
  policy:
    description:
      - The limits and destinations records must keep to beyond their format; the keys of the C(policy) of
        P(monstack.stack.deployment_validate#filter). Omitted, the default policy without a clock.
    type: dict
notes:
  - Changes nothing; the same in check mode.
attributes:
  action:
    description: An action plugin, run on the controller.
    support: full
  check_mode:
    description: Reads and plans in check mode as in a real run.
    support: full
  diff_mode:
    description: Nothing to show.
    support: none
"""

EXAMPLES = r"""
- name: Read, validate and plan the records (one step)
  monstack.stack.deployment_records:
    directory: /srv/deployments
    policy:
      now: "{{ now(utc=true).timestamp() }}"
  register: deployment_plan

- name: Merge them into each Prometheus host's record store
  monstack.stack.deployment_store:
    path: /var/lib/monstack/deployments
    entries: "{{ hostvars['localhost'].deployment_plan.entries }}"
    file_sd_dir: /etc/prometheus/file_sd/deployments
    write: true
    release: always
    lock_token: "{{ token }}"
"""

RETURN = r"""
records:
  description: The normalized records (as P(monstack.stack.deployment_validate#filter)), each with its C(_source).
  returned: success
  type: list
  elements: dict
entries:
  description:
    - File name (C(<environment>--<service>.json)) to the record store entry of the latest record of each service
      (removals included), as P(monstack.stack.deployment_store_entries#filter); each with C(source), its record
      file, and (deployed) C(group), its target group. The input of M(monstack.stack.deployment_store).
  returned: success
  type: dict
files:
  description: File name to the target groups of the current deployments (P(monstack.stack.deployment_files#filter)).
  returned: success
  type: dict
health:
  description: File name to the health-check target groups (P(monstack.stack.deployment_health_files#filter)).
  returned: success
  type: dict
annotations:
  description: Grafana annotation bodies, one per record, oldest first (P(monstack.stack.deployment_annotations#filter)).
  returned: success
  type: list
  elements: dict
"""
