"""Filters that prepare the arguments of the monstack_probe module."""
from __future__ import annotations

import hashlib

from ansible.errors import AnsibleFilterError

# What a file set may hold; the write step (monstack_file_set) also takes
# validate, on_change and secret, which the probe does not need.
PROBE_KEYS = ("path", "owner", "group", "mode", "prune_patterns", "remove")
SET_KEYS = PROBE_KEYS + ("files", "validate", "on_change", "secret")
ON_CHANGE = ("restart", "reload", "none")


def monstack_probe_sets(sets, component="component"):
    """File sets (name -> {path, files: {name: content}, ...}) -> the same sets
    with each content replaced by ``sha1:<hex>`` and only the keys the probe
    reads. Raises AnsibleFilterError naming the set and key that are wrong."""
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
            digests[file_name] = "sha1:" + hashlib.sha1(content.encode("utf-8", "surrogateescape")).hexdigest()
        probed[name] = {key: spec[key] for key in PROBE_KEYS if key in spec}
        probed[name]["files"] = digests
    return probed


class FilterModule:
    def filters(self):
        return {"monstack_probe_sets": monstack_probe_sets}
