"""The version matrix (issue 27): every role's configuration, rendered for both ends of the
supported range, passes that version's own checker.

The roles' defaults and vars render, through ansible-playbook as the roles do, for an HA pair of
Prometheus servers with their blackbox_exporter, a two-member Alertmanager cluster and
node_exporter, once per version at each end of plugins/module_utils/versions.py's MATRIX:
prometheus.yml with the alert rules (promtool check config, which reads the rules too),
alertmanager.yml (amtool check-config), blackbox.yml (blackbox_exporter --config.check) and every
server's flags (the binary parses them: `<binary> <flags> --version` fails on a flag it does not
know). The binaries are that version's own, unpacked from the artifact mirror
($MONSTACK_CACHE/mirror, tools/build_mirror.py); a version missing there is skipped with the reason.
The table itself and the preflight's messages are tested without binaries.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from helpers import ansible_playbook

from ansible_collections.monstack.stack.plugins.module_utils import versions
from ansible_collections.monstack.stack.plugins.plugin_utils import component as logic
from ansible_collections.monstack.stack.plugins.plugin_utils import preflight_roles

REPO = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack")) / "mirror"
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
ENDS = [(name, version) for name, row in sorted(versions.MATRIX.items()) for version in row[:2]]
BINARIES = {"prometheus": ["prometheus", "promtool"], "alertmanager": ["alertmanager", "amtool"],
            "node_exporter": ["node_exporter"], "blackbox_exporter": ["blackbox_exporter"]}


def _release(tmp_factory, name: str, version: str) -> Path:
    """That release's binaries, unpacked from the mirror into a directory of their own."""
    archive = MIRROR / f"prometheus/{name}/releases/download/v{version}/{name}-{version}.linux-amd64.tar.gz"
    if not archive.exists():
        pytest.skip(f"{name} {version} is not in the artifact mirror ({archive}); run tools/build_mirror.py")
    dest = tmp_factory.mktemp(f"{name}-{version}")
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and Path(member.name).name in BINARIES[name]:
                target = dest / Path(member.name).name
                with tar.extractfile(member) as src:
                    target.write_bytes(src.read())
                target.chmod(0o755)
    out = subprocess.run([str(dest / name), "--version"], capture_output=True, text=True, timeout=30)
    assert version in out.stdout + out.stderr, f"{archive} holds {out.stdout + out.stderr!r}, not {version}"
    return dest


