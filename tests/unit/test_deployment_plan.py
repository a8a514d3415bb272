"""Unit tests of the deployment_parse and deployment_plan filters (one step for a records directory)."""
from __future__ import annotations

import json
import time

import pytest
from ansible.errors import AnsibleFilterError

import deployment_api as dc


def record(service: str, **extra) -> dict:
    return {"service": service, "environment": "production", "version": "1.0.0",
            "deployed_at": "2026-11-20T10:15:00Z", "targets": [f"{service}.example.com:8000"], **extra}


def test_parse_reads_json_and_yaml_and_names_the_source():
    texts = [json.dumps(record("api")), "service: web\nenvironment: staging\nversion: '2.0'\n"]
    parsed = dc.deployment_parse(texts, ["/srv/d/api.json", "/srv/d/web.yml"])
    assert parsed[0]["_source"] == "/srv/d/api.json" and parsed[0]["service"] == "api"
    assert parsed[1] == {"service": "web", "environment": "staging", "version": "2.0", "_source": "/srv/d/web.yml"}


@pytest.mark.parametrize("text, name, message", [
    ("{half", "/srv/d/a.json", r"^/srv/d/a.json: not valid JSON at line 1, column 2: "),
    ("service: [", "/srv/d/a.yml", r"^/srv/d/a.yml: not valid YAML at line 2, column 1: did not find expected node content"),
    ("- one\n- two\n", "/srv/d/a.yaml", r"^/srv/d/a.yaml: expected one deployment record .*got a list"),
    ("", "/srv/d/empty.yml", r"^/srv/d/empty.yml: expected one deployment record"),
])
def test_parse_errors_name_the_file(text, name, message):
    with pytest.raises(AnsibleFilterError, match=message):
        dc.deployment_parse([text], [name])


def test_parse_refuses_mismatched_arguments():
    with pytest.raises(AnsibleFilterError, match="one file name per text"):
        dc.deployment_parse(["{}", "{}"], ["a.json"])
    with pytest.raises(AnsibleFilterError, match="expected the texts of the record files"):
        dc.deployment_parse("{}", ["a.json"])


def test_a_bad_record_in_a_file_is_named_by_file_and_field():
    parsed = dc.deployment_parse([json.dumps(record("api", targets=["api.example.com:http"]))], ["/srv/d/api.json"])
    with pytest.raises(AnsibleFilterError, match=r"/srv/d/api.json \(service 'api'\).*targets"):
        dc.deployment_plan(parsed)


def test_plan_equals_the_separate_filters():
    records = [record("api", health_url="http://api.example.com/health"), record("web"),
               record("old", status="removed")]
    records[2].pop("targets")
    plan = dc.deployment_plan(records, False)
    # data end to end: what the playbook passes on is made of mappings, lists and scalars, no JSON text
    assert json.loads(json.dumps(plan)) == plan and not any(isinstance(part, str) for part in plan.values())
    assert plan["records"] == dc.deployment_validate(records)
    assert plan["files"] == dc.deployment_files(records, False)
    assert plan["entries"] == dc.deployment_store_entries(records, False)
    assert plan["health"] == dc.deployment_health_files(records)
    assert plan["annotations"] == dc.deployment_annotations(records)
    assert list(plan["health"]) == ["production--api.json"] and "production--old.json" in plan["entries"]
    # each entry names its record file (the store's "superseded" message quotes it)
    assert plan["entries"]["production--api.json"]["source"] == ""


def test_plan_entries_carry_their_record_file():
    parsed = dc.deployment_parse([json.dumps(record("api")), json.dumps(record("web", status="removed"))],
                                 ["/srv/d/api.json", "/srv/d/web.json"])
    entries = dc.deployment_plan(parsed)["entries"]
    assert {name: entry["source"] for name, entry in entries.items()} == {
        "production--api.json": "/srv/d/api.json", "production--web.json": "/srv/d/web.json"}


def test_plan_of_a_thousand_records_takes_well_under_a_second():
    texts = [json.dumps(record(f"svc-{n:04d}", labels={"team": "t"})) for n in range(1000)]
    names = [f"/srv/d/svc-{n:04d}.json" for n in range(1000)]
    start = time.process_time()
    plan = dc.deployment_plan(dc.deployment_parse(texts, names))
    assert len(plan["entries"]) == 1000 and len(plan["files"]) == 1000
    # a generous bound (about 0.2 s here): a regression to per-record quadratic work fails it
    assert time.process_time() - start < 5
