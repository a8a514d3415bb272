# -*- coding: utf-8 -*-
"""Filter plugin: deployment_targets (monstack "deployments drive discovery")."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deployment_targets
author: monstack maintainers
short_description: Prometheus file_sd target groups for the current deployments
description:
  - Validates the deployment records (like P(deployment_validate#filter)) and returns Prometheus file_sd target
    groups, C([{targets, labels}]), for the current state.
  - For each (service, environment) only the latest record by C(deployed_at) counts. A later record wins even
    when its version is older (a rollback). When the latest record has C(status=removed) the service gets no group.
  - >-
    Labels of each group: C(service), C(environment), C(version) and C(commit) (when given; both only when
    O(info_labels) is true), the record's own C(labels), and always C(__metrics_path__) and C(__scheme__)
    (record defaults /metrics and http), so the record decides how its targets are scraped whatever the
    scrape job's defaults are.
  - Output is sorted (groups by environment then service, targets and labels by name) so that re-running
    with the same records produces byte-identical files.
  - Two different records with the same latest C(deployed_at) for one service/environment are an error.
positional: info_labels
options:
  _input:
    description: The deployment records (list of mappings, a single mapping is a list of one).
    type: list
    elements: dict
    required: true
  info_labels:
    description:
      - Put C(version) and C(commit) on every target as labels.
      - >-
        Convenient (every series carries its version) but every deployment then starts new series for every
        metric of the service (series churn, more memory in Prometheus, C(rate) broken across the deploy).
        With V(false) join the C(deployment_info) metric from P(deployment_info_metrics#filter) instead, see
        C(docs/deployments.md).
    type: bool
    default: true
notes:
  - User labels are never renamed; invalid or reserved names (C(service), C(environment), C(version), C(commit),
    C(instance), C(job), anything starting with C(__)) are errors. Integer and boolean label values become
    strings (V(true)/V(false)).
seealso:
  - plugin: deployment_files
    plugin_type: filter
  - plugin: deployment_info_metrics
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Write all current deployments into one file_sd file
  ansible.builtin.copy:
    dest: /etc/prometheus/file_sd/deployments/all.json
    content: "{{ records | deployment_targets | to_nice_json }}\n"
    mode: "0644"

- name: Same, without version/commit labels on the targets
  ansible.builtin.copy:
    dest: /etc/prometheus/file_sd/deployments/all.json
    content: "{{ records | deployment_targets(info_labels=false) | to_nice_json }}\n"
    mode: "0644"

# [{"labels": {"__metrics_path__": "/metrics", "__scheme__": "http", "commit": "3f2c1ab",
#              "environment": "production", "service": "exchange-rate-api", "team": "ml",
#              "version": "1.4.2"},
#   "targets": ["app1.example.com:8000", "app2.example.com:8000"]}]
"""

RETURN = r"""
_value:
  description: file_sd target groups, one per current (service, environment), sorted by environment then service.
  type: list
  elements: dict
  contains:
    targets:
      description: Sorted, unique C(host:port) strings (IPv6 as C([addr]:port)).
      type: list
      elements: str
    labels:
      description: Label name to string value, sorted by name.
      type: dict
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


def deployment_targets(records, info_labels=True):
    """file_sd target groups for the current deployments (see DOCUMENTATION)."""
    return _common.deployment_targets(records, info_labels)


class FilterModule:
    def filters(self):
        return {"deployment_targets": deployment_targets}
