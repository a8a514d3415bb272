"""Shared pytest setup for the unit tests."""
from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER_PLUGINS = os.path.join(REPO_ROOT, "filter_plugins")

# Filter plugin directories are not packages: import the plugins by path.
if FILTER_PLUGINS not in sys.path:
    sys.path.insert(0, FILTER_PLUGINS)
