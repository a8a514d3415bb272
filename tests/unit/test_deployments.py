"""Unit and property tests for the deployment_* filter plugins.

The plugins live in plugins/filter/ (imported by the collection's name, conftest.py):
``deployments.py`` holds the filters, ``deployment_<name>.yml`` document
one filter each and carry its DOCUMENTATION for ansible-doc.
"""
from __future__ import annotations

import copy
import importlib
import json
import random
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deployment_api as dc
from helpers import ansible_playbook, check_filter_sidecar, filter_docs, plugin_env

REPO = Path(__file__).resolve().parents[2]
FILTERS = (
    "deployment_validate",
    "deployment_targets",
    "deployment_files",
    "deployment_info_metrics",
    "deployment_annotations",
    "deployment_health_files",
    "deployment_parse",
    "deployment_plan",
    "deployment_store_entries",
    "deployment_store_copy",
    "deployment_gate_pending",
)
SRC = "deployments/api.yml"
WHO = f"{SRC} (service 'exchange-rate-api')"

validate = dc.deployment_validate
# A policy that lets every valid record through: the property tests are about the contract.
OPEN_POLICY = {"denied_targets": [], "denied_paths": [], "max_labels": 10**6,
               "max_label_name_length": 10**6, "max_label_value_length": 10**6}
targets = dc.deployment_targets
files = dc.deployment_files
info_metrics = dc.deployment_info_metrics
annotations = dc.deployment_annotations


def rec(**overrides: Any) -> dict[str, Any]:
    """A valid record; keyword arguments replace fields (None deletes one)."""
    record: dict[str, Any] = {
        "service": "exchange-rate-api",
        "environment": "production",
        "version": "1.4.2",
        "deployed_at": "2026-11-20T10:15:00Z",
        "commit": "3f2c1ab",
        "targets": [{"host": "app1.example.com", "port": 8000}, "app2.example.com:8000"],
        "labels": {"team": "ml"},
        "_source": SRC,
    }
    for key, value in overrides.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def error_of(records: Any, func=validate) -> str:
    with pytest.raises(AnsibleFilterError) as info:
        func(records)
    return str(info.value.message if hasattr(info.value, "message") else info.value)


# ---------------------------------------------------------------------------
# deployment_validate: normalization
# ---------------------------------------------------------------------------
def test_validate_applies_defaults():
    out = validate([rec()])[0]
    assert out["status"] == "deployed"
    assert out["metrics_path"] == "/metrics"
    assert out["scheme"] == "http"
    assert out["deployed_at"] == "2026-11-20T10:15:00Z"
    assert out["commit"] == "3f2c1ab"
    assert out["_source"] == SRC
    assert validate([rec(labels=None, commit=None)])[0]["labels"] == {}
    assert "commit" not in validate([rec(commit=None)])[0]
    assert "health_url" not in out and "pipeline" not in out


def test_validate_normalizes_targets_and_removes_duplicates():
    out = validate([rec(targets=[
        {"host": "App1.Example.COM.", "port": "8000"},
        "app1.example.com:8000",
        "app2.example.com:08000",
        {"host": "2001:DB8:0:0::1", "port": 9100},
        "[2001:db8::1]:9100",
        "[2001:db8:0:0:0:0:0:2]:9100",
        {"host": "[2001:db8::3]", "port": 9100},
        "10.0.0.1:9100",
        {"host": "10.0.0.1", "port": 9100},
    ])])[0]
    assert out["targets"] == [
        "app1.example.com:8000",
        "app2.example.com:8000",
        "[2001:db8::1]:9100",
        "[2001:db8::2]:9100",
        "[2001:db8::3]:9100",
        "10.0.0.1:9100",
    ]


def test_validate_accepts_a_single_mapping_and_empty_list():
    assert validate(rec())[0]["service"] == "exchange-rate-api"
    assert validate([]) == []
    assert targets([]) == []


def test_validate_is_idempotent():
    once = validate([rec(deployed_at="2026-11-20T11:15:00.250+01:00"), rec(service="b", status="removed")])
    assert validate(once) == once
    assert once[0]["deployed_at"] == "2026-11-20T10:15:00.25Z"


def test_private_keys_are_kept_and_unknown_keys_rejected():
    out = validate([rec(_pipeline_note="x", _source="a.yml")])[0]
    assert out["_pipeline_note"] == "x"
    msg = error_of([rec(deployed="2026-11-20T10:15:00Z")])
    assert msg.startswith(f"{WHO}: field 'deployed': unknown field; did you mean 'deployed_at'?")
    assert "known fields: service, environment" in msg


