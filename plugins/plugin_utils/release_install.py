# -*- coding: utf-8 -*-
"""The release install of a component, controller side (called by the action monstack.stack.component).

``ensure_release(action, task_vars, release, arch, check_mode)`` installs one component's release on
the host of ``action`` by one of three methods (``release['method']``):

archive   the upstream release asset (a tarball or a single binary). With ``download_on: controller``
          (the default) it is downloaded once on the controller into the cache directory, per asset
          under a file lock (concurrent forks download it once), verified against the pinned SHA-256
          or the release's sums file (never one over plain http://), renamed into place, then sent to
          the host; with ``download_on: host`` the host downloads and verifies it itself.
local     the same from a file on the controller (``local_path``, ``{arch}`` replaced), air-gapped.
package   the distribution package, its own services masked first (only the role's unit runs it).

Downloads (the asset and its sums file, on the controller or the host) go through the inventory's
``monstack_download_proxy`` when it is set (module_utils/release.py, open_download); the checksum
rules are the same with or without it.

The host module monstack.stack.install_release unpacks the binaries (or all of it) into
``<install_root>/<name>/<version>/`` and links them into /usr/local/bin. A host whose release is
already there is never downloaded for: the module is asked first, without a source.

``release_plan`` is the pure part (names, URLs, checksum, paths) and has unit tests of its own.
"""
from __future__ import annotations

import fcntl
import os
import tempfile

from ansible_collections.monstack.stack.plugins.module_utils.release import (
    ARCH_MAP, PROXY_VAR, ReleaseError, check_proxy, checksum_ref, copy_hashed, digest_from_sums, open_download,
    parse_version, plain_http, plain_http_message, release_location, sha256_file, split_checksum_ref)

MODULE = "monstack.stack.install_release"
METHODS = ("archive", "local", "package")
WHERE = ("controller", "host")

# The keys of a release (the component spec's ``release:``); defaults as the roles had them in
# roles/common/defaults/main.yml (common_*).
DEFAULTS = {
    "name": "",               # component name (upstream naming, cache and install paths); the spec's name
    "version": "",
    "method": "archive",      # archive | local | package
    "download_on": "controller",
    "base_url": "https://github.com",
    "asset_name": "",         # upstream's name when empty; {arch} replaced
    "asset_format": "",       # tar | binary; empty: from the asset's name (.tar.gz, .tgz, .tar.* -> tar)
    "checksums": {},          # pinned SHA-256 per asset architecture
    "checksums_file": "sha256sums.txt",  # beside the asset; {arch}, {version}, {asset}, {asset_stem} replaced
    "checksum_ref": "",       # instead of checksums/checksums_file: sha256:<hex> or sha256:<sums URL> (placeholders too)
    "local_path": "",         # method local: a file on the controller; {arch} replaced
    "binaries": [],
    "binary_subdir": "",
    "unpack_all": False,
    "archive_flat": False,
    "packages": [],
    "package_services": [],
    # overrides for a project that is not laid out like GitHub releases (Grafana)
    "release_url": "",        # the directory holding the asset (and its sums file)
    "asset": "",              # the asset's name there; {arch} replaced
    "version_dir": "",        # default <install_root>/<name>/<version>
    "cache_dir": "",          # default $MONSTACK_DOWNLOAD_CACHE or ~/.cache/monstack/downloads
    "install_root": "/opt/monstack",
    "link_dir": "/usr/local/bin",
    "arch_map": {},           # added to (and overriding) module_utils/release.py ARCH_MAP
    "var_prefix": "",         # the role's variable prefix in messages; default the name
    "vars": {},               # field -> the variable to name in messages, when not <prefix>_<usual suffix>
}
SUFFIX = {"version": "version", "method": "install_method", "download_on": "download_on",
          "base_url": "download_base_url", "asset_name": "archive_name", "checksums": "checksums",
          "local_path": "local_archive", "binaries": "binaries", "packages": "packages"}
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar.zst", ".tar")


def default_cache_dir():
    default = os.path.join(os.path.expanduser("~"), ".cache", "monstack", "downloads")
    return os.environ.get("MONSTACK_DOWNLOAD_CACHE") or default


def _fill(template, **values):
    """Replace {arch}, {version}, {asset} literally (no format(): a brace elsewhere stays as it is)."""
    text = str(template)
    for key, value in values.items():
        text = text.replace("{%s}" % key, str(value))
    return text


def _stem(asset):
    """The asset's name without its archive suffix (VictoriaMetrics' sums file is <stem>_checksums.txt)."""
    for suffix in TAR_SUFFIXES:
        if asset.endswith(suffix):
            return asset[:-len(suffix)]
    return asset


