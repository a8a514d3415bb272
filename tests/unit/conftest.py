"""Shared pytest setup for the unit tests."""
from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER_PLUGINS = os.path.join(REPO_ROOT, "plugins", "filter")

# The unit tests' playbook runs connect locally (no SSH): host key checking,
# on in ansible.cfg for real hosts, is off in the tests' own configuration.
os.environ.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")

# Filter plugin directories are not packages: import the plugins by path.
if FILTER_PLUGINS not in sys.path:
    sys.path.insert(0, FILTER_PLUGINS)

# The modules in plugins/modules import the collection's module_utils by its
# collection name; register them under that name for the tests that import a
# module's file directly.
import importlib.util  # noqa: E402

for _name in ("monstack_files", "monstack_backup", "release"):
    _fqname = "ansible_collections.monstack.stack.plugins.module_utils." + _name
    _spec = importlib.util.spec_from_file_location(
        _fqname, os.path.join(REPO_ROOT, "plugins", "module_utils", _name + ".py"))
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_fqname] = _module
    _spec.loader.exec_module(_module)