def test_error_names_source_or_record_number_and_service():
    msg = error_of([rec(targets=["app1:8000", {"host": "app1", "port": "abc"}])])
    assert msg == f"{WHO}: field 'targets[1].port': expected an integer 1-65535, got 'abc'"
    msg = error_of([rec(), rec(_source=None, service="svc-b", version=1.4)])
    assert msg.startswith("record #2 (service 'svc-b'): field 'version': expected a string, got number 1.4")
    assert 'quote it in YAML, e.g. version: "1.4"' in msg
    msg = error_of([rec(service=None)])
    assert msg.startswith(f"{SRC} (service unknown): field 'service': is required")
    assert error_of(["not a record"]).startswith("record #1: expected a deployment record (a mapping), got a string")
    assert error_of("nope").startswith("expected a list of deployment records")
    assert error_of(None).startswith("expected a list of deployment records, got null")


# ---------------------------------------------------------------------------
# deployment_validate: field rules
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["service", "environment"])
@pytest.mark.parametrize("value", ["Exchange", "-api", "a b", "a/b", "", "ä", "x" * 121, 5, ["a"]])
def test_bad_names(field, value):
    msg = error_of([rec(**{field: value})])
    assert f"field '{field}': expected a name matching ^[a-z0-9][a-z0-9_.-]*$" in msg


def test_name_hint_for_upper_case():
    assert "did you mean 'exchange'?" in error_of([rec(environment="Exchange")])


@pytest.mark.parametrize("field", ["service", "environment", "version", "deployed_at"])
def test_required_fields(field):
    assert f"field '{field}': is required" in error_of([rec(**{field: None})])


@pytest.mark.parametrize("value,hint", [
    (1.4, 'version: "1.4"'), (2, 'version: "2"'), (True, ""), ("", ""), (" 1.0", ""), ("1.0\nx", ""), ("v" * 129, ""),
])
def test_bad_versions(value, hint):
    msg = error_of([rec(version=value)])
    assert "field 'version': expected" in msg
    assert hint in msg


def test_version_may_contain_quotes_and_backslashes():
    assert validate([rec(version='1.0 "beta" \\ build')])[0]["version"] == '1.0 "beta" \\ build'


@pytest.mark.parametrize("value,expected", [
    ("2026-11-20T10:15:00Z", "2026-11-20T10:15:00Z"),
    ("2026-11-20t10:15:00z", "2026-11-20T10:15:00Z"),
    ("2026-11-20 11:15:00+01:00", "2026-11-20T10:15:00Z"),
    ("2026-11-20T05:15:00.123456789-05:00", "2026-11-20T10:15:00.123456Z"),
    (datetime(2026, 11, 20, 10, 15, tzinfo=timezone.utc), "2026-11-20T10:15:00Z"),
    (datetime(2026, 11, 20, 12, 15, tzinfo=timezone(timedelta(hours=2))), "2026-11-20T10:15:00Z"),
])
def test_deployed_at_accepted(value, expected):
    assert validate([rec(deployed_at=value)])[0]["deployed_at"] == expected


@pytest.mark.parametrize("value,hint", [
    (datetime(2026, 11, 20, 10, 15), "no timezone"),
    ("2026-11-20T10:15:00", "no timezone"),
    (date(2026, 11, 20), "a date alone"),
    ("2026-11-20", ""),
    ("2026-02-30T10:15:00Z", "not a valid date/time"),
    ("2026-11-20T10:15Z", ""),
    ("yesterday", ""),
    (1795169700, ""),
])
def test_deployed_at_rejected(value, hint):
    msg = error_of([rec(deployed_at=value)])
    assert "field 'deployed_at': expected an RFC 3339 date/time with a timezone" in msg
    assert hint in msg


def test_yaml_timestamps_work(tmp_path):
    aware = yaml.safe_load("deployed_at: 2026-11-20T10:15:00Z")["deployed_at"]
    assert isinstance(aware, datetime)
    assert validate([rec(deployed_at=aware)])[0]["deployed_at"] == "2026-11-20T10:15:00Z"
    naive = yaml.safe_load("deployed_at: 2026-11-20 10:15:00")["deployed_at"]
    assert "no timezone" in error_of([rec(deployed_at=naive)])


@pytest.mark.parametrize("value", ["deleted", "Deployed", "", 1, True])
def test_bad_status(value):
    assert "field 'status': expected 'deployed' or 'removed'" in error_of([rec(status=value)])


def test_targets_required_unless_removed():
    for value in (None, []):
        msg = error_of([rec(targets=value)])
        assert f"{WHO}: field 'targets': is required unless status is 'removed'" in msg
    assert validate([rec(status="removed", targets=None)])[0]["targets"] == []
    assert "field 'targets': expected a non-empty list" in error_of([rec(targets="app:80")])


