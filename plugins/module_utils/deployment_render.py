# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""What monstack makes of deployment records: file_sd target groups, health-check targets,
node_exporter textfile metrics, Grafana annotations, record store entries and the plan.

The record contract (validation, the policy, the latest record) is deployment_records;
this module turns validated records (deployment_records.Deployment) into outputs, and
the public operations below each take raw records, validate them once and render.
The filters (plugins/filter/deployment_*.py) are these operations; the record store
module renders the files of its entries with store_files(); tools/monstack-record
uses files(). Pure functions, standard library only (it also runs on managed hosts).
"""
from __future__ import annotations

import json
from typing import Any

from ansible_collections.monstack.stack.plugins.module_utils.deployment_records import (
    FILE_SEPARATOR, STATUS_REMOVED, Deployment, Record, RecordError, TargetGroup, check_bool, check_records, current,
    file_name, latest_records, named, record_content)


# --------------------------------------------------------------------------
# One deployment -> one output
# --------------------------------------------------------------------------
def target_group(dep: Deployment, info_labels: bool) -> TargetGroup:
    rec = dep.record
    labels: dict[str, str] = {"service": dep.service, "environment": dep.environment}
    if info_labels:
        labels["version"] = dep.version
        if dep.commit is not None:
            labels["commit"] = dep.commit
    labels.update(rec["labels"])
    labels["__metrics_path__"] = rec["metrics_path"]
    labels["__scheme__"] = rec["scheme"]
    return {"targets": sorted(rec["targets"]), "labels": dict(sorted(labels.items()))}


def escape_label_value(value: str) -> str:
    """Escape per the Prometheus text exposition format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs)


def format_epoch(epoch_us: int) -> str:
    seconds, micros = divmod(epoch_us, 1_000_000)
    return str(seconds) if not micros else f"{seconds}.{micros:06d}".rstrip("0")


