#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Write a set of files into one directory in one step (monstack)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: monstack_file_set
short_description: Write a set of small files into one directory atomically, in one step
description:
  - Writes every file of O(files) whose content differs from the file on disk, each
    atomically (a temporary file in the same directory, fsync, rename), with the
    given owner, group and mode.
  - With O(prune_patterns), files in O(path) whose names match one of the patterns
    and that are not in O(files) are removed, so the directory holds exactly the set.
  - Without O(prune_patterns) only the given files are written, and the names in
    O(remove) are removed.
  - One module call per host, whatever the number of files (instead of one
    M(ansible.builtin.copy) per file).
version_added: "1.0.0"
author: monstack (!UNKNOWN)
options:
  path:
    description: The directory. It must exist. Required unless O(sets) is given.
    type: path
  dirs:
    description:
      - Directories to make (with missing parents) or correct first, path to C(owner), C(group),
        C(mode) (parents first, whatever the order given).
    type: dict
    default: {}
  sets:
    description:
      - Several sets in one step instead of O(path) and O(files), each a mapping with C(name)
        and the options O(path), O(files), O(owner), O(group), O(mode), O(prune_patterns),
        O(remove), O(validate). Sets are applied in order; a set that fails its check stops
        the module, with the sets before it written.
    type: list
    elements: dict
    default: []
  files:
    description: File names (no C(/), not C(.) or C(..)) and their contents.
    type: dict
    default: {}
  owner:
    description: Owner of written files (name or uid). Default, the current user.
    type: str
  group:
    description: Group of written files (name or gid). Default, the current user's group.
    type: str
  mode:
    description: Mode of written files, an octal string such as C("0640").
    type: str
    default: "0644"
  prune_patterns:
    description:
      - Shell globs of the file names in O(path) that this set owns. Files matching
        one of them and not in O(files) are removed.
    type: list
    elements: str
    default: []
  remove:
    description: Names of files in O(path) to remove (absent files are fine).
    type: list
    elements: str
    default: []
  validate:
    description:
      - A command that checks each file before it is written, C(%s) standing for the
        file (a temporary file beside the real one), for example C(promtool check rules %s).
      - The files of the set are renamed into place only when every one of them passed;
        otherwise the module fails with the command's message and nothing of the set changes.
    type: str
notes:
  - Supports check mode and diff mode (one diff per written or removed file).
attributes:
  check_mode:
    description: Can run in check mode and return the changed status it predicts without changing the host.
    support: full
  diff_mode:
    description: Returns details on what changed (or would change in check mode) with C(--diff).
    support: full
"""

EXAMPLES = r"""
- name: Write all file_sd files, remove those of services that have no record
  monstack.stack.monstack_file_set:
    path: /etc/prometheus/file_sd/deployments
    files:
      production--api.json: '[{"targets": ["app1:8000"]}]'
    owner: root
    group: prometheus
    mode: "0640"
    prune_patterns: ["*--*.json"]
  register: written

- name: Write one file, remove another
  monstack.stack.monstack_file_set:
    path: /var/lib/node_exporter/textfile
    files:
      deployment--production--api.prom: "deployment_info 1\n"
    remove: [deployment--staging--old.prom]
"""

RETURN = r"""
changed:
  description: Whether a file was written or removed.
  returned: always
  type: bool