@pytest.mark.parametrize("target,hint", [
    ("app", "the port is missing"),
    ("app:", ""),
    ("app:0", ""),
    ("app:65536", ""),
    ("app:http", ""),
    ("http://app:80", "without scheme or path"),
    ("app:80/metrics", "without scheme or path"),
    ("2001:db8::1:80", "write IPv6 addresses in brackets"),
    ("[2001:db8::1]", ""),
    ("[2001:db8::zz]:80", "not a valid IPv6 address"),
    ("[fe80::1%eth0]:80", "zone ids"),
    ("999.1.1.1:80", "not a valid IPv4 address"),
    ("10.0.0:80", "not a valid IPv4 address"),
    ("a b:80", ""),
    ("-app:80", ""),
    (":80", ""),
    (8000, ""),
    (None, ""),
])
def test_bad_target_strings(target, hint):
    msg = error_of([rec(targets=["ok:1", target])])
    assert msg.startswith(f"{WHO}: field 'targets[1]")
    assert hint in msg


@pytest.mark.parametrize("port", [0, 65536, -1, "abc", "", True, 80.0, None, "8o"])
def test_bad_ports(port):
    msg = error_of([rec(targets=[{"host": "app", "port": port}])])
    assert msg.startswith(f"{WHO}: field 'targets[0].port': expected an integer 1-65535, got ")


def test_target_mapping_keys():
    assert "field 'targets[0].prt': unknown key" in error_of([rec(targets=[{"host": "a", "prt": 1}])])
    assert "field 'targets[0].port': is required" in error_of([rec(targets=[{"host": "a"}])])
    msg = error_of([rec(targets=[{"host": "app1:8000", "port": 8000}])])
    assert "field 'targets[0].host'" in msg and "put the port in the 'port' key" in msg


@pytest.mark.parametrize("value,expected", [("3F2C1AB", "3f2c1ab"), ("", None), (None, None)])
def test_commit_normalized(value, expected):
    assert validate([rec(commit=value)])[0].get("commit") == expected


@pytest.mark.parametrize("value,hint", [(1234567, 'commit: "1234567"'), ("xyz123", ""), ("abc", ""), (True, "")])
def test_bad_commit(value, hint):
    msg = error_of([rec(commit=value)])
    assert "field 'commit': expected a git commit hash" in msg and hint in msg


@pytest.mark.parametrize("value,hint", [("metrics", "must start with '/'"), ("/a b", ""), ("/x?y=1", ""), (5, "")])
def test_bad_metrics_path(value, hint):
    msg = error_of([rec(metrics_path=value)])
    assert "field 'metrics_path': expected a URL path" in msg and hint in msg


@pytest.mark.parametrize("value", ["ftp", "HTTPS", "", 1])
def test_bad_scheme(value):
    assert "field 'scheme': expected 'http' or 'https'" in error_of([rec(scheme=value)])


@pytest.mark.parametrize("name,text", [
    ("team-name", "use e.g. 'team_name'"),
    ("1abc", "use e.g. '_1abc'"),
    ("a.b", "labels are never renamed"),
    ("__address__", "reserved for Prometheus internals"),
    ("__metrics_path__", "use metrics_path/scheme"),
    ("service", "reserved label"),
    ("environment", "reserved label"),
    ("version", "reserved label"),
    ("commit", "reserved label"),
    ("instance", "reserved label"),
    ("job", "reserved label"),
])
def test_bad_label_names(name, text):
    msg = error_of([rec(labels={"team": "ml", name: "x"})])
    assert msg.startswith(f"{WHO}: field 'labels.{name}': ")
    assert text in msg


def test_label_values_are_strings():
    out = validate([rec(labels={"shard": 3, "canary": True, "gpu": False, "zone": "eu-1"})])[0]
    assert out["labels"] == {"canary": "true", "gpu": "false", "shard": "3", "zone": "eu-1"}


@pytest.mark.parametrize("value,hint", [(1.5, 'ratio: "1.5"'), (None, "remove the label"), ("", "remove the label"),
                                        ([1], ""), ({"a": 1}, "")])
def test_bad_label_values(value, hint):
    msg = error_of([rec(labels={"ratio": value})])
    assert "field 'labels.ratio': expected a non-empty string, an integer or a boolean" in msg and hint in msg


def test_labels_must_be_a_mapping():
    assert "field 'labels': expected a mapping" in error_of([rec(labels=["team=ml"])])


