"""Unit tests of the run's memo of templated specs: plugins/plugin_utils/template_inputs.py
(when two hosts' inputs count as the same) and plugins/plugin_utils/run_memo.py (the memory
the workers of one run share). The real-host check is molecule/default test_3_check_mode."""
from __future__ import annotations

import json
import os
import time

import pytest
from ansible._internal._datatag._tags import TrustedAsTemplate
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from ansible_collections.monstack.stack.plugins.plugin_utils import template_inputs as ti
from ansible_collections.monstack.stack.plugins.plugin_utils.run_memo import RunMemo


def t(text):
    """A template string as Ansible reads it from a role or inventory file: trusted."""
    return TrustedAsTemplate().tag(text)


def digest(expression, variables):
    return ti.inputs_digest(expression, variables)


# ---------------------------------------------------------------- analyse
@pytest.mark.parametrize("source, names", [
    ("plain text", []),
    ("{{ a }}", ["a"]),
    ("{{ a.b | default(c) }}-{{ d['e'] }}", ["a", "c", "d"]),
    ("{{ x | monstack.stack.hostport(port) }}", ["port", "x"]),
    ("{{ x | ansible.builtin.combine(y) | to_json }}", ["x", "y"]),
    ("{% for i in items %}{{ i }}{% endfor %}", ["i", "items"]),
    ("{% set z = a %}{{ z }}", ["a", "z"]),  # a shadowing name is still an input
    ("{{ v is version('1.0', '>=') and w is defined }}", ["v", "w"]),
    ("{{ lookup('env', 'MONSTACK_CACHE') }}/x", []),
    ("{{ lookup('ansible.builtin.env', name) }}", ["name"]),
    ("{{ flags | map('regex_replace', '^', '--') | list }}", ["flags"]),
    ("{{ hosts | map(attribute='name') | select('in', groups) | selectattr('x', 'defined') | select }}",
     ["groups", "hosts"]),
])
def test_analyse_names_what_a_template_reads(source, names):
    assert ti.analyse(source) == names


@pytest.mark.parametrize("source", [
    "{{ lookup('file', '/etc/hostname') }}",       # the controller's files
    "{{ lookup(plugin, 'x') }}",                   # a lookup named by a variable
    "{{ query('ansible.builtin.vars', 'a_' ~ b) }}",  # any variable by a computed name
    "{{ q('pipe', 'date') }}",
    "{{ now() }}",                                  # the clock
    "{{ lipsum() }}",
    "{{ hostvars['other'].secret }}",               # another host's variables
    "{{ vars['node_' ~ name] }}",
    "{{ [1, 2] | random }}",                        # not a function of its arguments
    "{{ 'pw' | password_hash('sha512') }}",         # a random salt
    "{{ '/etc/*' | fileglob }}",                    # the controller's files
    "{{ x | some.other.filter }}",                  # a filter nobody checked
    "{{ '/etc/passwd' is file }}",                  # a test of the controller's files
    "{{ pws | map('password_hash', 'sha512') }}",   # an impure filter called by name
    "{{ paths | select('file') }}",                 # an impure test called by name
    "{{ items | rejectattr('path', 'exists') }}",
    "{{ xs | map(name) }}",                         # a filter named by a variable
    "{{ xs | select(*tests) }}",
    "{{ p is exists }}",
    "{% include 'other.j2' %}",
    "{% import 'macros.j2' as m %}",
    "{{ unclosed",                                  # not a template Jinja can parse
])
def test_analyse_refuses_what_may_read_more_than_variables(source):
    assert ti.analyse(source) is None


# ---------------------------------------------------------------- inputs_digest
BASE = {
    "spec": {"name": "x", "flags": t("{{ flags }}"), "port": t("{{ port }}")},
    "flags": t("{{ ['--a'] + extra }}"),
    "extra": [],
    "port": 9100,
    "unrelated": "one",
    "inventory_hostname": "h1",
}


def variant(**changes):
    out = dict(BASE)
    out.update(changes)
    return out


EXPR = t("{{ spec }}")


def test_same_inputs_give_the_same_digest_whatever_else_differs():
    one, why = digest(EXPR, BASE)
    assert one and not why
    assert digest(EXPR, variant(unrelated="two", inventory_hostname="h2"))[0] == one


@pytest.mark.parametrize("changes", [
    {"port": 9101},                                    # a variable the spec names
    {"extra": ["--b"]},                                # one a variable's template names
    {"port": "9100"},                                  # the same text, another type
    {"port": True},                                    # True is not 1
    {"extra": ()},                                     # a tuple is not a list
    {"flags": "{{ ['--a'] + extra }}"},                # the same text, not trusted: data, not a template
    {"spec": {"port": t("{{ port }}"), "name": "x", "flags": t("{{ flags }}")}},  # key order
    {"extra": None},                                   # None is not missing
])
def test_any_input_that_differs_gives_another_digest(changes):
    assert digest(EXPR, variant(**changes))[0] != digest(EXPR, BASE)[0]


def test_a_missing_variable_is_an_input_too():
    variables = dict(BASE)
    del variables["extra"]
    assert digest(EXPR, variables)[0] not in (None, digest(EXPR, BASE)[0])


def test_a_reference_cycle_ends():
    assert digest(t("{{ a }}"), {"a": t("{{ b }}"), "b": t("{{ a }}")})[0]


