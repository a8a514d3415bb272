# -*- coding: utf-8 -*-
"""Test-only action: ensure_release for one host (tests/unit/test_release_install.py puts this
directory on ANSIBLE_ACTION_PLUGINS). Arguments: release (the component spec's release), arch."""
from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.monstack.stack.plugins.plugin_utils.release_install import ensure_release


class ActionModule(ActionBase):
    """Install args.release on the host."""

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        result.update(ensure_release(self, task_vars, args["release"], args["arch"], bool(self._task.check_mode)))
        return result