def test_health_url_and_pipeline():
    out = validate([rec(health_url="https://app1:8000/health",
                        pipeline={"provider": "gitlab-ci", "run_id": 42, "url": "https://ci/x", "attempt": 2})])[0]
    assert out["health_url"] == "https://app1:8000/health"
    assert out["pipeline"] == {"attempt": 2, "provider": "gitlab-ci", "run_id": "42", "url": "https://ci/x"}
    for bad in ("ftp://x", "app1:8000/health", "http://", "http://a b", 5):
        assert "field 'health_url': expected an http(s) URL" in error_of([rec(health_url=bad)])
    assert "field 'pipeline.url'" in error_of([rec(pipeline={"url": "not a url"})])
    assert "field 'pipeline': expected a mapping" in error_of([rec(pipeline="4242")])
    assert "field 'pipeline.run_id': expected a string" in error_of([rec(pipeline={"run_id": [1]})])


# ---------------------------------------------------------------------------
# deployment_targets
# ---------------------------------------------------------------------------
def test_targets_group_labels():
    groups = targets([rec(labels={"team": "ml", "model": "rf"})])
    assert groups == [{
        "targets": ["app1.example.com:8000", "app2.example.com:8000"],
        "labels": {
            "__metrics_path__": "/metrics",
            "__scheme__": "http",
            "commit": "3f2c1ab",
            "environment": "production",
            "model": "rf",
            "service": "exchange-rate-api",
            "team": "ml",
            "version": "1.4.2",
        },
    }]
    assert list(groups[0]["labels"]) == sorted(groups[0]["labels"])


def test_targets_scrape_settings():
    labels = targets([rec(metrics_path="/internal/metrics", scheme="https", commit=None)])[0]["labels"]
    assert labels["__metrics_path__"] == "/internal/metrics"
    assert labels["__scheme__"] == "https"
    assert "commit" not in labels


def test_latest_record_wins():
    groups = targets([
        rec(version="1.4.3", deployed_at="2026-11-21T09:00:00Z", targets=["new:8000"]),
        rec(version="1.4.2", deployed_at="2026-11-20T10:15:00Z"),
    ])
    assert len(groups) == 1
    assert groups[0]["labels"]["version"] == "1.4.3"
    assert groups[0]["targets"] == ["new:8000"]


def test_rollback_with_older_version_wins():
    groups = targets([
        rec(version="1.4.2", deployed_at="2026-11-20T10:15:00Z"),
        rec(version="1.4.1", deployed_at="2026-11-20T12:02:00+01:00", commit="9b8e7d1"),
    ])
    assert groups[0]["labels"]["version"] == "1.4.1"
    assert groups[0]["labels"]["commit"] == "9b8e7d1"


def test_removed_service_has_no_group_until_redeployed():
    history = [rec(), rec(status="removed", targets=None, deployed_at="2026-11-21T00:00:00Z")]
    assert targets(history) == []
    assert files(history) == {}
    assert targets(history + [rec(version="2.0.0", deployed_at="2026-11-22T00:00:00Z")])[0]["labels"]["version"] == "2.0.0"
    # an older "removed" record does not remove a newer deployment
    assert len(targets([rec(status="removed", deployed_at="2026-01-01T00:00:00Z"), rec()])) == 1


def test_environments_are_separate_and_sorted():
    groups = targets([
        rec(service="b", environment="staging"),
        rec(service="a", environment="staging"),
        rec(service="b", environment="production"),
    ])
    assert [(g["labels"]["environment"], g["labels"]["service"]) for g in groups] == [
        ("production", "b"), ("staging", "a"), ("staging", "b")]


def test_output_is_independent_of_input_order():
    records = [rec(service=f"s{i % 7}", environment=f"e{i % 3}", version=f"1.{i}",
                   deployed_at=f"2026-11-{1 + i:02d}T00:00:00Z",
                   targets=[f"h{(i * 7) % 5}:80", f"h{i % 4}:81"]) for i in range(25)]
    expected = targets(records)
    for seed in range(5):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        assert targets(shuffled) == expected
        assert json.dumps(files(shuffled)) == json.dumps(files(records))


def test_same_time_conflicting_records_are_an_error():
    a = rec(version="1.0.0", _source="a.yml")
    b = rec(version="2.0.0", _source="b.yml")
    msg = error_of([a, b], targets)
    assert "a.yml (service 'exchange-rate-api') and b.yml (service 'exchange-rate-api')" in msg
    assert "make deployed_at distinct" in msg
    # identical duplicates (e.g. the same file read twice) are fine
    assert len(targets([rec(_source="a.yml"), rec(_source="copy.yml")])) == 1
    # a tie that is superseded by a later record does not matter
    assert targets([a, b, rec(version="3.0.0", deployed_at="2026-12-01T00:00:00Z")])[0]["labels"]["version"] == "3.0.0"


