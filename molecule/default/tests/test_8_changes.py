"""Changes a user makes after the first converge, checked on the live stack.

These run after the read-only checks: each one changes the stack and puts it
back the way the scenario converged it.
"""
import subprocess
import sys
import textwrap

import pytest
import requests

from conftest import MONITOR, ROOT, container_ip, dump, playbook, recap_changed, sh

sys.path.insert(0, str(ROOT / "tests"))
from helpers import json_run_tasks  # noqa: E402

NEW_HOST = "monstack-app4"


def prometheus_start_time():
    return sh(MONITOR, "systemctl show -p ExecMainStartTimestampMonotonic --value prometheus").stdout.strip()


@pytest.fixture
def fourth_host(tmp_path):
    """A fourth bare host on the scenario's network, in an extra inventory file."""
    subprocess.run(["docker", "rm", "-f", NEW_HOST], capture_output=True)
    subprocess.run([
        "docker", "run", "-d", "--name", NEW_HOST, "--hostname", NEW_HOST,
        "--network", "monstack-test", "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "monstack-test:debian13", "/lib/systemd/systemd",
    ], check=True, capture_output=True)
    inventory = tmp_path / "extra.yml"
    inventory.write_text(textwrap.dedent(f"""\
        all:
          hosts:
            {NEW_HOST}:
              ansible_connection: community.docker.docker
        apps:
          hosts:
            {NEW_HOST}:
        """))
    yield str(inventory)
    subprocess.run(["docker", "rm", "-f", NEW_HOST], capture_output=True)
    # The units whose allow list names every inventory host (the exporter catalogue's
    # pushgateway: clients all) let the removed host in: back to the scenario's inventory.
    playbook("playbooks/exporters.yml")


def test_adding_a_host_makes_it_monitored_without_restart(prom, fourth_host):
    before = prometheus_start_time()
    stamp = prom.reload_stamp()
    run = playbook("site.yml", extra_inventory=fourth_host)
    assert run.returncode == 0, run.stdout[-3000:]
    assert recap_changed(run.stdout)[MONITOR] > 0  # the file_sd files changed

    def new_targets_up():
        health = prom.health()
        return health if health.get(("node", NEW_HOST)) == "up" and health.get(("cadvisor", NEW_HOST)) == "up" else None

    health = prom.wait_for(new_targets_up, timeout=120)
    assert health, dump({f"{t['labels']['job']}/{t['labels']['instance']}": t["health"] for t in prom.targets()})
    assert prometheus_start_time() == before, "Prometheus was restarted"
    assert prom.reload_stamp() == stamp, "a file_sd change must not reload Prometheus"

    # Removing the host again removes its targets (file changed, still no restart).
    run = playbook("site.yml", "--tags", "prometheus")
    assert run.returncode == 0, run.stdout[-3000:]
    gone = prom.wait_for(lambda: all(t["labels"]["instance"] != NEW_HOST for t in prom.targets()), timeout=60)
    assert gone
    assert prometheus_start_time() == before


def test_broken_rule_fails_and_old_rules_keep_serving(prom, tmp_path):
    broken = tmp_path / "broken.rules.yml"
    broken.write_text("groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: rate(up[5m]\n")
    before_rules = {r["name"] for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]}
    before = prometheus_start_time()
    run = playbook("playbooks/prometheus.yml", "-e", f'{{"prometheus_rule_files": ["{broken}"]}}')
    assert run.returncode != 0
    assert "unclosed left parenthesis" in run.stdout or "parse error" in run.stdout, run.stdout[-3000:]
    assert sh(MONITOR, "ls /etc/prometheus/rules").stdout.count("broken") == 0
    assert sh(MONITOR, "systemctl is-active prometheus").stdout.strip() == "active"
    assert prometheus_start_time() == before
    after_rules = {r["name"] for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]}
    assert after_rules == before_rules and "Watchdog" in after_rules


