"""The deployment record library and the deployment_* filters, in one namespace for the tests.

The filters (plugins/filter/deployment_*.py, one per file, imported by the collection's name) raise
AnsibleFilterError; the library (plugins/module_utils/deployment_*.py) holds the contract,
rendering, parsing and the gate.
"""
# pylint: disable=unused-import
from __future__ import annotations

from ansible_collections.monstack.stack.plugins.module_utils.deployment_gate import (  # noqa: F401
    GateError, gate_error, safe_url, scrape_time)
from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import (  # noqa: F401
    LABEL_NAME_RE, NAME_RE, RESERVED_LABELS, RFC3339_RE, SCHEMES, STATUSES, RecordError,
    check_record)
from ansible_collections.monstack.stack.plugins.module_utils.deployment_render import (  # noqa: F401
    escape_label_value, nice_json, store_files)
from ansible_collections.monstack.stack.plugins.filter.deployment_annotations import deployment_annotations  # noqa: F401
from ansible_collections.monstack.stack.plugins.filter.deployment_files import deployment_files  # noqa: F401
from ansible_collections.monstack.stack.plugins.filter.deployment_gate_pending import deployment_gate_pending  # noqa: F401
from ansible_collections.monstack.stack.plugins.filter.deployment_health_files import deployment_health_files  # noqa: F401
from ansible_collections.monstack.stack.plugins.filter.deployment_info_metrics import deployment_info_metrics  # noqa: F401
from ansible_collections.monstack.stack.plugins.filter.deployment_parse import deployment_parse  # noqa: F401
from ansible_collections.monstack.stack.plugins.filter.deployment_plan import deployment_plan  # noqa: F401
from ansible_collections.monstack.stack.plugins.filter.deployment_store_entries import deployment_store_entries  # noqa: F401
from ansible_collections.monstack.stack.plugins.filter.deployment_targets import deployment_targets  # noqa: F401
from ansible_collections.monstack.stack.plugins.filter.deployment_validate import deployment_validate  # noqa: F401
