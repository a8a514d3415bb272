"""meta/argument_specs.yml and defaults/ agree: names, types and default values.

The standard collection only compares names, and its documented defaults
drifted from the real ones; this compares all three for every role.
"""
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml")
               if p.parent.parent.name != "common")
TYPES = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict, "float": float, "path": str}


def defaults(role: Path) -> dict:
    files = [role / "defaults" / "main.yml"] if (role / "defaults" / "main.yml").exists() \
        else sorted((role / "defaults" / "main").glob("*.yml"))
    merged = {}
    for path in files:
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def spec(role: Path) -> dict:
    return yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]


def test_every_component_role_has_a_spec():
    names = {r.name for r in ROLES}
    assert {"node_exporter", "cadvisor", "prometheus"} <= names


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_names_agree(role):
    assert sorted(spec(role)) == sorted(defaults(role))


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_types_and_defaults_agree(role):
    values = defaults(role)
    problems = []
    for name, option in spec(role).items():
        if name not in values:
            continue
        value = values[name]
        kind = option.get("type", "str")
        if kind != "raw" and not (isinstance(value, TYPES[kind]) and
                                  not (kind == "int" and isinstance(value, bool))):
            problems.append(f"{name}: spec type {kind}, default {value!r} is {type(value).__name__}")
        if option.get("default") != value:
            problems.append(f"{name}: spec default {option.get('default')!r} != defaults {value!r}")
        if "choices" in option and value not in option["choices"]:
            problems.append(f"{name}: default {value!r} not among choices {option['choices']}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_variables_are_prefixed_and_documented(role):
    for name, option in spec(role).items():
        assert name.startswith(role.name + "_"), name
        assert option.get("description") and option["description"] != name, f"{name} is undocumented"
