"""Shared pytest setup for the unit tests."""
from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO_ROOT, "collections")

# The unit tests' playbook runs connect locally (no SSH): host key checking,
# on in ansible.cfg for real hosts, is off in the tests' own configuration.
os.environ.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")

# The tests import the plugins by the collection's name, as Ansible does
# (ansible_collections.monstack.stack.plugins.filter.<file>, ...): collections/
# links to this checkout as monstack.stack.
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