def release_plan(release, arch):
    """What installing ``release`` on a host of architecture ``arch`` (uname -m) means: asset, URLs,
    checksum reference, format, version directory, links, cache file. Pure; ReleaseError names the
    variable to fix."""
    unknown = sorted(set(release) - set(DEFAULTS))
    spec = dict(DEFAULTS)
    spec.update({key: value for key, value in release.items() if value is not None})
    name = str(spec["name"])
    prefix = str(spec["var_prefix"] or name)

    def var(field):
        return (spec["vars"] or {}).get(field) or "%s_%s" % (prefix, SUFFIX.get(field, field))

    if not name:
        raise ReleaseError("release: needs the component's name")
    if unknown:
        raise ReleaseError("%s release: unknown keys %s; known: %s" % (name, ", ".join(unknown), ", ".join(DEFAULTS)))
    method, where = str(spec["method"]), str(spec["download_on"])
    if method not in METHODS:
        raise ReleaseError("%s: %r is not an install method; use one of %s" % (var("method"), method, ", ".join(METHODS)))
    if where not in WHERE:
        raise ReleaseError("%s: %r; use controller or host" % (var("download_on"), where))
    plan = {"name": name, "method": method, "download_on": where,
            "packages": [str(p) for p in spec["packages"] or []],
            "package_services": [str(s) for s in spec["package_services"] or []]}
    if method == "package":  # no packages: the role installs its package itself (Grafana's repository)
        return plan
    binaries = [str(b) for b in spec["binaries"] or []]
    if not binaries:
        raise ReleaseError("%s release: names no binaries" % name)
    version = str(spec["version"])
    parse_version(prefix, version)
    if not arch:
        raise ReleaseError("%s release: the host's architecture is unknown (the probe reports it as arch)" % name)
    arch_map = dict(ARCH_MAP)
    arch_map.update(spec["arch_map"] or {})
    asset_arch = str(arch_map.get(str(arch), arch))
    version_dir = str(spec["version_dir"] or "%s/%s/%s" % (str(spec["install_root"]).rstrip("/"), name, version))
    subdir = str(spec["binary_subdir"] or "")
    if subdir and not subdir.endswith("/"):
        subdir += "/"
    link_dir = str(spec["link_dir"] or "")
    plan.update({
        "version": version, "arch": asset_arch, "version_dir": version_dir, "binaries": binaries,
        "binary_subdir": subdir, "unpack_all": bool(spec["unpack_all"]), "strip_top": not spec["archive_flat"],
        "link_dir": link_dir,
        "links": {"%s/%s" % (link_dir.rstrip("/"), b): "%s/%s%s" % (version_dir, subdir, b) for b in binaries}
        if link_dir else {},
    })
    if method == "local":
        local = _fill(spec["local_path"], arch=asset_arch)
        if not local:
            raise ReleaseError("%s: empty; install method local needs the path of the release asset on the controller"
                               % var("local_path"))
        plan.update(local_path=os.path.expanduser(local), asset=os.path.basename(local), local_var=var("local_path"))
    else:
        if spec["release_url"]:
            release_url = str(spec["release_url"]).rstrip("/")
            asset = _fill(spec["asset"] or spec["asset_name"], arch=asset_arch, version=version)
            if not asset:
                raise ReleaseError("%s release: release_url needs the asset's name (asset)" % name)
            if not release_url.lower().startswith(("https://", "http://", "file://")):
                raise ReleaseError("%s: %r must start with https://, http:// or file://" % (var("base_url"), release_url))
        else:
            location = release_location(name, version, asset_arch, spec["base_url"],
                                        _fill(spec["asset"] or spec["asset_name"], version=version))
            release_url, asset = location["release_url"], location["asset"]
        if "/" in asset or asset in ("", ".", ".."):
            raise ReleaseError("%s: %r is not a file name" % (var("asset_name"), asset))
        names = dict(arch=asset_arch, version=version, asset=asset, asset_stem=_stem(asset))
        sums_url = "%s/%s" % (release_url, _fill(spec["checksums_file"], **names))
        if spec["checksum_ref"]:
            ref = _fill(spec["checksum_ref"], **names)
            kind, value = split_checksum_ref(ref)
            if kind == "url":
                sums_url = value
                ref = checksum_ref(asset_arch, {}, value, var("checksums"))  # refuses plain http
        else:
            ref = checksum_ref(asset_arch, spec["checksums"], sums_url, var("checksums"))
        plan.update(asset=asset, url="%s/%s" % (release_url, asset), sums_url=sums_url, checksum=ref,
                    checksums_var=var("checksums"),
                    cache_file=os.path.join(os.path.expanduser(str(spec["cache_dir"] or default_cache_dir())),
                                            "%s-%s" % (name, version), asset))
    fmt = str(spec["asset_format"] or ("tar" if plan["asset"].endswith(TAR_SUFFIXES) else "binary"))
    if fmt not in ("tar", "binary"):
        raise ReleaseError("%s release: asset_format %r; use tar or binary" % (name, fmt))
    plan["format"] = fmt
    return plan


