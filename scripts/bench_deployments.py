#!/usr/bin/env python3
"""Benchmark the deployment_* filters on a large, realistic set of records.

Builds SERVICES x DEPLOYS records (default 2,000 x 5 = 10,000) spread over
three environments, with mapping, 'host:port', IPv4 and IPv6 targets,
user labels, rollbacks and removals, then times what a playbook run does:
deployment_validate, deployment_targets and deployment_files (each called on
the raw records, as a playbook would).  Best of --repeat runs is reported.

    .venv/bin/python scripts/bench_deployments.py [--services 2000] [--deploys 5] [--repeat 3]

With --inventory (or MONSTACK_BENCH_INVENTORY) it also times
playbooks/deployments.yml against the Prometheus hosts of that inventory for
each of --playbook-services (default 1,100,1000) generated records: a first run
(the files do not exist yet) and a run with nothing to change, gate off, and
prints a table of seconds, each count once with records without SLOs and once with two
SLOs per record (an availability and a latency one: one rule file per service, checked by
promtool, and a reload), with their ratio (issue 25's target: within 2x).  The
deployment files of those hosts are replaced: use a test host, never a production one.

    MONSTACK_BENCH_INVENTORY=/tmp/bench/hosts.yml .venv/bin/python scripts/bench_deployments.py
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "collections"))  # ansible_collections.monstack.stack: this checkout

# The record library the deployment_* filters are thin wrappers of (same functions, no Ansible).
# pylint: disable=wrong-import-position
from ansible_collections.monstack.stack.plugins.module_utils import deployment_records  # noqa: E402
from ansible_collections.monstack.stack.plugins.module_utils import deployment_render as deployments  # noqa: E402

ENVIRONMENTS = ("production", "staging", "dev")


def make_record(service: int, deploy: int, churn_hosts: bool = False) -> dict[str, Any]:
    """One record; deploy 3 of every 7th service is a rollback, the last of every 50th a removal.

    A service keeps its hosts across deployments (every 4th service scales out
    by one host on its last deployment) unless ``churn_hosts``, where every
    deployment gets new addresses (worst case for the host memoization).
    """
    name = f"svc-{service:05d}"
    env = ENVIRONMENTS[service % len(ENVIRONMENTS)]
    minor = deploy - 1 if (service % 7 == 0 and deploy == 3) else deploy
    gen = deploy if churn_hosts else 0
    record: dict[str, Any] = {
        "service": name,
        "environment": env,
        "version": f"1.{minor}.{service % 10}",
        "deployed_at": f"2026-{1 + deploy:02d}-{1 + service % 28:02d}T{service % 24:02d}:15:00Z",
        "commit": f"{service * 7919 + deploy:08x}",
        "targets": [
            {"host": f"app{service}-{gen}.{env}.example.com", "port": 8000},
            f"app{service}-{gen + 1}.{env}.example.com:8000",
            f"10.{service // 250}.{service % 250}.{gen + 1}:9100",
            f"[2001:db8::{service:x}:{gen}]:8000",
        ],
        "labels": {"team": f"team{service % 13}", "tier": service % 3, "canary": deploy == 5},
        "pipeline": {"provider": "github-actions", "run_id": service * 10 + deploy,
                     "url": f"https://ci.example.com/runs/{service * 10 + deploy}"},
        "_source": f"deployments/{env}/{name}/{deploy}.yml",
    }
    if service % 4 == 0 and deploy == 5:
        record["targets"].append(f"app{service}-scale.{env}.example.com:8000")
    if service % 5 == 0:
        record["metrics_path"] = "/api/metrics"
        record["scheme"] = "https"
    if service % 50 == 0 and deploy == 5:
        record["status"] = "removed"
        del record["targets"]
    return record


def build(services: int, deploys: int, churn_hosts: bool = False) -> list[dict[str, Any]]:
    return [make_record(s, d, churn_hosts) for d in range(1, deploys + 1) for s in range(services)]


def clear_caches() -> None:
    """Measure cold: forget memoized host/target normalizations between runs."""
    deployment_records.normalize_host.cache_clear()
    deployment_records.normalize_target.cache_clear()
    deployment_records.label_name_ok.cache_clear()


def best_of(repeat: int, func: Callable[[], Any]) -> tuple[float, float, Any]:
    """-> (best wall-clock seconds, best CPU seconds, result)."""
    best_wall, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        clear_caches()
        wall, cpu = time.perf_counter(), time.process_time()
        result = func()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_wall, best_cpu, result


# Two SLOs per record with --playbook-slos: the shape of issue 25 (the window fits the
# prometheus role's default retention, 15d; the threshold is a bucket of its default contract).
BENCH_SLOS = [{"name": "availability", "objective": 99.9, "window": "7d"},
              {"name": "fast-predict", "objective": 99, "threshold_seconds": 0.5, "window": "7d"}]


def playbook_records(services: int, slos: bool = False) -> list[dict[str, Any]]:
    """One current record per service (the last deployment of make_record), none removed."""
    out = []
    for service in range(services):
        record = make_record(service, 4)
        record.pop("_source")
        if slos:
            record["slos"] = BENCH_SLOS
        out.append(record)
    return out


def run_deployments(inventory: str, records_dir: str, extra: list[str]) -> tuple[float, int]:
    """-> (seconds, changed count of the recap) of one playbooks/deployments.yml run."""
    env = {**os.environ, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg")}
    venv_bin = os.path.join(ROOT, ".venv", "bin")
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    start = time.perf_counter()
    proc = subprocess.run(
        ["ansible-playbook", "-i", inventory, os.path.join(ROOT, "playbooks", "deployments.yml"),
         "-e", f"deployment_records_dir={records_dir}", "-e", "deployment_gate=false",
         "-e", "deployment_annotate=false", *extra],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit(f"deployments.yml failed (exit {proc.returncode})")
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", proc.stdout))
    return seconds, changed


def bench_playbook(inventory: str, counts: list[int], extra: list[str]) -> None:
    print(f"\nplaybooks/deployments.yml on the prometheus hosts of {inventory} (gate off), seconds;"
          f" 'slos': each record with two SLOs (rule files, promtool, reload), ratio slos / none:")
    print(f"  {'services':>8} {'SLOs':>5} {'first run':>10} {'no change':>10} {'ratio':>12}")
    with tempfile.TemporaryDirectory(prefix="monstack-bench-") as tmp:
        empty = os.path.join(tmp, "empty")
        os.mkdir(empty)
        for count in counts:
            plain: tuple[float, float] = (0.0, 0.0)
            for slos in (False, True):
                records_dir = os.path.join(tmp, f"records-{count}-{'slos' if slos else 'none'}")
                os.mkdir(records_dir)
                for record in playbook_records(count, slos):
                    with open(os.path.join(records_dir, f"{record['service']}.json"), "w",
                              encoding="utf-8") as handle:
                        json.dump(record, handle)
                run_deployments(inventory, empty, extra)  # start from no deployment files
                first, first_changed = run_deployments(inventory, records_dir, extra)
                again, again_changed = run_deployments(inventory, records_dir, extra)
                note = "" if again_changed == 0 else f"  (no-change run reported changed={again_changed})"
                ratio = f"{first / plain[0]:.2f} / {again / plain[1]:.2f}" if slos else ""
                print(f"  {count:>8} {'two' if slos else 'none':>5} {first:>10.1f} {again:>10.1f} {ratio:>12}{note}",
                      flush=True)
                if first_changed == 0:
                    print(f"  warning: the first run with {count} services changed nothing")
                plain = (first, again)
        run_deployments(inventory, empty, extra)  # leave no generated files behind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--deploys", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--churn-hosts", action="store_true",
                        help="new target addresses on every deployment (worst case)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="exit 1 if validate+targets+files takes longer (seconds)")
    parser.add_argument("--inventory", default=os.environ.get("MONSTACK_BENCH_INVENTORY", ""),
                        help="also time playbooks/deployments.yml on this inventory's prometheus hosts")
    parser.add_argument("--playbook-services", default="1,100,1000",
                        help="comma-separated service counts for the playbook timings")
    parser.add_argument("--playbook-only", action="store_true", help="skip the filter timings")
    parser.add_argument("-e", "--extra-vars", action="append", default=[],
                        help="passed to ansible-playbook (e.g. prometheus_user=root)")
    args = parser.parse_args(argv)
    playbook_args = [arg for value in args.extra_vars for arg in ("-e", value)]
    if args.playbook_only:
        if not args.inventory:
            parser.error("--playbook-only needs --inventory or MONSTACK_BENCH_INVENTORY")
        bench_playbook(args.inventory, [int(n) for n in args.playbook_services.split(",")], playbook_args)
        return 0

    records = build(args.services, args.deploys, args.churn_hosts)
    n = len(records)
    stages: list[tuple[str, Callable[[], Any]]] = [
        ("deployment_validate", lambda: deployments.validate(records)),
        ("deployment_targets", lambda: deployments.targets(records)),
        ("deployment_files", lambda: deployments.files(records)),
    ]
    extra: list[tuple[str, Callable[[], Any]]] = [
        ("deployment_info_metrics", lambda: deployments.info_metrics(records)),
        ("deployment_annotations", lambda: deployments.annotations(records)),
    ]
    print(f"{n} records ({args.services} services x {args.deploys} deploys, "
          f"{'new' if args.churn_hosts else 'stable'} hosts per deploy), "
          f"best of {args.repeat}, caches cleared before each run")
    print(f"  {'filter':<24} {'wall':>8}   {'cpu':>8}   {'records/s (wall)':>16}")
    total = total_cpu = 0.0
    results: dict[str, Any] = {}
    for name, func in stages + extra:
        seconds, cpu, results[name] = best_of(args.repeat, func)
        if (name, func) in stages:
            total += seconds
            total_cpu += cpu
        print(f"  {name:<24} {seconds:8.3f} s {cpu:8.3f} s {n / seconds:>16,.0f}")
    print(f"  groups={len(results['deployment_targets'])} files={len(results['deployment_files'])} "
          f"annotations={len(results['deployment_annotations'])}")
    print(f"validate+targets+files: {total:.3f} s total wall ({total_cpu:.3f} s cpu), "
          f"{n / total:,.0f} records/s through all three, {3 * n / total:,.0f} record-filter passes/s")
    if args.inventory:
        bench_playbook(args.inventory, [int(n) for n in args.playbook_services.split(",")], playbook_args)
    else:
        print("deployments.yml timings: skipped (set MONSTACK_BENCH_INVENTORY to an inventory with a test "
              "prometheus host)")
    return 0 if total <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
