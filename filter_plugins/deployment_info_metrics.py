# -*- coding: utf-8 -*-
"""Filter plugin: deployment_info_metrics (monstack "deployments drive discovery")."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deployment_info_metrics
author: monstack maintainers
short_description: Prometheus text for node_exporter's textfile collector describing the current deployments
description:
  - Validates the deployment records and returns text in the Prometheus exposition format, for a C(*.prom)
    file in node_exporter's textfile collector directory.
  - >-
    C(deployment_info{service, environment, version, commit, deployed_at} 1) for each current deployment
    (latest record per service and environment, removed ones left out; C(commit) only when given), and
    C(deployment_timestamp_seconds{service, environment}) with the Unix time of that deployment.
  - Label values are escaped per the exposition format (backslash, double quote, newline). Samples are sorted
    by environment then service; the text ends with a newline.
  - Join it with P(deployment_targets#filter) C(info_labels=false) to see versions without label churn, see
    C(docs/deployments.md).
positional: ""
options:
  _input:
    description: The deployment records (list of mappings, a single mapping is a list of one).
    type: list
    elements: dict
    required: true
notes:
  - Write the file atomically (a temporary file then rename); M(ansible.builtin.copy) does that.
"""

EXAMPLES = r"""
- name: Export deployment_info for node_exporter
  ansible.builtin.copy:
    dest: /var/lib/node_exporter/textfile/deployments.prom
    content: "{{ records | deployment_info_metrics }}"
    mode: "0644"

# # HELP deployment_info Current deployment of each service (always 1); ...
# # TYPE deployment_info gauge
# deployment_info{service="exchange-rate-api",environment="production",version="1.4.2",commit="3f2c1ab",deployed_at="2026-11-20T10:15:00Z"} 1
# # HELP deployment_timestamp_seconds Unix time of the current deployment of each service.
# # TYPE deployment_timestamp_seconds gauge
# deployment_timestamp_seconds{service="exchange-rate-api",environment="production"} 1795169700
"""

RETURN = r"""
_value:
  description: Prometheus text exposition format, ending with a newline.
  type: str
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


def deployment_info_metrics(records):
    """Textfile-collector text for the current deployments (see DOCUMENTATION)."""
    return _common.deployment_info_metrics(records)


class FilterModule:
    def filters(self):
        return {"deployment_info_metrics": deployment_info_metrics}
