# -*- coding: utf-8 -*-
"""Filter plugin: deployment_annotations (monstack "deployments drive discovery")."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deployment_annotations
author: monstack maintainers
short_description: Grafana annotation bodies for deployment records
description:
  - Validates the deployment records and returns one body for Grafana's C(POST /api/annotations) per record
    (every record, not only the latest), sorted by time (oldest first).
  - >-
    Each body is C({time, tags, text}): C(time) is C(deployed_at) in epoch milliseconds, C(tags) is
    C([deployment, <service>, <environment>, <version>]) plus C(removed) for C(status=removed), C(text) is a
    one-line summary with the commit and the pipeline provider, run id and URL when given.
  - The bodies have no dashboard or panel id, so they are organization-wide annotations; show them on a
    dashboard with an annotation query filtering on the tag C(deployment).
positional: ""
options:
  _input:
    description: The deployment records (list of mappings, a single mapping is a list of one).
    type: list
    elements: dict
    required: true
notes:
  - Grafana does not de-duplicate annotations. Post only the records that are new (for example the single
    record of the current pipeline run), not the whole history on every run.
"""

EXAMPLES = r"""
- name: Annotate Grafana dashboards with this deployment
  ansible.builtin.uri:
    url: "{{ grafana_url }}/api/annotations"
    method: POST
    url_username: "{{ grafana_admin_user }}"
    url_password: "{{ grafana_admin_password }}"
    force_basic_auth: true
    body_format: json
    body: "{{ item }}"
  loop: "{{ [deployment_record] | deployment_annotations }}"

# [{"time": 1795169700000,
#   "tags": ["deployment", "exchange-rate-api", "production", "1.4.2"],
#   "text": "Deployed exchange-rate-api 1.4.2 to production (commit 3f2c1ab, github-actions run 4242 https://...)"}]
"""

RETURN = r"""
_value:
  description: Annotation bodies, one per record, oldest first.
  type: list
  elements: dict
  contains:
    time:
      description: Epoch milliseconds of C(deployed_at).
      type: int
    tags:
      description: C(deployment), service, environment, version (and C(removed) for removals).
      type: list
      elements: str
    text:
      description: Human-readable summary.
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


def deployment_annotations(records):
    """Grafana annotation bodies, one per record (see DOCUMENTATION)."""
    return _common.deployment_annotations(records)


class FilterModule:
    def filters(self):
        return {"deployment_annotations": deployment_annotations}
