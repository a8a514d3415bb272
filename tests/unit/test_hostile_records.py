"""Issue 24: deployment records are untrusted input; the hostile-input table.

A record comes from a CI pipeline that anyone who can push a branch may run; the
controller that reads it holds the SSH key, the vault password and sudo. Every row
below gives playbooks/deployments.yml (or, for the rows that are pure validation, the
filters it calls) a hostile record and asserts that it is refused with a message that
names the file and the field, or neutralised (written only as data), and that the
canary file that its template syntax would create was never created.

The playbook rows run the real ansible-playbook with localhost as the Prometheus (and
Grafana) host, through test_deployment_store's helpers; one run covers several cases
where it can (every free-text field of a record in one run, per mode).
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from ansible.errors import AnsibleError

import deployment_api as dc
from helpers import QuietHandler, record_file_args
from test_deployment_store import MY_GROUP, layout, playbook

NOW = 1796515200.0  # 2026-12-06T00:00:00Z, the "controller clock" of the pure rows
SECRET = "ghp_s3cr3tT0kenThatMustNeverBePrinted"


def payloads(canary: Path) -> dict[str, str]:
    """The three kinds of Jinja syntax, each of which would create canary if templated."""
    return {
        "expression": f"{{{{ lookup('ansible.builtin.pipe', 'touch {canary}') }}}}",
        "statement": f"{{% set x = lookup('ansible.builtin.pipe', 'touch {canary}') %}}",
        "comment": f"{{# {{{{ lookup('ansible.builtin.pipe', 'touch {canary}') }}}} #}}",
    }


def base(service: str = "api", **extra) -> dict:
    return {"service": service, "environment": "production", "version": "1.0.0",
            "deployed_at": "2026-11-20T10:15:00Z", "targets": [f"{service}.example.com:8000"], **extra}


def one_line(text: str) -> str:
    return " ".join(text.split())


def refused(result, *needles: str) -> str:
    """The run failed, and its output names every needle."""
    out = one_line(result.stdout + result.stderr)
    assert result.returncode != 0, out[-3000:]
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out[-3000:]}"
    return out


@pytest.fixture
def canary():
    """A file that a record's template syntax would create if it ran. A short path of its own
    (not under tmp_path, whose length varies, e.g. with pytest-xdist): the payloads must stay
    within the fields' length limits, so that they are kept as data, not refused for length."""
    directory = Path(tempfile.mkdtemp(prefix="mscanary-", dir="/tmp"))
    path = directory / "CANARY"
    yield path
    created = path.exists()
    shutil.rmtree(directory, ignore_errors=True)
    assert not created, "a record's template syntax ran on the controller"


