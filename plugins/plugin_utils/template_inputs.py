# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""A digest of everything a template expression can read, taken without rendering it.

The component action templates a role's spec (tens of template strings) in every
host's worker. Hosts whose variables are the same get the same spec, and the
templating is most of the controller's CPU per host on a rerun. ``inputs_digest``
gives a key for a run's memo (run_memo.py) such that two hosts get the same key only
when rendering is certain to give the same result for both:

- the expression's variables are followed through the raw values in the host's
  variables, to every variable any template string among them names (a name is
  followed even where a ``{% set %}`` shadows it: more inputs, never fewer);
- every value on the way is encoded with its type and, for strings, whether
  Ansible trusts it as a template (a string from a fact is data, the same text
  from a role is a template); a vaulted value by its ciphertext;
- the expression must be one that reads nothing else: only filters and tests in the
  allow lists below (pure functions of their arguments; not ``random``,
  ``password_hash``, ``fileglob``, the path tests...), no ``lookup``/``query`` but of
  the controller's environment (``lookup('env', ...)``, the same all through a run),
  no ``now``, no ``hostvars``/``vars`` (another host's or any variable by a computed
  name), no ``include``/``import``. Anything else gives None: not memoised, the
  host renders for itself as before.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping

import jinja2
from jinja2 import nodes

MARKERS = ("{{", "{%", "{#")

# Jinja's and ansible-core's filters that depend on their arguments only.
PURE_FILTERS = frozenset((
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
    "last", "length", "list", "lower", "map", "max", "min", "pprint", "reject", "rejectattr", "replace",
    "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags", "sum", "title",
    "tojson", "trim", "truncate", "unique", "upper", "urlencode", "wordcount", "wordwrap", "xmlattr",
    "b64decode", "b64encode", "basename", "bool", "checksum", "combinations", "combine", "comment",
    "dict2items", "difference", "dirname", "extract", "flatten", "from_json", "from_yaml", "from_yaml_all",
    "hash", "human_readable", "human_to_bytes", "intersect", "items2dict", "log", "mandatory", "md5",
    "path_join", "permutations", "pow", "product", "quote", "regex_escape", "regex_findall", "regex_replace",
    "regex_search", "rekey_on_member", "root", "sha1", "split", "splitext", "subelements",
    "symmetric_difference", "ternary", "to_json", "to_nice_json", "to_nice_yaml", "to_uuid", "to_yaml",
    "type_debug", "union", "urldecode", "urlsplit", "zip", "zip_longest",
    # this collection's, each a function of its arguments
    "monstack.stack.hostport", "monstack.stack.local_endpoint", "monstack.stack.local_host",
    "monstack.stack.version_settings", "monstack.stack.exporter_catalogue", "monstack.stack.exporter_components",
    "monstack.stack.exporter_scrape_jobs",
))
PURE_TESTS = frozenset((
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "filter",
    "float", "ge", "greaterthan", "gt", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping",
    "ne", "none", "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper",
    "all", "any", "changed", "contains", "failed", "failure", "falsy", "finished", "match", "nan", "regex",
    "search", "skipped", "started", "subset", "succeeded", "success", "superset", "truthy", "uri", "url",
    "urn", "vault_encrypted", "version", "version_compare",
))
# Names a template may call or read that are not variables and read nothing else.
PURE_GLOBALS = frozenset(("range", "dict", "namespace", "cycler", "joiner", "undef", "true", "false", "none",
                          "True", "False", "None", "loop", "super", "caller", "varargs", "kwargs"))
# Names that read what no variable value shows: refused.
READERS = frozenset(("lookup", "query", "q", "now", "lipsum", "hostvars", "vars", "varnames", "environment"))
# Lookups that give the same answer all through a run (the controller's environment, which its
# workers inherit), allowed when the plugin is named by a literal: lookup('env', 'HOME').
RUN_CONSTANT_LOOKUPS = frozenset(("env", "ansible.builtin.env"))
_LOOKUP_CALLS = frozenset(("lookup", "query", "q"))
_PREFIXES = ("ansible.builtin.", "ansible.legacy.")


class NotMemoisable(Exception):
    """The expression reads something its variables' values do not show."""


_ENV = None


def _environment():
    global _ENV  # pylint: disable=global-statement
    if _ENV is None:
        _ENV = jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])
    return _ENV


def _plain(name):
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


# Filters that call another filter or test by a name in their arguments: map('name'),
# select('test'), selectattr('attribute', 'test'): the position of that name.
_BY_NAME = {"map": (0, PURE_FILTERS), "select": (0, PURE_TESTS), "reject": (0, PURE_TESTS),
            "selectattr": (1, PURE_TESTS), "rejectattr": (1, PURE_TESTS)}


