"""The exporter catalogue (roles/exporters): entries checked, merged, turned into component specs
and Prometheus jobs (plugins/plugin_utils/exporter_catalogue.py, plugins/filter/exporter_catalogue.py),
its preflight, and the example inventory's own entry (inventories/example/group_vars/all/exporters.yml)
taken unchanged: rendered, checked by the component action's logic, a hardened unit, its release
installed from the test mirror and run."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ansible_collections.monstack.stack.plugins.filter import exporter_catalogue as filters
from ansible_collections.monstack.stack.plugins.filter.scrape_target_files import scrape_target_files
from ansible_collections.monstack.stack.plugins.plugin_utils import component as comp
from ansible_collections.monstack.stack.plugins.plugin_utils import exporter_catalogue as cat
from ansible_collections.monstack.stack.plugins.plugin_utils import preflight_roles
from ansible_collections.monstack.stack.plugins.plugin_utils import release_install as ri

from helpers import check_filter_sidecar

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventories/example/group_vars/all/exporters.yml"
MIRROR = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack")) / "mirror"
GROUPS = {"all": ["mon", "app"], "prometheus": ["mon"], "apps": ["app"], "pushgateway": ["mon"],
          "postgres_exporter": ["app"], "process_exporter": ["app"]}
DSN = 'postgresql://pgx:pa"ss$word\\1@db:5432/postgres?sslmode=disable'


def entry(**extra):
    base = {"version": "1.0.0", "port": 9999, "release": {"url": "{base_url}/o/p/releases/download/v{version}/"
                                                                 "p-{version}.linux-{arch}.tar.gz"}}
    base.update(extra)
    return base


def spec_of(name, entries=None, group_names=("apps", "postgres_exporter", "pushgateway"), **kw):
    specs = cat.components(cat.catalogue(entries), list(group_names), GROUPS, "file:///mirror", **kw)
    return {s["name"]: s for s in specs}[name]


# ------------------------------------------------------------------ entries
def test_shipped_entries_are_valid_and_named_by_their_groups():
    entries = cat.catalogue({})
    assert set(entries) == {"process_exporter", "postgres_exporter", "pushgateway"}
    for name, item in entries.items():
        assert item["group"] == name and item["user"] == name
    assert entries["pushgateway"]["scrape"]["settings"] == {"honor_labels": True}
    assert entries["pushgateway"]["data_dir"] and entries["pushgateway"]["readiness_path"] == "/-/ready"
    assert entries["postgres_exporter"]["secrets"] == {"DATA_SOURCE_NAME": "env"}
    assert entries["process_exporter"]["capabilities"] == ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"]


def test_a_user_key_changes_only_that_key_and_a_new_name_is_a_new_entry():
    entries = cat.catalogue({"pushgateway": {"group": "batch", "scrape": {"labels": {"team": "ml"}}},
                             "my_exporter": entry()})
    assert entries["pushgateway"]["group"] == "batch"
    assert entries["pushgateway"]["scrape"] == {"job": "pushgateway", "labels": {"team": "ml"},
                                                "settings": {"honor_labels": True}, "enabled": True}
    assert entries["pushgateway"]["port"] == 9091
    assert entries["my_exporter"]["group"] == "my_exporter" and entries["my_exporter"]["scrape"]["job"] == "my_exporter"
    # lists are replaced, not appended to
    assert cat.catalogue({"pushgateway": {"flags": ["--web.listen-address={listen}"]}})["pushgateway"]["flags"] == \
        ["--web.listen-address={listen}"]


# Every wrong entry, and what its error must name.
BAD = [
    ("My-Exporter", entry(), ["My-Exporter", "lower-case"]),
    ("a" * 41, entry(), ["1-40"]),
    ("node_exporter", entry(), ["component of the stack"]),
    ("x", entry(colour="red"), ["exporters_entries.x", "unknown key(s) colour", "known:"]),
    ("x", entry(port=0), ["exporters_entries.x.port", "1-65535"]),
    ("x", entry(port=70000), ["exporters_entries.x.port", "70000"]),
    ("x", entry(port="http"), ["exporters_entries.x.port"]),
    ("x", entry(port=True), ["exporters_entries.x.port"]),
    ("x", entry(version="v1.2.3"), ["exporters_entries.x.version", "no leading v"]),
    ("x", entry(version="latest"), ["exporters_entries.x.version"]),
    ("x", entry(release={}), ["exporters_entries.x.release.url", "missing"]),
    ("x", entry(release={"url": "{base_url}/{owner}/x.tgz"}), ["release.url", "{owner}"]),
    ("x", entry(release={"url": "{base_url}/{arch}/x.tgz"}), ["release.url", "only in the file name"]),
    ("x", entry(release={"url": "{base_url}/x.tgz", "mirror": 1}), ["exporters_entries.x.release", "mirror"]),
    ("x", entry(release={"url": "{base_url}/x.tgz", "checksums": {"amd64": "abc"}}), ["checksums.amd64", "SHA-256"]),
    ("x", entry(release={"url": "{base_url}/x.tgz", "binary": "../bin/sh"}), ["release.binary"]),
    ("x", entry(flags=["--a={secret}"]), ["exporters_entries.x.flags", "{secret}"]),
    ("x", entry(flags="--a=1"), ["exporters_entries.x.flags", "list"]),
    ("x", entry(flags=["--a=1\nExecStartPre=/bin/sh"]), ["line break"]),
    ("x", entry(environment={"A": "x\ny"}), ["exporters_entries.x.environment"]),
    ("x", entry(user="Root User"), ["exporters_entries.x.user"]),
    ("x", entry(capabilities=["SYS_ADMIN"]), ["exporters_entries.x.capabilities", "CAP_NAME"]),
    ("x", entry(hardening={"ExecStartPre=/bin/sh #": "x"}), ["exporters_entries.x.hardening"]),
    ("x", entry(readiness_path="health"), ["exporters_entries.x.readiness_path"]),
    ("x", entry(config={"../passwd": "x"}), ["exporters_entries.x.config"]),
    ("x", entry(config={"a.yml": 3}), ["exporters_entries.x.config.a.yml"]),
    ("x", entry(secrets={"DSN": "argv"}), ["exporters_entries.x.secrets.DSN", "env", "file"]),
    ("x", entry(secrets={"A-B": "env"}), ["exporters_entries.x.secrets", "variable"]),
    ("x", entry(scrape={"job": "node"}), ["exporters_entries.x.scrape.job", "node"]),
    ("x", entry(scrape={"job": "my job"}), ["exporters_entries.x.scrape.job"]),
    ("x", entry(scrape={"labels": {"__address__": "evil:1"}}), ["exporters_entries.x.scrape.labels", "__"]),
    ("x", entry(scrape={"labels": {"instance": "x"}}), ["scrape.labels", "instance"]),
    ("x", entry(scrape={"settings": {"job_name": "y"}}), ["exporters_entries.x.scrape.settings", "job_name"]),
    ("x", entry(ip_allow=["example.com"]), ["exporters_entries.x.ip_allow", "CIDR"]),
    ("x", entry(data_dir="maybe"), ["exporters_entries.x.data_dir"]),
    ("x", "not an entry", ["exporters_entries.x", "mapping"]),
]


@pytest.mark.parametrize("name, value, words", BAD, ids=[f"{n[:12]}-{i}" for i, (n, _v, _w) in enumerate(BAD)])
def test_a_wrong_entry_is_refused_naming_the_field(name, value, words):
    with pytest.raises(cat.CatalogueError) as err:
        cat.catalogue({name: value})
    for word in words:
        assert word in str(err.value), str(err.value)


def test_two_entries_with_one_job_are_refused():
    with pytest.raises(cat.CatalogueError, match="the scrape job 'process' is mine's too"):
        cat.catalogue({"mine": entry(scrape={"job": "process"})})


def test_the_filter_raises_ansible_errors():
    from ansible.errors import AnsibleFilterError
    with pytest.raises(AnsibleFilterError, match="exporters_entries.x.port"):
        filters.monstack_exporter_catalogue({"x": entry(port=-1)})
    for name in ("exporter_catalogue", "exporter_components", "exporter_scrape_jobs"):
        check_filter_sidecar(filters, name)


# ------------------------------------------------------------------ specs
def test_specs_only_for_the_groups_of_the_host():
    entries = cat.catalogue({})
    assert [s["name"] for s in cat.components(entries, ["prometheus"], GROUPS, "")] == []
    assert [s["name"] for s in cat.components(entries, ["pushgateway", "process_exporter"], GROUPS, "")] == \
        ["process_exporter", "pushgateway"]


def test_postgres_dsn_is_a_secret_file_read_by_systemd_never_the_command_line():
    spec = spec_of("postgres_exporter", secrets={"postgres_exporter": {"DATA_SOURCE_NAME": DSN}})
    secret = spec["file_sets"]["secrets"]
    assert secret["secret"] is True and secret["mode"] == "0640" and secret["owner"] == "root"
    assert secret["group"] == "postgres_exporter" and secret["path"] == "/etc/postgres_exporter/secret"
    line = secret["files"]["env"].strip()
    assert line == 'DATA_SOURCE_NAME="postgresql://pgx:pa\\"ss\\$word\\\\1@db:5432/postgres?sslmode=disable"'
    normal = comp.normalise(spec)
    unit = comp.unit_text(normal, "postgres_exporter")
    assert "EnvironmentFile=/etc/postgres_exporter/secret/env" in unit
    assert "pa\"ss" not in unit and "pgx" not in unit and "DATA_SOURCE_NAME" not in unit
    assert all("pgx" not in flag for flag in normal["service"]["flags"])
    # the secret set is written in a call of its own that is never logged (the action's _files)
    assert comp.extra_sets(normal, unit, None)["unit"]["secret"] is False


def test_the_env_file_reads_back_as_the_dsn_in_systemd_syntax():
    """systemd's EnvironmentFile= parsing of a double-quoted value (systemd.exec(5)): \\\\, \\" and \\$."""
    line = spec_of("postgres_exporter", secrets={"postgres_exporter": {"DATA_SOURCE_NAME": DSN}})[
        "file_sets"]["secrets"]["files"]["env"].strip()
    value = line.split("=", 1)[1]
    assert value[0] == value[-1] == '"'
    assert re.sub(r'\\(["\\$`])', r"\1", value[1:-1]) == DSN


