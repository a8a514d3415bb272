"""The bundled Grafana dashboards: structure, data-source references, metric
names, query extraction (tools/dashboard_queries.py), and every query run
against a real Prometheus that scrapes real exporters.

The real-binary tests use the project's artifact cache ($MONSTACK_CACHE,
default /var/cache/monstack: bin/prometheus, the mirror's node_exporter
tarball and cAdvisor binary). They are skipped, with the reason, when a
binary is missing. Every process listens on 127.0.0.1 only, is bounded in
time and is stopped at the end of the module.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "roles" / "grafana" / "files" / "dashboards"
METRICS_DOC = ROOT / "docs" / "metrics.md"
CACHE = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack"))

sys.path.insert(0, str(ROOT / "tools"))
import dashboard_queries as dq  # noqa: E402

sys.path.insert(0, str(ROOT / "collections"))
from ansible_collections.monstack.stack.plugins.module_utils import deployment_slo as slo_rules  # noqa: E402

PROMETHEUS_DS = {"type": "prometheus", "uid": "monstack-prometheus"}
GRAFANA_DS = {"type": "grafana", "uid": "-- Grafana --"}
ALERTMANAGER_DS = {"type": "alertmanager", "uid": "monstack-alertmanager"}
JOBS = {"prometheus", "node", "cadvisor", "alertmanager", "grafana", "blackbox", "deployments", "deployment_health"}

EXPECTED = {
    "Infrastructure/hosts.json": "monstack-hosts",
    "Infrastructure/containers.json": "monstack-containers",
    "Monitoring/stack.json": "monstack-stack",
    "Inference/inference-api.json": "monstack-inference-api",
    "Inference/model-performance.json": "monstack-model-performance",
    "Inference/drift.json": "monstack-drift",
    "Inference/slo.json": "monstack-slo",
}

# Metrics the dashboards may use besides docs/metrics.md, by exporter.
NODE_METRICS = {
    "node_boot_time_seconds", "node_cpu_seconds_total", "node_disk_io_time_seconds_total",
    "node_disk_read_bytes_total", "node_disk_reads_completed_total", "node_disk_writes_completed_total",
    "node_disk_written_bytes_total", "node_filesystem_avail_bytes", "node_filesystem_size_bytes",
    "node_load1", "node_load5", "node_load15", "node_memory_Buffers_bytes", "node_memory_Cached_bytes",
    "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes", "node_memory_SwapFree_bytes",
    "node_memory_SwapTotal_bytes", "node_network_receive_bytes_total", "node_network_receive_drop_total",
    "node_network_receive_errs_total", "node_network_transmit_bytes_total", "node_network_transmit_drop_total",
    "node_network_transmit_errs_total", "node_uname_info", "node_vmstat_oom_kill",
}
CADVISOR_METRICS = {
    "container_cpu_cfs_throttled_seconds_total", "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes", "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total", "container_oom_events_total", "container_spec_memory_limit_bytes",
    "container_start_time_seconds", "machine_cpu_cores", "machine_memory_bytes",
}
# cAdvisor exports these only in some conditions.
CADVISOR_CONDITIONAL = {
    "container_oom_events_total": "cAdvisor 0.39 and later only",
    "container_cpu_cfs_throttled_seconds_total": "only for cgroups with a CPU quota",
}
PROMETHEUS_METRICS = {
    "prometheus_config_last_reload_successful", "prometheus_notifications_alertmanagers_discovered",
    "prometheus_notifications_dropped_total", "prometheus_notifications_errors_total",
    "prometheus_notifications_sent_total", "prometheus_rule_evaluation_failures_total",
    "prometheus_rule_group_iterations_missed_total", "prometheus_rule_group_last_duration_seconds",
    "prometheus_tsdb_head_samples_appended_total", "prometheus_tsdb_head_series",
}
# Series Prometheus makes itself (not exported by any target).
SYNTHETIC_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}
ALERTMANAGER_METRICS = {
    "alertmanager_alerts", "alertmanager_cluster_members", "alertmanager_config_last_reload_successful",
    "alertmanager_notifications_failed_total", "alertmanager_notifications_total",
}
# node_exporter textfile metrics written by the deployments playbook (filter deployment_info_metrics).
DEPLOYMENT_METRICS = {"deployment_info", "deployment_timestamp_seconds"}
# The SLO recording rules of deployment records (plugins/module_utils/deployment_slo.py).
SLO_METRICS = {"monstack_slo:objective:ratio", "monstack_slo:window:seconds", "monstack_slo:error_ratio:slo_window"} | {
    f"monstack_slo:error_ratio:rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")}
# blackbox_exporter's probe results (job deployment_health: the records' health_url).
BLACKBOX_METRICS = {"probe_success"}

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or",
    "unless", "atan2", "inf", "nan", "start", "end",
}


CONTRACTS = ROOT / "examples" / "metric-contracts"
GRAFANA_DEFAULTS = ROOT / "roles" / "grafana" / "defaults" / "main.yml"


# ----------------------------------------------------------------- helpers
def load_all() -> dict[str, dict]:
    """The dashboard files as they are."""
    return {rel: board for rel, board in dq.load_dashboards(DASHBOARDS)}


def rendered_all(metrics: dict | None = None, labels: dict | None = None) -> dict[str, dict]:
    """The dashboards as the grafana role writes them, set to a metric contract."""
    return {rel: dq.apply_contract(board, metrics, labels) for rel, board in load_all().items()}


def resolved(board: dict) -> str:
    """The dashboard's JSON text with its ml_* constants replaced by their values."""
    constants = {v["name"]: v["query"] for v in board["templating"]["list"] if v.get("type") == "constant"}
    return dq.substitute(json.dumps(board), constants)


