"""ARA records a playbook run and tools/ara_changes.py finds the host's changed tasks (docs/logs.md).

Runs a two-task playbook on the controller (connection local) with ARA's callback and a
private SQLite database; skipped when ara is not installed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = """\
- name: Something to record
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Write a file (changed)
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "recorded\\n"
        mode: "0644"
    - name: Look at it (not changed)
      ansible.builtin.stat:
        path: "{{ out }}"
"""


def test_run_and_changed_tasks_are_recorded(tmp_path):
    callbacks = subprocess.run([sys.executable, "-m", "ara.setup.callback_plugins"], capture_output=True, text=True)
    if callbacks.returncode != 0:
        pytest.skip("ara is not installed (pip install -r requirements.txt)")
    (tmp_path / "record.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=callbacks.stdout.strip(), ARA_API_CLIENT="offline",
               ARA_BASE_DIR=str(tmp_path / "ara"), ARA_DATABASE_NAME=str(tmp_path / "ara" / "ansible.sqlite"),
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    run = subprocess.run(["ansible-playbook", "-i", "localhost,", str(tmp_path / "record.yml"),
                          "-e", f"out={tmp_path / 'out.txt'}", "-e", f"ansible_python_interpreter={sys.executable}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    query = subprocess.run([sys.executable, str(REPO / "tools" / "ara_changes.py"), "--host", "localhost",
                            "--since", today], env=env, capture_output=True, text=True, timeout=300)
    assert query.returncode == 0, query.stderr[-2000:]
    lines = query.stdout.splitlines()
    assert len(lines) == 1, query.stdout
    assert "record.yml" in lines[0] and "Write a file (changed)" in lines[0] and "ansible.builtin.copy" in lines[0]
    # Another day: nothing.
    none = subprocess.run([sys.executable, str(REPO / "tools" / "ara_changes.py"), "--host", "localhost",
                           "--since", "2000-01-01", "--until", "2000-01-02"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert none.returncode == 0 and none.stdout == "", none.stdout + none.stderr