def test_info_labels_false():
    for flag in (False, "false", "no"):
        labels = targets([rec()], flag)[0]["labels"]
        assert "version" not in labels and "commit" not in labels
        assert labels["service"] == "exchange-rate-api"
    assert "version" in targets([rec()], "true")[0]["labels"]
    with pytest.raises(AnsibleFilterError, match="option 'info_labels': expected a boolean"):
        targets([rec()], "maybe")


def test_targets_are_sorted_unique():
    assert targets([rec(targets=["b:1", "a:2", "B:1", "[::1]:3"])])[0]["targets"] == ["[::1]:3", "a:2", "b:1"]


def test_targets_validate_all_records_even_superseded_ones():
    msg = error_of([rec(deployed_at="2020-01-01T00:00:00Z", version=1.0), rec()], targets)
    assert "field 'version'" in msg


# ---------------------------------------------------------------------------
# deployment_files
# ---------------------------------------------------------------------------
def test_files_naming_and_content():
    records = [rec(), rec(service="fraud.scorer_v2", environment="staging", targets=["[::1]:9000"])]
    out = files(records)
    assert list(out) == ["production--exchange-rate-api.json", "staging--fraud.scorer_v2.json"]
    assert out["production--exchange-rate-api.json"] == [targets(records)[0]]
    assert all(isinstance(v, list) and len(v) == 1 for v in out.values())
    assert "version" not in files(records, False)["staging--fraud.scorer_v2.json"][0]["labels"]


def test_files_name_collision_is_an_error():
    msg = error_of([rec(environment="a--b", service="c"), rec(environment="a", service="b--c")], files)
    assert "'a--b--c.json'" in msg and "avoid '--'" in msg


# ---------------------------------------------------------------------------
# deployment_info_metrics
# ---------------------------------------------------------------------------
def test_info_metrics_text():
    text = info_metrics([
        rec(),
        rec(service="fraud", environment="staging", commit=None, deployed_at="2026-11-20T10:15:00.5Z"),
        rec(service="gone", status="removed"),
    ])
    lines = text.splitlines()
    assert text.endswith("\n")
    assert lines[0].startswith("# HELP deployment_info ")
    assert lines[1] == "# TYPE deployment_info gauge"
    assert lines[2] == ('deployment_info{service="exchange-rate-api",environment="production",version="1.4.2",'
                        'commit="3f2c1ab",deployed_at="2026-11-20T10:15:00Z"} 1')
    assert lines[3] == ('deployment_info{service="fraud",environment="staging",version="1.4.2",'
                        'deployed_at="2026-11-20T10:15:00.5Z"} 1')
    assert lines[4].startswith("# HELP deployment_timestamp_seconds ")
    assert lines[5] == "# TYPE deployment_timestamp_seconds gauge"
    assert lines[6] == 'deployment_timestamp_seconds{service="exchange-rate-api",environment="production"} 1795169700'
    assert lines[7] == 'deployment_timestamp_seconds{service="fraud",environment="staging"} 1795169700.5'
    assert len(lines) == 8
    assert "gone" not in text


def test_info_metrics_escaping():
    assert dc.escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    text = info_metrics([rec(version='1.0 "beta" \\x')])
    assert 'version="1.0 \\"beta\\" \\\\x"' in text


def test_info_metrics_empty():
    assert info_metrics([]).count("# TYPE") == 2


# ---------------------------------------------------------------------------
# deployment_annotations
# ---------------------------------------------------------------------------
def test_annotations_one_per_record_sorted_by_time():
    records = [
        rec(version="1.4.1", deployed_at="2026-11-20T11:02:00Z",
            pipeline={"provider": "github-actions", "run_id": "4250", "url": "https://gh/runs/4250"}),
        rec(version="1.4.2", deployed_at="2026-11-20T10:15:00Z", commit=None),
        rec(service="old", status="removed", targets=None, deployed_at="2026-11-20T12:00:00.123Z"),
    ]
    out = annotations(records)
    assert [a["time"] for a in out] == [1795169700000, 1795172520000, 1795176000123]
    assert out[0] == {"time": 1795169700000,
                      "tags": ["deployment", "exchange-rate-api", "production", "1.4.2"],
                      "text": "Deployed exchange-rate-api 1.4.2 to production"}
    assert out[1]["text"] == ("Deployed exchange-rate-api 1.4.1 to production "
                              "(commit 3f2c1ab, github-actions run 4250 https://gh/runs/4250)")
    assert out[2]["tags"] == ["deployment", "old", "production", "1.4.2", "removed"]
    assert out[2]["text"].startswith("Removed old 1.4.2 from production")