def contract_metrics() -> set[str]:
    """Metric names of docs/metrics.md, with the histogram series."""
    names = set()
    sample_app = METRICS_DOC.read_text().split("\n## Other metric contracts")[0]
    for line in sample_app.splitlines():
        match = re.match(r"\|\s*`(\w+)`\s*\|\s*(\w+)", line)
        if not match:
            continue
        name, kind = match.groups()
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (identifiers outside label matchers, groupings, strings)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in PROMQL_WORDS or re.fullmatch(r"\d+\w*", word):
            continue
        names.add(word)
    return names


def walk(node, path=""):
    """Every (path, key, value) of a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def all_panels(board):
    return list(dq.iter_panels(board.get("panels", [])))


# ------------------------------------------------------- static structure
def test_expected_dashboards_exist():
    boards = load_all()
    assert set(boards) == set(EXPECTED), "dashboards in roles/grafana/files/dashboards changed"
    for rel, uid in EXPECTED.items():
        assert boards[rel]["uid"] == uid


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_dashboard_is_classic_json_for_provisioning(rel):
    board = load_all()[rel]
    assert board["id"] is None, "id must be null: Grafana assigns it"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"]), "uid: letters, digits, - and _; at most 40"
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert isinstance(board["panels"], list) and board["panels"]
    assert board["title"]
    # Not the Grafana 12/13 v2 schema (apiVersion/kind/spec with elements and layout).
    assert not {"apiVersion", "kind", "spec", "elements", "layout"} & set(board)
    # Not an export for sharing: provisioning loads the JSON raw.
    assert "__inputs" not in board and "__requires" not in board and "__elements" not in board
    assert "${DS_" not in json.dumps(board)


def test_dashboard_uids_and_titles_are_unique():
    boards = load_all().values()
    uids = [b["uid"] for b in boards]
    titles = [b["title"] for b in boards]
    assert len(set(uids)) == len(uids)
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_panel_ids_unique_and_layout_sane(rel):
    panels = all_panels(load_all()[rel])
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(set(ids)) == len(ids), f"duplicate panel ids in {rel}"
    cells = {}
    for p in panels:
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, f"panel {p['title']} wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panels {cells.get((x, y))!r} and {p['title']!r} overlap"
                cells[(x, y)] = p["title"]


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_every_datasource_reference_is_provisioned(rel):
    board = load_all()[rel]
    for path, key, value in walk(board):
        if key != "datasource":
            continue
        assert isinstance(value, dict), f"{path}: datasource must be {{type, uid}}, not {value!r}"
        if value == GRAFANA_DS:
            assert path.startswith("/annotations"), f"{path}: the Grafana data source is for annotations"
        else:
            assert value in (PROMETHEUS_DS, ALERTMANAGER_DS), f"{path}: unknown datasource {value}"
    for panel in all_panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == PROMETHEUS_DS, panel["title"]
        assert panel["targets"], f"panel {panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == PROMETHEUS_DS, panel["title"]
            assert target["expr"].strip()
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), f"duplicate refId in {panel['title']}"
    for var in board["templating"]["list"]:
        if var["type"] == "constant":  # the metric contract, set by the grafana role
            assert re.fullmatch(r"ml_(metric|label)_[a-z_]+", var["name"]) and var["hide"] == 2, var
            continue
        assert var["datasource"] == PROMETHEUS_DS
        assert var["allValue"] == ".*", f"${var['name']}: All must match series without the label too"


def test_metric_names_are_known():
    known = (contract_metrics() | NODE_METRICS | CADVISOR_METRICS | PROMETHEUS_METRICS | SYNTHETIC_METRICS
             | ALERTMANAGER_METRICS | DEPLOYMENT_METRICS | BLACKBOX_METRICS | SLO_METRICS)
    unknown = {}
    for query in dq.extract_queries(DASHBOARDS):
        for name in metric_names(query["expr"]) - known:
            unknown.setdefault(name, []).append(f"{query['dashboard']}/{query['panel']}")
    assert not unknown, f"metrics neither in docs/metrics.md nor known exporter metrics: {unknown}"


def test_metric_name_parser():
    assert metric_names('sum by (le) (rate(a_bucket{x="y", z=~"$v"}[5m])) / on (i) group_left (k) b') == {
        "a_bucket", "b"}
    assert metric_names('label_replace(up, "c", "$1", "id", "(.+)") unless m offset 2m') == {"up", "m"}
    assert metric_names("histogram_quantile(0.95, sum(x)) > bool 1e3") == {"x"}


def test_every_contract_metric_is_on_a_dashboard():
    used = set()
    for query in dq.extract_queries(DASHBOARDS):
        used |= metric_names(query["expr"])
    base = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    documented = {n for n in contract_metrics() if not re.search(r"_(bucket|sum|count)$", n)}
    assert documented <= (used | base), f"unused contract metrics: {documented - used - base}"


def test_job_selectors_use_the_scrape_job_names():
    for query in dq.extract_queries(DASHBOARDS):
        for job in re.findall(r'job="([^"]*)"', query["raw"]):
            assert job in JOBS, f"{query['dashboard']}/{query['panel']}: unknown job {job}"


def test_dashboards_hold_what_was_asked_for():
    boards = {rel: json.loads(resolved(board)) for rel, board in rendered_all().items()}
    text = {rel: json.dumps(board) for rel, board in boards.items()}
    hosts = boards["Infrastructure/hosts.json"]
    var = hosts["templating"]["list"][0]
    assert var["name"] == "instance" and "label_values(node_uname_info" in var["query"]["query"]
    for metric in ("node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_filesystem_avail_bytes",
                   "node_disk_read_bytes_total", "node_network_receive_bytes_total", "node_load1",
                   "node_boot_time_seconds"):
        assert metric in text["Infrastructure/hosts.json"], metric
    containers = text["Infrastructure/containers.json"]
    for metric in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                   "container_start_time_seconds", "container_network_receive_bytes_total"):
        assert metric in containers
    assert boards["Infrastructure/containers.json"]["templating"]["list"][0]["name"] == "host"
    stack = text["Monitoring/stack.json"]
    for metric in ("up{", "scrape_duration_seconds", "prometheus_tsdb_head_series",
                   "prometheus_tsdb_head_samples_appended_total", "prometheus_rule_group_last_duration_seconds",
                   "prometheus_rule_evaluation_failures_total", "alertmanager_notifications_total",
                   "alertmanager_cluster_members"):
        assert metric in stack, metric
    api = boards["Inference/inference-api.json"]
    assert any(p["type"] == "heatmap" and "inference_request_duration_seconds_bucket" in p["targets"][0]["expr"]
               and p["targets"][0]["format"] == "heatmap" for p in all_panels(api))
    exprs = " ".join(t["expr"] for p in all_panels(api) for t in p.get("targets", []))
    for q in ("0.50", "0.95", "0.99"):
        assert f"histogram_quantile({q}" in exprs
    assert "sum by (endpoint, status)" in exprs and 'status=~\\"5..\\"' in json.dumps(exprs)
    model = text["Inference/model-performance.json"]
    for metric in ("inference_predictions_total", "inference_model_info", "inference_prediction_value_bucket"):
        assert metric in model
    drift = boards["Inference/drift.json"]
    annotations = drift["annotations"]["list"]
    tags = [a for a in annotations if a.get("target", {}).get("type") == "tags"]
    assert tags and tags[0]["target"]["tags"] == ["deployment"] and tags[0]["datasource"] == GRAFANA_DS
    prom = [a for a in annotations if a.get("datasource") == PROMETHEUS_DS]
    assert any("deployment_timestamp_seconds" in a["expr"] for a in prom)
    assert any("inference_model_info" in a["expr"] for a in prom)
    assert "inference_drift_detected_total" in text["Inference/drift.json"]
    assert "inference_drift_checked_total" in text["Inference/drift.json"]
    slo = boards["Inference/slo.json"]
    assert [v["name"] for v in slo["templating"]["list"]] == ["environment", "service", "slo"]
    slo_panels = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in all_panels(slo)}
    assert "monstack_slo:error_ratio:slo_window" in slo_panels["Remaining error budget"]
    assert "monstack_slo:window:seconds" in slo_panels["Time to exhaustion at the current burn (1h)"]
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"monstack_slo:error_ratio:rate{window}{{" in slo_panels["Burn rate per window"]


# --------------------------------------------------------------- extraction
def test_extract_queries_finds_every_target_variable_and_annotation():
    queries = dq.extract_queries(DASHBOARDS)
    expected = 0
    for board in rendered_all().values():
        expected += sum(len(p.get("targets", [])) for p in all_panels(board))
        expected += sum(1 for v in board["templating"]["list"] if v["type"] == "query")
        expected += sum(1 for a in board["annotations"]["list"] if a.get("datasource") == PROMETHEUS_DS)
    assert len(queries) == expected
    kinds = {q["kind"] for q in queries}
    assert kinds == {"panel", "variable", "annotation"}
    for q in queries:
        assert set(q) >= {"dashboard", "panel", "expr", "kind", "raw", "uid"}
        # Only Grafana-unknown references ($1, ${1} of label_replace) may remain.
        for ref in re.findall(r"\$\{?(\w+)", q["expr"]):
            assert ref.isdigit(), f"{q['dashboard']}/{q['panel']}: ${ref} not substituted: {q['expr']}"
        assert "[[" not in q["expr"]


def test_variable_queries_become_promql():
    assert dq.variable_query_to_promql("label_values(node_uname_info, instance)") == \
        "group by (instance) (node_uname_info)"
    assert dq.variable_query_to_promql('label_values(up{job="a", x=~"b,c"}, job)') == \
        'group by (job) (up{job="a", x=~"b,c"})'
    assert dq.variable_query_to_promql("label_values(job)") == 'group by (job) ({job!=""})'
    assert dq.variable_query_to_promql("query_result(topk(3, up))") == "topk(3, up)"
    assert dq.variable_query_to_promql("metrics(node_.*)") == 'group by (__name__) ({__name__=~"node_.*"})'
    assert dq.variable_query_to_promql("label_names()") is None


def test_substitution_of_variables_and_builtins():
    board = {"templating": {"list": [
        {"name": "all", "type": "query", "current": {"text": ["All"], "value": ["$__all"]}, "allValue": ".*"},
        {"name": "several", "type": "query", "current": {"value": ["a", "b"]}},
        {"name": "one", "type": "query", "current": {"value": "web-1"}},
        {"name": "custom", "type": "custom", "current": {}, "options": [{"value": "p95"}, {"value": "p99"}]},
        {"name": "text", "type": "textbox", "query": "/predict"},
        {"name": "const", "type": "constant", "query": "node"},
        {"name": "step", "type": "interval", "query": "1m,5m"},
    ]}}
    values = dq.variable_values(board)
    expr = ('rate(x{a=~"$all", b=~"${several}", c="${one:regex}", d="[[custom]]", e=~"$text", job="$const"}'
            '[$step]) + rate(y[$__rate_interval]) + z[$__interval] + increase(w[$__range]) '
            '+ label_replace(v, "t", "$1", "s", "(.+)") + $__range_s')
    assert dq.substitute(expr, values) == (
        'rate(x{a=~".*", b=~".*", c="web-1", d="p95", e=~"/predict", job="node"}[1m]) + rate(y[1m]) + z[1m] '
        '+ increase(w[5m]) + label_replace(v, "t", "$1", "s", "(.+)") + 300')
    # Substring names are not confused: $allx is unknown and stays.
    assert dq.substitute("$allx $all", values) == "$allx .*"


def test_extraction_of_a_dashboard_with_rows_and_other_datasources(tmp_path):
    folder = tmp_path / "Folder"
    folder.mkdir()
    board = {
        "title": "t", "uid": "u",
        "templating": {"list": [{"name": "h", "type": "query", "datasource": PROMETHEUS_DS,
                                 "query": "label_values(up, h)", "current": {"value": "$__all"}}]},
        "annotations": {"list": [
            {"datasource": GRAFANA_DS, "target": {"type": "tags", "tags": ["deployment"]}},
            {"datasource": PROMETHEUS_DS, "expr": 'changes(x{h=~"$h"}[5m]) > 0', "name": "x changed"}]},
        "panels": [
            {"type": "row", "id": 1, "title": "r", "collapsed": True, "panels": [
                {"type": "timeseries", "id": 2, "title": "nested", "datasource": PROMETHEUS_DS,
                 "targets": [{"refId": "A", "expr": 'up{h=~"$h"}'},
                             {"refId": "B", "expr": "hidden", "hide": True}]}]},
            {"type": "table", "id": 3, "title": "loki", "datasource": {"type": "loki", "uid": "l"},
             "targets": [{"refId": "A", "expr": '{job="x"}'}]},
        ]}
    (folder / "d.json").write_text(json.dumps(board))
    queries = dq.extract_queries(tmp_path)
    assert [(q["kind"], q["panel"], q["expr"]) for q in queries] == [
        ("variable", "$h", "group by (h) (up)"),
        ("annotation", "x changed", 'changes(x{h=~".*"}[5m]) > 0'),
        ("panel", "nested", 'up{h=~".*"}'),
    ]
    assert queries[0]["dashboard"] == "Folder/d.json"


def test_cli_list_and_unreachable_prometheus(capsys):
    assert dq.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "Infrastructure/hosts.json/CPU busy" in out
    # A closed loopback port: every query is an error, reported, exit status 1.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert dq.main(["--url", f"http://127.0.0.1:{port}", "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and "connection" in out


# ------------------------------------------------- real Prometheus & exporters
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bytes:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback)
                return resp.read()
        except OSError as err:
            last = err
            time.sleep(0.2)
    raise TimeoutError(f"{url} not answering after {timeout}s: {last}")


class Processes:
    """Start programs in their own process group; stop them all at the end."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.logdir,
                                start_new_session=True)
        proc.log = log
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            proc.log.close()


