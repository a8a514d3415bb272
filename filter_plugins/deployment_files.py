# -*- coding: utf-8 -*-
"""Filter plugin: deployment_files (monstack "deployments drive discovery")."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deployment_files
author: monstack maintainers
short_description: One Prometheus file_sd file per current service and environment
description:
  - Same target groups as P(deployment_targets#filter), keyed by file name, so a playbook writes one file_sd
    file per (service, environment) and deletes the files that are no longer in the result (services whose
    latest record has C(status=removed), or whose records were deleted).
  - The file name is C(<environment>--<service>.json). Both names match C(^[a-z0-9][a-z0-9_.-]*$) and are at
    most 120 characters, so the name is safe and has no C(/).
  - Two (service, environment) pairs that produce the same file name (possible only when a name contains
    C(--)) are an error.
  - Keep these files in a directory of their own so that "delete what is not in the result" cannot touch
    other file_sd files.
positional: info_labels
options:
  _input:
    description: The deployment records (list of mappings, a single mapping is a list of one).
    type: list
    elements: dict
    required: true
  info_labels:
    description: Put C(version) and C(commit) on every target, see P(deployment_targets#filter).
    type: bool
    default: true
seealso:
  - plugin: deployment_targets
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Compute the file_sd files once
  ansible.builtin.set_fact:
    deployment_sd_files: "{{ records | deployment_files(info_labels=deployment_info_labels) }}"

- name: Write one file_sd file per deployed service
  ansible.builtin.copy:
    dest: "/etc/prometheus/file_sd/deployments/{{ item.key }}"
    content: "{{ item.value | to_nice_json }}\n"
    mode: "0644"
  loop: "{{ deployment_sd_files | dict2items }}"
  loop_control:
    label: "{{ item.key }}"

- name: Find file_sd files on disk
  ansible.builtin.find:
    paths: /etc/prometheus/file_sd/deployments
    patterns: "*.json"
  register: deployment_sd_found

- name: Delete the files of services that are gone
  ansible.builtin.file:
    path: "{{ item.path }}"
    state: absent
  loop: "{{ deployment_sd_found.files }}"
  when: item.path | basename not in deployment_sd_files

# deployment_sd_files:
#   {"production--exchange-rate-api.json": [{"targets": ["app1.example.com:8000"], "labels": {...}}]}
"""

RETURN = r"""
_value:
  description:
    - Mapping of file name (C(<environment>--<service>.json)) to the file's content, a list with one file_sd
      target group C({targets, labels}). Sorted by file name.
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


def deployment_files(records, info_labels=True):
    """{'<environment>--<service>.json': [target group]} (see DOCUMENTATION)."""
    return _common.deployment_files(records, info_labels)


class FilterModule:
    def filters(self):
        return {"deployment_files": deployment_files}
