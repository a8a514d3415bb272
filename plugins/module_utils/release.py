# -*- coding: utf-8 -*-
"""Upstream releases of the stack's components: asset names, URLs and checksums.

Shared by the filters in plugins/filter/release.py (preflight, docs),
the controller side of the release install (plugins/plugin_utils/release_install.py)
and the host module install_release (a download on the host verifies the same
way). Pure functions; errors are ReleaseError with a message that names the
variable to fix.
"""
from __future__ import annotations

import hashlib
import re


class ReleaseError(Exception):
    """A release that cannot be located or verified; the message names the variable and the fix."""


REPOS = {
    "prometheus": "prometheus/prometheus",
    "alertmanager": "prometheus/alertmanager",
    "node_exporter": "prometheus/node_exporter",
    "blackbox_exporter": "prometheus/blackbox_exporter",
    "cadvisor": "google/cadvisor",
    "victoriametrics": "VictoriaMetrics/VictoriaMetrics",
}

# uname -m (ansible_facts.architecture) -> the architecture names of release assets.
ARCH_MAP = {
    "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "armv7",
    "armv6l": "armv6", "i386": "386", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x",
    "riscv64": "riscv64",
}

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.-]+)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def parse_version(component, version):
    match = _VERSION.match(str(version))
    if not match:
        raise ReleaseError(
            "%s_version: %r is not a release version such as 1.2.3 (no leading 'v', no 'latest')"
            % (component, version))
    return tuple(int(part) for part in match.groups())


def _unknown(component):
    return ReleaseError("release: unknown component %r; known: %s" % (component, ", ".join(sorted(REPOS))))


def upstream_asset(component, version, arch):
    """The asset name the project itself published for this version and architecture."""
    if component not in REPOS:
        raise _unknown(component)
    parsed = parse_version(component, version)
    if component == "cadvisor":
        if parsed < (0, 39, 0):
            if arch != "amd64":
                raise ReleaseError(
                    "cAdvisor %s was released for amd64 only (one binary named 'cadvisor'); no %s binary exists. "
                    "Use cadvisor_version 0.39.0 or later on %s hosts, or cadvisor_install_method: package"
                    % (version, arch, arch))
            return "cadvisor"
        return "cadvisor-v%s-linux-%s" % (version, arch)
    if component == "victoriametrics":
        # one flat archive per platform (victoria-metrics-prod at its top), with
        # <archive minus .tar.gz>_checksums.txt beside it instead of sha256sums.txt
        return "victoria-metrics-linux-%s-v%s.tar.gz" % (arch, version)
    return "%s-%s.linux-%s.tar.gz" % (component, version, arch)


def release_location(component, version, arch, base_url="https://github.com", asset_name=""):
    """Asset name and URLs of one component's release for one architecture."""
    component, version, arch = str(component), str(version), str(arch)
    if asset_name:
        parse_version(component, version)
        asset = str(asset_name).replace("{arch}", arch)
    else:
        asset = upstream_asset(component, version, arch)
    repo = REPOS.get(component)
    if repo is None:
        raise _unknown(component)
    base = str(base_url or "https://github.com").rstrip("/")
    if not re.match(r"^(https?|file)://", base):
        raise ReleaseError("%s_download_base_url: %r must start with https://, http:// or file://"
                           % (component, base_url))
    release_url = "%s/%s/releases/download/v%s" % (base, repo, version)
    return {
        "repo": repo,
        "asset": asset,
        "release_url": release_url,
        "url": "%s/%s" % (release_url, asset),
        "sums_url": "%s/sha256sums.txt" % release_url,
    }


def plain_http(url):
    return str(url or "").strip().lower().startswith("http://")


def plain_http_message(var, url, checksums_var):
    return ("%s: %r is plain HTTP, and the checksums file would come from the same unauthenticated "
            "server as the archive, so anyone on the path could swap both. Fix: use an https:// or file:// "
            "mirror, or pin the SHA-256 of each architecture's asset in %s "
            "(e.g. {amd64: \"<64 hex digits>\"})" % (var, url, checksums_var))


def normalize_digest(value, what):
    """'sha256:<hex>' or '<hex>' (any case) -> '<hex>'; anything else is refused."""
    digest = str(value).strip().lower()
    if digest.startswith("sha256:"):
        digest = digest[len("sha256:"):]
    if not _SHA256.match(digest):
        raise ReleaseError("%s: %r is not a SHA-256 digest (64 hex digits). "
                           "Fix: paste the release's published SHA-256 for that asset" % (what, str(value)[:40]))
    return digest


