"""Alert rules of the prometheus role: render, validate, unit-test.

The rule templates (roles/prometheus/templates/rules/*.rules.yml.j2) are
rendered here the way ansible.builtin.template renders them in the role
(variable delimiters [[ ]], trim_blocks), with the variables of
roles/prometheus/defaults/main/alert_rules.yml. Then:

* `promtool check rules` validates every rendered file, also with extra
  labels, a runbook URL, threshold overrides, remapped metric names and
  empty selectors;
* `promtool test rules` runs the unit tests in tests/rules/*.test.yml, copied
  beside the rendered files (their rule_files name `<group>.rules.yml`);
* structural checks: severity, summary and description of every alert, and
  every alert has a test case in which it fires and one in which it must not.

promtool: $PROMTOOL or /var/cache/monstack/bin/promtool (tools/build_mirror.py);
the tests needing it are skipped when it is missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

from ansible_collections.monstack.stack.plugins.filter import alert_overrides as override_filters
from ansible_collections.monstack.stack.plugins.plugin_utils import alert_overrides

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "prometheus"
TEMPLATES = ROLE / "templates" / "rules"
DEFAULTS = ROLE / "defaults" / "main" / "alert_rules.yml"
RULE_TESTS = REPO / "tests" / "rules"

SEVERITIES = {"critical", "warning", "info"}
# Alerts that fire unconditionally: no test case can expect them silent.
ALWAYS_FIRING = {"Watchdog"}
# The label (or template variable) a description must mention to say what the
# alert is about, when that is not $labels.instance.
IDENTIFIED_BY = {
    "InferenceModelChanged": "$labels.service",  # one alert per service
    "DeploymentTargetsOrphaned": "$labels.shard",  # one alert per shard (none without sharding)
    "Watchdog": "$externalURL",  # no labels: the Prometheus it comes from
    "BatchJobPushStale": "$labels.job",  # a pushed group: the batch job's own name
}

VARIABLES = {
    "prometheus_alert_rule_groups",
    "prometheus_alert_thresholds",
    "prometheus_alert_threshold_overrides",
    "prometheus_alert_overrides",
    "prometheus_ml_metrics",
    "prometheus_ml_labels",
    "prometheus_alert_runbook_url",
    "prometheus_alert_extra_labels",
    "prometheus_alert_ml_job_selector",
    "prometheus_ml_latency_buckets",
    "prometheus_alert_node_job_selector",
    "prometheus_alert_cadvisor_job_selector",
    "prometheus_alert_prometheus_job_selector",
    "prometheus_alert_alertmanager_job_selector",
}
ML_METRIC_KEYS = {
    "requests_total", "request_duration_seconds", "predictions_total",
    "prediction_value", "predicted_class_total", "model_info", "drift_checked_total", "drift_detected_total",
    "drift_ratio",
}
ML_LABEL_KEYS = {"status", "endpoint", "model_name", "model_version", "predicted_class"}

GROUPS = sorted(p.name[: -len(".rules.yml.j2")] for p in TEMPLATES.glob("*.rules.yml.j2"))
TEST_FILES = sorted(RULE_TESTS.glob("*.test.yml"))


# --------------------------------------------------------------------------
# helpers

def find_promtool() -> str | None:
    for candidate in (os.environ.get("PROMTOOL"), "/var/cache/monstack/bin/promtool"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


PROMTOOL = find_promtool()
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found at $PROMTOOL or /var/cache/monstack/bin/promtool "
           "(build it with tools/build_mirror.py)",
)


def combine(*dicts: dict, recursive: bool = False) -> dict:
    """Ansible's combine filter (shallow, or recursive for nested dicts)."""
    out: dict = {}
    for d in dicts:
        for key, value in d.items():
            if recursive and isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = combine(out[key], value, recursive=True)
            else:
                out[key] = value
    return out


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    variable_start_string="[[",
    variable_end_string="]]",
    trim_blocks=True,  # ansible.builtin.template's default
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
ENV.filters["combine"] = combine
# The role's own filters, by the names the templates call them.
ENV.filters["monstack.stack.alert_thresholds"] = override_filters.alert_thresholds
ENV.filters["monstack.stack.alert_overrides"] = override_filters.alert_overrides


def defaults() -> dict:
    return yaml.safe_load(DEFAULTS.read_text())


def render(group: str, **overrides) -> str:
    variables = defaults() | {"ansible_managed": "Ansible managed"} | overrides
    return ENV.get_template(f"{group}.rules.yml.j2").render(**variables)


def render_all(dest: Path, **overrides) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    files = {}
    for group in GROUPS:
        path = dest / f"{group}.rules.yml"
        path.write_text(render(group, **overrides))
        files[group] = path
    return files