def test_process_exporter_spec_caps_config_and_the_model_server_groups():
    spec = spec_of("process_exporter", group_names=["process_exporter"])
    unit = comp.unit_text(comp.normalise(spec), "process_exporter", ["10.0.0.9"])
    assert "AmbientCapabilities=CAP_DAC_READ_SEARCH CAP_SYS_PTRACE" in unit
    assert "CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_SYS_PTRACE" in unit
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "User=process_exporter", "IPAddressDeny=any",
                 "SystemCallFilter=~@privileged"):
        assert line in unit
    assert "--config.path=/etc/process_exporter/process-exporter.yml" in unit
    text = spec["file_sets"]["config"]["files"]["process-exporter.yml"]
    config = yaml.safe_load(text)
    assert [group["name"] for group in config["process_names"]] == ["{{.Matches.server}}", "{{.Comm}}"]
    server = re.compile(config["process_names"][0]["cmdline"][0])
    cases = {"/usr/bin/python3 /opt/inference-app/inference_app.py --listen 0.0.0.0 --port 8000": "inference_app",
             "python -m vllm.entrypoints.openai.api_server --model x": "vllm.entrypoints.openai.api_server",
             "/usr/bin/python3 -u serve.py": "serve", "python3.11 -O /srv/app/worker": "worker"}
    for cmdline, name in cases.items():
        assert server.search(cmdline).group("server") == name, cmdline
    assert server.search("/usr/bin/tritonserver --model-repository=/models") is None