def _render(tmp: Path, versions_by_role: dict) -> Path:
    """Render every role's configuration and flags for these versions into tmp/out."""
    out = tmp / "out"
    (out / "rules").mkdir(parents=True)
    host = {**LOCAL, "monstack_scrape_address": "127.0.0.1"}
    inventory = {"all": {"hosts": {"node1": host}, "children": {
        "prometheus": {"hosts": {"prom1": host, "prom2": host}},
        "alertmanager": {"hosts": {"am1": host, "am2": host}},
        "grafana": {"hosts": {}}}}}
    (tmp / "group_vars").mkdir()
    defaults = {}
    for name in ("alertmanager", "node_exporter", "blackbox_exporter", "cadvisor"):
        defaults.update(yaml.safe_load((REPO / "roles" / name / "defaults/main.yml").read_text()))
    for name in ("main", "alert_rules"):
        defaults.update(yaml.safe_load((REPO / f"roles/prometheus/defaults/main/{name}.yml").read_text()))
    (tmp / "group_vars" / "all.yml").write_text(yaml.safe_dump(defaults))
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))

    def dump(what: str, dest: str) -> dict:
        return {"name": dest, "ansible.builtin.copy": {"content": "{{ %s | to_json }}" % what,
                                                       "dest": str(out / dest), "mode": "0600"}}

    rules = sorted(p.name[:-len(".rules.yml.j2")] for p in (REPO / "roles/prometheus/templates/rules").glob(
        "*.rules.yml.j2"))
    plays = [{
        "name": "Prometheus", "hosts": "prom1", "gather_facts": False,
        "vars_files": [str(REPO / "roles/prometheus/vars/main.yml")],
        "tasks": [{"name": "prometheus.yml", "ansible.builtin.template": {
                      "src": str(REPO / "roles/prometheus/templates/prometheus.yml.j2"),
                      "dest": str(out / "prometheus.yml"), "mode": "0600"}},
                  {"name": "rules", "loop": rules, "ansible.builtin.template": {
                      "src": str(REPO / "roles/prometheus/templates/rules") + "/{{ item }}.rules.yml.j2",
                      "dest": str(out / "rules") + "/{{ item }}.yml", "mode": "0600",
                      "variable_start_string": "[[", "variable_end_string": "]]"}},
                  dump("prometheus_flags", "prometheus_flags.json")]}, {
        "name": "blackbox_exporter", "hosts": "prom1", "gather_facts": False,
        "vars_files": [str(REPO / "roles/blackbox_exporter/vars/main.yml")],
        "tasks": [dump("blackbox_exporter_file_sets.config.files['blackbox.yml']", "blackbox.json"),
                  dump("blackbox_exporter_flags", "blackbox_exporter_flags.json")]}, {
        "name": "node_exporter", "hosts": "node1", "gather_facts": False,
        "vars_files": [str(REPO / "roles/node_exporter/vars/main.yml")],
        "tasks": [dump("node_exporter_flags", "node_exporter_flags.json")]}, {
        "name": "Alertmanager", "hosts": "am1", "gather_facts": False,
        "vars_files": [str(REPO / "roles/alertmanager/vars/main.yml")],
        "tasks": [{"name": "Advertise address", "ansible.builtin.set_fact": {
                      "alertmanager_cluster_advertise_ip": "127.0.0.1"}},
                  {"name": "alertmanager.yml", "ansible.builtin.template": {
                      "src": str(REPO / "roles/alertmanager/templates/alertmanager.yml.j2"),
                      "dest": str(out / "alertmanager.yml"), "mode": "0600"}},
                  dump("alertmanager_flags", "alertmanager_flags.json")]}]
    extra = {f"{name}_version": version for name, version in versions_by_role.items()}
    # TLS on the web endpoints, so the web configuration flags are rendered too
    extra.update({"prometheus_config_dir": str(out), "prometheus_rules_dir": str(out / "rules"),
                  "node_exporter_basic_auth_users": {"prometheus": "x"},
                  "prometheus_extra_scrape_configs": [], "blackbox_exporter_basic_auth_users": {"p": "x"}})
    (tmp / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    (tmp / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp / ".ansible-tmp"))
    proc = subprocess.run([ansible_playbook(), "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"),
                           "-e", f"@{tmp / 'extra.json'}"], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module", params=["oldest", "newest"])
def rendered(request, tmp_path_factory):
    end = 0 if request.param == "oldest" else 1
    chosen = {name: row[end] for name, row in versions.MATRIX.items()}
    out = _render(tmp_path_factory.mktemp(f"matrix-{request.param}"), chosen)
    return {"versions": chosen, "out": out,
            "bin": {name: _release(tmp_path_factory, name, version) for name, version in chosen.items()}}