# ---------------------------------------------------------------------------
# Plugin files, ansible-doc, examples, a real playbook run
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", FILTERS)
def test_each_filter_is_registered_and_documented(name):
    check_filter_sidecar(importlib.import_module("ansible_collections.monstack.stack.plugins.filter." + name), name)


def test_each_filter_file_registers_exactly_its_documented_filter():
    for name in FILTERS:
        assert sorted(importlib.import_module("ansible_collections.monstack.stack.plugins.filter." + name).FilterModule().filters()) == [name]
    assert sorted(p.stem for p in (REPO / "plugins" / "filter").glob("deployment_*.py")) == sorted(FILTERS)


def test_ansible_doc_renders_every_filter(tmp_path):
    docs = filter_docs(FILTERS, tmp_path)
    for name in FILTERS:
        assert docs[name]["doc"]["short_description"], name
        assert docs[name]["examples"], name


def test_ansible_playbook_runs_the_filters(tmp_path):
    records = [yaml.safe_load(p.read_text()) if p.suffix == ".yml" else json.loads(p.read_text())
               for p in sorted((REPO / "examples" / "deployments").iterdir())]
    (tmp_path / "records.json").write_text(json.dumps(records))
    (tmp_path / "play.yml").write_text(f"""
- hosts: localhost
  gather_facts: false
  vars:
    records: "{{{{ lookup('ansible.builtin.file', '{tmp_path}/records.json') | from_json }}}}"
  tasks:
    - name: write one file_sd file per service
      ansible.builtin.copy:
        dest: "{tmp_path}/sd/{{{{ item.key }}}}"
        content: "{{{{ item.value | to_nice_json }}}}\\n"
      loop: "{{{{ records | monstack.stack.deployment_files(info_labels='false') | dict2items }}}}"
    - name: write textfile metrics
      ansible.builtin.copy:
        dest: "{tmp_path}/deployments.prom"
        content: "{{{{ records | monstack.stack.deployment_info_metrics }}}}"
    - name: annotations and validation
      ansible.builtin.copy:
        dest: "{tmp_path}/other.json"
        content: "{{{{ {{'a': records | monstack.stack.deployment_annotations,
                      'v': records | monstack.stack.deployment_validate,
                      't': records | monstack.stack.deployment_targets(true)}} | to_json }}}}"
""")
    (tmp_path / "sd").mkdir()
    result = subprocess.run(
        [ansible_playbook(), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")],
        capture_output=True, text=True, env=plugin_env(), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    written = {p.name: json.loads(p.read_text()) for p in (tmp_path / "sd").iterdir()}
    assert written == json.loads(json.dumps(files(records, False)))
    assert (tmp_path / "deployments.prom").read_text() == info_metrics(records)
    other = json.loads((tmp_path / "other.json").read_text())
    assert other["a"] == annotations(records)
    assert other["t"] == targets(records)


def _example_records() -> list[dict[str, Any]]:
    out = []
    for path in sorted((REPO / "examples" / "deployments").iterdir()):
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
        data["_source"] = f"examples/deployments/{path.name}"
        out.append(data)
    return out


def test_examples_are_valid_and_rollback_wins():
    records = _example_records()
    assert len(records) >= 3
    assert len(validate(records)) == len(records)
    by_file = files(records)
    assert sorted(by_file) == ["production--exchange-rate-api.json", "staging--fraud-scorer.json"]
    assert by_file["production--exchange-rate-api.json"][0]["labels"]["version"] == "1.4.1"
    fraud = by_file["staging--fraud-scorer.json"][0]
    assert fraud["targets"] == ["10.20.0.11:9000", "[2001:db8:20::11]:9000"]
    assert fraud["labels"]["__scheme__"] == "https"
    assert fraud["labels"]["gpu"] == "false"


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TARGET_RE = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9_.-]+):[1-9][0-9]{0,4}")
FILE_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*--[a-z0-9][a-z0-9_.-]*\.json")
INFO_LINE_RE = re.compile(r'deployment_(info|timestamp_seconds)\{([a-z_]+="([^"\\\n]|\\[\\"n])*",?)+\} [0-9.]+')

names = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,15}", fullmatch=True)
dns_labels = st.from_regex(r"[a-zA-Z]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
dns_names = st.builds(lambda labels, dot: ".".join(labels) + dot,
                      st.lists(dns_labels, min_size=1, max_size=4), st.sampled_from(["", "", "."]))
hosts = st.one_of(dns_names, st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
ports = st.integers(1, 65535)


@st.composite
def target_values(draw) -> Any:
    host, port = draw(hosts), draw(ports)
    form = draw(st.sampled_from(["mapping", "string", "port-string"]))
    if form == "mapping":
        return {"host": host, "port": port}
    if form == "port-string":
        return {"host": host, "port": str(port)}
    host = host.rstrip(".") if ":" not in host else f"[{host}]"
    return f"{host}:{port}"


versions = st.one_of(
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}(-[a-z0-9.]{1,8})?", fullmatch=True),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20)
    .filter(lambda s: s == s.strip() and s),
)
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: not n.startswith("__") and n not in dc.RESERVED_LABELS)
label_values = st.one_of(st.text(min_size=1, max_size=20), st.integers(-10**6, 10**6), st.booleans())
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def render_time(moment: datetime, tz: timezone, style: int) -> Any:
    local = moment.astimezone(tz)
    if style == 0:
        return local  # a YAML-parsed, timezone-aware datetime
    text = local.isoformat()
    return text.replace("+00:00", "Z") if style == 2 else text


@st.composite
def valid_records(draw) -> list[dict[str, Any]]:
    services = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    envs = draw(st.lists(names, min_size=1, max_size=2, unique=True))
    count = draw(st.integers(1, 8))
    base = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=draw(st.integers(0, 10**8)))
    records = []
    for index in range(count):
        status = draw(st.sampled_from(["deployed"] * 4 + ["removed"]))
        record: dict[str, Any] = {
            "service": draw(st.sampled_from(services)),
            "environment": draw(st.sampled_from(envs)),
            "version": draw(versions),
            # distinct times, so "latest" is never ambiguous
            "deployed_at": render_time(base + timedelta(seconds=index * 61 + draw(st.integers(0, 60)),
                                                        microseconds=draw(st.integers(0, 999999))),
                                       draw(offsets), draw(st.integers(0, 2))),
            "_source": f"deployments/record-{index}.yml",
        }
        if status == "removed":
            record["status"] = "removed"
        if status == "deployed" or draw(st.booleans()):
            record["targets"] = draw(st.lists(target_values(), min_size=1, max_size=4))
        optional = {
            "commit": st.from_regex(r"[0-9a-fA-F]{7,40}", fullmatch=True),
            "metrics_path": st.from_regex(r"/[a-zA-Z0-9/_.-]{0,20}", fullmatch=True),
            "scheme": st.sampled_from(["http", "https"]),
            "labels": st.dictionaries(label_names, label_values, max_size=4),
            "health_url": st.sampled_from(["http://a:1/health", "https://b.example.com/healthz"]),
            "pipeline": st.fixed_dictionaries({"provider": st.sampled_from(["github-actions", "gitlab-ci"]),
                                               "run_id": st.one_of(st.integers(1, 10**9), names),
                                               "url": st.just("https://ci.example.com/run/1")}),
        }
        for key, strategy in optional.items():
            if draw(st.booleans()):
                record[key] = draw(strategy)
        records.append(record)
    return draw(st.permutations(records))


@PROPERTY_SETTINGS
@given(valid_records(), st.booleans())
def test_property_valid_records_give_valid_file_sd(records, info):
    original = copy.deepcopy(records)
    normalized = validate(records, OPEN_POLICY)  # the contract (any address, any label count)
    assert records == original, "filters must not modify their input"
    assert len(normalized) == len(records)
    groups = targets(records, info)
    assert groups == targets(normalized, info)
    keys = {(r["service"], r["environment"]) for r in normalized}
    assert len(groups) <= len(keys)
    assert json.loads(json.dumps(groups)) == groups
    for group in groups:
        assert set(group) == {"targets", "labels"}
        assert group["targets"] and group["targets"] == sorted(set(group["targets"]))
        for target in group["targets"]:
            assert TARGET_RE.fullmatch(target), target
            assert "/" not in target
        for name, value in group["labels"].items():
            assert dc.LABEL_NAME_RE.fullmatch(name), name
            assert not name.startswith("__") or name in ("__metrics_path__", "__scheme__"), name
            assert isinstance(value, str) and value
        assert ("version" in group["labels"]) is info
        assert group["labels"]["__metrics_path__"].startswith("/")
    by_file = files(records, info)
    assert len(by_file) == len(groups)
    for name, content in by_file.items():
        assert FILE_RE.fullmatch(name) and "/" not in name, name
        assert content[0] in groups
    for line in info_metrics(records).splitlines():
        assert line.startswith("# ") or INFO_LINE_RE.fullmatch(line), line
    notes = annotations(records)
    assert len(notes) == len(records)
    assert [n["time"] for n in notes] == sorted(n["time"] for n in notes)


def _bad(field: str, values: st.SearchStrategy, **extra: Any) -> st.SearchStrategy:
    """Mutation: set ``field`` to one of ``values`` (plus ``extra`` fields)."""
    return st.tuples(st.just(field), values, st.just(extra))


