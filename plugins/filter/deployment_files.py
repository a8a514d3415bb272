# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_files: {'<environment>--<service>.json': [target group]} for the current deployments.

A thin wrapper: the work is plugins/module_utils/deployment_render.py (render.files); its
documentation is deployment_files.yml beside this file (ansible-doc -t filter deployment_files).
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils import deployment_render as render
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError


def deployment_files(records, info_labels=True):
    """{'<environment>--<service>.json': [target group]} for the current deployments."""
    try:
        return render.files(records, info_labels)
    except RecordError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Registers deployment_files."""

    def filters(self):
        return {"deployment_files": deployment_files}
