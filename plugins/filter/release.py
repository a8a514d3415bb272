"""Filter plugins: upstream release download locations of the stack's components.

Thin wrappers over plugins/module_utils/release.py (shared with the release
install, plugins/plugin_utils/release_install.py, and the host module
install_release). Documented for ansible-doc in release.yml,
release_problems.yml, checksum.yml and
sums_problems.yml beside this file.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils.release import (
    REPOS, ReleaseError, checksum_ref, parse_version, release_location, sums_problems, upstream_asset)

__all__ = ["REPOS", "monstack_release", "monstack_release_problems", "monstack_checksum", "monstack_sums_problems",
           "upstream_asset"]


def monstack_release(component, version, arch, base_url="https://github.com", asset_name=""):
    """Asset name and URLs of one component's release for one architecture."""
    try:
        return release_location(component, version, arch, base_url, asset_name)
    except ReleaseError as err:
        raise AnsibleFilterError(str(err)) from None


def monstack_release_problems(component, version, base_url="https://github.com"):
    """Preflight messages for a version or base URL upstream cannot serve (empty when fine)."""
    try:
        upstream_asset(component, version, "amd64") if component != "cadvisor" else parse_version(component, version)
        release_location(component, version, "amd64", base_url, "x")
    except ReleaseError as err:
        return [str(err)]
    return []


def monstack_checksum(arch, checksums, sums_url, checksums_var="checksums"):
    """get_url's ``checksum`` for one architecture's release asset: the digest pinned in
    ``checksums`` (``sha256:<hex>``), else ``sha256:<sums_url>`` (verified against the
    release's sums file). A sums file fetched over plain ``http://`` is refused: it would come
    from the same unauthenticated server as the asset it is meant to check."""
    try:
        return checksum_ref(arch, checksums, sums_url, checksums_var)
    except ReleaseError as err:
        raise AnsibleFilterError(str(err)) from None


def monstack_sums_problems(role, base_url, checksums=None):
    """Preflight: a plain http:// download base URL without pinned checksums (empty when fine)."""
    return sums_problems(role, base_url, checksums)


class FilterModule:
    """monstack release filters."""

    def filters(self):
        return {"release": monstack_release,
                "release_problems": monstack_release_problems,
                "checksum": monstack_checksum,
                "sums_problems": monstack_sums_problems}
