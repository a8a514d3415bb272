# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_store_entries: The record store entries (deployment_store's input) of the latest record of each service.

A thin wrapper: the work is plugins/module_utils/deployment_render.py (render.store_entries); its
documentation is deployment_store_entries.yml beside this file (ansible-doc -t filter deployment_store_entries).
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils import deployment_render as render
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError


def deployment_store_entries(records, info_labels=True):
    """The record store entries (deployment_store's input) of the latest record of each service."""
    try:
        return render.store_entries(records, info_labels)
    except RecordError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Registers deployment_store_entries."""

    def filters(self):
        return {"deployment_store_entries": deployment_store_entries}
