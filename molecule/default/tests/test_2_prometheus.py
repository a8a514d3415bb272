"""Prometheus on the monitoring host: targets from the inventory, rules, config."""
from conftest import HOSTS, MONITOR, dump, sh

EXPECTED = {("node", h) for h in HOSTS} | {("cadvisor", h) for h in HOSTS} | {
    ("prometheus", MONITOR), ("alertmanager", MONITOR), ("alertmanager", "monstack-app1")}


def test_every_inventory_target_is_up(prom):
    expected = {k for k in EXPECTED if k[0] != "alertmanager" or has_alertmanager()}

    def all_up():
        health = prom.health()
        return health if all(health.get(k) == "up" for k in expected) else None

    health = prom.wait_for(all_up, timeout=120) or prom.health()
    missing = {k: health.get(k, "absent") for k in expected if health.get(k) != "up"}
    assert not missing, f"targets not up: {missing}\nall: {dump(health)}"


def has_alertmanager():
    return sh(MONITOR, "systemctl is-active alertmanager", check=False).stdout.strip() == "active"


def test_targets_carry_host_labels(prom):
    for target in prom.targets():
        labels = target["labels"]
        if labels["job"] in ("node", "cadvisor"):
            assert labels["host"] == labels["instance"]
            assert target["scrapeUrl"].startswith(f"http://{labels['instance']}:")


def test_file_sd_files_and_no_reload_on_targets(prom):
    listing = sh(MONITOR, "ls /etc/prometheus/file_sd").stdout.split()
    for job in ("node.yml", "cadvisor.yml", "prometheus.yml", "alertmanagers.yml"):
        assert job in listing
    config = sh(MONITOR, "cat /etc/prometheus/prometheus.yml").stdout
    assert "monstack-app1" not in config  # hosts live in file_sd files, not in prometheus.yml
    assert '"/etc/prometheus/rules/*.yml"' in config  # absolute paths


def test_shipped_rules_loaded(prom):
    groups = prom.get("/api/v1/rules")["groups"]
    names = {rule["name"] for g in groups for rule in g["rules"]}
    for alert in ("TargetDown", "Watchdog", "NodeFilesystemAlmostOutOfSpace"):
        assert alert in names, sorted(names)
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), dump(groups)


def test_config_reload_success_and_hardened_unit(prom):
    assert prom.query("prometheus_config_last_reload_successful")[0]["value"][1] == "1"
    unit = sh(MONITOR, "systemctl cat prometheus").stdout
    assert "ProtectSystem=strict" in unit and "NoNewPrivileges=yes" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    stat = sh(MONITOR, "stat -c '%U %a' /var/lib/prometheus /etc/prometheus/prometheus.yml").stdout.split()
    assert stat == ["prometheus", "750", "root", "640"]


def test_server_units_verify_and_report_security(record_property):
    for unit in ("prometheus", "alertmanager"):
        result = sh(MONITOR, f"systemd-analyze verify /etc/systemd/system/{unit}.service", check=False)
        assert result.returncode == 0, result.stderr
        score = sh(MONITOR, f"systemd-analyze security {unit} --no-pager | tail -1").stdout.strip()
        record_property(f"systemd_security_{unit}", score)
        assert "Overall exposure level" in score
        user = sh(MONITOR, f"ps -o user= -p $(systemctl show -p MainPID --value {unit})").stdout.strip()
        assert user == unit