def _named_ones_pure(node):
    """Whether the filter or test that filter ``node`` calls by name (map, select...) is a pure one,
    named by a literal."""
    position, allowed = _BY_NAME.get(_plain(node.name), (None, None))
    if position is None:
        return True
    if _plain(node.name) == "map" and not node.args and any(k.key == "attribute" for k in node.kwargs):
        return True  # map(attribute=...): no filter
    if len(node.args) <= position:
        return _plain(node.name) != "map" and not node.dyn_args and not node.dyn_kwargs  # select(): truthiness
    named = node.args[position]
    return isinstance(named, nodes.Const) and isinstance(named.value, str) and _plain(named.value) in allowed


def analyse(source):
    """The sorted variable names template ``source`` reads, or None when it may read anything else
    (a filter or test not known to be pure, a lookup, another host's variables, an include)."""
    try:
        tree = _environment().parse(str(source))
    except jinja2.TemplateError:
        return None
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        return None
    for node in tree.find_all(nodes.Filter):
        if node.name is not None and (_plain(node.name) not in PURE_FILTERS or not _named_ones_pure(node)):
            return None
    for node in tree.find_all(nodes.Test):
        if _plain(node.name) not in PURE_TESTS:
            return None
    allowed = set()
    for node in tree.find_all(nodes.Call):
        if isinstance(node.node, nodes.Name) and node.node.name in _LOOKUP_CALLS and node.args \
                and isinstance(node.args[0], nodes.Const) and node.args[0].value in RUN_CONSTANT_LOOKUPS:
            allowed.add(id(node.node))
    names = set()
    for node in tree.find_all(nodes.Name):
        if node.ctx != "load" or id(node) in allowed:
            continue
        if node.name in READERS:
            return None
        names.add(node.name)
    return sorted(names)


try:
    from ansible.parsing.vault import EncryptedString as _ENCRYPTED
except ImportError:  # pragma: no cover - older ansible-core
    _ENCRYPTED = ()


class _Encoder:
    """Feeds values into a hash, and collects the variable names their template strings read."""

    def __init__(self, digest, analyse_one, trusted):
        self._digest = digest
        self._analyse = analyse_one
        self._trusted = trusted
        self.names = []
        self.where = "the task's argument"  # what is being encoded, for NotMemoisable (never a value)

    def put(self, tag, text=""):
        data = text.encode("utf-8", "surrogatepass")
        self._digest.update(b"%s%d:" % (tag, len(data)))
        self._digest.update(data)

    def string(self, value):
        text = str(value)
        trusted = self._trusted(value)
        self.put(b"S" if trusted else b"U", text)
        if any(marker in text for marker in MARKERS):
            names = self._analyse(text)
            if names is None:
                raise NotMemoisable("%s holds a template that may read more than variables (a lookup, another "
                                    "host's variables, a filter or test not known to be pure)" % self.where)
            self.names.extend(names)

    def value(self, value):  # pylint: disable=too-many-branches
        if value is None:
            self.put(b"N")
        elif value is True or value is False:
            self.put(b"B", "1" if value else "0")
        elif isinstance(value, int):
            self.put(b"I", str(int(value)))
        elif isinstance(value, float):
            self.put(b"D", repr(float(value)))
        elif isinstance(value, str):
            self.string(value)
        elif _ENCRYPTED and isinstance(value, _ENCRYPTED):
            self.put(b"E", str(getattr(value, "_ciphertext")))
        elif isinstance(value, Mapping) and type(value).__name__ != "HostVars":
            self.put(b"M", str(len(value)))
            for key, item in value.items():
                self.value(key)
                self.value(item)
        elif isinstance(value, (list, tuple)):
            self.put(b"L" if isinstance(value, list) else b"T", str(len(value)))
            for item in value:
                self.value(item)
        else:
            raise NotMemoisable("%s holds a value of type %s" % (self.where, type(value).__name__))


def inputs_digest(expression, variables, analyse_one=analyse, salt=""):
    """(digest, why): a hex digest of template ``expression`` (a value as a task argument holds it,
    with its template strings) and of every variable value it can read from ``variables`` (a host's
    task variables); or None and why it is not memoisable (see the module docstring). ``analyse_one``
    is ``analyse`` or a memoised copy of it; ``salt`` adds what else the result depends on."""
    try:
        from ansible._internal._datatag._tags import TrustedAsTemplate
    except ImportError:  # another ansible-core: which strings are templates is not known here
        return None, "this ansible-core does not mark trusted templates as 2.19 does"
    digest = hashlib.sha256()
    encoder = _Encoder(digest, analyse_one, TrustedAsTemplate.is_tagged_on)
    encoder.put(b"X", salt)
    try:
        encoder.value(expression)
        seen = set()
        while encoder.names:
            name = encoder.names.pop(0)
            if name in seen:
                continue
            seen.add(name)
            if name in variables:
                encoder.put(b"V", name)
                encoder.where = "variable %s" % name
                encoder.value(variables[name])
            elif name in PURE_GLOBALS:
                encoder.put(b"G", name)
            else:
                encoder.put(b"?", name)
    except NotMemoisable as exc:
        return None, str(exc)
    except RecursionError:
        return None, "values nested too deeply"
    return digest.hexdigest(), ""