def alerts_of(text: str) -> list[dict]:
    doc = yaml.safe_load(text)
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def check_rules(files) -> None:
    result = promtool("check", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Every group rendered with the defaults, as <group>.rules.yml."""
    return render_all(tmp_path_factory.mktemp("rules"))


@pytest.fixture(scope="module")
def alerts(rendered) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for group, path in rendered.items():
        for rule in alerts_of(path.read_text()):
            assert rule["alert"] not in found, f"alert {rule['alert']} defined twice"
            found[rule["alert"]] = rule | {"_group": group}
    return found


def coverage(paths) -> dict[str, dict[str, bool]]:
    """alert name -> {"fires": some case expects it,
                      "silent": some test group expects it at no time}.

    A group whose only exp_alerts: [] is the pending time before the alert
    fires does not count as silent: it must be a case whose input stays
    on the safe side of the threshold (or otherwise must never fire).
    """
    seen: dict[str, dict[str, bool]] = {}
    for path in paths:
        for group in yaml.safe_load(path.read_text())["tests"]:
            fired: dict[str, bool] = {}
            for case in group.get("alert_rule_test") or []:
                name = case["alertname"]
                fired[name] = fired.get(name, False) or bool(case.get("exp_alerts"))
            for name, fires in fired.items():
                entry = seen.setdefault(name, {"fires": False, "silent": False})
                entry["fires" if fires else "silent"] = True
    return seen


@pytest.fixture(scope="module")
def rule_tests() -> dict[str, dict[str, bool]]:
    return coverage(TEST_FILES)


# --------------------------------------------------------------------------
# variables and templates

def test_defaults_define_exactly_the_documented_variables():
    text = DEFAULTS.read_text()
    values = defaults()
    assert set(values) == VARIABLES
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^([a-z_]+):", line)
        if match:
            assert lines[number - 1].startswith("#"), f"{match[1]} has no comment above it"
    assert values["prometheus_alert_threshold_overrides"] == {}
    assert values["prometheus_alert_overrides"] == {}
    assert values["prometheus_alert_runbook_url"] == ""
    assert values["prometheus_alert_extra_labels"] == {}
    assert values["prometheus_alert_rule_groups"] == [
        "ml_inference", "ml_outputs", "availability", "node", "containers", "prometheus",
        "alertmanager", "watchdog", "journal", "backup", "pushgateway"]
    assert sorted(values["prometheus_alert_rule_groups"]) == GROUPS
    assert set(values["prometheus_ml_metrics"]) == ML_METRIC_KEYS
    assert values["prometheus_ml_metrics"]["requests_total"] == "inference_requests_total"
    assert values["prometheus_ml_metrics"]["drift_ratio"] == ""  # the sample app has no drift gauge
    assert values["prometheus_ml_labels"] == {key: key for key in ML_LABEL_KEYS}
    assert values["prometheus_alert_node_job_selector"] == 'job="node"'
    assert values["prometheus_alert_prometheus_job_selector"] == 'job="prometheus"'
    assert values["prometheus_alert_alertmanager_job_selector"] == 'job="alertmanager"'
    assert values["prometheus_alert_cadvisor_job_selector"].startswith('job="cadvisor"')


def test_metric_names_follow_the_contract():
    """docs/metrics.md lists the metric names the defaults must use."""
    documented = set(re.findall(r"`(inference_[a-z_]+)`", (REPO / "docs" / "metrics.md").read_text()))
    assert set(defaults()["prometheus_ml_metrics"].values()) - {""} <= documented


def test_every_threshold_is_documented_and_used():
    lines = DEFAULTS.read_text().splitlines()
    start = lines.index("prometheus_alert_thresholds:")
    block = []
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break
        block.append(line)
    used = set()
    for template in TEMPLATES.glob("*.rules.yml.j2"):
        used |= set(re.findall(r"\bt\.([a-z0-9_]+)", template.read_text()))
    thresholds = defaults()["prometheus_alert_thresholds"]
    assert used <= set(thresholds), f"undefined thresholds: {used - set(thresholds)}"
    assert set(thresholds) <= used, f"thresholds no rule uses: {set(thresholds) - used}"
    # Each run of keys starts below a comment.
    for number, line in enumerate(block):
        if re.match(r"^  [a-z0-9_]+:", line):
            previous = number - 1
            while previous >= 0 and re.match(r"^  [a-z0-9_]+:", block[previous]):
                previous -= 1
            assert previous >= 0 and block[previous].strip().startswith("#"), \
                f"threshold {line.strip()} has no comment"


@pytest.mark.parametrize("group", GROUPS)
def test_template_header_and_group_name(group):
    source = (TEMPLATES / f"{group}.rules.yml.j2").read_text()
    assert source.startswith("# [[ ansible_managed ]]\n")
    text = render(group)
    assert text.startswith("# Ansible managed\n")
    doc = yaml.safe_load(text)
    assert [g["name"] for g in doc["groups"]] == [group]
    assert alerts_of(text), f"group {group} has no alert"
    assert "[[" not in text and "]]" not in text, "unrendered Ansible variable"


def test_alert_names_are_unique_and_camel_case(alerts):
    assert len(alerts) >= 25
    for name in alerts:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name


def test_every_alert_is_well_formed(alerts):
    for name, rule in alerts.items():
        labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, f"{name}: severity {labels.get('severity')}"
        assert set(labels) == {"severity"}, f"{name}: labels {labels} without extra labels"
        assert set(annotations) == {"summary", "description"}, f"{name}: {annotations}"
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        identifier = IDENTIFIED_BY.get(name, "$labels.instance")
        assert identifier in annotations["description"], f"{name}: description lacks {identifier}"
        assert "\n" not in annotations["description"], f"{name}: description spans lines"


# --------------------------------------------------------------------------
# the tests cover every alert

def test_every_alert_fires_in_a_test(alerts, rule_tests):
    missing = sorted(name for name in alerts if not rule_tests.get(name, {}).get("fires"))
    assert not missing, f"no test case in which these alerts fire: {missing}"


def test_every_alert_has_a_case_where_it_must_not_fire(alerts, rule_tests):
    missing = sorted(name for name in alerts
                     if name not in ALWAYS_FIRING and not rule_tests.get(name, {}).get("silent"))
    assert not missing, f"no test group in which these must not fire (exp_alerts: []): {missing}"


def test_tests_name_existing_alerts_and_rule_files(alerts, rule_tests):
    assert not set(rule_tests) - set(alerts), f"tests of unknown alerts: {set(rule_tests) - set(alerts)}"
    for path in TEST_FILES:
        for rule_file in yaml.safe_load(path.read_text())["rule_files"]:
            assert rule_file in {f"{g}.rules.yml" for g in GROUPS}, f"{path.name}: {rule_file}"


# --------------------------------------------------------------------------
# promtool

@needs_promtool
def test_promtool_check_rules(rendered):
    check_rules(rendered.values())


@needs_promtool
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(rendered, test_file):
    directory = next(iter(rendered.values())).parent
    shutil.copy(test_file, directory / test_file.name)
    result = promtool("test", "rules", test_file.name, cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------
# variables change the rendered rules

# Per-alert overrides of the customised rules (also rendered by Ansible below).
CUSTOM_OVERRIDES = {"NodeClockSkew": {"enabled": False},
                    "TargetDown": {"for": "7m", "severity": "critical", "labels": {"team": "ops", "pager": "yes"}},
                    "InferenceHighLatency": {"thresholds": {"ml_latency_seconds": 2, "rate_window": "10m"}}}


@pytest.fixture(scope="module")
def customised(tmp_path_factory) -> dict[str, Path]:
    return render_all(
        tmp_path_factory.mktemp("custom"),
        prometheus_alert_runbook_url="https://runbooks.example.com/alerts/",
        prometheus_alert_extra_labels={"team": "ops", "env": 'prod "eu" <1>', "severity": "page"},
        prometheus_alert_overrides=CUSTOM_OVERRIDES,
    )


def test_runbook_url_and_extra_labels(customised):
    count = 0
    for path in customised.values():
        for rule in alerts_of(path.read_text()):
            count += 1
            name = rule["alert"]
            assert rule["annotations"]["runbook_url"] == \
                "https://runbooks.example.com/alerts/" + name.lower()
            assert rule["labels"]["team"] == "ops"
            assert rule["labels"]["env"] == 'prod "eu" <1>'
            assert rule["labels"]["severity"] in SEVERITIES, "extra labels must not override severity"
    assert count >= 25
    rules = {rule["alert"]: rule for path in customised.values() for rule in alerts_of(path.read_text())}
    assert "NodeClockSkew" not in rules
    assert rules["TargetDown"]["for"] == "7m" and rules["TargetDown"]["labels"]["pager"] == "yes"
    assert rules["TargetDown"]["labels"]["severity"] == "critical"
    assert rules["InferenceHighLatency"]["expr"].endswith("> 2") and "[ 10m ]" in rules["InferenceHighLatency"]["expr"]
    assert "[ 5m ]" in rules["InferenceHighErrorRate"]["expr"], "a threshold override is the alert's own"


@needs_promtool
def test_promtool_accepts_customised_rules(customised):
    check_rules(customised.values())


MACROS_IMPORT = "{% from 'rule_macros.j2' import extra_labels, runbook with context %}\n"


@pytest.mark.parametrize("group", GROUPS)
def test_templates_import_the_shared_macros(group):
    source = (TEMPLATES / f"{group}.rules.yml.j2").read_text()
    assert MACROS_IMPORT in source
    assert "{% macro" not in source, "macros shared by the rule templates belong in rule_macros.j2"


def test_ansible_template_renders_like_these_tests(tmp_path, customised):
    """The role's template task ([[ ]] delimiters, rule_macros.j2 found beside the template)
    writes what the tests check."""
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    if not ansible_playbook.exists():
        pytest.skip("ansible-playbook not installed beside this Python")
    extra = {"prometheus_alert_runbook_url": "https://runbooks.example.com/alerts/",
             "prometheus_alert_extra_labels": {"team": "ops", "env": 'prod "eu" <1>', "severity": "page"},
             "prometheus_alert_overrides": CUSTOM_OVERRIDES,
             "ansible_python_interpreter": sys.executable}
    (tmp_path / "play.yml").write_text(f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Defaults of the rules
      ansible.builtin.include_vars: {DEFAULTS}
    - name: Render as roles/prometheus/tasks does
      ansible.builtin.template:
        src: "{TEMPLATES}/{{{{ item }}}}.rules.yml.j2"
        dest: "{tmp_path}/{{{{ item }}}}.rules.yml"
        variable_start_string: "[["
        variable_end_string: "]]"
        mode: "0644"
      loop: {json.dumps(GROUPS)}
""")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"))
    env.pop("ANSIBLE_CONFIG", None)
    result = subprocess.run([str(ansible_playbook), "-i", "localhost,", "-c", "local", "-e", json.dumps(extra),
                             "play.yml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    for group in GROUPS:
        written = (tmp_path / f"{group}.rules.yml").read_text().split("\n", 1)[1]
        assert written == customised[group].read_text().split("\n", 1)[1], group


def test_threshold_overrides_change_the_rules():
    overrides = {"node_fs_full_percent": 85, "node_fs_full_for": "30m", "ml_latency_seconds": 1.5}
    default_node = {r["alert"]: r for r in alerts_of(render("node"))}
    node = {r["alert"]: r for r in alerts_of(render("node", prometheus_alert_threshold_overrides=overrides))}
    rule = node["NodeFilesystemAlmostOutOfSpace"]
    assert "> 85" in rule["expr"] and "> 90" not in rule["expr"]
    assert "> 90" in default_node["NodeFilesystemAlmostOutOfSpace"]["expr"]
    assert rule["for"] == "30m" and default_node["NodeFilesystemAlmostOutOfSpace"]["for"] == "10m"
    assert "threshold 85%" in rule["annotations"]["description"]
    # Keys not overridden keep their defaults.
    assert node["NodeCPUHighUsage"] == default_node["NodeCPUHighUsage"]
    ml = {r["alert"]: r for r in alerts_of(render("ml_inference", prometheus_alert_threshold_overrides=overrides))}
    assert ml["InferenceHighLatency"]["expr"].endswith("> 1.5")
    assert "1.5s" in ml["InferenceHighLatency"]["annotations"]["description"]


def test_ml_metric_names_can_be_remapped(tmp_path):
    names = {key: f"svc_{key}" for key in ML_METRIC_KEYS}
    text = render("ml_inference", prometheus_ml_metrics=names)
    assert "inference_" not in text.replace("ml_inference", "")
    for key in ML_METRIC_KEYS:  # every name is in InferenceMetricsMissing at least
        assert f"svc_{key}" in text, key
    assert "svc_request_duration_seconds_bucket{" in text
    if PROMTOOL:
        path = tmp_path / "ml_inference.rules.yml"
        path.write_text(text)
        check_rules([path])


def test_selectors_are_used_and_may_be_empty(tmp_path):
    selectors = {
        "prometheus_alert_ml_job_selector": 'job="ml"',
        "prometheus_alert_node_job_selector": 'job="hosts"',
        "prometheus_alert_cadvisor_job_selector": 'job="containers",id=~"/system.slice/.+"',
        "prometheus_alert_prometheus_job_selector": 'job="prom"',
        "prometheus_alert_alertmanager_job_selector": 'job="am"',
    }
    expected = {"ml_inference": 'job="ml"', "node": 'job="hosts"', "containers": 'job="containers"',
                "prometheus": 'job="prom"', "alertmanager": 'job="am"'}
    for group, selector in expected.items():
        for rule in alerts_of(render(group, **selectors)):
            assert selector in rule["expr"], f"{rule['alert']} ignores its selector"
    empty = {name: "" for name in selectors}
    files = render_all(tmp_path, **empty)
    if PROMTOOL:
        check_rules(files.values())


# --------------------------------------------------------------------------
# metric contracts: examples/metric-contracts/<name>.yml, each with promtool
# tests of its own (tests/rules/contracts/<name>.test.yml; the sample app's
# contract, the defaults, is tested by tests/rules/ml_inference.test.yml)

CONTRACT_DIR = REPO / "examples" / "metric-contracts"
CONTRACT_TESTS = RULE_TESTS / "contracts"
DEFAULT_CONTRACT = "sample-app"
CONTRACT_VARIABLES = {"prometheus_ml_metrics", "prometheus_ml_labels", "grafana_ml_metrics", "grafana_ml_labels",
                      "prometheus_ml_latency_buckets"}  # the buckets: latency SLOs of deployment records
CONTRACTS = sorted(p.stem for p in CONTRACT_DIR.glob("*.yml"))
# Variants no example file holds, tested too: name -> (example, metric names changed).
VARIANTS = {
    "prometheus-client-style-a-drift-gauge": (
        "prometheus-client-style-a", {"drift_checked_total": "", "drift_detected_total": ""}),
}
ML_ALERTS = ["InferenceHighLatency", "InferenceHighErrorRate", "InferenceDataDrift",
             "InferenceNoPredictions", "InferenceModelChanged", "InferenceMetricsMissing"]


def contract(name: str) -> dict:
    """The variables of a contract (example file, or variant of one)."""
    if name in VARIANTS:
        base, changes = VARIANTS[name]
        values = contract(base)
        values["prometheus_ml_metrics"] = values["prometheus_ml_metrics"] | changes
        return values
    return yaml.safe_load((CONTRACT_DIR / f"{name}.yml").read_text())


def contract_test_file(name: str) -> Path:
    return RULE_TESTS / "ml_inference.test.yml" if name == DEFAULT_CONTRACT else CONTRACT_TESTS / f"{name}.test.yml"


def render_contract(name: str) -> str:
    values = contract(name)
    return render("ml_inference", prometheus_ml_metrics=values["prometheus_ml_metrics"],
                  prometheus_ml_labels=values["prometheus_ml_labels"])


def documented_alerts() -> dict[str, set[str]]:
    """contract -> alerts, from the table in README.md's "ML metric contracts" section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### ML metric contracts"):]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| alert |"))
    rows = [line for line in lines[start:] if line.startswith("|")]
    header = [cell.strip(" `") for cell in rows[0].strip("|").split("|")]
    table: dict[str, set[str]] = {name: set() for name in header[1:]}
    for row in rows[2:]:
        cells = [cell.strip(" `") for cell in row.strip("|").split("|")]
        if cells[0] not in ML_ALERTS:
            break
        for name, cell in zip(header[1:], cells[1:]):
            if cell == "yes":
                table[name].add(cells[0])
    return table


def test_the_four_contracts_of_issue_17_have_example_files():
    assert DEFAULT_CONTRACT in CONTRACTS
    assert len(CONTRACTS) == 4
    assert any("instrumentator" in name for name in CONTRACTS)


@pytest.mark.parametrize("name", CONTRACTS)
def test_contract_file_sets_both_roles_alike(name):
    values = contract(name)
    assert set(values) == CONTRACT_VARIABLES
    assert values["grafana_ml_metrics"] == values["prometheus_ml_metrics"]
    assert values["grafana_ml_labels"] == values["prometheus_ml_labels"]
    assert set(values["prometheus_ml_metrics"]) == ML_METRIC_KEYS
    assert set(values["prometheus_ml_labels"]) == ML_LABEL_KEYS
    for value in [*values["prometheus_ml_metrics"].values(), *values["prometheus_ml_labels"].values()]:
        assert value == "" or re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", value), value


def test_sample_app_contract_is_the_default():
    values = contract(DEFAULT_CONTRACT)
    assert values["prometheus_ml_metrics"] == defaults()["prometheus_ml_metrics"]
    assert values["prometheus_ml_labels"] == defaults()["prometheus_ml_labels"]


def test_every_contract_test_file_belongs_to_a_contract():
    files = {p.name[: -len(".test.yml")] for p in CONTRACT_TESTS.glob("*.test.yml")}
    assert files == (set(CONTRACTS) - {DEFAULT_CONTRACT}) | set(VARIANTS)


@pytest.mark.parametrize("name", CONTRACTS + sorted(VARIANTS))
def test_contract_alerts_are_tested_both_ways(name):
    rules = alerts_of(render_contract(name))
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    if name in VARIANTS:  # only the alerts the variant changes; the example's tests cover the rest
        base = alerts_of(render_contract(VARIANTS[name][0]))
        names = [rule["alert"] for rule in rules if rule not in base]
        assert names
    seen = coverage([contract_test_file(name)])
    assert set(seen) <= set(names), f"tests of alerts the contract does not have: {set(seen) - set(names)}"
    for alert in names:
        assert seen.get(alert, {}).get("fires"), f"{name}: no case in which {alert} fires"
        assert seen.get(alert, {}).get("silent"), f"{name}: no case in which {alert} stays silent"


@pytest.mark.parametrize("name", CONTRACTS)
def test_readme_and_example_say_which_alerts_a_contract_gets(name):
    names = {rule["alert"] for rule in alerts_of(render_contract(name))}
    assert documented_alerts()[name] == names, "README.md, section ML metric contracts"
    header = (CONTRACT_DIR / f"{name}.yml").read_text().split("\n# Alerts:", 1)[1].split("\nprometheus_", 1)[0]
    assert set(re.findall(r"Inference[A-Za-z]+", header)) == names, f"{name}.yml, comment '# Alerts:'"


def test_alerts_of_the_contracts():
    """What each contract lacks leaves its alerts out, rather than never firing."""
    got = {name: [rule["alert"] for rule in alerts_of(render_contract(name))] for name in CONTRACTS + list(VARIANTS)}
    assert got["sample-app"] == ML_ALERTS
    assert got["fastapi-instrumentator"] == ["InferenceHighLatency", "InferenceHighErrorRate", "InferenceMetricsMissing"]
    assert got["prometheus-client-style-a"] == [a for a in ML_ALERTS if a != "InferenceModelChanged"]
    assert got["prometheus-client-style-b"] == [a for a in ML_ALERTS if a != "InferenceDataDrift"]
    assert got["prometheus-client-style-a-drift-gauge"] == got["prometheus-client-style-a"]
    style_b = {rule["alert"]: rule for rule in alerts_of(render_contract("prometheus-client-style-b"))}
    assert 'http_status=~"5.."' in style_b["InferenceHighErrorRate"]["expr"]
    assert "by (job, environment, service, version)" in style_b["InferenceModelChanged"]["expr"]
    assert "model_name" not in json.dumps(style_b)


def test_missing_keys_and_no_metrics_at_all(tmp_path):
    """A partial mapping: missing names count as empty; nothing at all: an empty group."""
    partial = alerts_of(render("ml_inference", prometheus_ml_metrics={"requests_total": "x_total"},
                               prometheus_ml_labels={"status": "code"}))
    assert [rule["alert"] for rule in partial] == ["InferenceHighErrorRate", "InferenceMetricsMissing"]
    assert 'code=~"5.."' in partial[0]["expr"]
    empty = render("ml_inference", prometheus_ml_metrics={}, prometheus_ml_labels={})
    assert yaml.safe_load(empty)["groups"] == [{"name": "ml_inference", "rules": []}]
    no_status = render("ml_inference", prometheus_ml_labels={"status": ""})
    assert "InferenceHighErrorRate" not in no_status
    if PROMTOOL:
        for number, text in enumerate((empty, no_status)):
            path = tmp_path / f"{number}.rules.yml"
            path.write_text(text)
            check_rules([path])


@needs_promtool
@pytest.mark.parametrize("name", CONTRACTS + sorted(VARIANTS))
def test_promtool_test_rules_per_contract(tmp_path, name):
    (tmp_path / "ml_inference.rules.yml").write_text(render_contract(name))
    check_rules([tmp_path / "ml_inference.rules.yml"])
    shutil.copy(contract_test_file(name), tmp_path / "contract.test.yml")
    result = promtool("test", "rules", "contract.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------
# style of the YAML files that are linted (the templates are not)

def test_yaml_files_pass_yamllint():
    pytest.importorskip("yamllint")
    files = [str(DEFAULTS), *map(str, TEST_FILES), *map(str, CONTRACT_TESTS.glob("*.test.yml")),
             *map(str, CONTRACT_DIR.glob("*.yml"))]
    result = subprocess.run([sys.executable, "-m", "yamllint", "-s", *files],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------
# per-alert overrides (prometheus_alert_overrides, plugins/plugin_utils/alert_overrides.py)

def shipped_catalogue() -> dict:
    return alert_overrides.catalogue({g: (TEMPLATES / f"{g}.rules.yml.j2").read_text() for g in GROUPS})


def test_catalogue_names_every_shipped_alert_and_its_thresholds(alerts):
    found = shipped_catalogue()
    assert set(found) == set(alerts)
    assert all(found[name]["group"] == alerts[name]["_group"] for name in found)
    assert found["TargetDown"]["thresholds"] == ["target_down_for"]
    assert {"ml_latency_seconds", "ml_latency_quantile", "rate_window"} <= set(
        found["InferenceHighLatency"]["thresholds"])
    # every threshold belongs to some alert
    assert set().union(*(set(a["thresholds"]) for a in found.values())) == set(defaults()["prometheus_alert_thresholds"])


def test_catalogue_refuses_a_rule_without_its_marker():
    text = "{% set t = thresholds | monstack.stack.alert_thresholds(prometheus_alert_overrides, 'A') %}\n" \
           "      - alert: A\n      - alert: B\n"
    with pytest.raises(alert_overrides.AlertOverrideError, match="every rule must start"):
        alert_overrides.catalogue({"g": text})


BAD_OVERRIDES = [
    # (override, fragment of the message)
    ({"TargetDwn": {"for": "5m"}}, "prometheus_alert_overrides.TargetDwn: no shipped alert has this name"),
    ({"targetdown": {"for": "5m"}}, "did you mean TargetDown?"),
    ({"TargetDown": {"fro": "5m"}}, "prometheus_alert_overrides.TargetDown.fro: unknown field"),
    ({"TargetDown": "off"}, "prometheus_alert_overrides.TargetDown: must be a mapping"),
    ({"TargetDown": {"enabled": "no"}}, "TargetDown.enabled: must be true or false"),
    ({"TargetDown": {"for": "5 minutes"}}, "TargetDown.for: must be a Prometheus duration"),
    ({"TargetDown": {"for": 300}}, "TargetDown.for: must be a Prometheus duration"),
    ({"TargetDown": {"severity": ""}}, "TargetDown.severity: must be a non-empty string"),
    ({"TargetDown": {"severity": ["critical"]}}, "TargetDown.severity: must be a non-empty string"),
    ({"TargetDown": {"labels": ["team"]}}, "TargetDown.labels: must be a mapping"),
    ({"TargetDown": {"labels": {"bad-name": "x"}}}, "TargetDown.labels.bad-name: not a valid label name"),
    ({"TargetDown": {"labels": {"__meta": "x"}}}, "TargetDown.labels.__meta: not a valid label name"),
    ({"TargetDown": {"labels": {"severity": "page"}}}, "TargetDown.labels.severity: set by the rule itself"),
    ({"TargetDown": {"labels": {"alertname": "X"}}}, "TargetDown.labels.alertname: set by the rule itself"),
    ({"TargetDown": {"labels": {"team": {"a": 1}}}}, "TargetDown.labels.team: the value must be a string or number"),
    ({"TargetDown": {"labels": {"team": "x" * 2000}}}, "TargetDown.labels.team: the value must be"),
    ({"TargetDown": {"labels": {f"l{i}": "x" for i in range(40)}}}, "TargetDown.labels: at most 32 labels"),
    ({"TargetDown": {"thresholds": {"ml_latency_seconds": 1}}},
     "TargetDown.thresholds.ml_latency_seconds: this alert's rule uses no such threshold; it uses target_down_for"),
    ({"TargetDown": {"thresholds": {"target_down_for": 5}}}, "TargetDown.thresholds.target_down_for: must be a "
                                                              "Prometheus duration"),
    ({"InferenceHighLatency": {"thresholds": {"ml_latency_seconds": "1s"}}},
     "InferenceHighLatency.thresholds.ml_latency_seconds: must be a number"),
    ({"InferenceHighLatency": {"thresholds": {"ml_latency_seconds": True}}},
     "InferenceHighLatency.thresholds.ml_latency_seconds: must be a number"),
    ({"InferenceHighLatency": {"thresholds": "fast"}}, "InferenceHighLatency.thresholds: must be a mapping"),
    (["TargetDown"], "prometheus_alert_overrides: must be a mapping of alert name"),
]


@pytest.mark.parametrize("overrides, message", BAD_OVERRIDES, ids=[m for _, m in BAD_OVERRIDES])
def test_bad_overrides_are_refused_with_the_alert_and_field(overrides, message):
    found = alert_overrides.problems(overrides, shipped_catalogue(), defaults()["prometheus_alert_thresholds"])
    assert len(found) == 1 and message in found[0], found


def test_good_overrides_have_no_problem():
    good = {"TargetDown": {"enabled": True, "for": "1h30m", "severity": "page", "labels": {"team": "ops", "n": 3}},
            "Watchdog": {"enabled": False},
            "InferenceHighLatency": {"thresholds": {"ml_latency_seconds": 2, "rate_window": "10m"}}}
    assert alert_overrides.problems(good, shipped_catalogue(), defaults()["prometheus_alert_thresholds"]) == []
    assert alert_overrides.problems({}, shipped_catalogue()) == []


def test_a_bad_override_fails_the_rendering_too():
    with pytest.raises(Exception, match=r"TargetDown\.for: must be a Prometheus duration"):
        render("availability", prometheus_alert_overrides={"TargetDown": {"for": "soon"}})
    with pytest.raises(Exception, match=r"InferenceHighLatency\.thresholds\.ml_latency_seconds: must be a number"):
        render("ml_inference", prometheus_alert_overrides={"InferenceHighLatency": {
            "thresholds": {"ml_latency_seconds": "slow"}}})


def test_a_group_without_overridden_alerts_is_left_byte_for_byte():
    overrides = {"TargetDown": {"enabled": False}}
    for group in GROUPS:
        if group != "availability":
            assert render(group, prometheus_alert_overrides=overrides) == render(group), group
    assert "TargetDown" not in [r["alert"] for r in alerts_of(render("availability", prometheus_alert_overrides=overrides))]


@needs_promtool
def test_all_alerts_of_a_group_disabled(tmp_path):
    path = tmp_path / "watchdog.rules.yml"
    path.write_text(render("watchdog", prometheus_alert_overrides={"Watchdog": {"enabled": False}}))
    assert yaml.safe_load(path.read_text())["groups"][0]["rules"] == []
    check_rules([path])


@needs_promtool
def test_shipped_promtool_tests_pass_on_rewritten_rules(tmp_path, alerts):
    """Every rule file goes through the rewriting (each alert's `for` and severity set to what they were):
    the rewritten files must behave exactly as the shipped ones in every shipped test."""
    overrides = {name: dict({"severity": rule["labels"]["severity"]}, **({"for": rule["for"]} if "for" in rule else {}))
                 for name, rule in alerts.items()}
    files = render_all(tmp_path, prometheus_alert_overrides=overrides)
    for path in files.values():
        assert path.read_text().count("# Changed by prometheus_alert_overrides.") == 1, path
    check_rules(files.values())
    for test_file in TEST_FILES:
        shutil.copy(test_file, tmp_path / test_file.name)
        result = promtool("test", "rules", test_file.name, cwd=tmp_path)
        assert result.returncode == 0, test_file.name + result.stdout + result.stderr


OVERRIDE_TEST = """
rule_files: [availability.rules.yml]
evaluation_interval: 1m
tests:
  # h1 is down from 2m on: with the shipped `for` (2m) TargetDown fires at
  # 4m; overridden to 10m, it must not fire before 12m.
  - interval: 1m
    input_series:
      - series: 'up{job="node",instance="h1:9100"}'
        values: '1 1 0x20'
    alert_rule_test:
      - {eval_time: 4m, alertname: TargetDown, exp_alerts: []}
      - {eval_time: 11m, alertname: TargetDown, exp_alerts: []}
      - eval_time: 12m
        alertname: TargetDown
        exp_alerts:
          - exp_labels: {severity: critical, team: ops, job: node, instance: "h1:9100"}
            exp_annotations:
              summary: Target h1:9100 of job node is down
              description: Prometheus failed to scrape h1:9100 (job node) for more than 10m.
"""


@needs_promtool
@pytest.mark.parametrize("how", ["for", "thresholds"])
def test_promtool_respects_an_overridden_for(tmp_path, how):
    """`for` set directly keeps the shipped description (it names the threshold, 2m); set
    through the rule's threshold target_down_for the description follows."""
    change = {"for": "10m"} if how == "for" else {"thresholds": {"target_down_for": "10m"}}
    change.update(severity="critical", labels={"team": "ops"})
    (tmp_path / "availability.rules.yml").write_text(
        render("availability", prometheus_alert_overrides={"TargetDown": change}))
    test = OVERRIDE_TEST if how == "thresholds" else OVERRIDE_TEST.replace("more than 10m.", "more than 2m.")
    (tmp_path / "override.test.yml").write_text(test)
    result = promtool("test", "rules", "override.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # and the shipped test of TargetDown now fails: the override is what made the difference
    shutil.copy(RULE_TESTS / "availability.test.yml", tmp_path / "availability.test.yml")
    assert promtool("test", "rules", "availability.test.yml", cwd=tmp_path).returncode != 0
