# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Action deployment_records: read, check and plan deployment records on the controller, in one step.

The work is the record library (plugins/plugin_utils/deployment_parse.py reads and parses,
deployment_records.py checks, deployment_render.py plans); documentation in
plugins/modules/deployment_records.py.
"""
from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.validation import check_type_bool, check_type_int
from ansible.plugins.action import ActionBase

from ansible_collections.monstack.stack.plugins.plugin_utils.deployment_parse import (
    MAX_BYTES, parse_texts, read_records)
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError
from ansible_collections.monstack.stack.plugins.module_utils.deployment_render import plan

ARGS = ("directory", "file", "max_bytes", "info_labels", "policy")


class ActionModule(ActionBase):
    """Returns the plan of the records of ``directory`` and ``file`` (register it)."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGS)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        try:
            directory = str(args.get("directory") or "")
            single = str(args.get("file") or "")
            max_bytes = check_type_int(args.get("max_bytes", MAX_BYTES))
            info_labels = check_type_bool(args.get("info_labels", True))
        except TypeError as exc:
            raise AnsibleActionFail(f"deployment_records: {exc}") from None
        if not directory and not single:
            raise AnsibleActionFail("deployment_records: give a directory of records, a record file, or both")
        try:
            files = read_records(directory, "directory", max_bytes) if directory else []
            if single:
                files += read_records(single, "file", max_bytes)
            planned = plan(parse_texts(files), info_labels, args.get("policy"))
        except RecordError as exc:
            # the message names the file (and field), never the file's content
            raise AnsibleActionFail(str(exc)) from None
        # The plan is returned to be registered, not as facts: Ansible copies a host's facts
        # for every task of that host, a registered result once.
        result.update(planned, changed=False)
        # Not displayed: it holds every record (at -v a thousand of them), and handing that
        # structure to the callbacks costs more than planning it. Errors are displayed.
        result["_ansible_no_log"] = True
        return result