def test_pushgateway_spec_data_dir_clients_and_readiness():
    spec = spec_of("pushgateway", ip_allow=["10.9.0.0/16"])
    assert spec["dirs"]["/var/lib/pushgateway"] == {"owner": "pushgateway", "group": "pushgateway", "mode": "0750"}
    assert spec["service"]["hardening"]["ReadWritePaths"] == "/var/lib/pushgateway"
    assert "--persistence.file=/var/lib/pushgateway/pushgateway.data" in spec["service"]["flags"]
    assert spec["service"]["ip_allow_hosts"] == ["app", "mon"]  # Prometheus and the clients (all)
    assert spec["service"]["ip_allow"] == ["10.9.0.0/16"]
    assert spec["check"]["ready_url"] == "http://127.0.0.1:9091/-/ready"
    assert spec["tags"] == ["exporters"]
    assert spec["release"]["release_url"] == "file:///mirror/prometheus/pushgateway/releases/download/v1.11.3"
    assert spec["release"]["asset"] == "pushgateway-1.11.3.linux-{arch}.tar.gz"
    off = spec_of("pushgateway", ip_restrict=False)
    assert off["service"]["ip_restrict"] is False


def test_the_release_plan_of_an_entry_names_the_entry_in_errors():
    spec = spec_of("pushgateway", {"pushgateway": {"release": {"checksums": {"amd64": "a" * 64}}}})
    plan = ri.release_plan(spec["release"], "x86_64")
    assert plan["url"].endswith("/v1.11.3/pushgateway-1.11.3.linux-amd64.tar.gz")
    assert plan["checksum"] == "sha256:" + "a" * 64
    spec["release"]["release_url"] = "ftp://mirror/x"
    with pytest.raises(ri.ReleaseError, match="exporters_entries.pushgateway.release.base_url"):
        ri.release_plan(spec["release"], "x86_64")