def _open(url, timeout, proxy=""):
    return open_download(url, timeout, "monstack-release-install", proxy)


def download_proxy(action, task_vars):
    """monstack_download_proxy of the host (templated; empty when unset), checked."""
    value = task_vars.get(PROXY_VAR) or ""
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        value = action._templar.copy_with_new_env(available_variables=task_vars).template(value)
    return check_proxy(str(value) if value else "")


def expected_digest(plan, timeout=60, proxy=""):
    """The SHA-256 the asset must have: pinned, or read from the release's sums file (not over http://)."""
    kind, value = split_checksum_ref(plan["checksum"])
    if kind == "digest":
        return value
    if plain_http(value):  # release_plan refuses it already; a second look costs nothing
        raise ReleaseError(plain_http_message("the sums file", value, plan["checksums_var"]))
    try:
        text = _open(value, timeout, proxy).read().decode("utf-8", "replace")
    except Exception as exc:
        raise ReleaseError("%s: the sums file %s could not be read (%s). Fix: check the version and the download base "
                           "URL, or pin the asset's SHA-256 in %s" % (plan["name"], value, exc, plan["checksums_var"]))
    return digest_from_sums(text, plan["asset"], value)


def _verified(path, want):
    """Whether the file at ``path`` was verified with digest ``want`` and has not changed since
    (a note beside it: digest, size, mtime), so the next host does not hash it again."""
    try:
        st = os.stat(path)
        with open(path + ".verified", encoding="ascii") as note:
            return note.read().split() == [want, str(st.st_size), str(st.st_mtime_ns)]
    except (OSError, ValueError):
        return False


def _note_verified(path, want):
    st = os.stat(path)
    tmp = "%s.verified.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="ascii") as note:
        note.write("%s %d %d\n" % (want, st.st_size, st.st_mtime_ns))
    os.replace(tmp, path + ".verified")


def fetch_to_cache(plan, timeout=60, proxy=""):
    """The release asset in the controller cache, verified -> (path, sha256, downloaded).

    One download per asset whatever the number of forks: the first takes the asset's lock,
    downloads to a temporary file beside it, verifies and renames it; the others wait on the lock
    and find it there. A cached file that does not match (corrupt, or a new pinned checksum) is
    downloaded again."""
    path = plan["cache_file"]
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    want = expected_digest(plan, timeout, proxy)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if os.path.isfile(path) and (_verified(path, want) or sha256_file(path) == want):
            if not _verified(path, want):
                _note_verified(path, want)
            return path, want, False
        fd, tmp = tempfile.mkstemp(prefix=".%s." % plan["asset"], dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    have = copy_hashed(_open(plan["url"], timeout, proxy), out)
                except ReleaseError:
                    raise
                except Exception as exc:
                    raise ReleaseError("%s %s: download of %s failed (%s). Fix: check the version and the download "
                                       "base URL, or install from a local file" % (plan["name"], plan["version"],
                                                                                   plan["url"], exc))
            if have != want:
                raise ReleaseError(
                    "%s: SHA-256 %s, but %s expected (%s); refused, nothing installed. Fix: if the pinned value in %s "
                    "is wrong, paste the release's published SHA-256; otherwise the download was corrupted or "
                    "swapped" % (plan["url"], have, want,
                                 "pinned in %s" % plan["checksums_var"] if plan["checksum"].endswith(want)
                                 else "from %s" % plan["sums_url"], plan["checksums_var"]))
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
            tmp = None
            _note_verified(path, want)
            return path, want, True
        finally:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)


def _module_args(plan):
    return {"dest": plan["version_dir"], "binaries": plan["binaries"], "binary_subdir": plan["binary_subdir"],
            "format": plan["format"], "strip_top": plan["strip_top"], "unpack_all": plan["unpack_all"],
            "link_dir": plan["link_dir"]}


