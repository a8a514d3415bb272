#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Unpack a component's release into its version directory and link its binaries (monstack)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: install_release
short_description: Unpack a release archive or binary into its version directory and link its binaries
description:
  - The host side of the release install of the collection's component roles (the controller side is
    C(plugins/plugin_utils/release_install.py), called by the action M(monstack.stack.component)).
  - When every binary of O(binaries) is already a regular file in O(dest) (under O(binary_subdir)), nothing
    is unpacked and nothing is downloaded; only the links are corrected when they differ.
  - Otherwise the release is taken from O(src) (a file on the host, usually sent by the controller) or
    downloaded from O(url) on the host, verified against O(checksum), unpacked into a new directory beside
    O(dest) and renamed into place in one step, so O(dest) never holds half a release.
  - Without O(src) and O(url) a missing release is only reported (RV(missing)), nothing is changed.
  - Unpacking is safe as root; an archive with a member that is absolute, has a C(..) component, is a device
    or FIFO, or is a link that points out of the release is refused as a whole. Links inside the archive are
    made last and nothing is ever written through a link. Owners of the archive are ignored (all files
    C(root)); modes keep at most C(0755) (no setuid, setgid, sticky or group or world write).
  - Every binary is linked as O(link_dir)/<binary> to its path in O(dest) (each link replaced atomically).
