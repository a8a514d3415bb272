"""The user's own scrape config files on a real host (prometheus_scrape_config_dir, issue 28).

A file of the user's directory goes live (copied to /etc/prometheus/scrape_configs, named in
prometheus.yml, Prometheus reloaded, not restarted, its job active); a rerun changes nothing;
a bad file is refused by promtool with the rest of the configuration before anything is
replaced, so the host's files and the running configuration stay as they were; emptying the
variable removes the files and the job.
"""
from __future__ import annotations

import json

from conftest import MONITOR, dump, playbook, recap_changed, sh

GOOD = """scrape_configs:
  - job_name: user_file_job
    scrape_interval: 30s
    static_configs:
      - targets: ["127.0.0.1:9"]
        labels: {origin: user-file}
"""
# A relabel regex Prometheus refuses: only promtool sees that.
BAD = """scrape_configs:
  - job_name: user_file_job
    relabel_configs:
      - {source_labels: [__address__], regex: "((", target_label: x}
    static_configs:
      - targets: ["127.0.0.1:9"]
"""


def start_time() -> str:
    return sh(MONITOR, "systemctl show -p ExecMainStartTimestampMonotonic --value prometheus").stdout.strip()


def user_jobs(prom) -> dict:
    return {t["scrapePool"]: t["labels"] for t in prom.targets() if t["scrapePool"] == "user_file_job"}


def run(directory) -> object:
    return playbook("playbooks/prometheus.yml", "-e", json.dumps({"prometheus_scrape_config_dir": str(directory)}))


def test_user_scrape_files_go_live_and_a_bad_one_is_refused(prom, tmp_path):
    user = tmp_path / "scrape"
    user.mkdir()
    (user / "team.yml").write_text(GOOD)
    started, stamp = start_time(), prom.reload_stamp()
    try:
        done = run(user)
        assert done.returncode == 0, done.stdout[-3000:]
        assert sh(MONITOR, "cat /etc/prometheus/scrape_configs/team.yml").stdout == GOOD
        assert "scrape_config_files:" in sh(MONITOR, "cat /etc/prometheus/prometheus.yml").stdout
        jobs = prom.wait_for(lambda: user_jobs(prom), timeout=60)
        assert jobs and jobs["user_file_job"]["origin"] == "user-file", dump(prom.targets())
        assert prom.reload_stamp() != stamp, "a new scrape file must reload Prometheus"
        assert start_time() == started, "a new scrape file must not restart Prometheus"

        again = run(user)
        assert again.returncode == 0 and recap_changed(again.stdout)[MONITOR] == 0, again.stdout[-3000:]

        (user / "team.yml").write_text(BAD)
        live_stamp = prom.reload_stamp()
        refused = run(user)
        assert refused.returncode != 0, refused.stdout[-3000:]
        assert "/etc/prometheus/check/prometheus.yml" in refused.stdout and "nothing of this set was written" in \
            refused.stdout, refused.stdout[-3000:]
        assert sh(MONITOR, "cat /etc/prometheus/scrape_configs/team.yml").stdout == GOOD, "the old file stays"
        assert sh(MONITOR, "/usr/local/bin/promtool check config /etc/prometheus/prometheus.yml",
                  check=False).returncode == 0
        assert prom.reload_stamp() == live_stamp and start_time() == started
        assert user_jobs(prom), "the running configuration keeps the job"
    finally:
        empty = tmp_path / "empty"
        empty.mkdir(exist_ok=True)
        gone = run(empty)
    assert gone.returncode == 0, gone.stdout[-3000:]
    assert sh(MONITOR, "ls /etc/prometheus/scrape_configs /etc/prometheus/check").stdout.split() == [
        "/etc/prometheus/check:", "/etc/prometheus/scrape_configs:"]
    assert "scrape_config_files" not in sh(MONITOR, "cat /etc/prometheus/prometheus.yml").stdout
    assert prom.wait_for(lambda: not user_jobs(prom), timeout=60)
