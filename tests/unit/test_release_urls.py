"""The roles' download URLs are the real upstream ones, per component and version.

The URLs below are release assets as the projects published them on GitHub
(checked against their release pages). The roles compute their URL with the
release filter (roles/common/vars/main.yml), so the filter must give
each of them exactly.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import REPO_ROOT
from ansible_collections.monstack.stack.plugins.filter.release import monstack_checksum, monstack_release, monstack_sums_problems

GH = "https://github.com"
UPSTREAM = [
    ("prometheus", "3.5.0", "amd64",
     f"{GH}/prometheus/prometheus/releases/download/v3.5.0/prometheus-3.5.0.linux-amd64.tar.gz"),
    ("prometheus", "2.53.4", "arm64",
     f"{GH}/prometheus/prometheus/releases/download/v2.53.4/prometheus-2.53.4.linux-arm64.tar.gz"),
    ("prometheus", "3.11.3", "amd64",
     f"{GH}/prometheus/prometheus/releases/download/v3.11.3/prometheus-3.11.3.linux-amd64.tar.gz"),
    ("alertmanager", "0.27.0", "amd64",
     f"{GH}/prometheus/alertmanager/releases/download/v0.27.0/alertmanager-0.27.0.linux-amd64.tar.gz"),
    ("alertmanager", "0.33.1", "arm64",
     f"{GH}/prometheus/alertmanager/releases/download/v0.33.1/alertmanager-0.33.1.linux-arm64.tar.gz"),
    ("node_exporter", "1.8.2", "amd64",
     f"{GH}/prometheus/node_exporter/releases/download/v1.8.2/node_exporter-1.8.2.linux-amd64.tar.gz"),
    ("node_exporter", "1.11.1", "armv7",
     f"{GH}/prometheus/node_exporter/releases/download/v1.11.1/node_exporter-1.11.1.linux-armv7.tar.gz"),
    ("blackbox_exporter", "0.25.0", "amd64",
     f"{GH}/prometheus/blackbox_exporter/releases/download/v0.25.0/blackbox_exporter-0.25.0.linux-amd64.tar.gz"),
    ("blackbox_exporter", "0.28.0", "arm64",
     f"{GH}/prometheus/blackbox_exporter/releases/download/v0.28.0/blackbox_exporter-0.28.0.linux-arm64.tar.gz"),
    # cAdvisor: one amd64 binary named plain "cadvisor" before 0.39 ...
    ("cadvisor", "0.38.7", "amd64", f"{GH}/google/cadvisor/releases/download/v0.38.7/cadvisor"),
    ("cadvisor", "0.37.5", "amd64", f"{GH}/google/cadvisor/releases/download/v0.37.5/cadvisor"),
    # ... and cadvisor-v<version>-linux-<arch> from 0.39 on.
    ("cadvisor", "0.39.0", "amd64",
     f"{GH}/google/cadvisor/releases/download/v0.39.0/cadvisor-v0.39.0-linux-amd64"),
    ("cadvisor", "0.49.1", "amd64",
     f"{GH}/google/cadvisor/releases/download/v0.49.1/cadvisor-v0.49.1-linux-amd64"),
    ("cadvisor", "0.57.0", "arm64",
     f"{GH}/google/cadvisor/releases/download/v0.57.0/cadvisor-v0.57.0-linux-arm64"),
    # VictoriaMetrics: victoria-metrics-linux-<arch>-v<version>.tar.gz (flat, victoria-metrics-prod)
    ("victoriametrics", "1.83.0", "amd64",
     f"{GH}/VictoriaMetrics/VictoriaMetrics/releases/download/v1.83.0/victoria-metrics-linux-amd64-v1.83.0.tar.gz"),
    ("victoriametrics", "1.145.0", "arm64",
     f"{GH}/VictoriaMetrics/VictoriaMetrics/releases/download/v1.145.0/victoria-metrics-linux-arm64-v1.145.0.tar.gz"),
]


@pytest.mark.parametrize("component,version,arch,url", UPSTREAM,
                         ids=[f"{c}-{v}-{a}" for c, v, a, _ in UPSTREAM])
def test_upstream_url(component, version, arch, url):
    assert monstack_release(component, version, arch)["url"] == url


def test_sums_file_beside_the_release():
    release = monstack_release("node_exporter", "1.11.1", "amd64")
    assert release["sums_url"] == f"{GH}/prometheus/node_exporter/releases/download/v1.11.1/sha256sums.txt"


def test_mirror_keeps_the_layout():
    release = monstack_release("cadvisor", "0.38.7", "amd64", "file:///var/cache/monstack/mirror/")
    assert release["url"] == "file:///var/cache/monstack/mirror/google/cadvisor/releases/download/v0.38.7/cadvisor"


def test_asset_name_override():
    release = monstack_release("prometheus", "3.5.3", "arm64", GH, "prom-{arch}.tgz")
    assert release["asset"] == "prom-arm64.tgz"


@pytest.mark.parametrize("args,message", [
    (("cadvisor", "0.38.7", "arm64"), "amd64 only"),
    (("prometheus", "v3.5.0", "amd64"), "prometheus_version: 'v3.5.0'"),
    (("prometheus", "latest", "amd64"), "no leading 'v', no 'latest'"),
    (("grafana-agent", "1.0.0", "amd64"), "unknown component"),
    (("node_exporter", "1.11.1", "amd64", "github.com"), "node_exporter_download_base_url"),
])
def test_clear_errors(args, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(")):
        monstack_release(*args)


def _default(role: str, name: str):
    path = f"{REPO_ROOT}/roles/{role}/defaults/main.yml"
    if role == "prometheus":
        path = f"{REPO_ROOT}/roles/prometheus/defaults/main/main.yml"
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)[name]


@pytest.mark.parametrize("role", ["prometheus", "alertmanager", "node_exporter", "cadvisor", "blackbox_exporter"])
def test_role_defaults_resolve_on_the_real_site(role):
    """The defaults (version, upstream naming) give an asset that exists upstream for amd64."""
    version = _default(role, f"{role}_version")
    asset_var = "cadvisor_binary_name" if role == "cadvisor" else f"{role}_archive_name"
    assert _default(role, asset_var) == "", "upstream naming is the default"
    release = monstack_release(role, version, "amd64")
    assert release["url"].startswith(f"{GH}/")
    if role == "cadvisor":
        assert tuple(int(p) for p in version.split(".")) >= (0, 57, 0)


# issue 24 row 16: a sums file fetched over plain HTTP comes from the same unauthenticated
# server as the archive, so it is refused unless the inventory pins the checksum.
DIGEST = "0123456789abcdef" * 4


@pytest.mark.parametrize("base", ["https://github.com", "file:///var/cache/monstack/mirror",
                                  "https://artifacts.corp.test/github"])
def test_sums_file_over_https_or_file_is_used(base):
    sums = monstack_release("node_exporter", "1.11.1", "amd64", base)["sums_url"]
    assert monstack_checksum("amd64", {}, sums, "node_exporter_checksums") == f"sha256:{sums}"
    assert monstack_sums_problems("node_exporter", base, {}) == []


def test_sums_file_over_plain_http_is_refused():
    sums = monstack_release("node_exporter", "1.11.1", "amd64", "http://artifacts.corp.test/github")["sums_url"]
    with pytest.raises(AnsibleFilterError) as err:
        monstack_checksum("amd64", {}, sums, "node_exporter_checksums")
    message = str(err.value)
    assert message.startswith("node_exporter_checksums has no amd64 entry and the sums file: 'http://artifacts.corp.test")
    assert "is plain HTTP" in message and "pin the SHA-256 of each architecture's asset in node_exporter_checksums" \
        in message
    # another architecture's pin does not help this one
    with pytest.raises(AnsibleFilterError):
        monstack_checksum("amd64", {"arm64": DIGEST}, sums, "node_exporter_checksums")
    for base in ("http://artifacts.corp.test/github", "HTTP://artifacts.corp.test"):
        [problem] = monstack_sums_problems("node_exporter", base, {})
        assert problem.startswith(f"node_exporter_download_base_url: {base!r} is plain HTTP")


def test_pinned_checksum_wins_over_any_sums_file():
    http_sums = "http://artifacts.corp.test/x/sha256sums.txt"
    assert monstack_checksum("amd64", {"amd64": DIGEST}, http_sums) == f"sha256:{DIGEST}"
    assert monstack_checksum("amd64", {"amd64": "SHA256:" + DIGEST.upper()}, http_sums) == f"sha256:{DIGEST}"
    assert monstack_sums_problems("node_exporter", "http://artifacts.corp.test", {"amd64": DIGEST}) == []
    with pytest.raises(AnsibleFilterError, match=r"x_checksums.amd64: 'PASTE' is not a SHA-256 digest"):
        monstack_checksum("amd64", {"amd64": "PASTE"}, http_sums, "x_checksums")


def test_roles_verify_downloads_through_the_filter():
    """Every download (controller or host, every role) takes its checksum from the function behind
    checksum (module_utils/release.checksum_ref): the release install of the component
    action, fed each role's <role>_checksums."""
    import yaml
    filt = (Path(REPO_ROOT) / "plugins/filter/release.py").read_text()
    assert "return checksum_ref(arch, checksums, sums_url, checksums_var)" in filt
    install = (Path(REPO_ROOT) / "plugins/plugin_utils/release_install.py").read_text()
    assert 'ref = checksum_ref(asset_arch, spec["checksums"], sums_url, var("checksums"))' in install
    assert "plan[\"checksum\"]" in install  # the verified digest of every download (controller and host)
    for role in ("node_exporter", "cadvisor", "blackbox_exporter", "prometheus", "victoriametrics", "alertmanager",
                 "grafana"):
        spec = yaml.safe_load((Path(REPO_ROOT) / "roles" / role / "vars/main.yml").read_text())[role + "_component"]
        assert spec["release"]["checksums"] == "{{ %s_checksums }}" % role, role
        assert not spec["release"].get("checksum_ref"), role