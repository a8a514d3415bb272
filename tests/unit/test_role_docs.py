"""Each role's README variable table is current (generated from its specs)."""
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hacking"))
import gen_role_docs  # noqa: E402


@pytest.mark.parametrize("role", gen_role_docs.ROLES)
def test_role_readme_is_current(role):
    readme = ROOT / "roles" / role / "README.md"
    assert readme.read_text() == gen_role_docs.render(role), \
        f"roles/{role}/README.md is stale: run hacking/gen_role_docs.py"


def test_documented_playbooks_exist():
    """Every `import_playbook: monstack.stack.<name>` in the README and the role READMEs names a
    playbook of the collection (playbooks/<name>.yml)."""
    docs = [ROOT / "README.md", *sorted((ROOT / "roles").glob("*/README.md"))]
    named = {(doc.relative_to(ROOT), name) for doc in docs
             for name in re.findall(r"import_playbook: monstack\.stack\.(\w+)", doc.read_text())}
    assert named, "no playbook import found in the docs"
    missing = sorted(f"{doc}: monstack.stack.{name}" for doc, name in named
                     if not (ROOT / "playbooks" / f"{name}.yml").is_file())
    assert not missing, missing
