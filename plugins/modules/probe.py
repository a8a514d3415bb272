#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Learn in one round trip what of a component differs from what is wanted (monstack)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: probe
short_description: Compare a component's install, user, directories, files and service with what is wanted, in one step
description:
  - Reads, never writes. Compares everything a component role manages on a host with
    the wanted state given in the arguments and returns the names of the parts that
    differ (RV(drift)). The role then runs only the steps of those parts, so a rerun
    that has nothing to do costs one module call per component instead of one per
    file, link, directory and service.
  - File contents are compared by digest, computed on the controller, so no file content
    or secret travels in the arguments. The probe_sets filter makes them
    HMAC-SHA256 under a random key of the run (C(hmac-sha256:<key id>:<hex>)), given in
    O(key), which is never logged; so the digests shown at C(-vvv), kept by ARA or logged on
    the host cannot be checked against guessed secrets. A plain C(sha1:<hex>) is also
    taken, for contents that are not secret.
version_added: "1.0.0"
author: monstack (!UNKNOWN)
options:
  install:
    description:
      - C(path) a file the installed release must have (its binary in the version
        directory); C(links) a mapping of symlink to the target it must point to;
        C(packages) Debian packages that must be installed.
      - Reported as drift C(install).
    type: dict
    default: {}
  user:
    description:
      - C(name) a system user that must exist, C(groups) groups it must belong to.
        Reported as drift C(user).
    type: dict
    default: {}
  dirs:
    description:
      - Mapping of directory path to C(owner), C(group), C(mode). Reported as drift C(dirs).
    type: dict
    default: {}
  sets:
    description:
      - Mapping of a name of your choice to a file set, each reported under its own name
        as drift when it differs.
      - A set has C(path) (its directory), C(files) (file name to the digest of the wanted
        content, C(hmac-sha256:<key id>:<hex>) under O(key), or C(sha1:<hex>)), C(owner), C(group), C(mode), and optionally C(prune_patterns) (globs of the
        names the set owns; a matching file not in C(files) is stale) and C(remove) (names
        that must not exist).
    type: dict
    default: {}
  components:
    description:
      - Several components probed in one call (one round trip for all the components of a host);
        each element takes the options O(install), O(user), O(dirs), O(sets), O(service),
        O(restart_files) and O(reload), as for one component; O(key) is shared. The module's own
        options are then ignored and the result is RV(components).
    type: list
    elements: dict
    suboptions:
      install:
        description: As O(install).
        type: dict
        default: {}
      user:
        description: As O(user).
        type: dict
        default: {}
      dirs:
        description: As O(dirs).
        type: dict
        default: {}
      sets:
        description: As O(sets).
        type: dict
        default: {}
      service:
        description: As O(service).
        type: str
      restart_files:
        description: As O(restart_files).
        type: list
        elements: path
        default: []
      reload:
        description: As O(reload).
        type: dict
        default: {}
        suboptions:
          url:
            description: The service's metrics URL.
            type: str
          metric:
            description: The gauge of its last successful configuration load.
            type: str
          sets:
            description: The names of the file sets it loads.
            type: list
            elements: str
            default: []
          username:
            description: Basic auth user.
            type: str
          password:
            description: Basic auth password.
            type: str
  key:
    description:
      - The key (hex) of the C(hmac-sha256) digests in O(sets), the probe_key filter's value
        in the run that made them. Never logged. Required when a set has such a digest; the key id in
        each digest must match it.
    type: str
  service:
    description:
      - A systemd unit name (without C(.service)) that must be enabled and running.
        Reported as drift C(service). Its state is returned in RV(unit).
    type: str
  restart_files:
    description:
      - Files whose change needs a restart (the unit, the links to the binaries). When
        O(service) is running and one of them is newer than the moment it became active (a
        restart lost to an earlier failed run), drift C(restart).
    type: list
    elements: path
    default: []
  reload:
    description:
      - Catches a configuration change the service has not loaded (a reload lost to an
        earlier failed run). C(url) of the service's own metrics, C(metric) the gauge of its
        last successful configuration load (Unix seconds), C(sets) the names of the file sets
        it loads. When a file of those sets is newer than that time, drift C(reload).
      - C(username)/C(password) for basic auth (the password is never logged); certificates are
        not verified (the service's own address on loopback).
    type: dict
    default: {}
    suboptions:
      url:
        description: The service's metrics URL.
        type: str
      metric:
        description: The gauge of its last successful configuration load.
        type: str
      sets:
        description: The names of the file sets it loads.
        type: list
        elements: str
        default: []
      username:
        description: Basic auth user.
        type: str
      password:
        description: Basic auth password.
        type: str
notes:
  - Supports check mode (it only reads).
attributes:
  check_mode:
    description: Can run in check mode and return the changed status it predicts without changing the host.
    support: full
"""

EXAMPLES = r"""
- name: What of node_exporter differs from the wanted state
  monstack.stack.probe:
    install:
      path: /opt/monstack/node_exporter/1.11.1/node_exporter
      links: {/usr/local/bin/node_exporter: /opt/monstack/node_exporter/1.11.1/node_exporter}
    user: {name: node_exporter, groups: [node_exporter]}
    dirs: {/etc/node_exporter: {owner: root, group: node_exporter, mode: "0750"}}
    sets: >-
      {{ {'unit': {'path': '/etc/systemd/system', 'owner': 'root', 'group': 'root', 'mode': '0644',
                   'files': {'node_exporter.service': unit_text}}}
         | monstack.stack.probe_sets('node_exporter') }}
    key: "{{ 'node_exporter' | monstack.stack.probe_key }}"
    service: node_exporter
  register: probe

- name: Install only when it is not there
  ansible.builtin.include_tasks: install.yml
  when: "'install' in probe.drift"
"""

RETURN = r"""
drift:
  description: Names of the parts that differ (C(install), C(user), C(dirs), set names, C(service), C(restart), C(reload)).
  returned: unless O(components) is given
  type: list
  elements: str
  sample: [rules, service]
details:
  description: For each part in RV(drift), what differs (paths, names, states).
  returned: unless O(components) is given
  type: dict
unit:
  description: C(LoadState), C(ActiveState) and C(UnitFileState) of O(service).
  returned: when O(service) is given
  type: dict
  sample: {LoadState: loaded, ActiveState: active, UnitFileState: enabled}
arch:
  description: The host's machine architecture (C(uname -m), such as C(x86_64)), for the release install.
  returned: always
  type: str
  sample: x86_64
components:
  description:
    - With O(components), for each element in the same order, its RV(drift), RV(details), RV(unit)
      and RV(user_group_exists) (RV(arch) is given once, at the top).
  returned: when O(components) is given
  type: list
  elements: dict
user_group_exists:
  description: Whether a group named like the user of O(user) exists (it becomes the user's primary group).
  returned: when O(user) names a user
  type: bool
"""

import grp
import hashlib
import hmac
import os
import pwd
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.monstack.stack.plugins.module_utils.monstack_files import (
    FileSetError, check_name, dir_difference, parse_mode, read_current, resolve_owner, same_file, stale_names)


def probe_install(spec, run):
    problems = []
    path = spec.get("path")
    if path and not os.path.exists(path):
        problems.append("%s: missing" % path)
    for link, target in sorted((spec.get("links") or {}).items()):
        try:
            current = os.readlink(link)
        except OSError:
            current = None
        if current != target:
            problems.append("%s: points to %s, wanted %s" % (link, current, target))
    for package in spec.get("packages") or []:
        rc, out, _err = run(["dpkg-query", "-W", "-f", "${Status}", package])
        if rc != 0 or not out.strip().endswith(" installed"):
            problems.append("package %s: not installed" % package)
    return problems


def probe_user(spec):
    name = spec.get("name")
    if not name:
        return []
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return ["user %s: missing" % name]
    problems = []
    for group in spec.get("groups") or []:
        try:
            info = grp.getgrnam(group)
        except KeyError:
            problems.append("group %s: missing" % group)
            continue
        if info.gr_gid != entry.pw_gid and name not in info.gr_mem:
            problems.append("user %s: not in group %s" % (name, group))
    return problems


def group_exists(name):
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def probe_dirs(dirs):
    problems = []
    for path, spec in sorted(dirs.items()):
        try:
            st = os.stat(path)
        except OSError:
            problems.append("%s: missing" % path)
            continue
        uid, gid = resolve_owner(spec.get("owner"), spec.get("group"), missing_ok=True)
        difference = dir_difference(st, uid, gid, parse_mode(spec["mode"]) if spec.get("mode") else None)
        if difference:
            problems.append("%s: %s" % (path, difference))
    return problems


HMAC_PREFIX = "hmac-sha256:"


def key_id(key):
    """The key id the probe_sets filter puts in its digests."""
    return hashlib.sha256(b"monstack-probe-key-id:" + key.encode("ascii")).hexdigest()[:12]


def check_key(sets, key):
    """Refuse HMAC digests without their key or made with another one (the
    probe would report every file as different)."""
    if key:
        try:
            bytes.fromhex(key)
        except ValueError:
            raise FileSetError("key: expected hex digits (the probe_key filter's value)")
    wanted_id = key_id(key) if key else None
    for set_name, spec in sorted((sets or {}).items()):
        for name, digest in sorted(((spec or {}).get("files") or {}).items()):
            if not (isinstance(digest, str) and digest.startswith(HMAC_PREFIX)):
                continue
            if not key:
                raise FileSetError("set %s, file %s: an %s digest needs the key argument" % (set_name, name, HMAC_PREFIX))
            if digest[len(HMAC_PREFIX):].split(":", 1)[0] != wanted_id:
                raise FileSetError("set %s, file %s: the digest was made with another key than the key argument "
                                   "(give the probe_key filter's value of the same run)" % (set_name, name))


def wanted_data(before, digest, key):
    """What same_file compares the file's content ``before`` with: ``before``
    itself when it has the HMAC ``digest``, None (different) when not; any
    other digest as it is."""
    if not (isinstance(digest, str) and digest.startswith(HMAC_PREFIX)):
        return digest
    if before is None:
        return None
    mac = hmac.new(bytes.fromhex(key), before, hashlib.sha256).hexdigest()
    return before if hmac.compare_digest(mac, digest.rsplit(":", 1)[1]) else None


def probe_set(spec, key=None):
    """-> (problems, newest mtime of its files)."""
    path = spec.get("path")
    if not path:
        raise FileSetError("a set needs a path")
    files = spec.get("files") or {}
    uid, gid = resolve_owner(spec.get("owner"), spec.get("group"), missing_ok=True)
    mode = parse_mode(spec.get("mode") or "0644")
    problems, newest = [], 0.0
    for name in sorted(files):
        check_name(name)
        before, st = read_current(os.path.join(path, name))
        if st is not None:
            newest = max(newest, st.st_mtime)
        if not same_file(before, st, wanted_data(before, files[name], key), uid, gid, mode):
            problems.append(os.path.join(path, name))
    for name in spec.get("remove") or []:
        if os.path.lexists(os.path.join(path, check_name(name))):
            problems.append(os.path.join(path, name) + " (to remove)")
    for name in stale_names(path, files, spec.get("prune_patterns") or []):
        problems.append(os.path.join(path, name) + " (stale)")
    return problems, newest


def probe_service(name, run):
    rc, out, err = run(["systemctl", "show",
                        "--property=LoadState,ActiveState,UnitFileState,ActiveEnterTimestampMonotonic",
                        name + ".service"])
    unit = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if rc != 0:
        unit.setdefault("LoadState", "unknown (%s)" % err.strip())
    problems = []
    if unit.get("ActiveState") != "active" or unit.get("UnitFileState") != "enabled":
        problems.append("%s: %s, %s" % (name, unit.get("ActiveState"), unit.get("UnitFileState")))
    return problems, unit


def newer_than_process(paths, unit):
    """Files (lstat: a link's own time) changed after the unit became active."""
    try:
        since = int(unit.get("ActiveEnterTimestampMonotonic") or 0) / 1e6
    except ValueError:
        return []
    if unit.get("ActiveState") != "active" or since <= 0:
        return []
    # CLOCK_MONOTONIC (systemd's and Python's) to wall-clock time
    started = time.time() - time.monotonic() + since
    newer = []
    for path in paths:
        try:
            if os.lstat(path).st_mtime > started + 1:
                newer.append("%s: changed after %s started" % (path, unit.get("Id", "the service")))
        except OSError:
            continue
    return newer


def loaded_since(spec):
    """The service's last successful configuration load (Unix seconds), or None."""
    # Imported here: only components with a reload check need it, and it is
    # the heaviest import of this module on the host (ssl, http.client).
    from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel
    try:
        response = open_url(spec["url"], url_username=spec.get("username") or None,
                            url_password=spec.get("password") or None,
                            force_basic_auth=bool(spec.get("username")), validate_certs=False, timeout=10)
        text = response.read().decode("utf-8", "replace")
    except Exception:  # pylint: disable=broad-except  # not running: the service part reports it
        return None
    found = re.search(r"(?m)^%s(?:\{[^}]*\})? (\S+)$" % re.escape(spec["metric"]), text)
    return float(found.group(1)) if found else None


def probe(params, run):
    drift, details, result = [], {}, {}

    def note(part, problems):
        if problems:
            drift.append(part)
            details[part] = problems

    note("install", probe_install(params["install"] or {}, run))
    note("user", probe_user(params["user"] or {}))
    if (params["user"] or {}).get("name"):
        result["user_group_exists"] = group_exists(params["user"]["name"])
    note("dirs", probe_dirs(params["dirs"] or {}))
    newest = {}
    check_key(params["sets"], params.get("key"))
    for name, spec in sorted((params["sets"] or {}).items()):
        problems, newest[name] = probe_set(spec or {}, params.get("key"))
        note(name, problems)
    if params["service"]:
        problems, result["unit"] = probe_service(params["service"], run)
        note("service", problems)
        note("restart", newer_than_process(params["restart_files"] or [], result["unit"]))
    reload_spec = params["reload"] or {}
    if reload_spec.get("url") and "service" not in drift:
        changed_at = max([newest.get(name, 0.0) for name in reload_spec.get("sets") or []] or [0.0])
        since = loaded_since(reload_spec)
        if since is not None and changed_at > since:
            note("reload", ["configuration written at %.0f, last loaded at %.0f" % (changed_at, since)])
    result.update(changed=False, drift=drift, details=details, arch=os.uname().machine)
    return result


# The options of one component's probe: the module's own, or each element of O(components).
COMPONENT_OPTIONS = dict(
    install=dict(type="dict", default={}),
    user=dict(type="dict", default={}),
    dirs=dict(type="dict", default={}),
    sets=dict(type="dict", default={}),
    service=dict(type="str"),
    restart_files=dict(type="list", elements="path", default=[]),
    # password no_log: left out of the invocation, of the module's own log
    # on the host and of every output
    reload=dict(type="dict", default={}, options=dict(
        url=dict(type="str"), metric=dict(type="str"), sets=dict(type="list", elements="str", default=[]),
        username=dict(type="str"), password=dict(type="str", no_log=True))),
)


def probe_all(params, run):
    """The module's result: one component (its own options) or, with ``components``, a result
    per component in ``components`` (same order), in one round trip."""
    if params.get("components") is None:
        return probe(params, run)
    results = []
    for component in params["components"]:
        one = probe(dict(component, key=params.get("key")), run)
        one.pop("changed", None)
        one.pop("arch", None)
        results.append(one)
    return {"changed": False, "components": results, "arch": os.uname().machine}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMPONENT_OPTIONS,
            key=dict(type="str", no_log=True),
            components=dict(type="list", elements="dict", options=COMPONENT_OPTIONS),
        ),
        supports_check_mode=True,
    )
    try:
        result = probe_all(module.params, module.run_command)
    except FileSetError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
