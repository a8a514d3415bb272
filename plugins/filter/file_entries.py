"""Filter plugin: file entries of a component's file set (monstack.stack.component)."""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

KINDS = ("template", "src")
OPTIONS = ("variable_start_string", "variable_end_string")


def monstack_file_entries(files, kind="template", **options):
    """{file name: path} -> {file name: {kind: path, **options}}: the entries of a file set whose
    contents the component action renders from a template of the role (kind template) or reads
    from a file on the controller (kind src)."""
    if not isinstance(files, Mapping):
        raise AnsibleFilterError("file_entries: expected a mapping of file name to path, got %s"
                                 % type(files).__name__)
    if kind not in KINDS:
        raise AnsibleFilterError("file_entries: kind %r must be one of %s" % (kind, ", ".join(KINDS)))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown or (options and kind != "template"):
        raise AnsibleFilterError("file_entries: unknown option(s) %s; a template takes %s"
                                 % (", ".join(unknown or sorted(options)), ", ".join(OPTIONS)))
    entries = {}
    for name, path in files.items():
        if not isinstance(path, str) or not path:
            raise AnsibleFilterError("file_entries: the path of %r must be a non-empty string, got %r"
                                     % (name, path))
        entries[str(name)] = dict({kind: path}, **{k: str(v) for k, v in options.items()})
    return entries


class FilterModule:
    """monstack file entries filter."""

    def filters(self):
        return {"file_entries": monstack_file_entries}
