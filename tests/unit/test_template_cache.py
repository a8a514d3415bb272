"""Unit tests of plugins/plugin_utils/template_cache.py: the compiled code of the
roles' own template strings, shared by the workers and runs of ansible-playbook."""
from __future__ import annotations

import os

import pytest
from ansible._internal._datatag._tags import Origin, TrustedAsTemplate
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from ansible_collections.monstack.stack.plugins.plugin_utils import template_cache as cache

ROLE_FILE = os.path.join(cache.ROLES_DIR, "node_exporter", "vars", "main.yml")


def source(text, path=ROLE_FILE):
    """A template string as Ansible reads it from a file: trusted, with its origin."""
    return Origin(path=path, line_num=1).tag(TrustedAsTemplate().tag(text))


def templar(**variables):
    return Templar(loader=DataLoader(), variables=variables)


def test_key_changes_with_everything_that_changes_the_code():
    base = cache.cache_key("{{ a }}", None, "v1")
    assert base == cache.cache_key("{{ a }}", None, "v1")
    assert len({base, cache.cache_key("{{ b }}", None, "v1"), cache.cache_key("{{ a }}", True, "v1"),
                cache.cache_key("{{ a }}", None, "v2")}) == 4


def test_store_and_load(tmp_path):
    code = compile("x = 1", "<t>", "exec")
    cache.store_code(str(tmp_path / "c"), "k", code)
    assert cache.load_code(str(tmp_path / "c"), "k") == code
    assert oct((tmp_path / "c").stat().st_mode & 0o777) == "0o700"
    assert cache.load_code(str(tmp_path / "c"), "missing") is None
    (tmp_path / "c" / "bad").write_bytes(b"\x00not code")
    assert cache.load_code(str(tmp_path / "c"), "bad") is None


def test_only_strings_of_the_roles_are_cached():
    assert cache.from_roles(source("{{ a }}"))
    assert not cache.from_roles("{{ a }}"), "no origin (an extra var, a value computed at run time)"
    assert not cache.from_roles(source("{{ a }}", "/etc/ansible/group_vars/all.yml"))
    assert not cache.from_roles(source("{{ a }}", cache.ROLES_DIR + "-other/x.yml"))


def test_a_second_templar_loads_what_the_first_compiled(tmp_path, monkeypatch):
    wanted = {"spec": source("{{ port + 1 }}"), "list": [source("{{ name | upper }}-x")]}
    first = cache.cached_templar(templar(port=9100, name="ne"), {"port": 9100, "name": "ne"}, str(tmp_path))
    assert first.template(wanted) == {"spec": 9101, "list": ["NE-x"]}
    stored = sorted(os.listdir(tmp_path))
    assert len(stored) == 2
    # another worker: its environment compiles nothing, the code comes from the directory
    second = cache.cached_templar(templar(), {"port": 1, "name": "b"}, str(tmp_path))
    env = second._engine.environment
    monkeypatch.setattr(type(env), "compile", lambda *a, **k: pytest.fail("compiled again"))
    assert second.template(wanted) == {"spec": 2, "list": ["B-x"]}
    assert sorted(os.listdir(tmp_path)) == stored


def test_strings_from_elsewhere_are_compiled_and_not_written(tmp_path):
    secretish = source("{{ 'vault-like' ~ a }}", "/srv/inventory/group_vars/all/vault.yml")
    done = cache.cached_templar(templar(a=1), {"a": 1}, str(tmp_path))
    assert done.template(secretish) == "vault-like1"
    assert os.listdir(tmp_path) == []


def test_a_template_with_its_own_jinja_options_renders_as_without_the_cache(tmp_path):
    text = source("#jinja2:variable_start_string:'[[', variable_end_string:']]'\n[[ a ]] {{ a }}")
    plain = templar(a=1).template(text)
    cached = cache.cached_templar(templar(a=1), {"a": 1}, str(tmp_path)).template(text)
    assert cached == plain == "1 {{ a }}"
