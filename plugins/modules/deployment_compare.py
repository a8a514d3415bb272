#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""The comparing gate: a new version against the previous one, from Prometheus (monstack)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: deployment_compare
short_description: Compare a new version of a service with the previous one in Prometheus (the comparing gate)
description:
  - For each service of O(services) that replaced a previous version, waits C(window) of O(settings) seconds (from the
    call, made once the post-deploy gate saw the new targets up), then asks the Prometheus of this host
    (C(GET /api/v1/query)) for the requests, the error ratio (share of 5xx answers) and a latency quantile of the
    new version over that window, and of the previous version over a window of the same length ending at O(since)
    (when the new records were written), both selected by the C(version) target label.
  - The verdict of a service is C(fail) when the new version's error ratio or latency is worse by more than the
    margins, C(pass) when not, and C(on_low_traffic) of O(settings) (C(fail) by default) when either version had fewer
    than C(min_requests) of O(settings) requests or no latency data; a service without a previous version passes, said
    so. RV(table) shows every version side by side.
  - The PromQL is built from the metric contract's names (O(metrics), O(labels)), each checked against
    Prometheus' name syntax, and from the records' service, environment and version, each checked and quoted.
  - Never fails on a verdict (RV(passed) says it); fails only when an input is wrong or Prometheus cannot be
    asked. C(playbooks/deployments.yml) writes the rollback records, annotates and then fails the run.
  - Settings, defaults and what they mean are in docs/deployments.md, "Comparing gate"
    (plugins/module_utils/deployment_compare.py).
version_added: "1.0.0"
author: monstack (!UNKNOWN)
extends_documentation_fragment:
  - monstack.stack.prometheus_api
