# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible's tagged and lazy values as plain Python data, for the controller-side plugins."""
from __future__ import annotations

from collections.abc import Mapping


def plain(value):
    """``value`` as plain dicts, lists and scalars (str, int, float, bool, None): what YAML dumps
    as plain text and what deep-copies cheaply (deep-copying Ansible's tagged and lazy containers
    costs seconds per role in ArgumentSpecValidator)."""
    if isinstance(value, Mapping):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value
