"""Filter plugins: upstream release download locations of the stack's components.

Documented for ansible-doc in monstack_release.yml and monstack_release_problems.yml beside this file.
"""
from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError


REPOS = {
    "prometheus": "prometheus/prometheus",
    "alertmanager": "prometheus/alertmanager",
    "node_exporter": "prometheus/node_exporter",
    "blackbox_exporter": "prometheus/blackbox_exporter",
    "cadvisor": "google/cadvisor",
    "victoriametrics": "VictoriaMetrics/VictoriaMetrics",
}
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.-]+)?$")


def _parse_version(component: str, version) -> tuple[int, int, int]:
    match = _VERSION.match(str(version))
    if not match:
        raise AnsibleFilterError(
            f"{component}_version: {version!r} is not a release version such as 1.2.3 "
            "(no leading 'v', no 'latest')")
    return tuple(int(part) for part in match.groups())


def upstream_asset(component: str, version: str, arch: str) -> str:
    """The asset name the project itself published for this version and architecture."""
    if component not in REPOS:
        raise AnsibleFilterError(
            f"monstack_release: unknown component {component!r}; known: {', '.join(sorted(REPOS))}")
    parsed = _parse_version(component, version)
    if component == "cadvisor":
        if parsed < (0, 39, 0):
            if arch != "amd64":
                raise AnsibleFilterError(
                    f"cAdvisor {version} was released for amd64 only (one binary named 'cadvisor'); "
                    f"no {arch} binary exists. Use cadvisor_version 0.39.0 or later on {arch} hosts, "
                    "or cadvisor_install_method: package")
            return "cadvisor"
        return f"cadvisor-v{version}-linux-{arch}"
    if component == "victoriametrics":
        # one flat archive per platform (victoria-metrics-prod at its top), with
        # <archive minus .tar.gz>_checksums.txt beside it instead of sha256sums.txt
        return f"victoria-metrics-linux-{arch}-v{version}.tar.gz"
    return f"{component}-{version}.linux-{arch}.tar.gz"


def monstack_release(component, version, arch, base_url="https://github.com", asset_name=""):
    """Asset name and URLs of one component's release for one architecture."""
    component, version, arch = str(component), str(version), str(arch)
    if asset_name:
        _parse_version(component, version)
        asset = str(asset_name).replace("{arch}", arch)
    else:
        asset = upstream_asset(component, version, arch)
    repo = REPOS.get(component)
    if repo is None:
        raise AnsibleFilterError(
            f"monstack_release: unknown component {component!r}; known: {', '.join(sorted(REPOS))}")
    base = str(base_url or "https://github.com").rstrip("/")
    if not re.match(r"^(https?|file)://", base):
        raise AnsibleFilterError(
            f"{component}_download_base_url: {base_url!r} must start with https://, http:// or file://")
    release_url = f"{base}/{repo}/releases/download/v{version}"
    return {
        "repo": repo,
        "asset": asset,
        "release_url": release_url,
        "url": f"{release_url}/{asset}",
        "sums_url": f"{release_url}/sha256sums.txt",
    }


def monstack_release_problems(component, version, base_url="https://github.com"):
    """Preflight messages for a version or base URL upstream cannot serve (empty when fine)."""
    try:
        upstream_asset(component, version, "amd64") if component != "cadvisor" else _parse_version(component, version)
        monstack_release(component, version, "amd64", base_url, "x")
    except AnsibleFilterError as err:
        return [f"{err.message}"]
    return []


class FilterModule:
    """monstack release filters."""

    def filters(self):
        return {"monstack_release": monstack_release,
                "monstack_release_problems": monstack_release_problems}
