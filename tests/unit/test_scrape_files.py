"""The user's own scrape config files (prometheus_scrape_config_dir, issue 28 item 2).

The filters (checks, sharding), prometheus.yml and its check copy rendered by Ansible from
the role's templates and variables, and the file sets in the role's order written by the real
file_set code with the real promtool: a bad file is refused before anything is replaced.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.filter.user_scrape_files import user_scrape_files, user_scrape_jobs
from ansible_collections.monstack.stack.plugins.module_utils import monstack_files as fs
from helpers import ansible_playbook

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "prometheus"
PROMTOOL = Path(os.environ.get("PROMTOOL", "/var/cache/monstack/bin/promtool"))
needs_promtool = pytest.mark.skipif(not os.access(PROMTOOL, os.X_OK),
                                    reason=f"no promtool at {PROMTOOL} (tools/build_mirror.py, or set PROMTOOL)")

APPS = """# my applications
scrape_configs:
  - job_name: myapp
    static_configs:
      - targets: ["10.0.0.5:8080"]
  - job_name: batch
    scrape_timeout: 5s
    relabel_configs:
      - {source_labels: [__address__], target_label: host}
    static_configs:
      - targets: ["10.0.0.6:9000"]
"""
SHARD = [{"source_labels": ["__address__"], "modulus": 2, "target_label": "__tmp_monstack_shard",
          "action": "hashmod"}, {"source_labels": ["__tmp_monstack_shard"], "regex": "1", "action": "keep"}]


# ------------------------------------------------------------------ the filters
def test_files_are_kept_byte_for_byte_without_sharding():
    assert user_scrape_files({"apps.yml": APPS}) == {"apps.yml": APPS}
    assert [job["job_name"] for job in user_scrape_jobs({"apps.yml": APPS})] == ["myapp", "batch"]


def test_sharding_puts_the_shard_relabelling_first_in_every_job():
    out = user_scrape_files({"apps.yml": APPS}, SHARD)
    jobs = yaml.safe_load(out["apps.yml"])["scrape_configs"]
    assert [job["relabel_configs"][:2] for job in jobs] == [SHARD, SHARD]
    assert jobs[1]["relabel_configs"][2] == {"source_labels": ["__address__"], "target_label": "host"}
    assert out["apps.yml"].startswith("# Sharded by the prometheus role")


BAD_FILES = [
    # (files, message fragment): every message names the variable and the file
    ({"a.yml": "scrape_configs: [\n"}, "file a.yml: not YAML"),
    ({"a.yml": "global: {scrape_interval: 1s}\nscrape_configs: []\n"},
     "file a.yml: must be a mapping with the one key scrape_configs"),
    ({"a.yml": "- job_name: x\n"}, "file a.yml: must be a mapping with the one key scrape_configs"),
    ({"a.yml": "scrape_configs: {job_name: x}\n"}, "file a.yml: scrape_configs must be a list"),
    ({"a.yml": "scrape_configs: [{static_configs: []}]\n"}, "file a.yml: scrape_configs[0] has no job_name"),
    ({"a.yml": "scrape_configs: [{job_name: x}]\n", "b.yml": "scrape_configs: [{job_name: x}]\n"},
     "job name 'x' is in files a.yml and b.yml"),
    ({"a.yml": "scrape_configs: [{job_name: x, basic_auth: {username: u, password: LEAKED}}]\n"},
     "file a.yml: job x.basic_auth.password: a secret written inline; use the *_file form"),
    ({"a.yml": "scrape_configs: [{job_name: x, authorization: {credentials: LEAKED}}]\n"},
     "job x.authorization.credentials: a secret written inline"),
    ({"a.yml": "scrape_configs: [{job_name: x, oauth2: {client_id: i, client_secret: LEAKED}}]\n"},
     "job x.oauth2.client_secret: a secret written inline"),
    ({"a.yml": "scrape_configs: []\n# " + "x" * (1024 * 1024)}, "file a.yml: larger than 1048576 bytes"),
    ({f"f{i}.yml": "scrape_configs: []\n" for i in range(101)}, "101 files, at most 100"),
    ({"a.yml": "scrape_configs: [{job_name: x}]\nscrape_configs: [{job_name: y}]\n"},
     "file a.yml: not YAML: duplicate key 'scrape_configs'"),
]


@pytest.mark.parametrize("files, message", BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_files_are_refused_naming_the_file(files, message):
    with pytest.raises(AnsibleFilterError) as caught:
        user_scrape_files(files)
    assert message in str(caught.value) and "LEAKED" not in str(caught.value)


# ------------------------------------------------------------- rendered by Ansible
def render(work: Path, scrape_dir: Path | None, **extra) -> dict:
    """prometheus.yml, the check copy, the scrape files, the flags and the config check command,
    from the role's templates and vars."""
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    variables = {"prometheus_config_dir": str(work / "etc"), "ansible_python_interpreter": sys.executable,
                 "prometheus_scrape_config_dir": str(scrape_dir) if scrape_dir else "", **extra}
    (work / "vars.json").write_text(json.dumps(variables))
    tasks = [{"name": f"Render {name}", "ansible.builtin.template": {
        "src": str(ROLE / "templates" / template), "dest": str(out / name), "mode": "0644"}}
        for name, template in (("prometheus.yml", "prometheus.yml.j2"), ("check.yml", "prometheus-check.yml.j2"))]
    tasks.append({"name": "The scrape files", "ansible.builtin.copy": {
        "content": "{{ prometheus_user_scrape_files | to_json }}", "dest": str(out / "scrape.json"), "mode": "0644"}})
    tasks.append({"name": "The flags and the config check", "ansible.builtin.copy": {
        "content": "{{ {'flags': prometheus_flags, 'check': prometheus_check_config} | to_json }}",
        "dest": str(out / "flags.json"), "mode": "0644"}})
    (work / "render.yml").write_text(yaml.safe_dump([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(ROLE / "defaults/main/main.yml"), str(ROLE / "defaults/main/alert_rules.yml"),
                       str(ROLE / "vars/main.yml")], "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    run = subprocess.run([ansible_playbook(), "-i", "localhost,", str(work / "render.yml"),
                          "-e", f"@{work / 'vars.json'}"], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=300)
    return {"rc": run.returncode, "out": run.stdout + run.stderr,
            "prometheus.yml": (out / "prometheus.yml").read_text() if run.returncode == 0 else None,
            "check.yml": (out / "check.yml").read_text() if run.returncode == 0 else None,
            "scrape": json.loads((out / "scrape.json").read_text()) if run.returncode == 0 else None,
            "flags": json.loads((out / "flags.json").read_text()) if run.returncode == 0 else None}


