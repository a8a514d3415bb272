# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_health_files: {'<environment>--<service>.json': [probe target group]} for the current deployments with a health_url.

A thin wrapper: the work is plugins/module_utils/deployment_render.py (render.health); its
documentation is deployment_health_files.yml beside this file (ansible-doc -t filter deployment_health_files).
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils import deployment_render as render
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError


def deployment_health_files(records):
    """{'<environment>--<service>.json': [probe target group]} for the current deployments with a health_url."""
    try:
        return render.health(records)
    except RecordError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Registers deployment_health_files."""

    def filters(self):
        return {"deployment_health_files": deployment_health_files}
