#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Documentation of the monstack.stack.component action (the work is in plugins/action/component.py)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: component
short_description: Install, configure and run (or remove) components of the stack from their specs, in one step
description:
  - An action (it runs on the controller and calls modules on the host). A component role's
    C(tasks/main.yml) reads addresses, component; what the component installs, writes
    and runs is the data of O(spec), the role's C(<role>_component) variable.
  - "The cycle: the contents of every file set are rendered on the controller (literal text,
    a template of the role's C(templates/), or a file of the controller), with the systemd
    unit and the exporter-toolkit web configuration made from O(spec); they are digested
    (HMAC-SHA256 under a random key of the run) and the host is probed in one module call
    (M(monstack.stack.probe)). Only when something differs: the release is installed,
    the system user made, the directories and the file sets written (M(monstack.stack.file_set),
    sets that hold secrets in a call of their own that is never logged), and the service
    restarted (binary or unit changed), reloaded (a set with C(on_change: reload) changed;
    verified, see O(spec.check)) or started, then waited for."
  - A restart or reload that an earlier failed run lost (the unit, a binary or a configuration
    newer than the running process or its last successful load) is caught up.
  - "Tags: the task is tagged C(N), C(N_install), C(N_configure), C(N_run) (N the component's name); the
    action reads C(ansible_run_tags) and C(ansible_skip_tags) and runs only the steps they select:
    C(N_install) the release and the user (and the restart a new release needs), C(N_configure) the
    directories, file sets and the restart or reload they need, C(N_run) the start and a lost restart
    or reload."
  - A rerun with nothing to change costs one module call on the host, also for several components
    (O(specs) are all probed in one M(monstack.stack.probe) call, then each one's drifted steps are done).
  - "Preflight: on a host the preflight play has not checked (no C(monstack_preflight), such as a role used
    on its own), a component with C(state: present) whose name is a role with preflight checks has that
    role's variables checked first (as M(monstack.stack.preflight) with C(role)); the task fails with the
    problems before any change."
  - "C(state: absent) removes the component instead (steps tagged C(N) and C(N_install)): the service is
    stopped and disabled, the unit, the release directory C(<install root>/<name>), the links in
    C(/usr/local/bin) and O(spec.remove_paths) deleted, then systemd reloaded. Configuration and data
    directories are kept unless listed in O(spec.remove_paths)."
version_added: "1.1.0"
author: monstack (!UNKNOWN)
options:
  spec:
    description:
      - The component, plain data (Jinja only in leaf values such as C("{{ prometheus_version }}")).
      - Give either O(spec) or O(specs).
    type: dict
    suboptions:
      name:
        description: The component's name (the role's), also its tags' prefix.
        type: str
        required: true
      tags:
        description:
          - Further tag prefixes that select the steps as the name does (C(P), C(P_install), C(P_configure),
            C(P_run) for each prefix P), for components that share one role's task (the exporter catalogue's
            C(exporters)).
        type: list
        elements: str
        default: []
      state:
        description: C(present) (install, configure, run) or C(absent) (remove), usually C(<role>_state).
        type: str
        choices: [present, absent]
        default: present
      remove_paths:
        description: Absolute paths deleted too with C(state=absent), such as the component's configuration directory.
        type: list
        elements: path
        default: []
      release:
        description:
          - How the release is installed (the release installer's input), for example C(version), C(method)
            (C(archive), C(local), C(package)), C(download_on) (C(controller), C(host)), C(base_url), C(asset_name),
            C(asset_format), C(checksums), C(checksums_file), C(local_path), C(binaries), C(binary_subdir),
            C(unpack_all), C(archive_flat), C(packages), C(package_services), C(version_dir).
          - The probe checks the first binary in C(<install root>/<name>/<version>/) (or C(version_dir)) and
            the links in C(/usr/local/bin), or the C(packages) with method C(package).
        type: dict
        default: {}
      user:
        description: The system user C(name) (none, or C(root), for no user) and its extra C(groups).
        type: dict
        default: {}
      dirs:
        description: Directories, path to C(owner), C(group), C(mode).
        type: dict
        default: {}
      file_sets:
        description:
          - Sets of files, each written in one step (M(monstack.stack.file_set)), name to
            C(path), C(owner), C(group), C(mode), C(validate) (a command, C(%s) the file), C(on_change)
            (C(reload), C(restart) or C(none)), C(secret) (never logged, no diff), C(prune_patterns), C(remove)
            and C(files).
          - "C(files) maps a file name to its content: literal text, or C({template: <file of the role's
            templates/>}) (optionally with C(variable_start_string) and C(variable_end_string)), or
            C({src: <file on the controller>})."
        type: dict
        default: {}
      web:
        description:
          - The exporter-toolkit web configuration C(config_path), C(tls_cert_file), C(tls_key_file) and
            C(basic_auth_users) (user to plain password; only bcrypt hashes are written). Written as the secret set
            C(web) when TLS or a user is given, removed otherwise.
        type: dict
        default: {}
      service:
        description:
          - The systemd service C(name), and its unit (set C(unit), when C(manage_unit), default true)
            C(description), C(documentation), C(exec), C(flags), C(environment), C(reload) (an ExecReload by
            SIGHUP), C(hardening) (merged over the shared sandboxing; null drops a directive), C(ip_restrict),
            C(ip_allow_hosts) (inventory hosts whose addresses may connect) and C(ip_allow) (more addresses
            or networks).
        type: dict
        default: {}
      check:
        description:
          - C(metrics_url) and C(reload_metric_prefix) (a reload by SIGHUP is verified by the
            C(<prefix>_last_reload_success_timestamp_seconds) metric; a rejected configuration fails the task with
            the service's log lines and the service keeps its previous one), C(reload_url) (a reload by HTTP POST,
            which answers non-200 with the error), C(ready_url) (waited for after a start or restart), C(user) and
            C(password) for these URLs.
          - 'After a restart of a running service (an upgrade, new flags), before the task ends: C(targets_url)
            (Prometheus C(/api/v1/targets): some target scraped again), C(status_url) and C(cluster_size)
            (Alertmanager C(/api/v2/status): cluster ready with that many members), C(silences_url)
            (Alertmanager C(/api/v2/silences): the active silences it had before are active again); up to 120 s,
            else the task fails. With a play C(serial: 1) this is a rolling restart.'
          - 'C(downgrade_force) (C(true)/C(false)): before a release change, the version installed on the host
            (the link of its binary) and the new one are compared with the data formats of the version matrix
            (plugins/module_utils/versions.py); a downgrade the data cannot survive (Prometheus 3 to below 2.55.0)
            fails the task before any change unless this is true.'
        type: dict
        default: {}
  specs:
    description:
      - Several components, each as O(spec), converged in one task with one probe of the host for them all, in
        this order. A component whose steps the run's tags do not select is left alone; the task is skipped when
        none is selected, so it can be tagged C(always) to honour C(--skip-tags) of one component.
      - The result is then RV(components).
    type: list
    elements: dict