def test_no_directory_no_scrape_config_files(tmp_path):
    result = render(tmp_path, None)
    assert result["rc"] == 0, result["out"][-3000:]
    assert "scrape_config_files" not in result["prometheus.yml"] and result["scrape"] == {}


def test_a_bad_file_fails_the_play_naming_it(tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "apps.yml").write_text("scrape_configs: [{job_name: x, basic_auth: {password: LEAKED}}]\n")
    result = render(tmp_path, tmp_path / "user")
    assert result["rc"] != 0
    assert "prometheus_scrape_config_dir: file apps.yml: job x.basic_auth.password" in result["out"]
    assert "LEAKED" not in result["out"]


def sets_of(result: dict, etc: Path) -> list[dict]:
    """The role's sets scrape_check, scrape_files and config, in its order (vars/main.yml)."""
    check = f"{PROMTOOL} check config %s"
    return [
        {"name": "scrape_check", "path": str(etc / "check"), "files": {"prometheus.yml": result["check.yml"]}
         if result["scrape"] else {}, "prune_patterns": ["*.yml"], "validate": check},
        {"name": "scrape_files", "path": str(etc / "scrape_configs"), "files": result["scrape"],
         "prune_patterns": ["*.yml", "*.yaml"]},
        {"name": "config", "path": str(etc), "files": {"prometheus.yml": result["prometheus.yml"]}, "validate": check},
    ]


def run_local(argv):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


@needs_promtool
@pytest.mark.parametrize("shard", [False, True])
def test_files_go_live_checked_with_the_rest_and_a_bad_one_changes_nothing(tmp_path, shard):
    user, etc = tmp_path / "user", tmp_path / "etc"
    user.mkdir()
    (user / "apps.yml").write_text(APPS)
    (user / "more.yaml").write_text("scrape_configs:\n  - job_name: more\n    static_configs: [{targets: [h:1]}]\n")
    (user / "notes.txt").write_text("not a scrape file\n")
    extra = {"prometheus_shard": 1, "prometheus_scrape_config_files_shard": True} if shard else {}
    if shard:
        extra["prometheus_shard_of_hosts"] = {"mon1": 0, "localhost": 1}
    result = render(tmp_path, user, **extra)
    assert result["rc"] == 0, result["out"][-3000:]
    assert sorted(result["scrape"]) == ["apps.yml", "more.yaml"]
    config = yaml.safe_load(result["prometheus.yml"])
    assert config["scrape_config_files"] == [str(etc / "scrape_configs" / "*.yml"),
                                             str(etc / "scrape_configs" / "*.yaml")]
    checked = yaml.safe_load(result["check.yml"])
    assert "scrape_config_files" not in checked
    jobs = [job["job_name"] for job in checked["scrape_configs"]]
    assert jobs == [job["job_name"] for job in config["scrape_configs"]] + ["myapp", "batch", "more"]
    if shard:  # like the role's own jobs: the same hashmod relabelling first
        own = config["scrape_configs"][0]["relabel_configs"][:2]
        assert own[0]["action"] == "hashmod" and own[1]["regex"] == "1"
        # the user's jobs, and the role's own but the one every server scrapes whole (deployment_stores)
        for job in checked["scrape_configs"]:
            if job["job_name"] != "deployment_stores":
                assert job["relabel_configs"][:2] == own, job["job_name"]
    else:
        assert result["scrape"]["apps.yml"] == APPS

    fs.apply_sets(sets_of(result, etc), {str(etc): {}, str(etc / "check"): {}, str(etc / "scrape_configs"): {}},
                  run=run_local)
    live = subprocess.run([str(PROMTOOL), "check", "config", str(etc / "prometheus.yml")], capture_output=True,
                          text=True, timeout=60)
    assert live.returncode == 0, live.stdout + live.stderr
    before = {p.relative_to(etc): p.read_bytes() for p in etc.rglob("*") if p.is_file()}

    # a job name the role uses already, and a relabel regex Prometheus refuses: both only
    # promtool sees (the filter lets them through), each must change nothing
    for bad in ("scrape_configs:\n  - job_name: node\n    static_configs: [{targets: [h:1]}]\n",
                "scrape_configs:\n  - job_name: bad\n    relabel_configs: [{source_labels: [a], regex: '(('}]\n"):
        (user / "apps.yml").write_text(bad)
        result = render(tmp_path, user, **extra)
        assert result["rc"] == 0, result["out"][-3000:]
        with pytest.raises(fs.FileSetError) as caught:
            fs.apply_sets(sets_of(result, etc), {}, run=run_local)
        assert str(etc / "check" / "prometheus.yml") in str(caught.value)
        assert "nothing of this set was written" in str(caught.value)
        after = {p.relative_to(etc): p.read_bytes() for p in etc.rglob("*") if p.is_file()}
        assert after == before, "a refused file changed what is live"