@pytest.mark.parametrize("run, skip, steps", [
    (["exporters"], [], {"install", "configure", "run"}),
    (["exporters_configure"], [], {"configure"}),
    (["pushgateway_install"], [], {"install"}),
    (["all"], ["exporters_install"], {"configure", "run"}),
    (["all"], ["pushgateway"], set()),
    (["node_exporter"], [], set()),
])
def test_the_exporters_tags_select_the_steps_of_every_entry(run, skip, steps):
    assert comp.selected_steps("pushgateway", run, skip, ["exporters"]) == steps


# ------------------------------------------------------------------ Prometheus
def test_scrape_jobs_and_their_target_files_carry_the_entry_labels():
    entries = cat.catalogue({"pushgateway": {"scrape": {"labels": {"team": "ml"}}}})
    jobs = cat.scrape_jobs(entries, {"pushgateway": ["mon"], "process_exporter": []})
    assert jobs == [{"job": "pushgateway", "group": "pushgateway", "port_var": "", "default_port": 9091,
                     "state_var": "exporters_state", "labels": {"team": "ml"},
                     "scrape_settings": {"honor_labels": True}}]
    hostvars = {"mon": {"monstack_environment": "prod"}}
    files = scrape_target_files(jobs, {"pushgateway": ["mon"]}, hostvars)
    assert yaml.safe_load(files["pushgateway.yml"]) == [
        {"targets": ["mon:9091"], "labels": {"team": "ml", "instance": "mon", "host": "mon", "environment": "prod"}}]
    absent = scrape_target_files(jobs, {"pushgateway": ["mon"]}, {"mon": {"exporters_state": "absent"}})
    assert yaml.safe_load(absent["pushgateway.yml"]) == []
    assert cat.scrape_jobs(cat.catalogue({"pushgateway": {"scrape": {"enabled": False}}}), {"pushgateway": ["m"]}) == []


# ------------------------------------------------------------------ preflight
def pre(**over):
    v = {"exporters_entries": {}, "exporters_state": "present", "exporters_secrets": {}, "inventory_hostname": "app",
         "group_names": ["postgres_exporter"], "groups": GROUPS}
    v.update(over)
    return preflight_roles.exporters(v)