attributes:
  check_mode:
    description: Can run in check mode and return the changed status it predicts without changing the host.
    support: full
  diff_mode:
    description: Returns the diffs of the files it writes, except those of secret sets.
    support: full
notes:
  - The contents of secret sets, the web configuration and the check password are never part of the result.
  - Hosts whose spec reads the same variable values share one templating per run (see RV(memo)), so the
    controller's CPU per added host on a rerun stays close to that of one module call. The environment
    variable E(MONSTACK_SPEC_MEMO=off) makes every host template its own.
"""

EXAMPLES = r"""
- name: Install, configure and run node_exporter
  monstack.stack.component:
    spec: "{{ node_exporter_component }}"
  tags: [node_exporter, node_exporter_install, node_exporter_configure, node_exporter_run]

- name: Two components, one round trip on a rerun with nothing to change
  monstack.stack.component:
    specs:
      - "{{ node_exporter_component }}"
      - "{{ cadvisor_component }}"
  tags: [always]
"""

RETURN = r"""
drift:
  description: The parts the probe found different (C(install), C(user), C(dirs), set names, C(service), C(restart), C(reload)).
  returned: with O(spec) and C(state=present)
  type: list
  elements: str
details:
  description: For each part in RV(drift), what differs.
  returned: with O(spec) and C(state=present)
  type: dict
components:
  description: With O(specs), for each component's name its RV(drift), RV(details), C(unit), C(changed) and RV(steps).
  returned: with O(specs)
  type: dict
steps:
  description: What this run did (or would do in check mode), such as C(files config), C(reload), C(restart).
  returned: always
  type: list
  elements: str
memo:
  description:
    - How this host's O(spec) or O(specs) was templated. C(hit) or C(waited) means another host of this run
      had the same inputs (every variable value the spec can read, followed through their templates) and
      templated it; C(stored) means this host templated it and kept it for the others; C(computed) means it
      templated it without keeping it.
    - C(off) followed by a reason means this host templated it itself because the spec may read more than its
      variables show (a lookup other than C(env), C(hostvars), a filter or test not known to be a pure
      function), or because the environment variable E(MONSTACK_SPEC_MEMO=off) turns sharing off.
    - The shared copy lives in memory only (an anonymous shared memory region of this run's processes, on
      Linux controllers); nothing is written to disk.
  returned: when the task ran
  type: str
  sample: hit
"""