def histogram(name: str, labels: str, n: int, buckets) -> list[str]:
    """Exposition lines of a histogram whose bucket le holds n * factor observations."""
    sep = "," if labels else ""
    lines = [f'{name}_bucket{{{labels}{sep}le="{le}"}} {n * factor}' for le, factor in buckets]
    total = n * buckets[-1][1]
    return lines + [f"{name}_sum{{{labels}}} {total * 0.2}", f"{name}_count{{{labels}}} {total}"]


class ContractApp(http.server.BaseHTTPRequestHandler):
    """Serves metrics exactly as docs/metrics.md describes them (test data, growing with time)."""

    started = time.time()

    def do_GET(self):  # noqa: N802 (http.server API)
        n = int((time.time() - self.started) * 10) + 1
        body = ("\n".join(self.metrics(n)) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

    def metrics(self, n: int) -> list[str]:
        lines = []
        for endpoint in ("/predict", "/health"):
            lines.append(f'inference_requests_total{{endpoint="{endpoint}",method="POST",status="200"}} {n * 5}')
            lines.append(f'inference_requests_total{{endpoint="{endpoint}",method="POST",status="500"}} {n // 3}')
            for le, factor in (("0.05", 2), ("0.1", 3), ("0.25", 4), ("0.5", 5), ("+Inf", 5)):
                lines.append(f'inference_request_duration_seconds_bucket{{endpoint="{endpoint}",le="{le}"}} '
                             f"{n * factor}")
            lines.append(f'inference_request_duration_seconds_sum{{endpoint="{endpoint}"}} {n * 0.4}')
            lines.append(f'inference_request_duration_seconds_count{{endpoint="{endpoint}"}} {n * 5}')
        lines.append(f'inference_predictions_total{{model_version="v2"}} {n * 4}')
        for le, factor in (("0.25", 1), ("0.5", 2), ("0.75", 3), ("1", 4), ("+Inf", 4)):
            lines.append(f'inference_prediction_value_bucket{{le="{le}"}} {n * factor}')
        lines += [f'inference_predicted_class_total{{predicted_class="positive"}} {n * 3}',
                  f'inference_predicted_class_total{{predicted_class="negative"}} {n}']
        lines += [f"inference_prediction_value_sum {n * 2.0}", f"inference_prediction_value_count {n * 4}",
                  'inference_model_info{model_name="fraud",model_version="v2"} 1',
                  f"inference_drift_checked_total {n * 4}", f"inference_drift_detected_total {n}",
                  'deployment_info{service="fraud-api",environment="test",version="v2"} 1',
                  f'deployment_timestamp_seconds{{service="fraud-api",environment="test"}} {int(self.started)}']
        return lines


class InstrumentatorApp(ContractApp):
    """A FastAPI app with prometheus-fastapi-instrumentator's default metrics (as 8.1.0 writes them)."""

    def metrics(self, n: int) -> list[str]:
        lines = [f'http_requests_total{{handler="/predict",method="GET",status="2xx"}} {n * 5}',
                 f'http_requests_total{{handler="/predict",method="GET",status="5xx"}} {n // 3}',
                 f'http_requests_total{{handler="/metrics",method="GET",status="2xx"}} {n}']
        for handler in ("/predict", "/metrics"):
            lines += histogram("http_request_duration_seconds", f'handler="{handler}",method="GET"', n,
                               (("0.1", 3), ("0.5", 4), ("1.0", 5), ("+Inf", 5)))
        return lines + histogram("http_request_duration_highr_seconds", "", n, (("0.1", 3), ("1.0", 5), ("+Inf", 5)))


class StyleAApp(ContractApp):
    """Hand-written prometheus_client metrics, style A (examples/metric-contracts)."""

    def metrics(self, n: int) -> list[str]:
        return [f'http_requests_total{{method="POST",endpoint="/predict",status="200"}} {n * 5}',
                f'http_requests_total{{method="POST",endpoint="/predict",status="500"}} {n // 3}',
                *histogram("inference_latency_seconds", "", n, (("0.1", 2), ("0.5", 4), ("1.0", 5), ("+Inf", 5))),
                f"prediction_requests_total {n * 4}", f"data_drift_requests_total {n}", "data_drift_ratio 0.25"]


class StyleBApp(ContractApp):
    """Hand-written prometheus_client metrics, style B: http_status, model_info{version}, no route label."""

    def metrics(self, n: int) -> list[str]:
        return [f'api_request_total{{http_status="200"}} {n * 5}', f'api_request_total{{http_status="500"}} {n // 3}',
                *histogram("api_request_duration_seconds", "", n, (("0.1", 2), ("0.5", 4), ("1.0", 5), ("+Inf", 5))),
                f"api_prediction_total {n * 4}", 'model_info{version="2"} 1']


# examples/metric-contracts/<name>.yml -> (service label of its test app, the app)
CONTRACT_APPS = {
    "sample-app": ("fraud-api", ContractApp),
    "fastapi-instrumentator": ("shop", InstrumentatorApp),
    "prometheus-client-style-a": ("churn", StyleAApp),
    "prometheus-client-style-b": ("scoring", StyleBApp),
}


def _start_exporter(procs, job: str, argv: list[str], port: int, timeout: int,
                    exporters: dict, skipped: dict) -> None:
    """Start an exporter binary on 127.0.0.1:port; record its address, or why it is skipped."""
    proc = procs.start(job, argv)
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", timeout, proc)
        exporters[job] = f"127.0.0.1:{port}"
    except (RuntimeError, TimeoutError) as err:
        skipped[job] = f"{job} did not start here: {err}"


def _mirror_file(pattern: str) -> Path | None:
    found = sorted((CACHE / "mirror").glob(pattern))
    return found[-1] if found else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A real Prometheus scraping itself, node_exporter, cAdvisor and a contract-conforming app."""
    prometheus = Path(os.environ.get("PROMETHEUS_BIN", CACHE / "bin" / "prometheus"))
    if not os.access(prometheus, os.X_OK):
        pytest.skip(f"no Prometheus binary at {prometheus} (run scripts/setup.sh, or set PROMETHEUS_BIN)")
    work = tmp_path_factory.mktemp("dashboard-stack")
    procs = Processes(work)
    exporters: dict[str, str] = {}
    skipped: dict[str, str] = {}
    apps = []
    try:
        tarball = _mirror_file("prometheus/node_exporter/releases/download/v*/node_exporter-*.linux-amd64.tar.gz")
        if tarball:
            with tarfile.open(tarball) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith("/node_exporter"))
                member.name = "node_exporter"
                tar.extract(member, work, filter="data")
            port = free_port()
            _start_exporter(procs, "node", [str(work / "node_exporter"), f"--web.listen-address=127.0.0.1:{port}"],
                            port, 20, exporters, skipped)
        else:
            skipped["node"] = "no node_exporter tarball in the artifact mirror"

        # upstream's names: plain "cadvisor" before 0.39, cadvisor-v<ver>-linux-<arch> after
        cadvisor = (_mirror_file("google/cadvisor/releases/download/v*/cadvisor-v*-linux-amd64")
                    or _mirror_file("google/cadvisor/releases/download/v0.3*/cadvisor"))
        if cadvisor:
            shutil.copy(cadvisor, work / "cadvisor")
            (work / "cadvisor").chmod(stat.S_IRWXU)
            port = free_port()
            _start_exporter(procs, "cadvisor", [str(work / "cadvisor"), "--listen_ip=127.0.0.1", f"--port={port}",
                                                "--housekeeping_interval=2s", "--docker_only=false",
                                                "--store_container_labels=false",
                                                "--disable_metrics=advtcp,cpu_topology,disk,hugetlb,memory_numa,"
                                                "percpu,process,referenced_memory,resctrl,sched,tcp,udp"],
                            port, 30, exporters, skipped)
        else:
            skipped["cadvisor"] = "no cAdvisor binary in the artifact mirror"

        services = {}  # service -> address, one app per metric contract
        for service, handler in CONTRACT_APPS.values():
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            apps.append(server)
            services[service] = f"127.0.0.1:{server.server_address[1]}"
        exporters["deployments"] = services["fraud-api"]

        alertmanager = CACHE / "bin" / "alertmanager"
        if os.access(alertmanager, os.X_OK):
            am_port, cluster_port = free_port(), free_port()
            (work / "alertmanager.yml").write_text('route: {receiver: "null"}\nreceivers: [{name: "null"}]\n')
            proc = procs.start("alertmanager", [
                str(alertmanager), f"--config.file={work / 'alertmanager.yml'}",
                f"--storage.path={work / 'alertmanager'}", f"--web.listen-address=127.0.0.1:{am_port}",
                f"--cluster.listen-address=127.0.0.1:{cluster_port}"])
            try:
                wait_http(f"http://127.0.0.1:{am_port}/-/ready", 20, proc)
                exporters["alertmanager"] = f"127.0.0.1:{am_port}"
            except (RuntimeError, TimeoutError) as err:
                log = (work / "alertmanager.log").read_text(errors="replace").splitlines()
                errors = [line for line in log if "level=ERROR" in line] or log[-1:]
                skipped["alertmanager"] = f"Alertmanager did not start here: {err}: {' '.join(errors[:1])}"
        else:
            skipped["alertmanager"] = f"no Alertmanager binary at {alertmanager}"
        blackbox = CACHE / "bin" / "blackbox_exporter"
        if os.access(blackbox, os.X_OK):
            (work / "blackbox.yml").write_text("modules: {http_2xx: {prober: http, timeout: 5s}}\n")
            port = free_port()
            _start_exporter(procs, "blackbox", [str(blackbox), f"--config.file={work / 'blackbox.yml'}",
                                                f"--web.listen-address=127.0.0.1:{port}"], port, 20, exporters, skipped)
        else:
            skipped["blackbox"] = f"no blackbox_exporter binary at {blackbox}"

        # Without a running Alertmanager, Prometheus still sends (and fails) to a closed loopback port,
        # so the notification metrics exist.
        alert_target = exporters.get("alertmanager", f"127.0.0.1:{free_port()}")

        port = free_port()
        (work / "rules.yml").write_text(
            "groups:\n  - name: dashboard-test\n    rules:\n"
            "      - alert: Watchdog\n        expr: vector(1)\n"
            "      - record: test:up:sum\n        expr: sum(up)\n")
        # the SLO rules a deployment record of each contract's app would get (the SLO error budgets
        # dashboard), made from that contract's example file as playbooks/deployments.yml makes them
        slo_files = []
        for name, (service, _app) in sorted(CONTRACT_APPS.items()):
            values = yaml.safe_load((CONTRACTS / f"{name}.yml").read_text())
            contract = slo_rules.check_contract({
                "requests_total": values["prometheus_ml_metrics"]["requests_total"],
                "request_duration_seconds": values["prometheus_ml_metrics"]["request_duration_seconds"],
                "status_label": values["prometheus_ml_labels"]["status"],
                "buckets": values["prometheus_ml_latency_buckets"], "retention": "30d"})
            slos = [{"name": "availability", "objective": 99.9, "window": "30d"},
                    {"name": "fast-predict", "objective": 99, "window": "7d", "threshold_seconds": 0.5}]
            slo_rules.check_against(name, slos, contract)
            slo_files.append(work / f"slo-{service}.yml")
            slo_files[-1].write_text(slo_rules.render_rules(service, "test", slos, contract))
        jobs = [("prometheus", f"127.0.0.1:{port}", {"instance": "mon1", "host": "mon1"})]
        for job in ("node", "cadvisor", "alertmanager"):
            if job in exporters:
                jobs.append((job, exporters[job], {"instance": "mon1", "host": "mon1"}))
        for service, address in services.items():
            jobs.append(("deployments", address, {"service": service, "environment": "test"}))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(work / "rules.yml")] + [str(path) for path in slo_files],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alert_target]}]}]},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target], "labels": labels}
                                                                    for name, target, labels in jobs if name == job]}
                               for job in dict.fromkeys(job for job, _, _ in jobs)],
        }
        if "blackbox" in exporters:  # each app's health check, as the prometheus role's job probes it
            config["scrape_configs"].append({
                "job_name": "deployment_health", "metrics_path": "/probe", "params": {"module": ["http_2xx"]},
                "static_configs": [{"targets": [f"http://{address}/metrics"],
                                    "labels": {"service": service, "environment": "test", "version": "1"}}
                                   for service, address in services.items()],
                "relabel_configs": [{"source_labels": ["__address__"], "target_label": "__param_target"},
                                    {"source_labels": ["__param_target"], "target_label": "instance"},
                                    {"target_label": "__address__", "replacement": exporters["blackbox"]}]})
        (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        proc = procs.start("prometheus", [str(prometheus), f"--config.file={work / 'prometheus.yml'}",
                                          f"--storage.tsdb.path={work / 'data'}",
                                          f"--web.listen-address=127.0.0.1:{port}"])
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready", 30, proc)
        # Wait until every target was scraped at least four times (rate() needs two samples).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = json.loads(urllib.request.urlopen(  # noqa: S310 (loopback)
                f"{url}/api/v1/query?query=min(count_over_time(up%5B1m%5D))", timeout=5).read())
            values = answer["data"]["result"]
            if values and float(values[0]["value"][1]) >= 4:
                break
            time.sleep(0.5)
        else:
            pytest.fail("Prometheus did not scrape the test targets within 30 s")
        yield {"url": url, "exporters": exporters, "skipped": skipped, "work": work}
    finally:
        for app in apps:
            app.shutdown()
            app.server_close()
        procs.stop()


def test_every_dashboard_query_is_accepted_by_prometheus(stack):
    queries = dq.extract_queries(DASHBOARDS)
    results = dq.run_queries(stack["url"], queries)
    errors = [f"{r['dashboard']}/{r['panel']}: {r['error']}\n  {r['expr']}" for r in results if r["status"] != "ok"]
    assert not errors, "\n".join(errors)
    # The checker itself reports a broken query.
    broken = dq.run_queries(stack["url"], [{"expr": "sum(rate(up[5m])"}])[0]
    assert broken["status"] == "error" and "parse" in broken["error"]


# Queries that legitimately return nothing on the test stack, with the reason.
EXPECTED_EMPTY = {
    ("Monitoring/stack.json", "Targets down"): "every target is up",
    ("Inference/drift.json", "Deployments (deployment_info)"): "no deployment within the last 2 minutes",
}
ALERTMANAGER_PANELS = {"Alertmanager configuration", "Alertmanager cluster size", "Notifications by integration",
                       "Cluster members", "Active alerts in Alertmanager"}


@pytest.mark.parametrize("rel", ["Infrastructure/hosts.json", "Monitoring/stack.json", "Inference/inference-api.json",
                                 "Inference/model-performance.json", "Inference/drift.json", "Inference/slo.json"])
def test_dashboard_queries_return_data_from_real_exporters(stack, rel):
    if rel == "Infrastructure/hosts.json" and "node" not in stack["exporters"]:
        pytest.skip(stack["skipped"]["node"])
    queries = [q for q in dq.extract_queries(DASHBOARDS) if q["dashboard"] == rel]
    results = dq.run_queries(stack["url"], queries)
    expected_empty = {panel for dashboard, panel in EXPECTED_EMPTY if dashboard == rel}
    if "alertmanager" not in stack["exporters"]:
        expected_empty |= ALERTMANAGER_PANELS  # reported by test_alertmanager_metric_names_...
    if "blackbox" not in stack["exporters"]:
        expected_empty |= {"Health checks"}  # reported by test_blackbox_metric_names_...
    empty = [f"{r['panel']} [{r['ref_id']}]: {r['expr']}" for r in results
             if r["status"] == "ok" and r["series"] == 0 and r["panel"] not in expected_empty]
    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert all(r["status"] == "ok" for r in results)


def test_container_dashboard_against_real_cadvisor(stack):
    if "cadvisor" not in stack["exporters"]:
        pytest.skip(stack["skipped"]["cadvisor"])
    queries = [q for q in dq.extract_queries(DASHBOARDS) if q["dashboard"] == "Infrastructure/containers.json"]
    results = {q["panel"]: r for q, r in zip(queries, dq.run_queries(stack["url"], queries))}
    assert all(r["status"] == "ok" for r in results.values())
    # Always present for any cgroup tree: the host's totals and the host selector.
    for panel in ("$host", "CPU cores", "Memory"):
        assert results[panel]["series"] > 0, panel


def _exported_names(address: str) -> set[str]:
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()  # noqa: S310
    return {re.match(r"[A-Za-z_:][\w:]*", line).group(0) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_node_metric_names_exist_in_real_node_exporter(stack):
    if "node" not in stack["exporters"]:
        pytest.skip(stack["skipped"]["node"])
    missing = NODE_METRICS - _exported_names(stack["exporters"]["node"])
    assert not missing, f"node_exporter does not export {missing}"


def test_cadvisor_metric_names_exist_in_real_cadvisor(stack):
    if "cadvisor" not in stack["exporters"]:
        pytest.skip(stack["skipped"]["cadvisor"])
    missing = CADVISOR_METRICS - set(CADVISOR_CONDITIONAL) - _exported_names(stack["exporters"]["cadvisor"])
    assert not missing, f"cAdvisor does not export {missing}"


def test_prometheus_metric_names_exist_in_real_prometheus(stack):
    exported = _exported_names(stack["url"].removeprefix("http://"))
    missing = PROMETHEUS_METRICS - exported
    assert not missing, f"Prometheus does not export {missing}"


def test_blackbox_metric_names_exist_in_real_blackbox_exporter(stack):
    if "blackbox" not in stack["exporters"]:
        pytest.skip(stack["skipped"]["blackbox"])
    address = stack["exporters"]["blackbox"]
    text = urllib.request.urlopen(f"http://{address}/probe?module=http_2xx&target={address}/metrics",  # noqa: S310
                                  timeout=10).read().decode()
    missing = {name for name in BLACKBOX_METRICS if not re.search(rf"^{name} 1$", text, re.M)}
    assert not missing, f"blackbox_exporter's probe does not export {missing} (or the probe failed):\n{text}"


def test_alertmanager_metric_names_exist_in_real_alertmanager(stack):
    if "alertmanager" not in stack["exporters"]:
        pytest.skip(stack["skipped"]["alertmanager"])
    missing = ALERTMANAGER_METRICS - _exported_names(stack["exporters"]["alertmanager"])
    assert not missing, f"Alertmanager does not export {missing}"


# ------------------------------------------------------- ML metric contracts
def test_contract_constants_hold_the_grafana_role_defaults():
    """The files' constants are the sample app's contract, as grafana_ml_* default to."""
    import yaml

    defaults = yaml.safe_load(GRAFANA_DEFAULTS.read_text())
    found = 0
    for rel, board in load_all().items():
        text = json.dumps(board)
        for var in board["templating"]["list"]:
            if var["type"] != "constant":
                continue
            kind, key = re.fullmatch(r"ml_(metric|label)_(\w+)", var["name"]).groups()
            assert var["query"] == defaults[f"grafana_ml_{kind}s"][key], f"{rel}: {var['name']}"
            found += 1
        for name in set(re.findall(r"\$\{(ml_\w+)\}", text)):
            assert any(v["name"] == name for v in board["templating"]["list"]), f"{rel}: ${{{name}}} undefined"
        if rel.startswith("Inference/"):
            exprs = [q["raw"] for q in dq.extract_queries(DASHBOARDS) if q["dashboard"] == rel]
            named = {n for expr in exprs for n in metric_names(expr) if n.startswith("inference_")}
            assert not named, f"{rel} names contract metrics directly instead of through constants: {named}"
    assert found == 19


@pytest.mark.parametrize("name", sorted(CONTRACT_APPS))
def test_inference_dashboards_follow_every_contract(stack, name):
    """Set to a contract's example file, the ML dashboards' queries run against the series of
    every contract without error, and on the series of the contract's own app return data."""
    service, _ = CONTRACT_APPS[name]
    metrics, labels = dq.load_contract(CONTRACTS / f"{name}.yml")
    queries = [q for q in dq.extract_queries(DASHBOARDS, metrics, labels) if q["dashboard"].startswith("Inference/")]
    results = dq.run_queries(stack["url"], queries)
    errors = [f"{r['dashboard']}/{r['panel']}: {r['error']}\n  {r['expr']}" for r in results if r["status"] != "ok"]
    assert not errors, "\n".join(errors)

    own = [dict(q, expr=q["expr"].replace('service=~".*"', f'service=~"{service}"')) for q in queries]
    results = dq.run_queries(stack["url"], own)
    empty = [f"{r['dashboard']}/{r['panel']} [{r['ref_id']}]: {r['expr']}" for r in results
             if r["series"] == 0 and r["panel"] != "Deployments (deployment_info)"]
    assert not empty, f"{name}: queries without data:\n" + "\n".join(empty)
    # What the contract lacks is not on the dashboards.
    boards = rendered_all(metrics, labels)
    panels = {rel: [p["title"] for p in all_panels(board) if p["type"] != "row"] for rel, board in boards.items()}
    if not metrics["model_info"] and not metrics["predictions_total"]:
        assert "Current model version" not in panels["Inference/model-performance.json"]
    if not (metrics["drift_ratio"] or metrics["drift_checked_total"]):
        assert panels["Inference/drift.json"] == ["Not in this metric contract"]
    assert "Request rate" in panels["Inference/inference-api.json"]
