"""Filter plugins: per-alert control of the prometheus role's alert rules (prometheus_alert_overrides).

alert_thresholds gives one rule its thresholds, alert_overrides rewrites a rendered rule file;
the logic and its checks are in plugins/plugin_utils/alert_overrides.py. Documented for
ansible-doc in alert_thresholds.yml and alert_overrides.yml beside this file.
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.plugin_utils import alert_overrides as logic


def alert_thresholds(thresholds, overrides, name):
    """The thresholds of alert `name`: its prometheus_alert_overrides thresholds merged over `thresholds`."""
    if not isinstance(thresholds, Mapping):
        raise AnsibleFilterError(f"alert_thresholds: expected the thresholds mapping, got {type(thresholds).__name__}")
    try:
        return logic.thresholds_for(thresholds, overrides, str(name))
    except logic.AlertOverrideError as exc:
        raise AnsibleFilterError(str(exc)) from None


def alert_overrides(text, overrides):
    """A rendered rule file with prometheus_alert_overrides applied (enabled, for, severity, labels)."""
    try:
        return logic.apply(str(text), overrides)
    except logic.AlertOverrideError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Per-alert overrides of the shipped alert rules."""

    def filters(self):
        return {"alert_thresholds": alert_thresholds, "alert_overrides": alert_overrides}
