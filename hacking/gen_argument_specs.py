#!/usr/bin/env python3
"""Write a role's meta/argument_specs.yml from its documented defaults.

Every variable in defaults/main.yml (or defaults/main/*.yml) becomes an option
with the comment block above it as its description, its type taken from the
default value and the default value itself. Choices and other extras come
from CHOICES below. tests/unit/test_argument_specs.py checks that specs and
defaults agree (names, types and default values), so rerun this after adding
or changing a variable:  hacking/gen_argument_specs.py roles/<role>
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

CHOICES = {
    "compression": ["gzip", "xz"],
    "schedule_state": ["present", "absent", ""],
    "state": ["present", "absent"],
    "install_method": ["archive", "local", "package"],
    "download_on": ["controller", "host"],
    "log_format": ["logfmt", "json"],
    "mode": ["server", "agent"],
}
ENTRY_POINTS = {
    "backup": {
        "backup": "Back up the components of a host into the store (playbooks/backup.yml)",
        "restore_check": "Find and check the backups to restore, changing nothing (playbooks/restore.yml)",
        "restore": "Restore the checked backups (playbooks/restore.yml, after restore_check on every host)",
    },
}
SECRET_HINTS = ("password", "basic_auth_users", "secret", "api_key", "routing_key", "webhook_url")


def type_of(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "str"


def default_files(role: Path) -> list[Path]:
    single = role / "defaults" / "main.yml"
    return [single] if single.exists() else sorted((role / "defaults" / "main").glob("*.yml"))


def comments(path: Path) -> dict[str, str]:
    """The comment block right above each top-level variable."""
    out, block, previous = {}, [], None
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            block.append(line.lstrip("#").strip())
        elif line and not line[0].isspace() and ":" in line and not line.startswith("---"):
            var = line.split(":", 1)[0]
            # A variable right below another one, with no comment of its own,
            # shares that one's comment ("Address and port to listen on.").
            out[var] = " ".join(b for b in block if b) or (out[previous] if previous else var)
            block, previous = [], var
        elif not line.strip():
            block, previous = [], None
    return out


def build(role: Path) -> dict:
    name = role.name
    options = {}
    for path in default_files(role):
        values = yaml.safe_load(path.read_text()) or {}
        docs = comments(path)
        for var, value in values.items():
            option = {"description": docs.get(var, var), "type": type_of(value), "default": value}
            if option["type"] == "list":
                kinds = {type_of(v) for v in value}
                if len(kinds) == 1:
                    option["elements"] = kinds.pop()
            suffix = var[len(name) + 1:]
            if suffix in CHOICES:
                option["choices"] = CHOICES[suffix]
            if any(h in var for h in SECRET_HINTS) or var.endswith("_tls_key"):
                option["no_log"] = True
            options[var] = option
    specs = {"main": {
        "short_description": f"Install and configure {name}",
        "description": [f"Variables of the {name} role; see defaults/ for the documented defaults."],
        "options": options}}
    # Entry points that playbooks include with tasks_from: Ansible validates the
    # variables against the spec of the entry point of that name, and only then.
    for entry, what in ENTRY_POINTS.get(name, {}).items():
        specs[entry] = {"short_description": what,
                        "description": [f"{what}; the variables of the {name} role (the same as main's)."],
                        "options": options}
    return {"argument_specs": specs}


class _Dumper(yaml.SafeDumper):
    """Indent list items under their key, as yamllint expects."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def main() -> int:
    for arg in sys.argv[1:]:
        role = Path(arg)
        spec = build(role)
        text = "---\n# Generated from defaults/ by hacking/gen_argument_specs.py; checked by\n" \
               "# tests/unit/test_argument_specs.py. Edit defaults/, then rerun the script.\n" \
               "# yamllint disable rule:line-length\n"
        text += yaml.dump(spec, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
        (role / "meta" / "argument_specs.yml").write_text(text)
        print(f"{role}/meta/argument_specs.yml: {len(spec['argument_specs']['main']['options'])} options")
    return 0


if __name__ == "__main__":
    sys.exit(main())
