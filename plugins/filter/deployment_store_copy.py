# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter deployment_store_copy: what each Prometheus host receives of the others' record stores, and the orphans.

A thin wrapper: the work is plugins/module_utils/deployment_copy.py (copy_plan); its documentation is
deployment_store_copy.yml beside this file (ansible-doc -t filter deployment_store_copy).
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.validation import check_type_bool, check_type_int

from ansible_collections.monstack.stack.plugins.module_utils.deployment_copy import (
    MAX_ENTRIES, MAX_STORE_BYTES, copy_plan)
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import RecordError


def deployment_store_copy(reads, shards, copy=True, policy=None, source_labels=None, max_bytes=MAX_STORE_BYTES,
                          max_entries=MAX_ENTRIES):
    """{copies, health, refused, conflicts, orphans} from each Prometheus host's read of its record store."""
    if not isinstance(reads, Mapping) or not isinstance(shards, Mapping) or set(reads) != set(shards):
        raise AnsibleFilterError("deployment_store_copy: expected host -> store read, and host -> prometheus_shard "
                                 "for the same hosts")
    try:
        shard_of_host = {str(host): int(shard) for host, shard in shards.items()}
        return copy_plan({str(host): dict(read or {}) for host, read in reads.items()}, shard_of_host,
                         check_type_bool(copy), policy, list(source_labels or ["__address__"]),
                         check_type_int(max_bytes), check_type_int(max_entries))
    except (RecordError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"deployment_store_copy: {exc}") from None


class FilterModule:
    """Registers deployment_store_copy."""

    def filters(self):
        return {"deployment_store_copy": deployment_store_copy}
