# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_plan: Everything playbooks/deployments.yml needs, from one validation of the records, as data.

A thin wrapper: the work is plugins/module_utils/deployment_render.py (render.plan); its
documentation is deployment_plan.yml beside this file (ansible-doc -t filter deployment_plan).
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils import deployment_render as render
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError


def deployment_plan(records, info_labels=True, policy=None):
    """Everything playbooks/deployments.yml needs, from one validation of the records, as data."""
    try:
        return render.plan(records, info_labels, policy)
    except RecordError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Registers deployment_plan."""

    def filters(self):
        return {"deployment_plan": deployment_plan}