options:
  services:
    description:
      - The services to compare, each with C(service), C(environment), C(version) (the new one), and
        C(previous_version) and C(previous_record) (the record it replaced; both null for a new service), as
        M(monstack.stack.deployment_store) returns them in RV(monstack.stack.deployment_store#module:replaced).
    type: list
    elements: dict
    required: true
  since:
    description: When the new records were written, seconds since the epoch (the end of the previous version's window).
    type: float
    required: true
  settings:
    description: The C(deployment_compare) settings (window, min_requests, on_low_traffic, margins, quantile, rollback_dir, annotate).
    type: dict
    default: {}
  metrics:
    description: The metric contract's names (C(prometheus_ml_metrics)); C(requests_total) and C(request_duration_seconds) are used.
    type: dict
    required: true
  labels:
    description: The metric contract's labels (C(prometheus_ml_labels)); C(status) is used.
    type: dict
    required: true
  job:
    description: The scrape job of the deployment targets.
    type: str
    default: deployments
notes:
  - Changes nothing. In check mode it neither waits nor asks (every service reported as not compared).
attributes:
  check_mode:
    description: Skips the comparison in check mode.
    support: full
  diff_mode:
    description: Nothing to show.
    support: none
"""

EXAMPLES = r"""
- name: Compare the new versions with the previous ones
  monstack.stack.deployment_compare:
    url: http://127.0.0.1:9090
    services: "{{ store.replaced }}"
    since: "{{ store.time }}"
    settings: {window: 120, min_requests: 50}
    metrics: "{{ prometheus_ml_metrics }}"
    labels: "{{ prometheus_ml_labels }}"
  register: comparison
"""

RETURN = r"""
passed:
  description: Whether every verdict is C(pass).
  returned: always
  type: bool
results:
  description:
    - One per service, with C(service), C(environment), C(version), C(previous_version), C(state) (C(pass) or
      C(fail)), C(reason), C(low_traffic), C(new) and C(previous) (C(requests), C(error_ratio), C(latency); null
      when Prometheus had no answer) and C(queries) (the PromQL asked).
  returned: always
  type: list
  elements: dict
table:
  description: The side-by-side table (service, environment, version, role, requests, error ratio, quantile, verdict).
  returned: always
  type: str
annotations:
  description: Grafana annotation bodies of the verdicts (empty when C(annotate) of O(settings) is false).
  returned: always
  type: list
  elements: dict
rollback:
  description: >-
    For each failed service with a previous record, C(name) (C(<environment>--<service>.json)) and C(record) (the
    previous record with a new C(deployed_at)); empty unless C(rollback_dir) of O(settings) is set.
  returned: always
  type: list
  elements: dict
waited:
  description: Seconds waited.
  returned: always
  type: float
"""

import math
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six.moves.urllib.parse import urlencode
from ansible_collections.monstack.stack.plugins.module_utils.deployment_compare import (
    CompareError, annotation, contract, queries, rollback_record, rows_of, sample_value, selector, settings,
    table, verdict)
from ansible_collections.monstack.stack.plugins.module_utils.prometheus_api import ARGUMENT_SPEC, get_json


class PrometheusError(Exception):
    pass


def query(params, promql, at):
    """The value of one instant query at time ``at`` (None: empty answer); never the answer's text on errors."""
    body, problem = get_json(params, "/api/v1/query?" + urlencode({"query": promql, "time": "%.3f" % at}))
    if problem:
        raise PrometheusError("Prometheus at %s answered %s to %s" % (params["url"], problem, promql))
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise PrometheusError("Prometheus at %s: no vector answer to %s" % (params["url"], promql))
    return sample_value(data.get("result"))


def plain(value):
    """A JSON-safe number (NaN and infinities as text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def compare(params, clock=time.time, sleep=time.sleep):
    options = settings(params["settings"])
    names = contract(params["metrics"], params["labels"])
    services = []
    for one in params["services"]:
        if not isinstance(one, dict):
            raise CompareError("services: expected mappings, got %r" % (one,))
        new = selector(params["job"], one.get("service"), one.get("environment"), one.get("version"))
        previous = one.get("previous_version")
        old = selector(params["job"], one["service"], one["environment"], previous) if previous else None
        services.append((one, new, old))
    start = clock()
    if any(selectors[2] for selectors in services):
        sleep(options["window"])
    end = clock()
    results = []
    for one, new_sel, old_sel in services:
        asked = {"new": queries(names, new_sel, options["window"], options["quantile"])}
        new = {key: query(params, promql, end) for key, promql in asked["new"].items()}
        old = None
        if old_sel:
            asked["previous"] = queries(names, old_sel, options["window"], options["quantile"])
            old = {key: query(params, promql, params["since"]) for key, promql in asked["previous"].items()}
        found = verdict(new, old, options)
        results.append(dict(found, service=one["service"], environment=one["environment"], version=one["version"],
                            previous_version=one.get("previous_version"), new=new, previous=old, queries=asked,
                            previous_record=one.get("previous_record")))
    text = table([row for result in results for row in rows_of(result)], options["quantile"])
    failed = [r for r in results if r["state"] != "pass"]
    rollback = []
    if options["rollback_dir"]:
        for r in failed:
            record = rollback_record(r.get("previous_record"), end)
            if record is not None:
                rollback.append({"name": "%s--%s.json" % (r["environment"], r["service"]), "record": record})
    notes = [annotation(r, int(end * 1000)) for r in results if r.get("previous_version")] if options["annotate"] else []
    for r in results:
        r.pop("previous_record", None)
        for side in ("new", "previous"):
            if r[side] is not None:
                r[side] = {k: plain(v) for k, v in r[side].items()}
    return {"passed": not failed, "results": results, "table": text, "annotations": notes, "rollback": rollback,
            "waited": round(end - start, 3), "settings": options}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ARGUMENT_SPEC,
            services=dict(type="list", elements="dict", required=True),
            since=dict(type="float", required=True),
            settings=dict(type="dict", default={}),
            metrics=dict(type="dict", required=True),
            labels=dict(type="dict", required=True),
            job=dict(type="str", default="deployments"),
        ),
        supports_check_mode=True,
    )
    empty = dict(changed=False, passed=True, results=[], table="", annotations=[], rollback=[], waited=0.0)
    if module.check_mode:
        module.exit_json(**empty)
    try:
        result = compare(module.params)
    except (CompareError, PrometheusError) as exc:
        module.fail_json(msg="Comparing gate: %s" % exc, **empty)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