def _not_matching(regex: re.Pattern) -> st.SearchStrategy:
    return st.text(max_size=12).filter(lambda s: not regex.fullmatch(s))


non_strings = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(),
                        st.lists(st.integers(), max_size=2))
MUTATIONS = st.one_of(
    _bad("service", st.one_of(_not_matching(dc.NAME_RE), non_strings, st.just("x" * 121))),
    _bad("environment", st.one_of(_not_matching(dc.NAME_RE), non_strings)),
    _bad("version", st.one_of(st.floats(allow_nan=False), st.integers(), st.booleans(), st.just(""),
                              st.just(" 1.0"), st.just("1\n0"))),
    _bad("deployed_at", st.one_of(
        st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
        st.dates(), st.integers(), st.just("2026-11-20T10:15:00"), st.just("2026-13-01T00:00:00Z"),
        st.text(max_size=12).filter(lambda s: not dc.RFC3339_RE.fullmatch(s)))),
    _bad("status", st.one_of(st.text(max_size=8).filter(lambda s: s not in dc.STATUSES), st.integers())),
    _bad("commit", st.one_of(st.integers(min_value=1), st.just("xyz"), st.just("abc"), st.just("g" * 7))),
    _bad("targets", st.sampled_from([[], "app:80", {"host": "a", "port": 1}]), status="deployed"),
    _bad("targets[0]", st.sampled_from([
        "app", "app:0", "app:65536", "http://app:80", "2001:db8::1:80", "[2001:db8::zz]:80", "999.0.0.1:80",
        "a b:80", ":80", 80, None, ["app", 80],
    ])),
    _bad("targets[0].port", st.one_of(st.integers(max_value=0), st.integers(min_value=65536), st.booleans(),
                                      st.just("http"), st.floats(allow_nan=False))),
    _bad("targets[0].host", st.one_of(st.sampled_from(["", "a b", "a/b", "app:80", "-a", "1.2.3.256", "::g"]),
                                      st.integers())),
    _bad("metrics_path", st.one_of(st.from_regex(r"[a-z][a-z/]{0,8}", fullmatch=True), st.just("/a b"),
                                   st.just("/?x"), st.integers())),
    _bad("scheme", st.text(max_size=6).filter(lambda s: s not in dc.SCHEMES)),
    _bad("labels", st.one_of(
        st.sampled_from(["team", ["a"], 5]),
        st.builds(lambda n: {n: "x"}, st.sampled_from(sorted(dc.RESERVED_LABELS))),
        st.builds(lambda n: {"__" + n: "x"}, st.from_regex(r"[a-z_]{1,8}", fullmatch=True)),
        st.builds(lambda n: {n: "x"}, _not_matching(dc.LABEL_NAME_RE)),
        st.builds(lambda v: {"ok": v}, st.one_of(st.none(), st.just(""), st.floats(), st.lists(st.integers()))),
    )),
    _bad("health_url", st.one_of(st.sampled_from(["ftp://x", "x", "http://", "http://a b"]), st.integers(1))),
    _bad("pipeline", st.sampled_from(["4242", [1], {"url": "nope"}, {"run_id": [1]}])),
    _bad("unknown", st.sampled_from(["servce", "deployed", "target", "label", "metrics-path"])),
)


@PROPERTY_SETTINGS
@given(valid_records(), MUTATIONS, st.data())
def test_property_one_invalid_field_always_raises(records, mutation, data):
    field, value, extra = mutation
    index = data.draw(st.integers(0, len(records) - 1))
    bad = copy.deepcopy(records[index])
    bad.update(extra)
    bad.setdefault("targets", [{"host": "app", "port": 80}])
    if field == "unknown":
        bad[value] = "x"
        field = value
    elif field.startswith("targets[0]"):
        if field == "targets[0]":
            bad["targets"] = [value]
        else:
            key = field.rsplit(".", 1)[1]
            target = {"host": "app", "port": 80, key: value}
            bad["targets"] = [target]
    else:
        bad[field] = value
    records = records[:index] + [bad] + records[index + 1:]
    for func in (validate, targets, files, info_metrics, annotations):
        with pytest.raises(AnsibleFilterError) as info:
            func(records)
        message = str(info.value)
        assert message.startswith(f"{bad['_source']} (service "), message
        if field != "service" or isinstance(value, str):
            assert f"field '{field}" in message, message


def test_docs_example_record_gives_the_documented_target_group():
    text = (REPO / "docs" / "deployments.md").read_text()
    blocks = re.findall(r"```(yaml|json)\n(.*?)```", text, flags=re.S)
    record = yaml.safe_load(blocks[0][1])
    assert targets([record]) == json.loads(blocks[1][1])
