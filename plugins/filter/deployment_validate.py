# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_validate: Normalized deployment records (defaults applied, targets as 'host:port'), checked against the contract and the policy.

A thin wrapper: the work is plugins/module_utils/deployment_render.py (render.validate); its
documentation is deployment_validate.yml beside this file (ansible-doc -t filter deployment_validate).
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils import deployment_render as render
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError


def deployment_validate(records, policy=None):
    """Normalized deployment records (defaults applied, targets as 'host:port'), checked against the contract and the policy."""
    try:
        return render.validate(records, policy)
    except RecordError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Registers deployment_validate."""

    def filters(self):
        return {"deployment_validate": deployment_validate}