def _ok(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f"{what}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_prometheus_config_and_rules_pass_that_versions_promtool(rendered):
    config = rendered["out"] / "prometheus.yml"
    proc = subprocess.run([str(rendered["bin"]["prometheus"] / "promtool"), "check", "config", str(config)],
                          capture_output=True, text=True, timeout=120)
    _ok(proc, f"promtool {rendered['versions']['prometheus']} check config")
    assert "SUCCESS" in proc.stdout + proc.stderr
    assert len(list((rendered["out"] / "rules").glob("*.yml"))) >= 5
    text = config.read_text()
    major = versions.parse(rendered["versions"]["prometheus"])[0]
    # the keys that follow the version: in the file exactly when that release knows them
    assert ("fallback_scrape_protocol: PrometheusText0.0.4" in text) == (major >= 3)
    assert ("track_timestamps_staleness: true" in text) == versions.settings(
        "prometheus", rendered["versions"]["prometheus"])["track_timestamps_staleness"]


def test_alertmanager_config_passes_that_versions_amtool(rendered):
    proc = subprocess.run([str(rendered["bin"]["alertmanager"] / "amtool"), "check-config",
                           str(rendered["out"] / "alertmanager.yml")], capture_output=True, text=True, timeout=60)
    _ok(proc, f"amtool {rendered['versions']['alertmanager']} check-config")


def test_blackbox_config_passes_that_versions_config_check(rendered, tmp_path):
    config = tmp_path / "blackbox.yml"
    config.write_text(json.loads((rendered["out"] / "blackbox.json").read_text()))
    proc = subprocess.run([str(rendered["bin"]["blackbox_exporter"] / "blackbox_exporter"), "--config.check",
                           f"--config.file={config}"], capture_output=True, text=True, timeout=60)
    _ok(proc, f"blackbox_exporter {rendered['versions']['blackbox_exporter']} --config.check")


@pytest.mark.parametrize("name", sorted(BINARIES))
def test_every_flag_is_known_to_that_version(rendered, name):
    flags = json.loads((rendered["out"] / f"{name}_flags.json").read_text())
    assert flags, name
    proc = subprocess.run([str(rendered["bin"][name] / name), *flags, "--version"],
                          capture_output=True, text=True, timeout=60)
    _ok(proc, f"{name} {rendered['versions'][name]} {' '.join(flags)}")
    assert rendered["versions"][name] in proc.stdout + proc.stderr


def test_node_exporter_flag_names_follow_the_version():
    old, new = versions.settings("node_exporter", "1.1.2"), versions.settings("node_exporter", "1.11.1")
    assert old["web_config_flag"] == "--web.config" and new["web_config_flag"] == "--web.config.file"
    assert versions.settings("node_exporter", "1.5.0")["web_config_flag"] == "--web.config.file"
    assert old["fs_types_flag"].endswith("ignored-fs-types") and new["fs_types_flag"].endswith("fs-types-exclude")
    # a distribution package is taken as current
    assert versions.settings("node_exporter", "1.1.2", "package") == new


@pytest.mark.parametrize("name, version, refused", [
    ("prometheus", "2.41.0", True), ("prometheus", "2.42.0", False), ("prometheus", "3.11.3", False),
    ("prometheus", "4.0.0", True), ("alertmanager", "0.24.0", True), ("alertmanager", "0.33.1", False),
    ("node_exporter", "1.1.2", False), ("node_exporter", "1.0.1", True), ("blackbox_exporter", "0.22.0", True),
    ("blackbox_exporter", "0.28.0", False), ("prometheus", "latest", True),
])
def test_range_problem_names_the_range(name, version, refused):
    message = versions.range_problem(name, version)
    assert bool(message) == refused, message
    if refused and version != "latest":
        assert versions.supported_range(name) in message and f"{name}_version" in message


@pytest.mark.parametrize("name, installed, wanted, refused", [
    ("prometheus", "3.5.3", "2.42.0", True),      # 3.x TSDB, read from 2.55.0 on
    ("prometheus", "3.0.0", "2.54.1", True),
    ("prometheus", "3.5.3", "2.55.0", False),     # the first 2.x that reads it
    ("prometheus", "3.5.3", "3.0.0", False),
    ("prometheus", "2.55.1", "2.42.0", False),    # a 2.x TSDB: no boundary
    ("prometheus", "2.42.0", "3.5.3", False),     # upgrades are never refused
    ("alertmanager", "0.33.1", "0.25.0", False),  # no storage format change since 0.5.0
    ("prometheus", "", "2.42.0", False),          # nothing installed yet
])
def test_downgrade_across_a_data_format_boundary_is_refused(name, installed, wanted, refused):
    message = versions.downgrade_problem(name, installed, wanted)
    assert bool(message) == refused, message
    if refused:
        assert "2.55.0" in message and f"{name}_force_downgrade" in message


def test_flags_the_version_does_not_take_are_named():
    assert versions.flag_problems("prometheus", "3.5.3", ["--enable-feature=agent"])
    assert versions.flag_problems("prometheus", "2.42.0", ["--agent"])
    assert not versions.flag_problems("prometheus", "2.42.0", ["--enable-feature=agent", "--agent.foo"])
    assert not versions.flag_problems("prometheus", "3.5.3", ["--agent", "--web.enable-remote-write-receiver"])
    assert "--storage.tsdb.retention.time" in versions.flag_problems(
        "prometheus", "3.0.0", ["--storage.tsdb.retention=15d"])[0]


@pytest.mark.parametrize("link, version", [
    ("/opt/monstack/prometheus/3.5.3/prometheus", "3.5.3"), ("/usr/bin/prometheus", ""), ("", ""),
    ("/opt/monstack/alertmanager/0.25.0/alertmanager", "0.25.0"), ("prometheus", ""),
])
def test_installed_version_from_the_link(link, version):
    assert versions.installed_version(link) == version


def test_preflight_refuses_out_of_range_downgrade_and_flags():
    v = {"prometheus_version": "3.5.3", "prometheus_install_method": "archive", "prometheus_extra_flags": [],
         "prometheus_force_downgrade": False}
    installed = {"prometheus": "3.5.3"}
    assert preflight_roles.version_problems("prometheus", v, installed) == []
    v["prometheus_version"] = "2.42.0"
    assert "2.55.0" in " ".join(preflight_roles.version_problems("prometheus", v, installed))
    v["prometheus_force_downgrade"] = True
    assert preflight_roles.version_problems("prometheus", v, installed) == []
    v.update(prometheus_version="2.40.0", prometheus_force_downgrade=False)
    assert "2.42.0 <= version < 4.0.0" in " ".join(preflight_roles.version_problems("prometheus", v, {}))
    # a package: the distribution's version, not checked against the range
    v["prometheus_install_method"] = "package"
    assert preflight_roles.version_problems("prometheus", v, installed) == []
    v.update(prometheus_install_method="archive", prometheus_version="3.5.3",
             prometheus_extra_flags=["--enable-feature=remote-write-receiver"])
    assert "--web.enable-remote-write-receiver" in " ".join(preflight_roles.version_problems("prometheus", v, {}))


# --- what the component action waits for after restarting a running member (rolling upgrades)

def test_scraping_needs_a_target_that_is_up():
    assert not logic.scraping(None) and not logic.scraping({"data": {"activeTargets": []}})
    # a restarted Prometheus shows its targets as unknown until it has scraped them
    assert not logic.scraping({"data": {"activeTargets": [{"health": "unknown"}, {"health": "down"}]}})
    assert logic.scraping({"data": {"activeTargets": [{"health": "unknown"}, {"health": "up"}]}})


def test_cluster_rejoined_needs_ready_and_every_member():
    status = {"cluster": {"status": "settling", "peers": [{}, {}]}}
    assert not logic.cluster_rejoined(status, "2")
    status["cluster"]["status"] = "ready"
    assert logic.cluster_rejoined(status, "2") and not logic.cluster_rejoined(status, 3)
    assert not logic.cluster_rejoined(None, 0)


def test_active_silences_are_the_ids_of_active_ones():
    answer = [{"id": "b", "status": {"state": "active"}}, {"id": "a", "status": {"state": "active"}},
              {"id": "c", "status": {"state": "expired"}}, {"id": "d", "status": {"state": "pending"}}, "junk"]
    assert logic.active_silences(answer) == ["a", "b"]
    assert logic.active_silences(None) == []


@pytest.mark.parametrize("version,flag,files", [("2.42.0", "--enable-feature=agent", False),
                                                 ("2.43.0", "--enable-feature=agent", True),
                                                 ("3.5.3", "--agent", True)])
def test_agent_flag_and_scrape_config_files_follow_the_version(version, flag, files):
    got = versions.settings("prometheus", version)
    assert got["agent_flag"] == flag
    assert got["scrape_config_files"] is files
    # the flag the settings choose is one the preflight's flag table accepts for that release
    assert versions.flag_problems("prometheus", version, [flag]) == []