def checksum_ref(arch, checksums, sums_url, checksums_var="checksums"):
    """``sha256:<hex>`` when ``checksums`` pins ``arch``, else ``sha256:<sums_url>``.
    A sums file over plain http:// is refused (it would come from the same
    unauthenticated server as the asset it is meant to check)."""
    arch = str(arch)
    pinned = (checksums or {}).get(arch) if isinstance(checksums, dict) else None
    if pinned:
        return "sha256:" + normalize_digest(pinned, "%s.%s" % (checksums_var, arch))
    if plain_http(sums_url):
        raise ReleaseError(plain_http_message("%s has no %s entry and the sums file" % (checksums_var, arch),
                                              str(sums_url), checksums_var))
    return "sha256:%s" % sums_url


def split_checksum_ref(ref):
    """``sha256:<hex>`` -> ('digest', hex); ``sha256:<url>`` -> ('url', url)."""
    ref = str(ref or "")
    if not ref.lower().startswith("sha256:"):
        raise ReleaseError("checksum %r: expected sha256:<64 hex digits> or sha256:<URL of a sums file>" % ref[:80])
    rest = ref[len("sha256:"):]
    if _SHA256.match(rest.lower()):
        return "digest", rest.lower()
    if not re.match(r"^(https?|file)://", rest):
        raise ReleaseError("checksum %r: expected sha256:<64 hex digits> or sha256:<URL of a sums file>" % ref[:80])
    return "url", rest


def digest_from_sums(text, asset, sums_url="the sums file"):
    """The SHA-256 of ``asset`` in a sums file: lines '<hex>  <name>' (or '<hex> *<name>',
    './<name>'), or a file holding one digest only (Grafana's <asset>.sha256)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if len(lines) == 1 and len(lines[0].split()) == 1:
        return normalize_digest(lines[0], sums_url)
    for line in lines:
        parts = line.split(None, 1)
        if len(parts) != 2:
            continue
        name = parts[1].strip().lstrip("*")
        if name.startswith("./"):
            name = name[2:]
        if name == asset:
            return normalize_digest(parts[0], "%s (line of %s)" % (sums_url, asset))
    raise ReleaseError("%s lists no SHA-256 for %s. Fix: check the version and the asset name, "
                       "or pin the checksum" % (sums_url, asset))


def sums_problems(role, base_url, checksums=None):
    """Preflight: a plain http:// download base URL without pinned checksums (empty when fine)."""
    if plain_http(base_url) and not (isinstance(checksums, dict) and checksums):
        return [plain_http_message("%s_download_base_url" % role, str(base_url), "%s_checksums" % role)]
    return []


def copy_hashed(response, out, chunk=1 << 20):
    """Copy a download (any object with read()) to the open file ``out`` -> its SHA-256 (hex).
    Used by the controller's cache and by the host download (modules/install_release.py)."""
    digest = hashlib.sha256()
    while True:
        block = response.read(chunk)
        if not block:
            return digest.hexdigest()
        digest.update(block)
        out.write(block)


def sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                return digest.hexdigest()
            digest.update(block)


# The inventory-wide proxy of every release download (controller and hosts): http://[user:password@]host:port.
PROXY_VAR = "monstack_download_proxy"
_PROXY = re.compile(r"^https?://[^\s/]+/?$")


def check_proxy(proxy):
    """A ReleaseError unless ``proxy`` is empty or an http(s):// proxy URL; the value itself is never
    repeated (it may hold a password)."""
    if proxy and not (isinstance(proxy, str) and _PROXY.match(proxy)):
        raise ReleaseError("%s: must be a proxy URL, http://[user:password@]host:port or https://..., with no path "
                           "(its value is not shown: it may hold a password)" % PROXY_VAR)
    return proxy or ""


def open_download(url, timeout, agent, proxy=""):
    """``url`` opened for reading: through ``proxy`` (http(s) URLs only; file:// stays local) when
    one is given, else as before (ansible's open_url, which also honours the https_proxy/http_proxy
    environment). The checksum rules are the callers', unchanged."""
    if not check_proxy(proxy):
        from ansible.module_utils.urls import open_url
        return open_url(url, timeout=timeout, http_agent=agent)
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    return opener.open(urllib.request.Request(url, headers={"User-Agent": agent}), timeout=timeout)
