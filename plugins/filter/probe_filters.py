"""Filters that prepare the arguments of the probe module."""
from __future__ import annotations

import secrets

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.plugin_utils.component import (
    PROBE_SET_KEYS as PROBE_KEYS, content_digest)

# What a file set may hold; the write step (file_set) also takes
# validate, on_change and secret, which the probe does not need.
SET_KEYS = PROBE_KEYS + ("files", "validate", "on_change", "secret")
ON_CHANGE = ("restart", "reload", "none")

# The key of the content digests: random, one per controller process (a new
# one every run), never written anywhere. A digest in the probe's arguments
# (shown at -vvv, kept by ARA, logged by the module on the host) is an
# HMAC-SHA256 under it, so it cannot be checked against guessed secrets; the
# key itself goes to the host in the module's no_log argument ``key``. The
# probe's arguments are templated in the one process that runs the task, so
# probe_sets and probe_key see the same key there; the key
# id in each digest lets the module refuse a mismatch instead of reporting
# drift.
_RUN_KEY = secrets.token_hex(32)


def monstack_probe_key(_value=None):
    """The key of this run's digests (hex), for the probe's no_log ``key`` argument.
    The input is ignored (a filter needs one)."""
    return _RUN_KEY


def monstack_probe_sets(sets, component="component", key=None):
    """File sets (name -> {path, files: {name: content}, ...}) -> the same sets
    with each content replaced by ``hmac-sha256:<key id>:<hex>`` under ``key``
    (this run's key, probe_key, when not given) and only the keys the
    probe reads. Raises AnsibleFilterError naming the set and key that are wrong."""
    key = key or _RUN_KEY
    if not isinstance(sets, dict):
        raise AnsibleFilterError("%s file sets: expected a mapping of set name to set, got %s"
                                 % (component, type(sets).__name__))
    probed = {}
    for name, spec in sets.items():
        where = "%s file set %r" % (component, name)
        if not isinstance(spec, dict):
            raise AnsibleFilterError("%s: expected a mapping, got %s" % (where, type(spec).__name__))
        unknown = sorted(set(spec) - set(SET_KEYS))
        if unknown:
            raise AnsibleFilterError("%s: unknown key(s) %s; known: %s" % (where, ", ".join(unknown), ", ".join(SET_KEYS)))
        if not str(spec.get("path") or "").startswith("/"):
            raise AnsibleFilterError("%s: path %r must be an absolute directory" % (where, spec.get("path")))
        if spec.get("on_change", "none") not in ON_CHANGE:
            raise AnsibleFilterError("%s: on_change %r must be one of %s" % (where, spec.get("on_change"), ", ".join(ON_CHANGE)))
        files = spec.get("files") or {}
        if not isinstance(files, dict):
            raise AnsibleFilterError("%s: files must be a mapping of file name to content" % where)
        digests = {}
        for file_name, content in files.items():
            if content is None:
                content = ""
            if not isinstance(content, str):
                raise AnsibleFilterError("%s: content of %s must be text, got %s (render it with to_nice_yaml or to_json)"
                                         % (where, file_name, type(content).__name__))
            digests[file_name] = content_digest(content, key)
        probed[name] = {key: spec[key] for key in PROBE_KEYS if key in spec}
        probed[name]["files"] = digests
    return probed


class FilterModule:
    def filters(self):
        return {"probe_sets": monstack_probe_sets, "probe_key": monstack_probe_key}
