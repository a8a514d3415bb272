# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_parse: Records from the texts of record files (JSON or YAML), each with its file as _source.

A thin wrapper: the work is plugins/plugin_utils/deployment_parse.py (parse.parse_texts); its
documentation is deployment_parse.yml beside this file (ansible-doc -t filter deployment_parse).
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.plugin_utils import deployment_parse as parse
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError


def deployment_parse(contents, sources=None):
    """Records from the texts of record files (JSON or YAML), each with its file as _source."""
    try:
        return parse.parse_texts(contents, sources)
    except RecordError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Registers deployment_parse."""

    def filters(self):
        return {"deployment_parse": deployment_parse}
