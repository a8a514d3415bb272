# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Whether a program loaded its configuration after a reload, from its own metrics.

Prometheus and Alertmanager report ``<prefix>_last_reload_successful`` and
``<prefix>_last_reload_success_timestamp_seconds``. The component action
(plugins/plugin_utils/component.py) and the deployment record store module (a
rule change of an SLO) both read a reload's outcome with these functions.
Pure functions, standard library only (it also runs on managed hosts).
"""
from __future__ import annotations

import re


def reload_time(metrics, prefix):
    """The last successful reload time from the metrics text, 0.0 when absent."""
    found = re.search(r"(?m)^%s_last_reload_success_timestamp_seconds (\S+)$" % re.escape(prefix), metrics or "")
    try:
        return float(found.group(1)) if found else 0.0
    except ValueError:
        return 0.0


def reload_outcome(before, after, prefix):
    """applied, failed or pending: whether the metrics ``after`` a SIGHUP report a successful
    load newer than ``before`` (both metrics texts)."""
    after = after or ""
    if (reload_time(after, prefix) > reload_time(before, prefix)
            and re.search(r"(?m)^%s_last_reload_successful 1$" % re.escape(prefix), after)):
        return "applied"
    if re.search(r"(?m)^%s_last_reload_successful 0$" % re.escape(prefix), after):
        return "failed"
    return "pending"
