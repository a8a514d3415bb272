"""The exporter catalogue's shipped entries on the converged hosts (roles/exporters,
molecule/shared/group_vars/all/catalogue.yml): process-exporter on the application hosts shows the
sample app's process group; a batch job's push to the Pushgateway is scraped with its own labels and
BatchJobPushStale pends once it stops pushing; postgres_exporter against a real PostgreSQL from Debian
reports pg_up 1, its connection string only in a root-owned file."""
import subprocess

import pytest

from conftest import HOSTS, MONITOR, dump, metrics, playbook, sh

APPS = [host for host in HOSTS if host != MONITOR]  # the apps group (process_exporter: {group: apps})
DB_HOST = APPS[0]  # the postgres_exporter group (molecule.yml)
JOB = "monstack_test_nightly_train"
PUSH_URL = f"http://{MONITOR}:9091/metrics/job/{JOB}/instance/gpu1"


@pytest.fixture(scope="module")
def sample_app():
    """The sample inference API on the app hosts (test_5 starts it too; started here if it is not)."""
    if any(sh(h, "systemctl is-active inference-app", check=False).stdout.strip() != "active" for h in APPS):
        run = playbook("playbooks/demo_app.yml")
        assert run.returncode == 0, run.stdout[-3000:]


@pytest.mark.parametrize("host, unit, port", [(h, "process_exporter", 9256) for h in APPS]
                         + [(MONITOR, "pushgateway", 9091), (DB_HOST, "postgres_exporter", 9187)])
def test_entries_run_hardened_as_their_own_user(host, unit, port):
    assert sh(host, f"systemctl is-active {unit}").stdout.strip() == "active"
    pid = sh(host, f"systemctl show -p MainPID --value {unit}").stdout.strip()
    assert sh(host, f"ps -o user= -p {pid}").stdout.strip() == unit
    verify = sh(host, f"systemd-analyze verify /etc/systemd/system/{unit}.service", check=False)
    assert verify.returncode == 0, verify.stderr
    assert "NoNewPrivileges=yes" in sh(host, f"systemctl cat {unit}").stdout
    assert metrics(host, port)


def test_process_exporter_shows_the_sample_apps_process_group(prom, sample_app):
    for host in APPS:
        text = metrics(host, 9256)
        assert 'namedprocess_namegroup_num_procs{groupname="inference_app"} 1' in text, text[-2000:]
    found = prom.wait_for(lambda: {r["metric"]["instance"] for r in prom.query(
        'namedprocess_namegroup_memory_bytes{job="process", groupname="inference_app", memtype="resident"} > 0')}
        >= set(APPS), timeout=60)
    assert found, dump(prom.query('namedprocess_namegroup_num_procs{groupname="inference_app"}'))


def pushed(prom):
    return prom.query(f'monstack_test_last_run_loss{{job="{JOB}"}}')


def stale(prom):
    return [a for a in prom.get("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == "BatchJobPushStale" and a["labels"].get("job") == JOB]


def test_a_batch_push_is_scraped_with_its_own_labels_and_goes_stale(prom):
    app = APPS[0]
    try:
        # from an application host: the unit lets the hosts of its clients group (all) connect
        sh(app, f"printf 'monstack_test_last_run_loss 0.42\\n' | curl -sf --data-binary @- {PUSH_URL}")
        series = prom.wait_for(lambda: pushed(prom), timeout=60)
        assert series, dump(prom.targets())
        labels = series[0]["metric"]
        assert (labels["job"], labels["instance"]) == (JOB, "gpu1"), labels  # honor_labels: the job's own
        assert float(series[0]["value"][1]) == 0.42
        # no further push: older than push_stale_seconds (20 s here), pending for push_stale_for (1m)
        alert = prom.wait_for(lambda: stale(prom), timeout=90)
        assert alert and alert[0]["state"] in ("pending", "firing"), dump(prom.get("/api/v1/alerts"))
    finally:
        sh(app, f"curl -sf -X DELETE {PUSH_URL}", check=False)
    assert prom.wait_for(lambda: not stale(prom), timeout=60), "the alert ends with the deleted group"


def test_postgres_exporter_reports_a_real_postgresql_up(prom):
    # PostgreSQL from Debian (the test host's own suite), installed by molecule/shared/prepare.yml
    installed = sh(DB_HOST, "dpkg -s postgresql", check=False)
    assert "Status: install ok installed" in installed.stdout, "prepare.yml installs PostgreSQL on this host"
    sh(DB_HOST, "systemctl start postgresql && for i in $(seq 60); do "
                "su postgres -c 'psql -qAtc \"select 1\"' >/dev/null 2>&1 && break; sleep 1; done")
    # the role and password of the scenario's exporters_secrets (catalogue.yml)
    made = subprocess.run(["docker", "exec", "-i", DB_HOST, "su", "postgres", "-c", "psql -v ON_ERROR_STOP=1 -qAt"],
                          input="DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'postgres_exporter') "
                                "THEN CREATE ROLE postgres_exporter LOGIN PASSWORD 'molecule-pg-password'; END IF; "
                                "END $$;\nGRANT pg_monitor TO postgres_exporter;\n",
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    up = prom.wait_for(lambda: "\npg_up 1" in "\n" + metrics(DB_HOST, 9187), timeout=60)
    assert up, metrics(DB_HOST, 9187)[-1500:]
    assert prom.wait_for(lambda: prom.query(f'pg_up{{job="postgres", instance="{DB_HOST}"}} == 1'), timeout=60)
    # the connection string: in a root-owned 0640 file systemd reads, not in the unit or the command line
    assert sh(DB_HOST, "stat -c '%a %U %G' /etc/postgres_exporter/secret/env").stdout.split() == \
        ["640", "root", "postgres_exporter"]
    pid = sh(DB_HOST, "systemctl show -p MainPID --value postgres_exporter").stdout.strip()
    shown = sh(DB_HOST, f"systemctl cat postgres_exporter; cat /proc/{pid}/cmdline").stdout
    assert "molecule-pg-password" not in shown and "EnvironmentFile=/etc/postgres_exporter/secret/env" in shown