def _summary(plan, result, how):
    out = {"changed": bool(result.get("changed")), "version_dir": plan["version_dir"],
           "links_changed": result.get("links_changed", []), "unpacked": bool(result.get("unpacked"))}
    if result.get("failed"):
        out.update(failed=True, msg="%s %s (%s): %s" % (plan["name"], plan["version"], how or plan["version_dir"],
                                                        result.get("msg", result)))
        return out
    if out["unpacked"]:
        out["msg"] = "%s %s %s %s into %s" % (plan["name"], plan["version"], "would be installed from" if result.get(
            "_check") else "installed from", how, plan["version_dir"])
        out["diff"] = {"before_header": plan["version_dir"], "after_header": plan["version_dir"],
                       "before": "", "after": "%s %s (%s)\n" % (plan["name"], plan["version"], plan["asset"])}
    elif out["links_changed"]:
        out["msg"] = "%s %s: links %s" % (plan["name"], plan["version"], ", ".join(out["links_changed"]))
    return out


def _install_package(action, task_vars, plan, check_mode):
    changed = False
    if not plan["packages"]:
        return {"changed": False}
    for service in plan["package_services"]:
        result = action._execute_module(module_name="ansible.builtin.systemd_service",
                                        module_args={"name": service, "masked": True}, task_vars=task_vars)
        if result.get("failed"):
            return {"changed": changed, "failed": True, "msg": "%s: masking %s failed: %s"
                    % (plan["name"], service, result.get("msg", ""))}
        changed = changed or bool(result.get("changed"))
    result = action._execute_module(module_name="ansible.builtin.apt",
                                    module_args={"name": plan["packages"], "state": "present", "update_cache": True,
                                                 "cache_valid_time": 86400}, task_vars=task_vars)
    if result.get("failed"):
        return {"changed": changed, "failed": True,
                "msg": "%s: installing %s failed: %s" % (plan["name"], ", ".join(plan["packages"]), result.get("msg", ""))}
    out = {"changed": changed or bool(result.get("changed"))}
    if result.get("changed"):
        out["msg"] = "%s: package %s %s" % (plan["name"], ", ".join(plan["packages"]),
                                            "would be installed" if check_mode else "installed")
    return out


def ensure_release(action, task_vars, release, arch, check_mode):
    """Install ``release`` on the host of ``action`` (an ActionBase); ``arch`` is the host's uname -m.

    -> {'changed', 'failed'?, 'msg'?, 'diff'?, 'version_dir'?, 'links_changed'?, 'unpacked'?,
    'downloaded'?}. ``check_mode`` must be the task's (the host module runs in the task's mode); in
    check mode nothing is downloaded, sent or changed, and what would be done is reported."""
    try:
        plan = release_plan(release, arch)
    except ReleaseError as exc:
        return {"changed": False, "failed": True, "msg": str(exc)}
    if plan["method"] == "package":
        return _install_package(action, task_vars, plan, check_mode)

    def run(args):
        return action._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)

    try:
        proxy = download_proxy(action, task_vars) if plan["method"] == "archive" else ""
    except ReleaseError as exc:
        return {"changed": False, "failed": True, "msg": str(exc)}
    args = _module_args(plan)
    if plan["method"] == "archive" and plan["download_on"] == "host":
        # one call: the module looks first and downloads only when the release is missing
        result = run(dict(args, url=plan["url"], checksum=plan["checksum"], **({"proxy": proxy} if proxy else {})))
        result["_check"] = check_mode
        return _summary(plan, result, plan["url"])
    first = run(args)
    if first.get("failed") or first.get("installed"):
        return _summary(plan, first, "")
    how = plan["local_path"] if plan["method"] == "local" else plan["url"]
    if plan["method"] == "local" and not os.path.isfile(plan["local_path"]):  # said in check mode too
        return {"changed": False, "failed": True, "msg": "%s: %s is not a file on the controller. Fix: the path of "
                "the release asset ({arch} becomes %s)" % (plan["local_var"], plan["local_path"], plan["arch"])}
    if check_mode:
        return _summary(plan, dict(first, changed=True, unpacked=True, _check=True), how)
    try:
        if plan["method"] == "local":
            path, digest, downloaded = plan["local_path"], sha256_file(plan["local_path"]), False
        else:
            path, digest, downloaded = fetch_to_cache(plan, proxy=proxy)
    except ReleaseError as exc:
        return {"changed": False, "failed": True, "msg": str(exc)}
    shell = action._connection._shell
    made_tmp = shell.tmpdir is None
    tmpdir = action._make_tmp_path() if made_tmp else shell.tmpdir
    try:
        remote = shell.join_path(tmpdir, "release-" + plan["asset"])
        action._transfer_file(path, remote)
        action._fixup_perms2((tmpdir, remote))
        second = run(dict(args, src=remote, checksum="sha256:" + digest, remove_src=True))
    finally:
        if made_tmp:
            action._remove_tmp_path(tmpdir)
    out = _summary(plan, second, how)
    out["downloaded"] = downloaded
    return out