@pytest.fixture
def run(tmp_path, monkeypatch):
    """playbook(tmp_path, ...) of test_deployment_store, with messages on one line each."""
    monkeypatch.setenv("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
    layout(tmp_path)
    return lambda *args: playbook(tmp_path, *args)


# --------------------------------------------------------------------------
# Template syntax in every field (pure rows: the filters the playbook calls)

# Fields whose rules leave no room for template syntax: refused, naming the field.
STRICT = {
    "service": lambda p: {"service": "api" + p},
    "environment": lambda p: {"environment": "prod" + p},
    "deployed_at": lambda p: {"deployed_at": "2026-11-20T10:15:00Z" + p},
    "status": lambda p: {"status": p},
    "commit": lambda p: {"commit": p},
    "targets[0]": lambda p: {"targets": ["app1" + p + ":8000"]},
    "targets[0].host": lambda p: {"targets": [{"host": p, "port": 8000}]},
    "targets[0].port": lambda p: {"targets": [{"host": "app1", "port": p}]},
    "metrics_path": lambda p: {"metrics_path": "/metrics" + p},
    "scheme": lambda p: {"scheme": p},
    "labels.": lambda p: {"labels": {p: "x"}},  # a label name
    "health_url": lambda p: {"health_url": "http://app1.example.com:8000/h " + p},
    "pipeline.url": lambda p: {"pipeline": {"url": "https://ci.example.com/ " + p}},
    "prometheus_config_dir": lambda p: {"prometheus_config_dir": p},  # a field named like a role variable
    "slos[0].name": lambda p: {"slos": [{"name": "availability" + p, "objective": 99.9}]},
    "slos[0].window": lambda p: {"slos": [{"name": "availability", "objective": 99.9, "window": "30d" + p}]},
}


def plan(*records: dict, policy: dict | None = None) -> dict:
    """What play 1 does: parse the files' texts, then plan with the policy and the clock."""
    texts = [{"path": f"/records/{r['service'] if isinstance(r.get('service'), str) else 'x'}.json",
              "text": json.dumps(r)} for r in records]
    return dc.deployment_plan(dc.deployment_parse(texts), True, {"now": NOW, **(policy or {})})


def error(*records: dict, policy: dict | None = None) -> str:
    with pytest.raises(AnsibleError) as err:
        plan(*records, policy=policy)
    return str(err.value)


@pytest.mark.parametrize("kind", ["expression", "statement", "comment"])
@pytest.mark.parametrize("field", sorted(STRICT))
def test_template_syntax_in_a_strict_field_is_refused_naming_file_and_field(field, kind, canary):
    payload = payloads(canary)[kind]
    record = {**base(), **STRICT[field](payload)}
    message = error(record)
    assert message.startswith("/records/") and f"field '{field}" in message, message


# Free-text fields: accepted, and kept as the literal text (data, never a template).
FREE = {
    "version": lambda p: {"version": "1.0" + p},
    "labels.team": lambda p: {"labels": {"team": p}},
    "pipeline.provider": lambda p: {"pipeline": {"provider": p}},
    "pipeline.run_id": lambda p: {"pipeline": {"run_id": p}},
    "pipeline.url": lambda p: {"pipeline": {"url": "https://ci.example.com/" + p.replace(" ", "")}},
    "health_url": lambda p: {"health_url": "http://api.example.com:8000/" + p.replace(" ", "")},
    "_note": lambda p: {"_note": p},
}


@pytest.mark.parametrize("kind", ["expression", "statement", "comment"])
@pytest.mark.parametrize("field", sorted(FREE))
def test_template_syntax_in_a_free_text_field_is_kept_as_data(field, kind, canary):
    payload = payloads(canary)[kind]
    record = {**base(), **FREE[field](payload)}
    [normalized] = plan(record)["records"]
    value = normalized
    for key in field.split("."):
        value = value[key]
    assert payload.replace(" ", "") in value.replace(" ", "")


# --------------------------------------------------------------------------
# Limits and policy (pure rows)

@pytest.mark.parametrize("case,changes,policy,needles", [
    ("too many labels", {"labels": {f"l{i}": "x" for i in range(17)}}, None,
     ["field 'labels': 17 labels, more than deployment_max_labels (16)"]),
    ("label value too long", {"labels": {"team": "x" * 257}}, None,
     ["field 'labels.team': a value of 257 characters, longer than deployment_max_label_value_length (256)"]),
    ("label name too long", {"labels": {"n" * 65: "x"}}, None, ["deployment_max_label_name_length (64)"]),
    ("deployed_at in year 9998", {"deployed_at": "9998-12-31T23:59:59Z"}, None,
     ["field 'deployed_at': 9998-12-31T23:59:59Z is", "more than deployment_max_clock_skew (300 s)"]),
    ("deployed_at 10 minutes ahead", {"deployed_at": "2026-12-06T00:10:00Z"}, None,
     ["field 'deployed_at'", "600 s ahead"]),
    ("loopback target", {"targets": ["127.0.0.1:9090"]}, None,
     ["field 'targets': target 127.0.0.1:9090: host 127.0.0.1 is refused by deployment_denied_targets (127.0.0.0/8)"]),
    ("IPv6 loopback target", {"targets": ["[::1]:9090"]}, None, ["field 'targets'", "(::1/128)"]),
    ("IPv4-mapped loopback", {"targets": ["[::ffff:127.0.0.1]:9090"]}, None, ["field 'targets'", "127.0.0.0/8"]),
    ("hex loopback name", {"targets": ["0x7f.0.0.1:9090"]}, None, ["field 'targets'", "non-standard form"]),
    ("localhost target", {"targets": ["localhost:9090"]}, None, ["field 'targets'", "(localhost)"]),
    ("unspecified target", {"targets": ["0.0.0.0:9090"]}, None, ["field 'targets'", "0.0.0.0/8"]),
    ("multicast target", {"targets": ["239.1.1.1:9090"]}, None, ["field 'targets'", "224.0.0.0/4"]),
    ("link-local metadata target", {"targets": ["169.254.169.254:80"]}, None, ["field 'targets'", "169.254.0.0/16"]),
    ("metadata health_url", {"health_url": "http://169.254.169.254/latest/meta-data/iam/"}, None,
     ["field 'health_url': host 169.254.169.254 is refused"]),
    ("metadata name health_url", {"health_url": "http://metadata.google.internal/computeMetadata/v1/"}, None,
     ["field 'health_url'", "(metadata.google.internal)"]),
    ("loopback health_url", {"health_url": "http://127.0.0.1:9090/-/healthy"}, None, ["field 'health_url'"]),
    ("userinfo health_url", {"health_url": f"http://admin:{SECRET}@app1.example.com/health"}, None,
     ["field 'health_url': user info ('user:password@') is not allowed"]),
    ("userinfo pipeline.url", {"pipeline": {"url": f"https://ci:{SECRET}@ci.example.com/run/1"}}, None,
     ["field 'pipeline.url': user info"]),
    ("VictoriaMetrics delete_series health_url",
     {"health_url": "http://vm.example.com:8428/api/v1/admin/tsdb/delete_series?match[]={__name__=~'.+'}"}, None,
     ["field 'health_url': the path contains '/api/v1/admin'"]),
    ("encoded admin path", {"health_url": "http://vm.example.com:8428/api/v1/%61dmin/../admin/tsdb/snapshot"}, None,
     ["field 'health_url'", "'/api/v1/admin'"]),
    ("Prometheus reload metrics_path", {"metrics_path": "/-/reload"}, None, ["field 'metrics_path'", "'/-/reload'"]),
    ("admin metrics_path behind a prefix", {"metrics_path": "/prom//api/v1/admin/tsdb/clean_tombstones"}, None,
     ["field 'metrics_path'", "'/api/v1/admin'"]),
    ("target outside the environment's networks", {"targets": ["10.2.0.5:8000"]},
     {"allowed_targets": {"production": ["10.1.0.0/16", "*.prod.example.com"]}},
     ["field 'targets': target 10.2.0.5:8000: host 10.2.0.5 is not allowed in environment 'production' "
      "(deployment_allowed_targets: 10.1.0.0/16, *.prod.example.com)"]),
    ("name outside the environment's names", {"targets": ["api.staging.example.com:8000"]},
     {"allowed_targets": {"*": ["*.prod.example.com"]}}, ["host api.staging.example.com is not allowed"]),
    # SLOs (docs/deployments.md, "SLOs"); a threshold off the buckets and a window beyond the retention
    # are refused on the Prometheus host: tests/unit/test_deployment_slo.py
    ("objective 100", {"slos": [{"name": "availability", "objective": 100}]}, None,
     ["field 'slos[0].objective': expected a percentage greater than 0 and less than 100"]),
    ("objective 0", {"slos": [{"name": "availability", "objective": 0}]}, None, ["field 'slos[0].objective'"]),
    ("objective as text", {"slos": [{"name": "availability", "objective": "99.9"}]}, None,
     ["field 'slos[0].objective'", "write the number unquoted"]),
    ("window in hours", {"slos": [{"name": "availability", "objective": 99.9, "window": "720h"}]}, None,
     ["field 'slos[0].window': expected a window in days or weeks"]),
    ("too many SLOs", {"slos": [{"name": f"s{i}", "objective": 99} for i in range(11)]}, None,
     ["field 'slos': 11 SLOs, more than 10"]),
    ("SLO name too long", {"slos": [{"name": "s" * 65, "objective": 99}]}, None,
     ["field 'slos[0].name'", "at most 64 characters"]),
    ("SLO name with PromQL", {"slos": [{"name": 'a"} or vector(1) #', "objective": 99}]}, None,
     ["field 'slos[0].name': expected a name matching"]),
    ("two SLOs of one name", {"slos": [{"name": "a", "objective": 99}, {"name": "a", "objective": 99.9}]}, None,
     ["field 'slos[1].name'", "earlier SLO"]),
    ("negative latency threshold", {"slos": [{"name": "a", "objective": 99, "threshold_seconds": -0.5}]}, None,
     ["field 'slos[0].threshold_seconds'"]),
])
def test_limits_and_policy_refuse_naming_file_and_field(case, changes, policy, needles, canary):
    message = error({**base(), **changes}, policy=policy)
    assert message.startswith("/records/api.json (service 'api'): "), message
    for needle in needles:
        assert needle in message, (case, message)
    assert SECRET not in message


def test_policy_opens_up_by_one_variable_each():
    plan(base(targets=["127.0.0.1:9090"]), policy={"denied_targets": []})
    plan(base(targets=["10.1.2.3:8000", "a.prod.example.com:80"], health_url="http://b.prod.example.com/h"),
         policy={"allowed_targets": {"production": ["10.1.0.0/16", "*.prod.example.com"]}})
    plan(base(metrics_path="/-/reload"), policy={"denied_paths": []})
    plan(base(labels={f"l{i}": "x" * 300 for i in range(20)}),
         policy={"max_labels": 20, "max_label_value_length": 300})
    plan(base(deployed_at="2026-12-06T01:00:00Z"), policy={"max_clock_skew": 3600})
    plan(base(metrics_path="/-/healthy", health_url="http://api.example.com/-/ready"))  # not admin endpoints
    with pytest.raises(AnsibleError, match="deployment_allowed_targets: 'not a net!' is neither"):
        plan(base(), policy={"allowed_targets": {"production": ["not a net!"]}})


@pytest.mark.parametrize("name,text,needle", [
    ("bomb.yml", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                 "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n_d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
     "/records/bomb.yml: YAML anchors and aliases (&name, *name) are not allowed in a record, at line 1, column 4"),
    ("merge.yml", "base: &b {service: api}\n<<: *b\n", "YAML anchors and aliases"),
    ("creds.yml", f"https://user:{SECRET}@github.com\n", "/records/creds.yml: expected one deployment record"),
    ("creds.json", f'"{SECRET}"', "/records/creds.json: expected one deployment record"),
    ("broken.json", '{"service": "' + SECRET, "/records/broken.json: not valid JSON at line 1, column 13"),
    ("broken.yml", f"token: {SECRET}\n  bad: [", "/records/broken.yml: not valid YAML at line 2"),
    ("deep.json", "[" * 100000, "/records/deep.json: not"),
])
def test_parse_refuses_without_printing_the_content(name, text, needle):
    with pytest.raises(AnsibleError) as err:
        dc.deployment_parse([{"path": f"/records/{name}", "text": text}])
    assert needle in str(err.value) and SECRET not in str(err.value), str(err.value)


# --------------------------------------------------------------------------
# The playbook: both modes, template syntax everywhere, files and forms

def everywhere(canary: Path, service: str) -> dict:
    """A valid record with template syntax in every field that accepts free text."""
    kinds = payloads(canary)
    return base(service, version="1.0" + kinds["expression"], labels={"a": kinds["expression"],
                                                                       "b": kinds["statement"], "c": kinds["comment"]},
                commit="3f2c1ab",
                health_url=f"http://{service}.example.com:8000/h{kinds['expression'].replace(' ', '')}",
                pipeline={"provider": kinds["statement"], "run_id": kinds["comment"],
                          "url": "https://ci.example.com/" + kinds["expression"].replace(" ", "")},
                _note=kinds["expression"])


class Grafana(QuietHandler):
    """Grafana's annotation API, as much as play 3 uses: no annotation yet; posts are kept."""

    posted: list[dict] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.answer(200, b"[]")

    def do_POST(self):  # noqa: N802
        Grafana.posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.answer(200, b'{"id": 1}')



@pytest.fixture
def grafana(tmp_path):
    """A fake Grafana on loopback; localhost joins group grafana of the playbook's inventory."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Grafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Grafana.posted = []
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False,
            "prometheus_config_dir": str(tmp_path / "etc"), "node_exporter_textfile_dir": str(tmp_path / "tf"),
            "prometheus_user": MY_GROUP, "deployment_store_dir": str(tmp_path / "state"),
            "grafana_http_addr": "127.0.0.1", "grafana_http_port": server.server_address[1],
            "grafana_admin_password": "test", "prometheus_port": 1}  # no Prometheus: the gate finds nothing
    (tmp_path / "inventory.json").write_text(json.dumps({"all": {"children": {
        "prometheus": {"hosts": {"localhost": host}}, "grafana": {"hosts": {"localhost": {}}}}}}))
    yield Grafana.posted
    server.shutdown()


def test_single_record_mode_keeps_template_syntax_as_data(tmp_path, run, canary, grafana):
    record = everywhere(canary, "single")
    result = run(*record_file_args(tmp_path / "in", record))
    assert result.returncode == 0, result.stdout[-3000:]
    written = (tmp_path / "etc" / "file_sd" / "deployments" / "production--single.json").read_text()
    assert json.loads(written)[0]["labels"]["version"] == record["version"]  # the literal text
    assert json.loads(written)[0]["labels"]["b"] == record["labels"]["b"]
    health = tmp_path / "etc" / "file_sd" / "deployment_health" / "production--single.json"
    assert json.loads(health.read_text())[0]["targets"] == [record["health_url"]]
    [annotation] = grafana
    assert record["version"] in annotation["text"] and record["pipeline"]["url"] in annotation["text"]
    assert record["version"] in annotation["tags"]
    # the gate's failure message quotes the record's labels: as data
    later = {**record, "deployed_at": "2026-11-21T10:15:00Z", "version": record["version"] + "{# 2 #}"}
    refused(run(*record_file_args(tmp_path / "in", later), "-e", "deployment_gate=true",
                "-e", "deployment_gate_timeout=1", "-e", "deployment_gate_interval=1"),
            "Post-deploy gate", f"version {later['version']}): not discovered yet")


def test_directory_mode_keeps_template_syntax_as_data(tmp_path, run, canary, grafana):
    records = tmp_path / "records"
    for i in range(3):
        (records / f"svc{i}.json").write_text(json.dumps(everywhere(canary, f"svc{i}")))
    (records / "svc3.yml").write_text(json.dumps(everywhere(canary, "svc3")))  # YAML (JSON is YAML)
    result = run("-e", f"deployment_records_dir={records}")
    assert result.returncode == 0, result.stdout[-3000:]
    for i in range(4):
        labels = json.loads((tmp_path / "etc" / "file_sd" / "deployments" / f"production--svc{i}.json").read_text())[0][
            "labels"]
        assert labels["a"] == payloads(canary)["expression"] and labels["c"] == payloads(canary)["comment"]
    assert len(grafana) == 4
    store = json.loads((tmp_path / "state" / "store.json").read_text())["entries"]
    assert store["production--svc2.json"]["record"]["pipeline"]["provider"] == payloads(canary)["statement"]


@pytest.mark.parametrize("mode", ["single", "directory"])
@pytest.mark.parametrize("field,changes", [
    ("service", lambda p: {"service": "api" + p}),
    ("deployed_at", lambda p: {"deployed_at": p}),
    ("targets[0]", lambda p: {"targets": [p + ":8000"]}),
    ("prometheus_config_dir", lambda p: {"prometheus_config_dir": p}),
])
def test_playbook_refuses_template_syntax_in_a_strict_field(tmp_path, run, canary, mode, field, changes):
    record = {**base(), **changes(payloads(canary)["expression"])}
    if mode == "single":
        path = tmp_path / "in" / "record.json"
        path.parent.mkdir()
        args = ["-e", f"deployment_record_file={path}"]
    else:
        path = tmp_path / "records" / "record.json"
        args = ["-e", f"deployment_records_dir={tmp_path / 'records'}"]
    path.write_text(json.dumps(record))
    out = refused(run(*args), f"{path} (service ", f"field '{field}'")
    assert not any((tmp_path / "etc" / "file_sd" / "deployments").iterdir())
    if field == "prometheus_config_dir":
        assert "unknown field" in out


@pytest.mark.parametrize("form", ["@file", "deployment_record", "role variable"])
def test_records_given_as_variables_are_refused_unread(tmp_path, run, canary, form):
    """-e @record.json made the record's fields variables of the run: templated, and able to
    override the inventory. Refused by name, before any of them is read."""
    hostile = {**base(), "version": "1.0" + payloads(canary)["expression"]}
    if form == "@file":
        path = tmp_path / "record.json"
        path.write_text(json.dumps(hostile))
        args, names = ["-e", f"@{path}"], "service, deployed_at, targets"
    elif form == "deployment_record":
        args, names = ["-e", json.dumps({"deployment_record": hostile})], "deployment_record"
    else:
        path = tmp_path / "record.json"
        path.write_text(json.dumps({**hostile, "prometheus_config_dir": payloads(canary)["statement"],
                                    "node_exporter_textfile_dir": "/tmp"}))
        args, names = ["-e", f"@{path}"], "service"
    out = refused(run(*args), "A deployment record is read from its file, never from variables",
                  f"were not read: {names}", "-e deployment_record_file=record.json")
    assert "lookup" not in out  # the values are not printed either


def test_symlink_to_a_secret_is_refused_without_printing_it(tmp_path, run):
    secret = tmp_path / "git-credentials"
    secret.write_text(f"https://ci:{SECRET}@git.example.com\n")
    link = tmp_path / "in" / "record.yml"
    link.parent.mkdir()
    link.symlink_to(secret)
    out = refused(run("-e", f"deployment_record_file={link}"), f"{link}: is a symbolic link")
    assert SECRET not in out
    records = tmp_path / "records"
    (records / "good.json").write_text(json.dumps(base()))
    (records / "zz.yml").symlink_to(secret)
    out = refused(run("-e", f"deployment_records_dir={records}"), f"{records / 'zz.yml'}: is a symbolic link")
    assert SECRET not in out


def test_fifo_is_refused_without_blocking(tmp_path, run):
    records = tmp_path / "records"
    (records / "good.json").write_text(json.dumps(base()))
    os.mkfifo(records / "pipe.json")
    started = time.monotonic()
    refused(run("-e", f"deployment_records_dir={records}"), f"{records / 'pipe.json'}: is a FIFO")
    fifo = tmp_path / "record.json"
    os.mkfifo(fifo)
    refused(run("-e", f"deployment_record_file={fifo}"), f"{fifo}: is a FIFO")
    assert time.monotonic() - started < 120  # the helper's timeout is the hard stop


def test_oversized_file_and_alias_bomb_are_refused_before_parsing(tmp_path, run):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({**base(), "_pad": "x" * 70000}))
    refused(run("-e", f"deployment_record_file={big}"),
            f"{big}: 70", "bytes, larger than deployment_max_record_bytes (65536)")
    records = tmp_path / "records"
    (records / "bomb.yml").write_text("service: api\nenvironment: production\nversion: '1'\n"
                                      "deployed_at: 2026-11-20T10:15:00Z\ntargets: [a.example.com:1]\n"
                                      "_a: &a [x, x, x, x, x, x, x, x, x, x]\n_b: [*a, *a, *a, *a, *a, *a, *a, *a]\n")
    refused(run("-e", f"deployment_records_dir={records}"), f"{records / 'bomb.yml'}: YAML anchors and aliases")


def test_playbook_applies_the_policy_and_the_clock(tmp_path, run):
    future = tmp_path / "future.json"
    future.write_text(json.dumps(base(deployed_at="9998-01-01T00:00:00Z")))
    refused(run("-e", f"deployment_record_file={future}"),
            f"{future} (service 'api'): field 'deployed_at': 9998-01-01T00:00:00Z is", "deployment_max_clock_skew")
    local = tmp_path / "local.json"
    local.write_text(json.dumps(base(targets=["127.0.0.1:9100"], health_url="http://169.254.169.254/")))
    refused(run("-e", f"deployment_record_file={local}"), f"{local} (service 'api'): field 'targets'",
            "deployment_denied_targets")
    # opened up by the operator (the variable, as extra vars): loopback is fine, the metadata address is not
    refused(run("-e", f"deployment_record_file={local}", "-e", json.dumps({"deployment_denied_targets": ["169.254.0.0/16"]})),
            f"{local} (service 'api'): field 'health_url': host 169.254.169.254")
    local.write_text(json.dumps(base(targets=["127.0.0.1:9100"])))
    result = run("-e", f"deployment_record_file={local}", "-e", json.dumps({"deployment_denied_targets": []}))
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_file_name_with_template_syntax_is_only_named(tmp_path, run):
    """A records directory is written by pipelines: its file names are untrusted too."""
    records = tmp_path / "records"
    (records / "{{ 7 * 7 }}{% if true %}x{% endif %}.json").write_text(json.dumps(base(version=1.5)))
    refused(run("-e", f"deployment_records_dir={records}"),
            f"{records}/{{{{ 7 * 7 }}}}{{% if true %}}x{{% endif %}}.json (service 'api'): field 'version'")
