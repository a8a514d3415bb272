# -*- coding: utf-8 -*-
"""Filter plugin: deployment_validate (monstack "deployments drive discovery")."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deployment_validate
author: monstack maintainers
short_description: Validate and normalize CI/CD deployment records
description:
  - Checks a list of deployment records (one per deployment, written by a CI/CD pipeline) and returns them
    normalized, so that mistakes fail the play with a message naming the record, the field and what was expected.
  - Defaults are applied (C(status=deployed), C(metrics_path=/metrics), C(scheme=http), C(labels={})).
  - Targets become C(host:port) strings; IPv6 addresses are bracketed (C([2001:db8::1]:8000)) and compressed,
    DNS names lower-cased, duplicates removed (first occurrence kept).
  - C(deployed_at) becomes an RFC 3339 string in UTC (C(2026-11-20T10:15:00Z)); YAML date/times with a timezone
    are accepted, naive ones are rejected.
  - >-
    Unknown top-level fields are errors (typo protection), except fields starting with C(_), which are kept as
    they are. C(_source) (the record's file path) names the record in error messages, else C(record #N) (1-based).
  - Record format and rules are described in C(docs/deployments.md).
positional: ""
options:
  _input:
    description:
      - The deployment records, a list of mappings. A single mapping is treated as a list of one.
    type: list
    elements: dict
    required: true
notes:
  - >-
    Example error: "deployments/api.yml (service 'exchange-rate-api'): field 'targets[1].port': expected an
    integer 1-65535, got 'abc'". List indices in field names are 0-based.
  - Validation is idempotent; the output is accepted again by every C(deployment_*) filter.
seealso:
  - plugin: deployment_targets
    plugin_type: filter
  - plugin: deployment_files
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Load and check all deployment records
  ansible.builtin.set_fact:
    deployment_records_ok: "{{ records | deployment_validate }}"
  vars:
    records:
      - service: exchange-rate-api
        environment: production
        version: "1.4.2"
        deployed_at: "2026-11-20T10:15:00Z"
        targets:
          - {host: app1.example.com, port: 8000}
          - "app2.example.com:8000"
          - "[2001:db8::1]:8000"
        _source: deployments/api.yml

# deployment_records_ok[0].targets ==
#   ['app1.example.com:8000', 'app2.example.com:8000', '[2001:db8::1]:8000']
"""

RETURN = r"""
_value:
  description:
    - The records in input order, normalized. Keys are C(service), C(environment), C(version), C(deployed_at)
      (UTC, RFC 3339), C(status), C(commit) (lower-case, only when given), C(targets) (list of C(host:port)),
      C(metrics_path), C(scheme), C(labels) (string values, sorted), C(health_url) and C(pipeline) (only when
      given), plus any C(_*) keys of the input.
  type: list
  elements: dict
"""

import importlib.util
import os
import sys
from types import ModuleType


def _load_common() -> ModuleType:
    """Load the helpers next to this file (a filter plugin dir is not a package)."""
    name = "ansible_monstack_deployments_common"
    module = sys.modules.get(name)
    if module is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_deployments_common.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module


_common = _load_common()


def deployment_validate(records):
    """Validated, normalized deployment records (see DOCUMENTATION)."""
    return _common.deployment_validate(records)


class FilterModule:
    def filters(self):
        return {"deployment_validate": deployment_validate}
