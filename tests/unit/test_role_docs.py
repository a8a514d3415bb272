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


def test_a_comment_over_several_variables_is_written_once(tmp_path):
    """A comment block above several variables (no comment or blank line between them)
    describes the group once, on its first variable, which names the others; they point
    to it, instead of each repeating the whole comment."""
    role = tmp_path / "demo"
    (role / "defaults").mkdir(parents=True)
    (role / "defaults" / "main.yml").write_text(
        "---\n# demo: a test role.\n\n# Address and port to listen on.\ndemo_address: 0.0.0.0\ndemo_port: 9100\n"
        "\n# Flags, one per item.\ndemo_flags:\n  - --a\ndemo_more_flags: []\n# Its own comment.\ndemo_own: x\n"
        "\n# Alone.\ndemo_alone: 1\n")
    assert gen_role_docs.shared_comments(role) == {"demo_port": "demo_address", "demo_more_flags": "demo_flags"}
    options = {"demo_address": {"description": "Address and port to listen on."},
               "demo_port": {"description": "Address and port to listen on."},
               "demo_flags": {"description": ["Flags, one per item."]},
               "demo_more_flags": {"description": "More flags (edited in the spec: kept)."},
               "demo_own": {"description": "Its own comment."},
               "demo_alone": {"description": "Alone."}}
    assert gen_role_docs.descriptions(role, options) == {
        "demo_address": "Address and port to listen on. (The same description covers `demo_port`.)",
        "demo_port": "See `demo_address`.",
        "demo_flags": "Flags, one per item.",
        "demo_more_flags": "More flags (edited in the spec: kept).",
        "demo_own": "Its own comment.",
        "demo_alone": "Alone."}


def test_node_exporter_readme_writes_a_shared_comment_once():
    """The case of the issue: node_exporter_listen_address and node_exporter_port share
    "Address and port to listen on."; the README says it once."""
    text = (ROOT / "roles" / "node_exporter" / "README.md").read_text()
    assert text.count("Address and port to listen on.") == 1
    row = next(line for line in text.splitlines() if line.startswith("| `node_exporter_port` |"))
    assert row.endswith("| See `node_exporter_listen_address`. |"), row