written:
  description: Names of the files written (created or changed; in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [production--api.json]
removed:
  description: Names of the files removed (in check mode, that would be).
  returned: always
  type: list
  elements: str
unchanged:
  description: Names of the files of O(files) already up to date.
  returned: always
  type: list
  elements: str
changed_sets:
  description: Names of the O(sets) that wrote or removed a file (in check mode, that would).
  returned: when O(sets) is given
  type: list
  elements: str
dirs_changed:
  description: Directories of O(dirs) made or corrected.
  returned: when O(dirs) is given
  type: list
  elements: str
"""

import os
import shlex

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible_collections.monstack.stack.plugins.module_utils.monstack_files import (
    FileSetError, check_name, dir_difference, discard, fsync_dir, parse_mode, read_current, resolve_owner, same_file,
    stale_names, write_temp)


def check_validate(command):
    if command and "%s" not in command:
        raise FileSetError("validate %r: must contain %%s (the file to check)" % command)
    return command


def file_set(path, files, owner=None, group=None, mode="0644", prune_patterns=None,
             remove=None, check_mode=False, diff=False, validate=None, run=None):
    """Apply the set; returns the result dict (changed, written, removed, unchanged, diff).

    Every file to write is first written to a temporary file beside it and,
    with ``validate``, checked by ``run(argv)`` -> (rc, stdout, stderr); only
    when every file of the set passed are they renamed into place, so a set
    is replaced whole or not at all."""
    if not os.path.isdir(path):
        raise FileSetError("path %s: not a directory" % path)
    files = files or {}
    if not isinstance(files, dict):
        raise FileSetError("files: expected a mapping of name to content")
    for name in files:
        check_name(name)
    for name in remove or []:
        check_name(name, "remove entry")
    patterns = list(prune_patterns or [])
    for pattern in patterns:
        if "/" in pattern:
            raise FileSetError("prune pattern %r: must match names in the directory (no '/')" % pattern)
    check_validate(validate)
    uid, gid = resolve_owner(owner, group)
    want_mode = parse_mode(mode)

    written, removed, unchanged, diffs, pending = [], [], [], [], []
    for name in sorted(files):
        content = files[name]
        if content is None:
            content = ""
        if not isinstance(content, (str, bytes)):
            raise FileSetError("file %s: content must be a string, got %s" % (name, type(content).__name__))
        data = to_bytes(content, errors="surrogate_or_strict")
        full = os.path.join(path, name)
        before, st = read_current(full)
        if same_file(before, st, data, uid, gid, want_mode):
            unchanged.append(name)
            continue
        written.append(name)
        if diff and before != data:
            diffs.append({"before_header": full, "after_header": full,
                          "before": to_text(before or b"", errors="surrogate_or_replace"),
                          "after": to_text(data, errors="surrogate_or_replace")})
        pending.append((name, full, data, before == data))

    if not check_mode:
        temps = []
        try:
            for name, full, data, same_content in pending:
                if same_content and not validate:  # only owner/group/mode differ
                    temps.append((full, None))
                    continue
                tmp = write_temp(path, name, data, uid, gid, want_mode)
                temps.append((full, tmp))
                if validate:
                    argv = [arg.replace("%s", tmp) for arg in shlex.split(validate)]
                    rc, out, err = run(argv)
                    if rc != 0:
                        raise FileSetError("%s: rejected by '%s' (exit %s), nothing of this set was written: %s"
                                           % (full, validate, rc, (err or out).strip()))
        except BaseException:
            for _full, tmp in temps:
                if tmp:
                    discard(tmp)
            raise
        for full, tmp in temps:
            if tmp:
                os.rename(tmp, full)
            else:
                if uid != -1 or gid != -1:
                    os.chown(full, uid, gid)
                os.chmod(full, want_mode)

    stale = set(remove or []) | set(stale_names(path, files, patterns))
    for name in sorted(stale - set(files)):
        full = os.path.join(path, name)
        if not os.path.lexists(full):
            continue
        if os.path.isdir(full) and not os.path.islink(full):
            raise FileSetError("file %s: is a directory, not removed" % full)
        removed.append(name)
        if diff:
            before = read_current(full)[0]
            diffs.append({"before_header": full, "after_header": full + " (absent)",
                          "before": to_text(before or b"", errors="surrogate_or_replace"), "after": ""})
        if not check_mode:
            os.unlink(full)
    if (written or removed) and not check_mode:
        fsync_dir(path)

    result = {"changed": bool(written or removed), "written": written,
              "removed": removed, "unchanged": unchanged}
    if diff:
        result["diff"] = diffs
    return result


def ensure_dirs(dirs, check_mode=False):
    """Make or correct the directories (parents first); -> the paths changed."""
    changed = []
    for path in sorted(dirs, key=lambda p: p.rstrip("/").count("/")):
        spec = dirs[path] or {}
        uid, gid = resolve_owner(spec.get("owner"), spec.get("group"), missing_ok=check_mode)
        want_mode = parse_mode(spec.get("mode") or "0755")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        difference = dir_difference(st, uid, gid, want_mode) if st is not None else "missing"
        if difference == "not a directory":
            raise FileSetError("directory %s: exists and is not a directory" % path)
        if difference is None:
            continue
        changed.append(path)
        if check_mode:
            continue
        if st is None:
            os.makedirs(path, exist_ok=True)
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        os.chmod(path, want_mode)
    return changed


def apply_sets(sets, dirs, check_mode=False, diff=False, run=None):
    """dirs, then each set in order; -> result dict."""
    made = ensure_dirs(dirs or {}, check_mode)
    result = {"changed": bool(made), "dirs_changed": made, "changed_sets": [], "written": [],
              "removed": [], "unchanged": [], "sets": {}}
    diffs = []
    for spec in sets:
        name = spec.get("name") or spec.get("path")
        path = spec.get("path")
        if not path:
            raise FileSetError("set %r: needs a path" % name)
        if check_mode and not os.path.isdir(path):
            # a directory that this check run (or an earlier step of it) only
            # reports as to be made: every file of the set would be written
            files = sorted(spec.get("files") or {})
            one = {"changed": bool(files), "written": files, "removed": [], "unchanged": []}
        else:
            one = file_set(path, spec.get("files"), owner=spec.get("owner"), group=spec.get("group"),
                           mode=spec.get("mode") or "0644", prune_patterns=spec.get("prune_patterns"),
                           remove=spec.get("remove"), check_mode=check_mode, diff=diff,
                           validate=spec.get("validate"), run=run)
        diffs.extend(one.pop("diff", []))
        result["sets"][name] = one
        for key in ("written", "removed", "unchanged"):
            result[key].extend(os.path.join(path, entry) for entry in one[key])
        if one["changed"]:
            result["changed"] = True
            result["changed_sets"].append(name)
    if diff:
        result["diff"] = diffs
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path"),
            dirs=dict(type="dict", default={}),
            sets=dict(type="list", elements="dict", default=[]),
            files=dict(type="dict", default={}),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="str", default="0644"),
            prune_patterns=dict(type="list", elements="str", default=[]),
            remove=dict(type="list", elements="str", default=[]),
            validate=dict(type="str"),
        ),
        supports_check_mode=True,
        required_one_of=[("path", "sets", "dirs")],
        mutually_exclusive=[("path", "sets")],
    )
    params = module.params
    try:
        if not params["path"]:
            module.exit_json(**apply_sets(params["sets"], params["dirs"], check_mode=module.check_mode,
                                          diff=module._diff, run=module.run_command))
        result = file_set(params["path"], params["files"], owner=params["owner"], group=params["group"],
                          mode=params["mode"], prune_patterns=params["prune_patterns"],
                          remove=params["remove"], check_mode=module.check_mode, diff=module._diff,
                          validate=params["validate"],
                          run=module.run_command)
    except FileSetError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (getattr(exc, "filename", None) or params["path"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
