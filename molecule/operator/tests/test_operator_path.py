"""A new user's first runs, in order: copy the example, --check on fresh hosts, converge, rerun,
--check and --check --diff on the converged stack. Every run connects over SSH as `ops` with a
key and becomes root through sudo with the password from the example's ansible-vault file."""
from __future__ import annotations

import difflib
import re
import time

import requests

from conftest import HOSTS, ROOT, container_ip, failures, known_hosts, recap, sh

EXAMPLE = ROOT / "inventories" / "example"
# The only lines the README's edits may change (README "Quick start for your own hosts").
ALLOWED_EDITS = re.compile(
    r"^[-+]\s*(ansible_host: \S+|ansible_port: \d+|\S+:$|ansible_user: \S+|alertmanager_smtp_smarthost: \S+"
    r"|(# )?monstack_download_base_url: \S+|(# )?(prometheus|alertmanager|node_exporter|cadvisor)_version: \S+"
    r"|cadvisor_checksums: \{\}|cadvisor_checksums:|amd64: \"[^\"]*\"|cadvisor_checksums_file: \S+"
    r"|hosts:( \{\})?|\S+\.example\.com:)$")


def _diff(name: str, copy) -> list[str]:
    return [line for line in difflib.unified_diff((EXAMPLE / name).read_text().splitlines(),
                                                  (copy / name).read_text().splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_01_the_inventory_is_the_example_with_only_the_readme_edits(operator):
    assert (operator.inventory / "group_vars/all/vault.yml").read_bytes() == \
        (EXAMPLE / "group_vars/all/vault.yml").read_bytes(), "the example vault is used as shipped"
    edits = _diff("hosts.yml", operator.inventory) + _diff("group_vars/all/main.yml", operator.inventory)
    assert edits, "the README's edits were not applied"
    unexpected = [line for line in edits if not ALLOWED_EDITS.match(line)]
    assert not unexpected, unexpected
    assert "ansible_user: ops" in (operator.inventory / "group_vars/all/main.yml").read_text()
    # the one switch of a test of the example itself: the preflight refuses the example vault's
    # public values in any other copy (issue 24 row 14, tests/unit/test_preflight.py)
    assert sorted(p.name for p in (operator.inventory / "group_vars/all").iterdir()) == \
        ["exporters.yml", "main.yml", "vault.yml", "zz-example-test.yml"]
    assert "monstack_allow_example_secrets: true" in (operator.inventory / "group_vars/all/zz-example-test.yml").read_text()


def test_01b_host_key_checking_is_on_and_refuses_a_wrong_or_unknown_key(operator):
    """The shipped ansible.cfg checks host keys: with each host's entry holding another host's
    keys (a man in the middle), or with no entry at all, no run gets through SSH, so no sudo
    password is sent. (New SSH master connections each time: a live one would skip the check.)"""
    assert "\nhost_key_checking = true\n" in (ROOT / "ansible.cfg").read_text()
    wrong = operator.inventory.parent / "known_hosts.wrong"
    wrong.write_text(known_hosts(wrong=True))
    empty = operator.inventory.parent / "known_hosts.empty"
    empty.write_text("")
    for label, path, message in (("wrong host keys", wrong, "Host key verification failed"),
                                 ("unknown hosts", empty, "Host key verification failed")):
        proc = operator.run(f"site.yml --check ({label})", "site.yml", "--check", known_hosts_file=path,
                            control_dir=operator.inventory.parent / f"ssh-cp-{path.suffix[1:]}")
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, output[-3000:]
        assert message in output, output[-3000:]
        # The first connection of the run (the network facts of the hosts that may connect, gathered
        # once for all hosts) is refused, and that ends the run for every host: nothing changed
        # anywhere (a host the run never reached has no line in the recap).
        counts = recap(proc.stdout)
        assert counts and set(counts) <= set(HOSTS), output[-3000:]
        assert any(c["unreachable"] for c in counts.values()), output[-3000:]
        assert all(c["changed"] == 0 for c in counts.values()), output[-3000:]
    for host in HOSTS:
        log = sh(host, "journalctl -q --no-pager -o cat SYSLOG_IDENTIFIER=sshd SYSLOG_IDENTIFIER=sshd-session").stdout
        assert "Accepted publickey for ops" not in log, f"{host}: a session was opened despite the wrong host key"


def test_02_check_on_fresh_hosts_reports_changes_and_changes_nothing(operator):
    proc = operator.run("site.yml --check (fresh hosts)", "site.yml", "--check")
    assert proc.returncode == 0, failures(proc.stdout + proc.stderr)
    result = recap(proc.stdout)
    assert sorted(result) == sorted(HOSTS)
    for host, counts in result.items():
        assert counts["failed"] == counts["unreachable"] == 0, (host, counts)
        assert counts["changed"] > 0, f"--check on fresh {host} must report what it would change"
    for host in HOSTS:
        assert sh(host, "test ! -e /opt/monstack && test ! -e /etc/systemd/system/node_exporter.service "
                        "&& ! id node_exporter", check=False).returncode == 0, f"--check changed {host}"


def test_03_converge(operator):
    proc = operator.run("site.yml (converge)", "site.yml")
    assert proc.returncode == 0, failures(proc.stdout + proc.stderr)
    for host, counts in recap(proc.stdout).items():
        assert counts["failed"] == counts["unreachable"] == 0, (host, counts)


def test_04_rerun_changes_nothing(operator):
    proc = operator.run("site.yml (rerun)", "site.yml")
    assert proc.returncode == 0, failures(proc.stdout + proc.stderr)
    changed = {host: counts["changed"] for host, counts in recap(proc.stdout).items()}
    assert changed == {host: 0 for host in HOSTS}, proc.stdout[-6000:]


def test_05_every_change_came_over_ssh_as_ops_through_sudo(operator):
    for host in HOSTS:
        # OpenSSH 9.8+ (Debian 13) logs sessions as sshd-session
        ssh = sh(host, "journalctl -q --no-pager -o cat SYSLOG_IDENTIFIER=sshd SYSLOG_IDENTIFIER=sshd-session").stdout
        assert "Accepted publickey for ops" in ssh, host
        assert "for root" not in ssh, f"{host}: someone logged in as root"
        sudo = sh(host, "journalctl -q --no-pager _COMM=sudo -o cat").stdout
        assert re.search(r"^\s*ops : .*USER=root", sudo, re.M), f"{host}: no sudo by ops in the journal"


def test_06_the_stack_runs_on_debian_11_12_and_13(operator):
    os_versions = {host: sh(host, ". /etc/os-release && echo $VERSION_ID").stdout.strip() for host in HOSTS}
    assert sorted(os_versions.values()) == ["11", "12", "13"], os_versions
    base = f"http://{container_ip('monstack-op-mon')}:9090"
    want = {("node", h) for h in HOSTS} | {("cadvisor", h) for h in HOSTS} \
        | {("prometheus", h) for h in HOSTS[:2]} | {("alertmanager", h) for h in HOSTS[:2]}
    deadline, health = time.monotonic() + 90, {}
    while time.monotonic() < deadline:
        targets = requests.get(f"{base}/api/v1/targets", params={"state": "active"}, timeout=10).json()
        health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"]
                  for t in targets["data"]["activeTargets"]}
        if all(health.get(key) == "up" for key in want):
            break
        time.sleep(3)
    assert all(health.get(key) == "up" for key in want), {k: health.get(k) for k in want}
    replicas = requests.get(f"http://{container_ip('monstack-op-new')}:9090/api/v1/status/config",
                            timeout=10).json()["data"]["yaml"]
    assert "replica: monstack-op-new" in replicas, "the Debian 13 host is the second HA replica"
    version = requests.get(f"{base}/api/v1/query", timeout=10,
                           params={"query": 'node_exporter_build_info{instance="monstack-op-old"}'}).json()
    assert version["data"]["result"][0]["metric"]["version"].startswith("1.1.2"), version


def test_07_check_on_the_converged_stack_changes_nothing(operator):
    proc = operator.run("site.yml --check (converged)", "site.yml", "--check")
    assert proc.returncode == 0, failures(proc.stdout + proc.stderr)
    changed = {host: counts["changed"] for host, counts in recap(proc.stdout).items()}
    assert changed == {host: 0 for host in HOSTS}, proc.stdout[-6000:]


def test_08_check_diff_shows_the_change_and_hides_secrets(operator):
    secret = "NEW-SMTP-SECRET-4711"
    proc = operator.run("site.yml --check --diff (one variable and a secret changed)", "site.yml", "--check",
                        "--diff", "-e", "prometheus_retention_time=15d",
                        "-e", f"alertmanager_smtp_auth_password={secret}")
    assert proc.returncode == 0, failures(proc.stdout + proc.stderr)
    assert re.search(r"^-.*retention\.time=30d", proc.stdout, re.M), proc.stdout[-6000:]
    assert re.search(r"^\+.*retention\.time=15d", proc.stdout, re.M), proc.stdout[-6000:]
    assert secret not in proc.stdout + proc.stderr, "a secret was shown in --diff output"
    # the secret file's change is reported (its set is written without logging), its content hidden:
    # the component action of Alertmanager reports the change, with no diff
    assert re.search(r"Install, configure and run Alertmanager\] \*+\n(changed: \[monstack-op-\w+\]\n)*"
                     r"changed: \[monstack-op-mon\]\n", proc.stdout), proc.stdout[-6000:]
    counts = recap(proc.stdout)
    assert counts["monstack-op-mon"]["changed"] > 0 and counts["monstack-op-old"]["changed"] == 0
    unit = sh("monstack-op-mon", "cat /etc/systemd/system/prometheus.service").stdout
    assert "retention.time=30d" in unit, "--check must not change the host"


def test_09_timings(operator):
    """Report how long each run took (figures, not a timed assertion)."""
    for name, seconds in operator.timings.items():
        print(f"timing: {name}: {seconds:.1f} s")
    assert operator.timings


def test_10_backup_and_restore_over_ssh_through_sudo(operator, tmp_path):
    """backup.yml and restore.yml as the operator runs them: over SSH as `ops`, root through sudo.
    The archive is fetched as `ops` (fetch with become would read it into memory), so the backup
    hands it to sudo's user; a restore of the same backup a second time changes nothing."""
    store = tmp_path / "backups"
    run = operator.run("backup", "playbooks/backup.yml", "--limit", HOSTS[0], "-e", f"backup_dir={store}")
    assert run.returncode == 0, failures(run.stdout)
    filed = sorted(p.relative_to(store).parts[:2] for p in store.glob("*/*/*/data.tar.gz"))
    assert filed == [(HOSTS[0], "alertmanager"), (HOSTS[0], "prometheus")], filed
    assert sh(HOSTS[0], "stat -c '%U %a' /var/tmp/monstack-backup").stdout.strip() == "root 711"  # ops passes, root's
    assert sh(HOSTS[0], "ls -A /var/tmp/monstack-backup").stdout.strip() == ""  # nothing left on the host

    args = ("--limit", HOSTS[0], "-e", f"backup_dir={store}", "-e", "backup_components=alertmanager")
    run = operator.run("restore", "playbooks/restore.yml", *args)
    assert run.returncode == 0, failures(run.stdout)
    assert recap(run.stdout)[HOSTS[0]]["changed"] > 0
    again = operator.run("restore again", "playbooks/restore.yml", *args)
    assert again.returncode == 0, failures(again.stdout)
    assert recap(again.stdout)[HOSTS[0]]["changed"] == 0, again.stdout[-3000:]
