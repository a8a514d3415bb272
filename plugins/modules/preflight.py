#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Documentation of the action monstack.stack.preflight (plugins/action/preflight.py)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight
short_description: Check the variables of hosts for the monstack roles they run, before any change
description:
  - Runs on the controller only; it never connects to a host.
  - With O(hosts) (the preflight play, C(playbooks/preflight.yml), run once for all hosts), it
    checks every given host, for each role it runs (O(roles)), and returns every problem of
    every host at once, without failing; the play then reports them and stops before any
    host is changed.
  - With O(role) (each role's C(tasks/preflight.yml), when the role runs on its own), it checks
    the calling host's variables for that role, with its facts when gathered, and fails with
    the role's problems.
  - The checks, each a message naming the variable and the fix, are these.
    Values against the role's C(meta/argument_specs.yml) (types, choices) and variables with
    the role's prefix that the role does not know, with a suggestion (O(hosts) only);
    variables whose value refers to an undefined variable (a missing or undecrypted vault);
    pinned checksums that are not SHA-256 digests; a release version or download URL upstream
    cannot serve; a plain C(http://) download without pinned checksums; an empty local file
    with install method C(local); a TLS certificate without its key or the reverse; a listen
    address on loopback while Prometheus servers on other hosts scrape it; the example
    inventory's public vault values (unless C(monstack_allow_example_secrets)); an
    C(ansible_become_password) that refers to an undefined variable; and each role's own
    checks (plugins/plugin_utils/preflight_roles.py).
  - Each role's C(meta/argument_specs.yml), C(defaults/) and C(vars/) are read once per
    process; a host's values are templated only when a check reads them.
version_added: "1.1.0"
author: monstack (!UNKNOWN)
options:
  hosts:
    description:
      - The hosts to check, for example C({{ ansible_play_hosts }}) with C(run_once). Each
        host's variables are read in the context of each role it runs (the role's C(vars/),
        the host's inventory and extra vars, the role's C(defaults/)).
      - Give O(hosts) or O(role), not both.
    type: list
    elements: str
  roles:
    description:
      - With O(hosts), the roles each host runs, by inventory group; the group C(all) names
        the roles of every host. Default, the roles of C(site.yml).
    type: dict
    default:
      all: [node_exporter, cadvisor]
      prometheus: [prometheus, blackbox_exporter]
      alertmanager: [alertmanager]
      grafana: [grafana]
      victoriametrics: [victoriametrics]
  role:
    description:
      - Check only this role for the host of the task, with the task's own variables (the
        role's tasks/preflight.yml). Fails with the problems found.
      - One of C(node_exporter), C(cadvisor), C(blackbox_exporter), C(prometheus),
        C(alertmanager), C(grafana), C(victoriametrics), C(journal).
    type: str
attributes:
  check_mode:
    support: full
    description: It changes nothing, in check mode or not.
  diff_mode:
    support: none
    description: It changes nothing, so there is no difference to show.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller only.
notes:
  - The preflight play runs it once with O(hosts) for all its hosts, then fails each host
    that has problems with its report (C(reports)), so every problem of every host is shown
    in one run, before any host is changed.
seealso:
  - name: The preflight play
    description: playbooks/preflight.yml
    link: https://github.com/monstack/stack/blob/main/playbooks/preflight.yml
"""

EXAMPLES = r"""
- name: Preflight | Check the variables of every host, for every role it runs
  monstack.stack.preflight:
    hosts: "{{ ansible_play_hosts }}"
  run_once: true
  register: monstack_preflight

- name: Preflight | Report every problem and stop before any change
  ansible.builtin.fail:
    msg: "{{ monstack_preflight.reports[inventory_hostname] }}"
  when: inventory_hostname in monstack_preflight.reports

- name: Preflight | Check the variables of this role
  monstack.stack.preflight:
    role: prometheus
"""

RETURN = r"""
problems:
  description: With O(hosts), the hosts that have problems, each with its messages.
  returned: with hosts
  type: dict
  sample: {"app1": ["node_exporter_port: is a str, expected int (...)"]}
reports:
  description:
    - With O(hosts), the report of each host that has problems, to fail it with - a heading
      ("N problem(s) in the variables of HOST; nothing has been changed on any host. ...")
      then each problem prefixed with C([HOST]).
  returned: with hosts
  type: dict
passed:
  description: With O(hosts), the hosts without problems.
  returned: with hosts
  type: list
  elements: str
notes:
  description:
    - With O(hosts), what the play should say without it being a problem (for example a
      host that installs Grafana from the internet).
  returned: with hosts
  type: list
  elements: str
msg:
  description: A summary; with O(role), the list of problems when it fails.
  returned: always
  type: raw
"""
