"""Filter plugin: upstream release download locations of the stack's components."""
from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: monstack_release
short_description: Where an upstream release asset of a monitoring component is downloaded from
description:
  - Computes, for one component, version and CPU architecture, the release asset name and its
    download URL in the GitHub release layout
    C(<base_url>/<owner>/<repo>/releases/download/v<version>/<asset>), with the asset naming
    each project used for that version.
  - "Prometheus, Alertmanager and node_exporter publish C(<name>-<version>.linux-<arch>.tar.gz)
    with a C(sha256sums.txt) beside it."
  - "cAdvisor publishes a single binary: before 0.39 one amd64 binary named plain C(cadvisor);
    from 0.39 C(cadvisor-v<version>-linux-<arch>)."
  - A mirror that keeps GitHub's layout works by changing O(base_url) only.
  - O(asset_name) overrides the asset name (C({arch}) is replaced), for mirrors that rename.
positional: version, arch, base_url, asset_name
options:
  _input:
    description: Component name (C(prometheus), C(alertmanager), C(node_exporter), C(cadvisor)).
    type: str
    required: true
  version:
    description: Upstream version, without a leading C(v).
    type: str
    required: true
  arch:
    description: Release architecture name (C(amd64), C(arm64), ...), not the kernel's.
    type: str
    required: true
  base_url:
    description: Base URL of the releases (GitHub or a mirror with its layout).
    type: str
    default: https://github.com
  asset_name:
    description: Asset name to use instead of upstream's; C({arch}) is replaced. Empty for upstream's.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Download node_exporter for this host
  ansible.builtin.get_url:
    url: "{{ release.url }}"
    dest: "/tmp/{{ release.asset }}"
    checksum: "sha256:{{ release.sums_url }}"
    mode: "0600"
  vars:
    release: "{{ 'node_exporter' | monstack_release('1.11.1', 'amd64') }}"
"""

RETURN = r"""
_value:
  description: The asset and its URLs.
  type: dict
  contains:
    repo: {description: GitHub owner/repository., type: str}
    asset: {description: Release asset file name., type: str}
    release_url: {description: URL of the release directory (no trailing slash)., type: str}
    url: {description: URL of the asset., type: str}
    sums_url: {description: URL of the release's sha256sums.txt (cAdvisor publishes none)., type: str}
  sample:
    repo: prometheus/node_exporter
    asset: node_exporter-1.11.1.linux-amd64.tar.gz
    release_url: https://github.com/prometheus/node_exporter/releases/download/v1.11.1
    url: https://github.com/prometheus/node_exporter/releases/download/v1.11.1/node_exporter-1.11.1.linux-amd64.tar.gz
    sums_url: https://github.com/prometheus/node_exporter/releases/download/v1.11.1/sha256sums.txt
"""

REPOS = {
    "prometheus": "prometheus/prometheus",
    "alertmanager": "prometheus/alertmanager",
    "node_exporter": "prometheus/node_exporter",
    "cadvisor": "google/cadvisor",
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
