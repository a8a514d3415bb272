# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_info_metrics: node_exporter textfile text (deployment_info, deployment_timestamp_seconds) for the current deployments.

A thin wrapper: the work is plugins/module_utils/deployment_render.py (render.info_metrics); its
documentation is deployment_info_metrics.yml beside this file (ansible-doc -t filter deployment_info_metrics).
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils import deployment_render as render
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError


def deployment_info_metrics(records):
    """node_exporter textfile text (deployment_info, deployment_timestamp_seconds) for the current deployments."""
    try:
        return render.info_metrics(records)
    except RecordError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Registers deployment_info_metrics."""

    def filters(self):
        return {"deployment_info_metrics": deployment_info_metrics}
