# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_gate_pending: The targets of files that Prometheus has not scraped up since a time, with the reason.

A thin wrapper: the work is plugins/module_utils/deployment_gate.py (gate.pending); its
documentation is deployment_gate_pending.yml beside this file (ansible-doc -t filter deployment_gate_pending).
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils import deployment_gate as gate


def deployment_gate_pending(active_targets, files, since, job="deployments"):
    """The targets of files that Prometheus has not scraped up since a time, with the reason."""
    try:
        return gate.pending(active_targets, files, since, job)
    except gate.GateError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Registers deployment_gate_pending."""

    def filters(self):
        return {"deployment_gate_pending": deployment_gate_pending}
