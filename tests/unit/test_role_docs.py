"""Each role's README variable table is current (generated from its specs)."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import gen_role_docs  # noqa: E402


@pytest.mark.parametrize("role", gen_role_docs.ROLES)
def test_role_readme_is_current(role):
    readme = ROOT / "roles" / role / "README.md"
    assert readme.read_text() == gen_role_docs.render(role), \
        f"roles/{role}/README.md is stale: run scripts/gen_role_docs.py"
