"""The operator's path: a copy of inventories/example, with only the README's edits, over SSH."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))

from example_inventory import copy_example  # noqa: E402

# example host -> test host: the HA pair on Debian 12 and 13, the app host on Debian 11
# (MONSTACK_OP_HOSTS=a,b,c runs the checks against other containers of that layout, e.g. a developer's)
HOSTS = os.environ.get("MONSTACK_OP_HOSTS", "monstack-op-mon,monstack-op-new,monstack-op-old").split(",")
MIRROR = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack")) / "mirror"
MIRROR_VERSIONS = {"prometheus": "3.5.3", "alertmanager": "0.33.1", "node_exporter": "1.11.1", "cadvisor": "0.38.7"}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M)


def container_ip(name: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name],
        check=True, capture_output=True, text=True).stdout.split()[0]


def sh(host: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Look at a test host from outside (docker exec), never to change it."""
    return subprocess.run(["docker", "exec", host, "sh", "-c", command],
                          check=check, capture_output=True, text=True, timeout=60)


def recap(output: str) -> dict[str, dict[str, int]]:
    return {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4]),
                   "skipped": int(m[5])} for m in RECAP.findall(output)}


def host_keys(host: str) -> dict[str, str]:
    """{key type: key} of a host, read from the host itself (as an operator checks them once)."""
    return dict(line.split()[:2] for line in sh(host, "cat /etc/ssh/ssh_host_*_key.pub").stdout.splitlines())


def known_hosts(wrong: bool = False) -> str:
    """known_hosts for the addresses the inventory uses; wrong: each host with another host's keys."""
    lines = []
    for index, host in enumerate(HOSTS):
        keys = host_keys(HOSTS[(index + 1) % len(HOSTS)] if wrong else host)
        lines += [f"{container_ip(host)} {kind} {blob}" for kind, blob in keys.items()]
    return "\n".join(lines) + "\n"


class Operator:
    """Runs ansible-playbook the way the README tells a user to, from a clone.

    Host key checking is on (the shipped ansible.cfg): the operator has checked each host's
    key once into a known_hosts file (here one of the test's own, not the controller user's
    ~/.ssh/known_hosts, where a container's reused address would keep an old key)."""

    def __init__(self, inventory: Path, vault_pass: Path, key: Path):
        self.inventory, self.vault_pass, self.key = inventory, vault_pass, key
        self.timings: dict[str, float] = {}
        self.known_hosts = inventory.parent / "known_hosts"
        self.known_hosts.write_text(known_hosts())
        self.control_dir = inventory.parent / "ssh-cp"

    def run(self, name: str, *args: str, known_hosts_file: Path | None = None,
            control_dir: Path | None = None) -> subprocess.CompletedProcess:
        import time
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_SSH_COMMON_ARGS=f"-o UserKnownHostsFile={known_hosts_file or self.known_hosts}",
                   ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir or self.control_dir))
        for var in ("ANSIBLE_ROLES_PATH", "ANSIBLE_FILTER_PLUGINS", "ANSIBLE_INVENTORY", "ANSIBLE_CONNECTION",
                    "ANSIBLE_REMOTE_USER", "ANSIBLE_BECOME", "ANSIBLE_LIBRARY", "ANSIBLE_COLLECTIONS_PATH",
                    "ANSIBLE_HOST_KEY_CHECKING"):
            env.pop(var, None)  # nothing of molecule's own setup: the user's plain shell
        cmd = ["ansible-playbook", "-i", str(self.inventory), "--vault-password-file", str(self.vault_pass),
               "--private-key", str(self.key), *args]
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
        self.timings[name] = time.monotonic() - start
        log = self.inventory.parent / f"run-{len(self.timings):02d}.log"
        log.write_text(proc.stdout + proc.stderr)
        print(f"== {name}: {' '.join(cmd[1:])}: rc={proc.returncode} in {self.timings[name]:.1f} s (log: {log})")
        print("\n".join(proc.stdout.splitlines()[-8:]))
        return proc


def failures(output: str) -> str:
    """The failed tasks of a run (task header and result), for assertion messages."""
    blocks, keep = [], False
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task, keep = line, False
        elif line.startswith(("fatal:", "failed:")) or "[ERROR]" in line:
            blocks.append(task)
            keep = True
        if keep:
            blocks.append(line)
    return "\n".join(blocks)[-8000:] or output[-4000:]


@pytest.fixture(scope="session")
def operator(tmp_path_factory) -> Operator:
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    dest = tmp_path_factory.mktemp("operator") / "production"
    vault_pass = copy_example(dest, [(h, container_ip(h), None) for h in HOSTS], ansible_user="ops",
                              smtp_smarthost="127.0.0.1:25", mirror_url=f"file://{MIRROR}",
                              mirror_versions=MIRROR_VERSIONS, grafana=False)
    # Not a README edit, a limit of this machine's mirror: its node_exporter 1.11.1 is Debian's
    # build, linked against glibc 2.34, which Debian 11 lacks (upstream's static release runs
    # there). The mirror also holds Debian 11's own build, 1.1.2: pin it for that host.
    (dest / "host_vars").mkdir()
    (dest / "host_vars" / f"{HOSTS[2]}.yml").write_text(
        "---\n# test mirror only: the Debian 11 build of node_exporter\nnode_exporter_version: 1.1.2\n")
    return Operator(dest, vault_pass, ephemeral / "operator_ed25519")