def test_preflight_names_every_problem_of_a_host():
    assert pre(exporters_secrets={"postgres_exporter": {"DATA_SOURCE_NAME": "postgresql://x"}}) == []
    missing = pre()
    assert len(missing) == 1 and "exporters_secrets.postgres_exporter.DATA_SOURCE_NAME: not set" in missing[0]
    assert pre(exporters_state="absent") == []
    broken = pre(exporters_entries={"x": entry(port=0)})
    assert len(broken) == 1 and "exporters_entries.x.port" in broken[0] and "docs/exporters.md" in broken[0]
    clash = pre(group_names=["pushgateway"], exporters_entries={"mine": entry(group="pushgateway", port=9091)})
    assert any("port 9091" in p for p in clash), clash
    loop = pre(group_names=["pushgateway"], exporters_entries={"pushgateway": {"listen_address": "127.0.0.1"}})
    assert any("loopback" in p for p in loop), loop
    newline = pre(exporters_secrets={"postgres_exporter": {"DATA_SOURCE_NAME": "a\nb"}})
    assert any("line break" in p for p in newline), newline
    assert preflight_roles.ROLE_CHECKS["exporters"] is preflight_roles.exporters


# --------------------------------------------------- the example inventory's entry
def example_entries():
    return yaml.safe_load(EXAMPLE.read_text())["exporters_entries"]


def test_the_example_entry_renders_a_checked_hardened_component():
    entries = cat.catalogue(example_entries())
    assert "redis_exporter" in entries
    [spec] = cat.components(entries, ["redis_exporter"], {"prometheus": ["mon1"]}, "https://github.com")
    normal = comp.normalise(spec)  # the component action's own checks
    assert normal["release"]["asset"] == "redis_exporter-v1.45.0.linux-{arch}.tar.gz"
    unit = comp.unit_text(normal, normal["user"]["name"], ["192.0.2.10"])
    for line in ("User=redis_exporter", "ExecStart=/usr/local/bin/redis_exporter", "--web.listen-address=0.0.0.0:9121",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=", "PrivateTmp=yes",
                 "IPAddressDeny=any", "IPAddressAllow=192.0.2.10", "SystemCallFilter=@system-service"):
        assert line in unit.splitlines() or line in unit, line
    assert "AmbientCapabilities" not in unit
    plan = ri.release_plan(normal["release"], "aarch64")
    assert plan["url"] == ("https://github.com/oliver006/redis_exporter/releases/download/v1.45.0/"
                           "redis_exporter-v1.45.0.linux-arm64.tar.gz")
    assert plan["sums_url"].endswith("/v1.45.0/sha256sums.txt")
    jobs = cat.scrape_jobs(entries, {"redis_exporter": ["app1"]})
    assert jobs[0]["job"] == "redis" and jobs[0]["labels"] == {"team": "ml-platform"}


@pytest.mark.skipif(not (MIRROR / "oliver006/redis_exporter/releases/download/v1.45.0").is_dir(),
                    reason="the test mirror has no redis_exporter 1.45.0 (tools/build_mirror.py builds it)")
def test_the_example_entry_installs_from_the_mirror_and_runs(tmp_path):
    from test_release_install import FakeAction
    [spec] = cat.components(cat.catalogue(example_entries()), ["redis_exporter"], {}, f"file://{MIRROR}")
    release = dict(comp.normalise(spec)["release"], cache_dir=str(tmp_path / "cache"),
                   install_root=str(tmp_path / "opt"), link_dir=str(tmp_path / "bin"))
    (tmp_path / "bin").mkdir()
    first = ri.ensure_release(FakeAction(), {}, release, "x86_64", False)
    assert first.get("unpacked") and not first.get("failed"), first
    binary = tmp_path / "bin/redis_exporter"
    assert os.readlink(binary) == str(tmp_path / "opt/redis_exporter/1.45.0/redis_exporter")
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    assert "1.45.0" in out.stdout + out.stderr
    again = ri.ensure_release(FakeAction(), {}, release, "x86_64", False)
    assert again["changed"] is False
