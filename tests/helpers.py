"""Helpers shared by the unit and integration tests."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def ansible_playbook() -> str:
    """Path of ansible-playbook (the venv's first); skip the test when there is none."""
    local = Path(sys.executable).with_name("ansible-playbook")
    found = str(local) if local.exists() else shutil.which("ansible-playbook")
    if not found:
        pytest.skip("ansible-playbook is not installed (run scripts/setup.sh)")
    return found