def annotation(dep: Deployment) -> dict[str, Any]:
    rec = dep.record
    if dep.status == STATUS_REMOVED:
        text = f"Removed {dep.service} {dep.version} from {dep.environment}"
    else:
        text = f"Deployed {dep.service} {dep.version} to {dep.environment}"
    details = []
    if dep.commit:
        details.append(f"commit {dep.commit}")
    pipeline = rec.get("pipeline") or {}
    run = " ".join(str(pipeline[k]) if k == "provider" else f"run {pipeline[k]}"
                   for k in ("provider", "run_id") if k in pipeline)
    if run or "url" in pipeline:
        details.append(" ".join(part for part in (run, pipeline.get("url", "")) if part))
    if details:
        text += f" ({', '.join(details)})"
    tags = ["deployment", dep.service, dep.environment, dep.version]
    if dep.status == STATUS_REMOVED:
        tags.append(STATUS_REMOVED)
    return {"time": dep.epoch_us // 1000, "tags": tags, "text": text}


def info_metrics_text(deps: list[Deployment]) -> str:
    lines = [
        "# HELP deployment_info Current deployment of each service (always 1); "
        "join on service and environment to get version and commit.",
        "# TYPE deployment_info gauge",
    ]
    for dep in deps:
        pairs = [("service", dep.service), ("environment", dep.environment), ("version", dep.version)]
        if dep.commit is not None:
            pairs.append(("commit", dep.commit))
        pairs.append(("deployed_at", dep.record["deployed_at"]))
        lines.append(f"deployment_info{{{format_labels(pairs)}}} 1")
    lines += [
        "# HELP deployment_timestamp_seconds Unix time of the current deployment of each service.",
        "# TYPE deployment_timestamp_seconds gauge",
    ]
    for dep in deps:
        pairs = [("service", dep.service), ("environment", dep.environment)]
        lines.append(f"deployment_timestamp_seconds{{{format_labels(pairs)}}} {format_epoch(dep.epoch_us)}")
    return "\n".join(lines) + "\n"


def health_group(dep: Deployment) -> TargetGroup:
    """The record's health_url as a probe target (the blackbox exporter's ?target=)."""
    labels = {"service": dep.service, "environment": dep.environment, "version": dep.version}
    labels.update(dep.record["labels"])
    return {"targets": [dep.record["health_url"]], "labels": dict(sorted(labels.items()))}


def health_files(live: list[Deployment]) -> dict[str, list[TargetGroup]]:
    """deployment_health_files of deployments already validated and reduced to the current ones."""
    files: dict[str, list[TargetGroup]] = {}
    for dep in live:
        if "health_url" not in dep.record:
            continue
        name = file_name(dep)
        if name in files:
            raise RecordError(
                f"{dep.who}: its health check file '{name}' is also another service's; rename one of them "
                f"(avoid '{FILE_SEPARATOR}' in service and environment names)"
            )
        files[name] = [health_group(dep)]
    return files


def nice_json(value: Any) -> str:
    """JSON text as Ansible's to_nice_json(indent=2) writes it, plus a final newline."""
    return json.dumps(value, indent=2, sort_keys=True, separators=(",", ": ")) + "\n"


# --------------------------------------------------------------------------
# Record store entries (the deployment_store module's input and store)
# --------------------------------------------------------------------------
def store_entry(dep: Deployment, info: bool) -> dict[str, Any]:
    """The store entry of the latest record of a service: structured data, no file contents.

    ``source`` is the record's file (for the store's messages); ``group`` (deployed only) is its
    target group, from which the store module renders the file_sd file (store_files)."""
    entry: dict[str, Any] = {
        "service": dep.service, "environment": dep.environment, "version": dep.version,
        "status": dep.status, "deployed_at": dep.record["deployed_at"], "epoch_us": dep.epoch_us,
        "record": record_content(dep), "source": str(dep.record.get("_source") or ""),
    }
    if dep.status != STATUS_REMOVED:
        entry["group"] = target_group(dep, info)
    return entry


def entry_deployment(entry: dict[str, Any]) -> Deployment:
    """The Deployment of a store entry (its record is already validated and normalized)."""
    record = entry["record"]
    return Deployment(record, record["service"], record["environment"], record["version"], entry["status"],
                      record.get("commit"), entry["epoch_us"], entry.get("source") or "")


def store_files(entry: dict[str, Any]) -> dict[str, str]:
    """{file_sd, textfile}: the contents of a deployed entry's file_sd file and node_exporter textfile."""
    return {"file_sd": nice_json([entry["group"]]), "textfile": info_metrics_text([entry_deployment(entry)])}


# --------------------------------------------------------------------------
# The operations behind the filters: raw records in, validated once, rendered
# --------------------------------------------------------------------------
def validate(records: Any, policy: Any = None) -> list[Record]:
    """Normalized records (defaults applied, targets as 'host:port', duplicates removed)."""
    return [dep.record for dep in check_records(records, {} if policy is None else policy)]


def targets(records: Any, info_labels: Any = True) -> list[TargetGroup]:
    """Prometheus file_sd target groups for the current deployments."""
    info = check_bool("info_labels", info_labels)
    return [target_group(dep, info) for dep in current(check_records(records))]


def files(records: Any, info_labels: Any = True) -> dict[str, list[TargetGroup]]:
    """{'<environment>--<service>.json': [target group]} for the current deployments."""
    info = check_bool("info_labels", info_labels)
    return {name: [target_group(dep, info)] for name, dep in named(current(check_records(records)))}


def info_metrics(records: Any) -> str:
    """node_exporter textfile collector text with deployment_info / deployment_timestamp_seconds."""
    return info_metrics_text(current(check_records(records)))


def health(records: Any) -> dict[str, list[TargetGroup]]:
    """{'<environment>--<service>.json': [probe target group]} for current deployments with a health_url."""
    return health_files(current(check_records(records)))


def annotations(records: Any) -> list[dict[str, Any]]:
    """Grafana POST /api/annotations bodies, one per record, oldest first."""
    return annotation_bodies(check_records(records))


def annotation_bodies(deps: list[Deployment]) -> list[dict[str, Any]]:
    deps = sorted(deps, key=lambda dep: (dep.epoch_us, dep.environment, dep.service, dep.version, dep.status))
    return [annotation(dep) for dep in deps]


def store_entries(records: Any, info_labels: Any = True) -> dict[str, dict[str, Any]]:
    """{'<environment>--<service>.json': entry} for the latest record of each pair, removals included."""
    info = check_bool("info_labels", info_labels)
    return {name: store_entry(dep, info) for name, dep in named(latest_records(check_records(records)))}


def plan(records: Any, info_labels: Any = True, policy: Any = None) -> dict[str, Any]:
    """Everything playbooks/deployments.yml needs, from one validation of the records, as data.

    ``records`` (normalized), ``entries`` (the record store's, each with its record file),
    ``files`` (the target groups the gate waits for), ``health`` (health-check target groups)
    and ``annotations`` (Grafana's, one per record)."""
    info = check_bool("info_labels", info_labels)
    deps = check_records(records, {} if policy is None else policy)
    live = current(deps)
    return {
        "records": [dep.record for dep in deps],
        "files": {name: [target_group(dep, info)] for name, dep in named(live)},
        "entries": {name: store_entry(dep, info) for name, dep in named(latest_records(deps))},
        "health": health_files(live),
        "annotations": annotation_bodies(deps),
    }