@pytest.mark.parametrize("variables, why", [
    ({"spec": t("{{ lookup('file', 'x') }}")}, "variable spec holds a template that may read more than variables"),
    ({"spec": t("{{ pw }}"), "pw": t("{{ 'hunter2' | password_hash('sha512') }}")},
     "variable pw holds a template that may read more"),
    ({"spec": {"deep": [t("{{ hostvars['h2'].x }}")]}}, "variable spec holds a template"),
    ({"spec": {1, 2}}, "variable spec holds a value of type set"),
    ({"spec": object()}, "variable spec holds a value of type object"),
])
def test_not_memoisable_says_why_by_the_variable_never_its_text(variables, why):
    key, reason = digest(EXPR, variables)
    assert key is None and why in reason
    assert "hunter2" not in reason and "{{" not in reason


def test_a_vaulted_value_counts_by_its_ciphertext():
    from ansible.parsing.vault import EncryptedString
    one = EncryptedString(ciphertext="$ANSIBLE_VAULT;1.1;AES256\n3131")
    two = EncryptedString(ciphertext="$ANSIBLE_VAULT;1.1;AES256\n3232")
    assert digest(t("{{ s }}"), {"s": one})[0] == digest(t("{{ s }}"), {"s": one})[0]
    assert digest(t("{{ s }}"), {"s": one})[0] != digest(t("{{ s }}"), {"s": two})[0]


def test_the_salt_counts():
    assert digest(EXPR, BASE)[0] != ti.inputs_digest(EXPR, BASE, salt="other ansible-core")[0]


@pytest.mark.parametrize("changes", [{}, {"unrelated": "two"}, {"port": 9101}, {"extra": ["--b"]},
                                     {"inventory_hostname": "h9"}])
def test_equal_digests_render_equal_specs(changes):
    """What the digest promises, checked with Ansible's own templating."""
    def render(variables):
        return Templar(loader=DataLoader(), variables=variables).template(EXPR)

    other = variant(**changes)
    same = digest(EXPR, BASE)[0] == digest(EXPR, other)[0]
    assert same == (render(BASE) == render(other)), (changes, render(BASE), render(other))


# ---------------------------------------------------------------- RunMemo
@pytest.fixture
def memo():
    made = RunMemo.create(size=1 << 20)
    if made is None:
        pytest.skip("no memfd_create on this machine (not Linux)")
    return made


def _start(target):
    """Start target() in a forked process (as ansible-core starts its workers)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(reader)
        try:
            out = json.dumps(target())
        except BaseException as exc:  # pylint: disable=broad-except
            out = json.dumps(["error", repr(exc)])
        os.write(writer, out.encode())
        os._exit(0)
    os.close(writer)
    return pid, reader


def _result(child):
    """What a child started by _start returned."""
    pid, reader = child
    with os.fdopen(reader) as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def _in_child(target):
    return _result(_start(target))


def test_a_value_one_worker_stores_is_read_by_the_next(memo):
    assert _in_child(lambda: memo.get_or_compute(b"k", lambda: {"a": [1, "x"]})) == [{"a": [1, "x"]}, "stored"]
    assert _in_child(lambda: memo.get_or_compute(b"k", lambda: "never")) == [{"a": [1, "x"]}, "hit"]
    assert memo.get(b"k") == {"a": [1, "x"]} and memo.get(b"other") is None


def test_a_worker_waits_for_the_value_another_is_computing(memo):
    def slow():
        time.sleep(0.5)
        return "slow value"

    first = _start(lambda: memo.get_or_compute(b"k", slow))
    time.sleep(0.1)
    second = _start(lambda: memo.get_or_compute(b"k", lambda: "computed twice"))
    assert _result(first) == ["slow value", "stored"]
    assert _result(second) == ["slow value", "waited"]


def test_a_failed_computation_is_not_kept_and_waiters_compute_themselves(memo):
    def boom():
        raise ValueError("template error")

    assert _in_child(lambda: memo.get_or_compute(b"k", boom))[0] == "error"
    assert _in_child(lambda: memo.get_or_compute(b"k", lambda: "mine")) == ["mine", "computed"]


def test_a_dead_claim_is_waited_for_only_until_the_deadline(memo):
    memo._state(b"k", claim=True)  # pylint: disable=protected-access
    start = time.monotonic()
    assert memo.get_or_compute(b"k", lambda: "mine", wait=0.2) == ("mine", "computed")
    assert time.monotonic() - start < 5


def test_a_full_memo_computes_and_keeps_nothing(memo):
    big = "x" * (1 << 19)
    assert memo.get_or_compute(b"a", lambda: big)[1] == "stored"
    assert memo.get_or_compute(b"b", lambda: big) == (big, "computed")
    assert memo.get(b"b") is None
    start = time.monotonic()  # the claim ended with a failure record: nobody waits for it
    assert memo.get_or_compute(b"b", lambda: "again") == ("again", "computed")
    assert time.monotonic() - start < 1


def test_values_that_are_not_json_are_used_and_not_kept(memo):
    value = {"a": {1, 2}}
    assert memo.get_or_compute(b"k", lambda: value) == (value, "computed")
    assert memo.get(b"k") is None


def test_the_memo_is_not_a_file(memo):
    fd = memo._fd  # pylint: disable=protected-access
    assert os.readlink("/proc/self/fd/%d" % fd).startswith("/memfd:monstack-run-memo")
