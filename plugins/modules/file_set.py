#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Write a set of files into one directory in one step (monstack)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: file_set
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
  links:
    description:
      - Symbolic links to make last, path to target (a link or file at the path is replaced
        atomically; a directory there is an error). For example the binaries of a release
        linked into C(/usr/local/bin) in the same step as its version directory.
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
  monstack.stack.file_set:
    path: /etc/prometheus/file_sd/deployments
    files:
      production--api.json: '[{"targets": ["app1:8000"]}]'
    owner: root
    group: prometheus
    mode: "0640"
    prune_patterns: ["*--*.json"]
  register: written

- name: Write one file, remove another
  monstack.stack.file_set:
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
links_changed:
  description: Links of O(links) made or pointed to their new target.
  returned: when O(path) is not given
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.monstack.stack.plugins.module_utils.monstack_files import FileSetError, apply_sets, file_set


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path"),
            dirs=dict(type="dict", default={}),
            links=dict(type="dict", default={}),
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
        required_one_of=[("path", "sets", "dirs", "links")],
        mutually_exclusive=[("path", "sets")],
    )
    params = module.params
    try:
        if not params["path"]:
            module.exit_json(**apply_sets(params["sets"], params["dirs"], check_mode=module.check_mode,
                                          diff=module._diff, run=module.run_command, links=params["links"]))
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
