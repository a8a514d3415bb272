# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_targets: Prometheus file_sd target groups for the current deployments.

A thin wrapper: the work is plugins/module_utils/deployment_render.py (render.targets); its
documentation is deployment_targets.yml beside this file (ansible-doc -t filter deployment_targets).
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils import deployment_render as render
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError


def deployment_targets(records, info_labels=True):
    """Prometheus file_sd target groups for the current deployments."""
    try:
        return render.targets(records, info_labels)
    except RecordError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Registers deployment_targets."""

    def filters(self):
        return {"deployment_targets": deployment_targets}