def test_node_exporter_version_upgrade(tmp_path):
    host = "monstack-app2"

    def version():
        return sh(host, "/usr/local/bin/node_exporter --version 2>&1 | head -1").stdout

    # The older release is downloaded by the host itself this time (download_on: host): the
    # controller's download cache is not even made.
    json_env = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
    cache = tmp_path / "controller-cache"
    run = playbook("playbooks/exporters.yml", "--limit", host, "--tags", "node_exporter",
                   "-e", "node_exporter_version=1.5.0", "-e", "node_exporter_download_on=host",
                   "-e", f"common_cache_dir={cache}", env=json_env)
    assert run.returncode == 0, run.stdout[-3000:]
    [steps] = [r["steps"] for r in json_run_tasks(run.stdout)
                if r["task"].startswith("Install, configure and run node_exporter")]
    assert "install" in steps, steps
    assert not cache.exists(), "the host downloads the release itself"
    assert sh(host, "ls /opt/monstack/node_exporter/1.5.0").stdout.split() == ["node_exporter"]
    assert "version 1.5.0" in version()
    assert 'version="1.5.0"' in sh(host, "curl -sf 127.0.0.1:9100/metrics | grep ^node_exporter_build_info").stdout

    run = playbook("playbooks/exporters.yml", "--limit", host, "--tags", "node_exporter", env=json_env)
    assert run.returncode == 0, run.stdout[-3000:]
    [steps] = [r["steps"] for r in json_run_tasks(run.stdout)
                if r["task"].startswith("Install, configure and run node_exporter")]
    assert steps.count("restart") == 1, steps
    assert "version 1.11.1" in version()
    assert 'version="1.11.1"' in sh(host, "curl -sf 127.0.0.1:9100/metrics | grep ^node_exporter_build_info").stdout

    again = playbook("playbooks/exporters.yml", "--limit", host, "--tags", "node_exporter")
    assert recap_changed(again.stdout)[host] == 0, again.stdout[-3000:]


def test_node_exporter_basic_auth():
    host = "monstack-app1"
    url = f"http://{container_ip(host)}:9100/metrics"
    users = '{"node_exporter_basic_auth_users": {"prometheus": "s3cret-Pass"}}'
    run = playbook("playbooks/exporters.yml", "--limit", host, "--tags", "node_exporter", "-e", users)
    try:
        assert run.returncode == 0, run.stdout[-3000:]
        assert "s3cret-Pass" not in run.stdout
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, auth=("prometheus", "s3cret-Pass"), timeout=5).status_code == 200
        assert requests.get(url, auth=("prometheus", "wrong"), timeout=5).status_code == 401
        mode = sh(host, "stat -c '%U %G %a' /etc/node_exporter/web-config.yml").stdout.split()
        assert mode == ["root", "node_exporter", "640"]
        assert "s3cret-Pass" not in sh(host, "cat /etc/node_exporter/web-config.yml").stdout
        rerun = playbook("playbooks/exporters.yml", "--limit", host, "--tags", "node_exporter", "-e", users)
        assert recap_changed(rerun.stdout)[host] == 0, rerun.stdout[-3000:]
    finally:
        playbook("playbooks/exporters.yml", "--limit", host, "--tags", "node_exporter")
    assert requests.get(url, timeout=5).status_code == 200


def test_package_method_and_removal():
    """The distribution package instead of the release archive, then state: absent, then back."""
    host = "monstack-app2"
    run = playbook("playbooks/exporters.yml", "--limit", host, "--tags", "node_exporter",
                   "-e", "node_exporter_install_method=package")
    try:
        assert run.returncode == 0, run.stdout[-3000:]
        assert "/usr/bin/prometheus-node-exporter" in sh(host, "systemctl cat node_exporter").stdout
        assert sh(host, "systemctl is-enabled prometheus-node-exporter", check=False).stdout.strip() == "masked"
        assert sh(host, "systemctl is-active node_exporter").stdout.strip() == "active"
        assert "node_cpu_seconds_total" in sh(host, "curl -sf 127.0.0.1:9100/metrics").stdout
        again = playbook("playbooks/exporters.yml", "--limit", host, "--tags", "node_exporter",
                         "-e", "node_exporter_install_method=package")
        assert recap_changed(again.stdout)[host] == 0, again.stdout[-3000:]

        gone = playbook("playbooks/exporters.yml", "--limit", host, "--tags", "cadvisor",
                        "-e", "cadvisor_state=absent")
        assert gone.returncode == 0, gone.stdout[-3000:]
        assert sh(host, "systemctl is-active cadvisor", check=False).stdout.strip() != "active"
        assert sh(host, "test -e /etc/systemd/system/cadvisor.service || test -e /usr/local/bin/cadvisor",
                  check=False).returncode != 0
        assert sh(host, "curl -s -o /dev/null 127.0.0.1:8080/metrics", check=False).returncode != 0
    finally:
        back = playbook("playbooks/exporters.yml", "--limit", host)
    assert back.returncode == 0, back.stdout[-3000:]
    assert "/usr/local/bin/node_exporter" in sh(host, "systemctl cat node_exporter").stdout
    assert sh(host, "systemctl is-active node_exporter cadvisor").stdout.split() == ["active", "active"]


def test_empty_controller_cache_changes_nothing(tmp_path):
    """A CI runner starts with an empty download cache: hosts that have the right
    version are not downloaded for and report no change."""
    run = playbook("playbooks/exporters.yml", "-e", f"common_cache_dir={tmp_path}/empty-cache")
    assert run.returncode == 0, run.stdout[-3000:]
    changed = recap_changed(run.stdout)
    assert changed and all(v == 0 for v in changed.values()), dump(changed)
    # Nothing was downloaded: the cache directory was never even created.
    assert not (tmp_path / "empty-cache").exists()
