"""Filter plugins: upstream release download locations of the stack's components.

Documented for ansible-doc in monstack_release.yml, monstack_release_problems.yml,
monstack_checksum.yml and monstack_sums_problems.yml beside this file.
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


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _plain_http(url) -> bool:
    return str(url or "").strip().lower().startswith("http://")


def _plain_http_message(var: str, url: str, checksums_var: str) -> str:
    return (f"{var}: {url!r} is plain HTTP, and the checksums file would come from the same unauthenticated "
            "server as the archive, so anyone on the path could swap both. Fix: use an https:// or file:// "
            f"mirror, or pin the SHA-256 of each architecture's asset in {checksums_var} "
            "(e.g. {amd64: \"<64 hex digits>\"})")


def monstack_checksum(arch, checksums, sums_url, checksums_var="checksums"):
    """get_url's ``checksum`` for one architecture's release asset: the digest pinned in
    ``checksums`` (``sha256:<hex>``), else ``sha256:<sums_url>`` (verified against the release's
    sums file). A sums file fetched over plain ``http://`` is refused: it would come from the same
    unauthenticated server as the asset it is meant to check."""
    arch = str(arch)
    pinned = (checksums or {}).get(arch) if isinstance(checksums, dict) else None
    if pinned:
        digest = str(pinned).strip().lower()
        if digest.startswith("sha256:"):
            digest = digest[len("sha256:"):]
        if not _SHA256.match(digest):
            raise AnsibleFilterError(
                f"{checksums_var}.{arch}: {str(pinned)[:40]!r} is not a SHA-256 digest (64 hex digits). "
                "Fix: paste the release's published SHA-256 for that asset")
        return f"sha256:{digest}"
    if _plain_http(sums_url):
        raise AnsibleFilterError(_plain_http_message(f"{checksums_var} has no {arch} entry and the sums file",
                                                     str(sums_url), checksums_var))
    return f"sha256:{sums_url}"


def monstack_sums_problems(role, base_url, checksums=None):
    """Preflight: a plain http:// download base URL without pinned checksums (empty when fine)."""
    if _plain_http(base_url) and not (isinstance(checksums, dict) and checksums):
        return [_plain_http_message(f"{role}_download_base_url", str(base_url), f"{role}_checksums")]
    return []


class FilterModule:
    """monstack release filters."""

    def filters(self):
        return {"monstack_release": monstack_release,
                "monstack_release_problems": monstack_release_problems,
                "monstack_checksum": monstack_checksum,
                "monstack_sums_problems": monstack_sums_problems}
