#!/usr/bin/env python
"""Predict which Prometheus shard scrapes each target, with Prometheus' own hash.

The prometheus role shards by `prometheus_shard` (roles/prometheus/vars/main.yml,
prometheus_shard_relabel_configs): every job starts with

    - {source_labels: [__address__], modulus: N, target_label: __tmp_monstack_shard, action: hashmod}
    - {source_labels: [__tmp_monstack_shard], regex: <this shard>, action: keep}

and Prometheus' hashmod (model/relabel/relabel.go) is: the source label values
joined with the separator (";"), MD5 of that, the last 8 bytes of the digest
read as a big-endian uint64, modulo N. shard_of() below is the same.

Three uses:

    # the shard of each target of file_sd files (YAML or JSON), for N shards
    tools/shard_plan.py --shards 3 /etc/prometheus/file_sd/*.yml

    # check the prediction against a real Prometheus (loopback only): one
    # Prometheus with a job per (N, shard), N targets files of COUNT targets
    # at 127.0.0.1:<port>; predicted shard == active/dropped in /api/v1/targets
    tools/shard_plan.py --verify /var/cache/monstack/bin/prometheus --count 600

    # how evenly 10,000 and 100,000 targets spread over 2, 4 and 8 shards
    tools/shard_plan.py --spread 10000,100000 --shards 2,4,8

Exit status: 0, or 1 when --verify found a target on the wrong shard.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

_HERE = Path(__file__).resolve()
# The collection: a clone's collections/ (beside tools/), or the installed collection's own tree
# (<dir>/ansible_collections/monstack/stack/tools).
sys.path[:0] = [str(_HERE.parents[1] / "collections"), str(_HERE.parents[min(4, len(_HERE.parents) - 1)])]
# The one hash of the collection: the record store's orphan check and alert metric use it too.
# pylint: disable=wrong-import-position
from ansible_collections.monstack.stack.plugins.module_utils.deployment_copy import (  # noqa: E402
    SEPARATOR, shard_of)

__all__ = ["SEPARATOR", "shard_of"]


def file_sd_targets(paths) -> list[dict[str, str]]:
    """The targets of file_sd files: one label set ({__address__, labels...}) per target."""
    import yaml

    out = []
    for path in paths:
        text = Path(path).read_text()
        groups = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        for group in groups or []:
            for target in group.get("targets", []):
                out.append({"__address__": str(target), **{k: str(v) for k, v in (group.get("labels") or {}).items()}})
    return out


def plan(targets, modulus: int, source_labels=("__address__",)) -> dict[str, int]:
    """address -> shard for label sets (as Prometheus sees them before relabelling)."""
    return {t["__address__"]: shard_of([t.get(name, "") for name in source_labels], modulus) for t in targets}


def synthetic_targets(count: int) -> list[str]:
    """Addresses shaped like a real fleet: host names in a few sites and racks, the exporter port."""
    sites = ["fra1", "ams2", "lon1", "nyc3"]
    return [f"node-{i // 40:05d}-{i % 40:02d}.{sites[i % len(sites)]}.example.com:9100" for i in range(count)]


def spread(count: int, modulus: int) -> dict:
    """How count synthetic targets fall on modulus shards."""
    counts = Counter(shard_of(address, modulus) for address in synthetic_targets(count))
    sizes = [counts.get(k, 0) for k in range(modulus)]
    even = count / modulus
    # hashmod is not consistent hashing: adding one shard moves most targets
    moved = sum(shard_of(a, modulus) != shard_of(a, modulus + 1) for a in synthetic_targets(count))
    return {"targets": count, "shards": modulus, "sizes": sizes, "min": min(sizes), "max": max(sizes),
            "moved_to_next_pct": round(100 * moved / count, 1),
            "max_over_even_pct": round(100 * (max(sizes) - even) / even, 2),
            "stdev_pct": round(100 * statistics.pstdev(sizes) / even, 2)}


def spread_table(counts, moduli) -> str:
    lines = ["| targets | shards | per shard (even) | smallest | largest | largest vs even | stdev "
             "| moved by adding a shard |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for count in counts:
        for modulus in moduli:
            s = spread(count, modulus)
            lines.append(f"| {count:,} | {modulus} | {count / modulus:,.0f} | {s['min']:,} | {s['max']:,} "
                         f"| +{s['max_over_even_pct']} % | {s['stdev_pct']} % | {s['moved_to_next_pct']} % |")
    return "\n".join(lines)


# --------------------------------------------------------------- --verify
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback only)
        return json.loads(resp.read())


def verify(prometheus: str, count: int, moduli=(2, 3, 4, 8), timeout: float = 60) -> dict:
    """Run a real Prometheus on loopback with count file_sd targets and one job per (N, shard),
    each keeping its shard's targets with the role's relabelling; compare with shard_of()."""
    import yaml

    work = Path(tempfile.mkdtemp(prefix="shard-plan-"))
    port = _free_port()
    # Targets on loopback ports nothing listens on (scrapes, if any, fail locally);
    # a long interval keeps the scrapes few. Mixed shapes: ports and IPv4/IPv6 loopback.
    addresses = [f"127.0.0.1:{20000 + i}" if i % 3 else f"[::1]:{30000 + i}" for i in range(count)]
    (work / "targets.json").write_text(json.dumps([{"targets": addresses, "labels": {"env": "verify"}}]))
    jobs = []
    for modulus in moduli:
        for shard in range(modulus):
            jobs.append({"job_name": f"n{modulus}_s{shard}", "scrape_interval": "1h", "scrape_timeout": "1s",
                         "file_sd_configs": [{"files": [str(work / "targets.json")]}],
                         "relabel_configs": [
                             {"source_labels": ["__address__"], "modulus": modulus,
                              "target_label": "__tmp_monstack_shard", "action": "hashmod"},
                             {"source_labels": ["__tmp_monstack_shard"], "regex": str(shard), "action": "keep"}]})
    (work / "prometheus.yml").write_text(yaml.safe_dump({"global": {"scrape_interval": "1h"}, "scrape_configs": jobs}))
    proc = subprocess.Popen([prometheus, f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, data = time.monotonic() + timeout, None
        want_total = count * len(jobs)
        while time.monotonic() < deadline:
            try:
                data = _get(f"{base}/api/v1/targets?state=any")["data"]
                if len(data["activeTargets"]) + len(data["droppedTargets"]) >= want_total:
                    break
            except OSError:
                pass
            time.sleep(1)
        if data is None:
            raise RuntimeError(f"Prometheus at {base} did not answer within {timeout} s")
        seen = {(t["scrapePool"], t["discoveredLabels"]["__address__"]): "active" for t in data["activeTargets"]}
        for t in data["droppedTargets"]:
            pool = t.get("scrapePool") or t["discoveredLabels"].get("job", "")
            seen.setdefault((pool, t["discoveredLabels"]["__address__"]), "dropped")
        wrong, checked = [], 0
        for modulus in moduli:
            for shard in range(modulus):
                pool = f"n{modulus}_s{shard}"
                for address in addresses:
                    predicted = "active" if shard_of(address, modulus) == shard else "dropped"
                    actual = seen.get((pool, address), "missing")
                    checked += 1
                    if actual != predicted:
                        wrong.append((pool, address, predicted, actual))
        version = _get(f"{base}/api/v1/status/buildinfo")["data"]["version"]
        return {"prometheus": version, "targets": count, "moduli": list(moduli), "checked": checked,
                "active": len(data["activeTargets"]), "dropped": len(data["droppedTargets"]), "wrong": wrong}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="file_sd files (YAML or JSON)")
    parser.add_argument("--shards", help="shard count(s), comma-separated (default: 2 for files, "
                        "2,4,8 for --spread, 2,3,4,8 for --verify)")
    parser.add_argument("--source-labels", default="__address__",
                        help="comma-separated labels hashed (prometheus_shard_source_labels)")
    parser.add_argument("--spread", help="comma-separated target counts: print how they spread over --shards")
    parser.add_argument("--verify", metavar="PROMETHEUS", help="a prometheus binary to check the predictions with")
    parser.add_argument("--count", type=int, default=600, help="targets for --verify (default 600)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    default = "2,3,4,8" if args.verify else "2,4,8" if args.spread else "2"
    moduli = [int(n) for n in (args.shards or default).split(",")]

    if args.verify:
        result = verify(args.verify, args.count, moduli=tuple(moduli))
        if args.json:
            print(json.dumps(result))
        else:
            print(f"Prometheus {result['prometheus']}: {result['targets']} file_sd targets, shard counts "
                  f"{result['moduli']}: {result['checked']} (job, target) pairs checked, "
                  f"{result['active']} active, {result['dropped']} dropped, {len(result['wrong'])} mispredicted")
            for item in result["wrong"][:20]:
                print("  wrong:", *item)
        return 1 if result["wrong"] else 0
    if args.spread:
        counts = [int(c) for c in args.spread.split(",")]
        if args.json:
            print(json.dumps([spread(c, m) for c in counts for m in moduli]))
        else:
            print(spread_table(counts, moduli))
        return 0
    if not args.files:
        parser.error("give file_sd files, --spread or --verify")
    labels = tuple(args.source_labels.split(","))
    targets = file_sd_targets(args.files)
    for modulus in moduli:
        result = plan(targets, modulus, labels)
        if args.json:
            print(json.dumps({"shards": modulus, "plan": result}))
            continue
        print(f"# {len(result)} targets over {modulus} shards: "
              + ", ".join(f"shard {k}: {n}" for k, n in sorted(Counter(result.values()).items())))
        for address, shard in sorted(result.items()):
            print(f"{shard}\t{address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