version_added: "1.1.0"
author: monstack (!UNKNOWN)
options:
  dest:
    description: The version directory, for example C(/opt/monstack/node_exporter/1.11.1). Its parent is made when missing.
    type: path
    required: true
  binaries:
    description: The program files of the release (names, not paths); the first one names a single-binary asset.
    type: list
    elements: str
    required: true
  binary_subdir:
    description: Directory of the binaries inside the release, relative, with a trailing C(/) (Grafana's C(bin/)).
    type: str
    default: ""
  src:
    description: The release asset on the host (a C(.tar.gz) or, with O(format=binary), the program itself).
    type: path
  url:
    description: Download the asset on the host from this URL (C(https://), C(http://) or C(file://)); needs O(checksum).
    type: str
  checksum:
    description:
      - C(sha256:<64 hex digits>), or C(sha256:<URL of a sums file>) listing the asset (its URL's last path
        component) or holding its digest alone. A sums file over plain C(http://) is refused.
      - Required with O(url); with O(src) the file is verified when it is given.
    type: str
  format:
    description: C(tar) a (compressed) tar archive, C(binary) the program file itself.
    type: str
    choices: [tar, binary]
    default: tar
  strip_top:
    description: Strip the archive's top folder (upstream tarballs have one; VictoriaMetrics' have none).
    type: bool
    default: true
  unpack_all:
    description: Unpack the whole archive, not only the binaries (a release that needs its tree, such as Grafana's).
    type: bool
    default: false
  link_dir:
    description: Where the binaries are linked. An empty string makes no links.
    type: path
    default: /usr/local/bin
  remove_src:
    description: Remove O(src) afterwards (a temporary copy sent by the controller).
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the server of O(url).
    type: int
    default: 60
  proxy:
    description:
      - Download O(url) and the sums file through this proxy, C(http://[user:password@]host:port)
        (the inventory's C(monstack_download_proxy)); not logged. The checksum rules are the same.
      - Empty, the default, downloads directly (or through the C(https_proxy) environment of the host).
    type: str
    default: ""
notes:
  - Supports check mode (reports what it would unpack and link, downloads nothing) and no diff.
"""

EXAMPLES = r"""
- name: Install node_exporter from a release archive already on the host
  monstack.stack.install_release:
    src: /root/node_exporter-1.11.1.linux-amd64.tar.gz
    checksum: "sha256:{{ node_exporter_sha256 }}"
    dest: /opt/monstack/node_exporter/1.11.1
    binaries: [node_exporter]

- name: Download on the host, verify against the release's sums file, unpack and link
  monstack.stack.install_release:
    url: https://github.com/prometheus/prometheus/releases/download/v3.5.3/prometheus-3.5.3.linux-amd64.tar.gz
    checksum: sha256:https://github.com/prometheus/prometheus/releases/download/v3.5.3/sha256sums.txt
    dest: /opt/monstack/prometheus/3.5.3
    binaries: [prometheus, promtool]

- name: Only check (no source given) whether the release is there, and fix its links
  monstack.stack.install_release:
    dest: /opt/monstack/node_exporter/1.11.1
    binaries: [node_exporter]
  register: node_exporter_release
"""

RETURN = r"""
dest:
  description: The version directory.
  returned: always
  type: str
  sample: /opt/monstack/node_exporter/1.11.1
installed:
  description: Whether the release's binaries are in O(dest) after the run (in check mode, whether they were already).
  returned: always
  type: bool
unpacked:
  description: Whether this run unpacked (or, in check mode, would unpack) the release.
  returned: always
  type: bool
missing:
  description: The binaries' paths not in O(dest), when no O(src) or O(url) was given to install them.
  returned: always
  type: list
  elements: str
links_changed:
  description: Links made or pointed to their new target (in check mode, that would be).
  returned: always
  type: list
  elements: str
sha256:
  description: SHA-256 of the asset that was unpacked.
  returned: when a release was unpacked
  type: str
members:
  description: Number of archive members written.
  returned: when a release was unpacked
  type: int
"""

import os
import shutil
import stat
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.monstack.stack.plugins.module_utils.monstack_files import (
    FileSetError, check_name, ensure_links, untrusted_path)
from ansible_collections.monstack.stack.plugins.module_utils.release import (
    ReleaseError, copy_hashed, digest_from_sums, open_download, plain_http, plain_http_message, sha256_file,
    split_checksum_ref)

NOFOLLOW_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class UnsafeArchive(ReleaseError):
    """An archive member that would leave the release directory or is not a plain file, directory or link."""


def binary_paths(dest, binaries, subdir):
    subdir = subdir or ""
    if subdir:
        parts = [part for part in subdir.split("/") if part]
        if subdir.startswith("/") or any(part in (".", "..") for part in parts):
            raise ReleaseError("binary_subdir %r: must be a relative path inside the release (such as 'bin/')" % subdir)
        subdir = "/".join(parts) + "/"
    return [(name, os.path.join(dest, subdir + check_name(name, "binary"))) for name in binaries]


def is_installed(path, dest):
    """A regular executable file, or a link to one inside ``dest`` (a release may link its program)."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            real, root = os.path.realpath(path), os.path.realpath(dest)
            if not real.startswith(root + os.sep):
                return False
            st = os.stat(real)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def make_dir(path):
    """mkdir with mode 0755 whatever the umask (the service users must reach their binaries)."""
    os.mkdir(path, 0o755)
    os.chmod(path, 0o755)


def member_parts(name, strip):
    """An archive member name -> its path components inside the release ([] for the top folder)."""
    if name.startswith("/") or "\0" in name:
        raise UnsafeArchive("member %r: absolute path" % name)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive("member %r: has a '..' component" % name)
    return parts[1:] if strip else parts


def link_escapes(rel, target, links):
    """Whether the link ``rel`` -> ``target`` (relative) resolves outside the release, following
    the archive's own links (``links``: path -> target) the way the kernel would."""
    if target.startswith("/"):
        return True
    todo = rel.split("/")[:-1] + [part for part in target.split("/") if part not in ("", ".")]
    todo.reverse()
    stack, expansions = [], 0
    while todo:
        part = todo.pop()
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        here = "/".join(stack + [part])
        if here in links:
            expansions += 1
            if expansions > 40 or links[here].startswith("/"):
                return True
            todo.extend(reversed([p for p in links[here].split("/") if p not in ("", ".")]))
            continue
        stack.append(part)
    return False


def make_parents(root, rel):
    """Create the directories of ``rel`` below ``root``, refusing any component that is not a real directory."""
    current = root
    for part in rel.split("/")[:-1]:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            make_dir(current)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeArchive("member %r: its folder %s is not a directory in the archive" % (rel, part))
    return os.path.join(root, rel)


def write_stream(stream, path, mode):
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            os.unlink(path)  # a member given twice: the later one wins, as with tar
    except FileNotFoundError:
        pass
    fd = os.open(path, NOFOLLOW_WRITE, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)
        os.fchmod(out.fileno(), mode)


def file_mode(mode, executable=False):
    mode = (mode & 0o755) | 0o400
    return 0o755 if executable else mode


def unpack_tar(src, root, wanted, strip, unpack_all):
    """Unpack ``src`` into the new directory ``root``: every member (unpack_all) or the ``wanted``
    relative paths. Every member is checked first; links are made last. -> number of members written."""
    with tarfile.open(src, "r:*") as tar:
        members = tar.getmembers()
        chosen, links = [], {}
        for member in members:
            parts = member_parts(member.name, strip)
            if not (member.isdir() or member.isfile() or member.issym() or member.islnk()):
                raise UnsafeArchive("member %r: a device or FIFO, not unpacked" % member.name)
            if not parts:
                continue
            rel = "/".join(parts)
            if member.issym():
                links[rel] = member.linkname
            if unpack_all or rel in wanted:
                chosen.append((rel, member))
        for rel, member in chosen:
            if member.issym() and link_escapes(rel, member.linkname, links):
                raise UnsafeArchive("member %r: a link to %r, outside the release" % (member.name, member.linkname))
            if member.islnk():
                try:
                    target = member_parts(member.linkname, strip)
                except UnsafeArchive:
                    target = None
                if not target or "/".join(target) not in dict(chosen):
                    raise UnsafeArchive("member %r: a hard link to %r, which is not unpacked with it"
                                        % (member.name, member.linkname))
        found = set(entry[0] for entry in chosen)
        absent = sorted(set(wanted) - found)
        if absent:
            names = [member.name for member in members[:12]]
            raise ReleaseError("the archive has no %s%s (its members: %s%s)"
                               % ("top folder with " if strip else "", ", ".join(absent), ", ".join(names),
                                  ", ..." if len(members) > 12 else ""))
        written = 0
        deferred = []
        for rel, member in chosen:
            if member.issym():
                deferred.append((rel, member))
                continue
            path = make_parents(root, rel)
            if member.isdir():
                try:
                    make_dir(path)
                except FileExistsError:
                    if os.path.islink(path) or not os.path.isdir(path):
                        raise UnsafeArchive("member %r: a directory where the archive has a file" % member.name)
            elif member.islnk():
                target = os.path.join(root, "/".join(member_parts(member.linkname, strip)))
                if not os.path.isfile(target) or os.path.islink(target):
                    raise UnsafeArchive("member %r: a hard link to %r, which is not a file unpacked before it"
                                        % (member.name, member.linkname))
                with open(target, "rb") as stream:
                    write_stream(stream, path, stat.S_IMODE(os.lstat(target).st_mode))
            else:
                write_stream(tar.extractfile(member), path, file_mode(member.mode, rel in wanted))
            written += 1
        for rel, member in deferred:
            path = make_parents(root, rel)
            if os.path.lexists(path):
                raise UnsafeArchive("member %r: a link where the archive already has a file" % member.name)
            os.symlink(member.linkname, path)
            written += 1
        return written


def fetch(url, dest_dir, timeout, proxy=""):
    """Download ``url`` into a new file in ``dest_dir`` -> (path, sha256)."""
    fd, path = tempfile.mkstemp(prefix=".download-", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            have = copy_hashed(open_download(url, timeout, "monstack-install-release", proxy), out)
    except Exception as exc:
        os.unlink(path)
        raise ReleaseError("download of %s failed: %s" % (url, exc))
    return path, have


def expected_digest(checksum, asset, timeout, proxy=""):
    kind, value = split_checksum_ref(checksum)
    if kind == "digest":
        return value
    if plain_http(value):
        raise ReleaseError(plain_http_message("checksum: the sums file", value, "the role's <role>_checksums"))
    try:
        text = open_download(value, timeout, "monstack-install-release", proxy).read().decode("utf-8", "replace")
    except Exception as exc:
        raise ReleaseError("the sums file %s could not be read: %s" % (value, exc))
    return digest_from_sums(text, asset, value)


def install(module, params):
    dest = os.path.abspath(params["dest"])
    parent = os.path.dirname(dest)
    paths = binary_paths(dest, params["binaries"], params["binary_subdir"])
    if not paths:
        raise ReleaseError("binaries: name at least one program of the release")
    for where in (dest, params["link_dir"]):
        problem = where and untrusted_path(where)
        if problem:
            raise ReleaseError("%s: not installed, %s" % (where, problem))
    links = dict((os.path.join(params["link_dir"], name), path) for name, path in paths) if params["link_dir"] else {}
    result = dict(changed=False, dest=dest, installed=True, unpacked=False, missing=[], links_changed=[])
    missing = [entry[1] for entry in paths if not is_installed(entry[1], dest)]
    try:
        if missing:
            source = params["src"] or params["url"]
            if not source:
                result.update(installed=False, missing=missing)
                return result
            result.update(changed=True, unpacked=True, installed=False)
            if module.check_mode:
                result["links_changed"] = ensure_links(links, True) if links else []
                result["msg"] = "would unpack %s into %s and link %s" % (source, dest, ", ".join(sorted(links)))
                return result
            unpack(params, dest, parent, paths, result)
            result["installed"] = True
    finally:
        if params["remove_src"] and params["src"] and not module.check_mode and os.path.lexists(params["src"]):
            os.unlink(params["src"])
    if links:
        try:
            result["links_changed"] = ensure_links(links, module.check_mode)
        except FileSetError as exc:
            raise ReleaseError(str(exc))
    result["changed"] = result["changed"] or bool(result["links_changed"])
    return result


def unpack(params, dest, parent, paths, result):
    missing_dirs = []
    here = parent
    while not os.path.isdir(here):
        missing_dirs.append(here)
        here = os.path.dirname(here)
    for directory in reversed(missing_dirs):
        make_dir(directory)
    downloaded = None
    src = params["src"]
    try:
        if params["url"]:
            if not params["checksum"]:
                raise ReleaseError("url %s: needs a checksum (sha256:<hex> or sha256:<sums file URL>)" % params["url"])
            asset = params["url"].rstrip("/").rsplit("/", 1)[-1]
            want = expected_digest(params["checksum"], asset, params["timeout"], params.get("proxy") or "")
            downloaded, have = fetch(params["url"], parent, params["timeout"], params.get("proxy") or "")
            src = downloaded
        else:
            have = sha256_file(src)
            want = expected_digest(params["checksum"], os.path.basename(src), params["timeout"]) \
                if params["checksum"] else have
        if have != want:
            raise ReleaseError("%s: SHA-256 %s, but %s expected; not installed (a corrupt or swapped download, or a "
                               "wrong pinned checksum)" % (params["url"] or src, have, want))
        result["sha256"] = have
        work = tempfile.mkdtemp(prefix=".%s.new-" % os.path.basename(dest), dir=parent)
        try:
            if params["format"] == "binary":
                path = paths[0][1]
                target = make_parents(work, os.path.relpath(path, dest))
                with open(src, "rb") as stream:
                    write_stream(stream, target, 0o755)
                result["members"] = 1
            else:
                wanted = set(os.path.relpath(entry[1], dest) for entry in paths)
                try:
                    result["members"] = unpack_tar(src, work, wanted, params["strip_top"], params["unpack_all"])
                except tarfile.TarError as exc:
                    raise ReleaseError("%s: not a readable tar archive (%s)" % (params["url"] or src, exc))
            os.chmod(work, 0o755)
            replace_dir(work, dest)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    finally:
        if downloaded:
            os.unlink(downloaded)


def replace_dir(new, dest):
    """Rename ``new`` to ``dest``; an incomplete ``dest`` (a binary missing) is moved aside and removed."""
    old = None
    if os.path.lexists(dest):
        old = tempfile.mkdtemp(prefix=".%s.old-" % os.path.basename(dest), dir=os.path.dirname(dest))
        os.rename(dest, os.path.join(old, "release"))
    os.rename(new, dest)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            binaries=dict(type="list", elements="str", required=True),
            binary_subdir=dict(type="str", default=""),
            src=dict(type="path"),
            url=dict(type="str"),
            checksum=dict(type="str"),
            format=dict(type="str", choices=["tar", "binary"], default="tar"),
            strip_top=dict(type="bool", default=True),
            unpack_all=dict(type="bool", default=False),
            link_dir=dict(type="path", default="/usr/local/bin"),
            remove_src=dict(type="bool", default=False),
            timeout=dict(type="int", default=60),
            proxy=dict(type="str", default="", no_log=True),
        ),
        supports_check_mode=True,
        mutually_exclusive=[("src", "url")],
        required_by={"url": ("checksum",)},
    )
    try:
        module.exit_json(**install(module, module.params))
    except (ReleaseError, FileSetError) as exc:
        module.fail_json(msg=str(exc), dest=module.params["dest"])
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (getattr(exc, "filename", None) or module.params["dest"], exc),
                         dest=module.params["dest"])


if __name__ == "__main__":
    main()
