# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_annotations: Grafana annotation bodies, one per record, oldest first.

A thin wrapper: the work is plugins/module_utils/deployment_render.py (render.annotations); its
documentation is deployment_annotations.yml beside this file (ansible-doc -t filter deployment_annotations).
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils import deployment_render as render
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError


def deployment_annotations(records):
    """Grafana annotation bodies, one per record, oldest first."""
    try:
        return render.annotations(records)
    except RecordError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Registers deployment_annotations."""

    def filters(self):
        return {"deployment_annotations": deployment_annotations}
