#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""The post-deploy gate: wait until Prometheus scrapes a run's targets up (monstack)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: deployment_gate
short_description: Wait until Prometheus has scraped a deployment run's targets up (the post-deploy gate)
description:
  - Asks the Prometheus of this host for its active targets (C(GET /api/v1/targets?state=active)) every
    O(interval) seconds until every target of O(files) (only those named in O(names), when given) was scraped
    C(up) after O(since), or O(timeout) seconds have passed; then fails naming each target that is not up and
    why (not discovered yet, not scraped since its file was written, or down with a short class of its scrape
    error).
  - A target counts only when a target of the job O(job) with all of its file's labels (service, environment,
    version, the record's labels, path and scheme) at its address was scraped up after O(since); another
    service's or the previous version's target at the same address never counts.
  - Prometheus' answer holds every target's raw C(lastError), whose text a scraped service decides; it is never
    returned or printed. The failure message says what the error is (its class or HTTP status) and the scrape
    URL without user info or query (the record library's gate, plugins/module_utils/deployment_gate.py).
  - Used by C(playbooks/deployments.yml) under the deployment lock, after the record store wrote the files.
version_added: "1.0.0"
author: monstack (!UNKNOWN)
extends_documentation_fragment:
  - monstack.stack.prometheus_api
options:
  files:
    description:
      - File name to target groups, as P(monstack.stack.deployment_files#filter) (or the C(files) of
        P(monstack.stack.deployment_plan#filter)) returns them.
    type: dict
    required: true
  names:
    description: Wait only for the files of these names (the ones this run wrote); omitted, for all of O(files).
    type: list
    elements: str
  since:
    description: When the files were written, seconds since the epoch (the C(time) that M(monstack.stack.deployment_store) returns).
    type: float
    required: true
  job:
    description: The scrape job of the deployment targets.
    type: str
    default: deployments
  timeout:
    description: Seconds to wait at most (each look at Prometheus is bounded by O(request_timeout) besides).
    type: int
    default: 120
  interval:
    description: Seconds between two looks.
    type: int
    default: 5
notes:
  - Changes nothing. In check mode it does not wait (nothing was written to wait for) and reports nothing pending.
attributes:
  check_mode:
    description: Skips the wait in check mode.
    support: full
  diff_mode:
    description: Nothing to show.
    support: none
"""

EXAMPLES = r"""
- name: Wait until Prometheus scrapes this run's targets up
  monstack.stack.deployment_gate:
    url: http://127.0.0.1:9090
    files: "{{ plan.files }}"
    names: "{{ store.written }}"
    since: "{{ store.time }}"
    timeout: 120
"""

RETURN = r"""
pending:
  description:
    - The targets not up (empty when the gate passed), each with C(file), C(target), C(labels), C(state)
      (C(not discovered), C(not scraped yet) or C(down)), C(health), C(last_error) (a short class), C(last_scrape),
      C(scrape_url) (without user info or query) and C(message).
  returned: always
  type: list
  elements: dict
looks:
  description: How many times Prometheus was asked.
  returned: always
  type: int
waited:
  description: Seconds waited.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.monstack.stack.plugins.module_utils.deployment_gate import GateError, pending
from ansible_collections.monstack.stack.plugins.module_utils.prometheus_api import ARGUMENT_SPEC, get_json


def active_targets(params):
    """-> (Prometheus' active targets or None, what went wrong or None); never the answer's text."""
    body, problem = get_json(params, "/api/v1/targets?state=active")
    if problem:
        return None, problem
    targets = (body.get("data") or {}).get("activeTargets") if isinstance(body, dict) else None
    if not isinstance(targets, list):
        return None, "200 without activeTargets"
    return targets, None


def wait(params, clock=time.monotonic, sleep=time.sleep):
    """-> (pending targets, looks, seconds waited, the last problem reaching Prometheus or None)."""
    files = params["files"]
    if params.get("names") is not None:
        files = {name: groups for name, groups in files.items() if name in set(params["names"])}
    start = clock()
    looks = 0
    while True:
        targets, problem = active_targets(params)
        looks += 1
        left = pending(targets or [], files, params["since"], params["job"])
        if not left or clock() + params["interval"] > start + params["timeout"]:
            return left, looks, clock() - start, problem
        sleep(params["interval"])


def message(params, left, problem):
    text = "Post-deploy gate: after %ds these targets of this run are not up: %s." % (
        params["timeout"], "; ".join(one["message"] for one in left))
    if problem:
        text += " Prometheus at %s answered: %s" % (params["url"], problem)
    return text


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ARGUMENT_SPEC,
            files=dict(type="dict", required=True),
            names=dict(type="list", elements="str"),
            since=dict(type="float", required=True),
            job=dict(type="str", default="deployments"),
            timeout=dict(type="int", default=120),
            interval=dict(type="int", default=5),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params.get("ca_path") and not params["url"].startswith("https://"):
        module.fail_json(msg="ca_path %s is set but Prometheus at %s does not serve TLS" % (
            params["ca_path"], params["url"]), pending=[], looks=0, waited=0.0)
    if module.check_mode:
        module.exit_json(changed=False, pending=[], looks=0, waited=0.0)
    try:
        left, looks, waited, problem = wait(params)
    except GateError as exc:
        module.fail_json(msg=str(exc), pending=[], looks=0, waited=0.0)
    result = dict(changed=False, pending=left, looks=looks, waited=round(waited, 3))
    if left:
        module.fail_json(msg=message(params, left, problem), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
