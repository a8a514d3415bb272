# -*- coding: utf-8 -*-
"""File-set logic shared by the modules file_set, probe and
deployment_store.

A *file set* is the files of one directory that one owner manages: their
names and contents, one owner, group and mode, and optionally glob patterns
of the names the set owns (a file matching them that is not in the set is
stale). file_set applies a set; probe only compares it, so
that a rerun learns in one round trip whether anything must be written.
"""
from __future__ import annotations

import errno
import fnmatch
import grp
import hashlib
import os
import pwd
import shlex
import stat
import tempfile

from ansible.module_utils.common.text.converters import to_bytes, to_text


class FileSetError(Exception):
    """A problem with the arguments or the directory; the message names the file."""


def check_name(name, what="file name"):
    """Refuse names that would leave the directory."""
    if not isinstance(name, str) or not name:
        raise FileSetError("%s %r: must be a non-empty string" % (what, name))
    if "/" in name or "\0" in name or name in (".", "..") or ".." in name:
        raise FileSetError("%s %r: must be a plain name in the directory (no '/', no '..')" % (what, name))
    return name


def resolve_id(value, lookup, what, kind):
    """Name or number -> numeric id; -1 (leave as is) when not given."""
    if value is None or value == "":
        return -1
    if str(value).isdigit():
        return int(value)
    try:
        return lookup(value)
    except KeyError:
        raise FileSetError("%s %r: no such %s" % (what, value, kind))


def resolve_owner(owner, group, missing_ok=False):
    """-> (uid, gid). With missing_ok, an unknown user or group gives -2 (never
    equal to a file's id): the probe of a host where the user does not exist
    yet reports the files as to be written instead of failing."""
    ids = []
    for value, lookup, what, kind in ((owner, lambda n: pwd.getpwnam(n).pw_uid, "owner", "user"),
                                      (group, lambda n: grp.getgrnam(n).gr_gid, "group", "group")):
        try:
            ids.append(resolve_id(value, lookup, what, kind))
        except FileSetError:
            if not missing_ok:
                raise
            ids.append(-2)
    return ids[0], ids[1]


def parse_mode(mode):
    try:
        value = int(str(mode), 8)
    except ValueError:
        raise FileSetError("mode %r: expected an octal string such as '0640'" % (mode,))
    if value < 0 or value > 0o7777:
        raise FileSetError("mode %r: out of range" % (mode,))
    return value


# Never follow a symbolic link, never wait on a FIFO or device: the directories
# may be writable by less-privileged users (node_exporter's textfile directory
# is group-writable), and these modules run as root.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"))


def kind(st):
    """What a non-regular file is, in words ("a symbolic link", "a FIFO (named pipe)", ...)."""
    for test, words in KINDS:
        if test(st.st_mode):
            return words
    return "not a regular file"


def describe(st):
    return kind(st) if not stat.S_ISREG(st.st_mode) else "a regular file with %d hard links" % st.st_nlink


def not_regular(path, st):
    """The refusal for ``path`` (lstat ``st``): neither read, followed nor replaced."""
    what = describe(st)
    if stat.S_ISLNK(st.st_mode):
        try:
            what += " to %s" % os.readlink(path)
        except OSError:
            pass
    return FileSetError(
        "%s: is %s, not a regular file: not read, followed or replaced (someone who may write to %s put it "
        "there). Remove it and run again." % (path, what, os.path.dirname(path) or "."))


def open_regular(path):
    """-> (fd, stat) of the regular file ``path``, or (None, lstat) when it is
    something else, or (None, None) when it is absent. Never follows a
    symbolic link, never blocks (a FIFO), and never opens a device."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        return None, st
    try:
        fd = os.open(path, READ_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # swapped for a link or a FIFO since the lstat
            return None, os.lstat(path)
        raise
    fst = os.fstat(fd)
    if not stat.S_ISREG(fst.st_mode) or fst.st_nlink > 1:
        os.close(fd)
        return None, fst
    return fd, fst


def read_current(path):
    """-> (bytes or None, os.stat_result or None). A file that is not a regular
    file (a symbolic link, a FIFO, ...) is not read: (None, its lstat), which
    never compares equal to wanted content."""
    fd, st = open_regular(path)
    if fd is None:
        return None, st
    with os.fdopen(fd, "rb") as handle:
        return handle.read(), st


def read_regular(path):
    """read_current, but a file that is there and not a regular file is an error (FileSetError)."""
    before, st = read_current(path)
    if before is None and st is not None:
        raise not_regular(path, st)
    return before, st


def same_file(before, st, data, uid, gid, mode):
    """Whether the file on disk (content ``before``, stat ``st``) is ``data``
    with owner ``uid``, group ``gid`` and ``mode`` (-1: any owner/group).
    ``data`` may be the bytes or their SHA-1 as ``sha1:<hex>``."""
    if st is None or before is None or stat.S_IMODE(st.st_mode) != mode:
        return False
    if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
        return False
    if isinstance(data, str) and data.startswith("sha1:"):
        return hashlib.sha1(before).hexdigest() == data[5:]
    return before == data


def dir_difference(st, uid, gid, mode):
    """How the directory with stat ``st`` differs from owner ``uid``, group ``gid``
    (-1: any) and ``mode`` (None: any), or None when it does not."""
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        return "mode %04o, wanted %04o" % (stat.S_IMODE(st.st_mode), mode)
    if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
        return "owner or group differ"
    return None


def stale_names(path, keep, patterns):
    """Names in ``path`` matching one of ``patterns`` (shell globs), not in
    ``keep`` and not hidden (temporary files of a write in progress)."""
    if not patterns or not os.path.isdir(path):
        return []
    return sorted(entry for entry in os.listdir(path)
                  if entry not in keep and not entry.startswith(".")
                  and any(fnmatch.fnmatchcase(entry, pattern) for pattern in patterns))


def untrusted_path(path, private=False):
    """Why a user other than root and the current one could redirect ``path``, or None.

    Every component of ``path`` (as given, and resolved) is looked at with
    lstat: a symbolic link owned by another user, or a directory on the way
    that another user owns or may write to (without the sticky bit; group
    write of group root is fine), is a reason. With ``private`` the directory
    itself must not be writable by others either. Missing components end the
    look (the caller makes them)."""
    trusted = (0, os.geteuid())

    def writable_by_others(st):
        if st.st_uid not in trusted:
            return "is owned by uid %d" % st.st_uid
        if st.st_mode & stat.S_ISVTX:
            return None
        if st.st_mode & 0o002:
            return "may be written by everyone"
        if st.st_mode & 0o020 and st.st_gid != 0:
            return "may be written by group %d" % st.st_gid
        return None

    def walk(where):
        current = "/"
        parts = [part for part in os.path.normpath(where).split("/") if part]
        for number, part in enumerate(parts):
            problem = writable_by_others(os.stat(current))
            if problem:
                return "%s %s, so %s could be replaced" % (current, problem, os.path.join(current, part))
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if stat.S_ISLNK(st.st_mode):
                if st.st_uid not in trusted:
                    return "%s is a symbolic link owned by uid %d (not followed)" % (current, st.st_uid)
                continue
            if number == len(parts) - 1 and private and stat.S_ISDIR(st.st_mode):
                problem = writable_by_others(st)
                if problem:
                    return "%s %s" % (current, problem)
        return None

    path = os.path.abspath(path)
    return walk(path) or (walk(os.path.realpath(path)) if os.path.realpath(path) != path else None)


def write_temp(directory, name, data, uid, gid, mode):
    """A temporary file in ``directory`` holding ``data`` (fsync'ed, owner and
    mode set on the open file); the caller renames it over ``name`` (which
    replaces a symbolic link there, never its target) or removes it."""
    fd, tmp = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            # on the open file, not its name: in a directory others may write to,
            # the name may be a symbolic link by now
            if uid != -1 or gid != -1:
                os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
    except BaseException:
        discard(tmp)
        raise
    return tmp


def discard(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fix_attributes(path, uid, gid, mode):
    """Owner, group and mode of the regular file ``path``, set on the open file (never through a link)."""
    fd, st = open_regular(path)
    if fd is None:
        raise not_regular(path, st) if st is not None else FileSetError("%s: disappeared while written" % path)
    try:
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def check_validate(command):
    if command and "%s" not in command:
        raise FileSetError("validate %r: must contain %%s (the file to check)" % command)
    return command


def file_set(path, files, owner=None, group=None, mode="0644", prune_patterns=None,
             remove=None, check_mode=False, diff=False, validate=None, run=None):
    """Apply the set; returns the result dict (changed, written, removed, unchanged, diff).

    Every file to write is first written to a temporary file beside it and,
    with ``validate``, checked by ``run(argv)`` -> (rc, stdout, stderr); only
    when every file of the set passed are they renamed into place, so a set
    is replaced whole or not at all."""
    if not os.path.isdir(path):
        raise FileSetError("path %s: not a directory" % path)
    files = files or {}
    if not isinstance(files, dict):
        raise FileSetError("files: expected a mapping of name to content")
    for name in files:
        check_name(name)
    for name in remove or []:
        check_name(name, "remove entry")
    patterns = list(prune_patterns or [])
    for pattern in patterns:
        if "/" in pattern:
            raise FileSetError("prune pattern %r: must match names in the directory (no '/')" % pattern)
    check_validate(validate)
    uid, gid = resolve_owner(owner, group)
    want_mode = parse_mode(mode)

    written, removed, unchanged, diffs, pending = [], [], [], [], []
    for name in sorted(files):
        content = files[name]
        if content is None:
            content = ""
        if not isinstance(content, (str, bytes)):
            raise FileSetError("file %s: content must be a string, got %s" % (name, type(content).__name__))
        data = to_bytes(content, errors="surrogate_or_strict")
        full = os.path.join(path, name)
        before, st = read_regular(full)
        if same_file(before, st, data, uid, gid, want_mode):
            unchanged.append(name)
            continue
        written.append(name)
        if diff and before != data:
            diffs.append({"before_header": full, "after_header": full,
                          "before": to_text(before or b"", errors="surrogate_or_replace"),
                          "after": to_text(data, errors="surrogate_or_replace")})
        pending.append((name, full, data, before == data))

    if not check_mode:
        temps = []
        try:
            for name, full, data, same_content in pending:
                if same_content and not validate:  # only owner/group/mode differ
                    temps.append((full, None))
                    continue
                tmp = write_temp(path, name, data, uid, gid, want_mode)
                temps.append((full, tmp))
                if validate:
                    argv = [arg.replace("%s", tmp) for arg in shlex.split(validate)]
                    rc, out, err = run(argv)
                    if rc != 0:
                        raise FileSetError("%s: rejected by '%s' (exit %s), nothing of this set was written: %s"
                                           % (full, validate, rc, (err or out).strip()))
        except BaseException:
            for _full, tmp in temps:
                if tmp:
                    discard(tmp)
            raise
        for full, tmp in temps:
            if tmp:
                os.rename(tmp, full)
            else:
                fix_attributes(full, uid, gid, want_mode)

    stale = set(remove or []) | set(stale_names(path, files, patterns))
    for name in sorted(stale - set(files)):
        full = os.path.join(path, name)
        if not os.path.lexists(full):
            continue
        if os.path.isdir(full) and not os.path.islink(full):
            raise FileSetError("file %s: is a directory, not removed" % full)
        removed.append(name)
        if diff:
            before, st = read_current(full)  # a link or a FIFO is removed itself, never read
            shown = to_text(before, errors="surrogate_or_replace") if before is not None else \
                ("(%s, not read)\n" % describe(st) if st is not None else "")
            diffs.append({"before_header": full, "after_header": full + " (absent)", "before": shown, "after": ""})
        if not check_mode:
            os.unlink(full)  # removes a symbolic link itself, not its target
    if (written or removed) and not check_mode:
        fsync_dir(path)

    result = {"changed": bool(written or removed), "written": written,
              "removed": removed, "unchanged": unchanged}
    if diff:
        result["diff"] = diffs
    return result


def ensure_dirs(dirs, check_mode=False):
    """Make or correct the directories (parents first); -> the paths changed."""
    changed = []
    for path in sorted(dirs, key=lambda p: p.rstrip("/").count("/")):
        spec = dirs[path] or {}
        uid, gid = resolve_owner(spec.get("owner"), spec.get("group"), missing_ok=check_mode)
        want_mode = parse_mode(spec.get("mode") or "0755")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        difference = dir_difference(st, uid, gid, want_mode) if st is not None else "missing"
        if difference == "not a directory":
            raise FileSetError("directory %s: exists and is not a directory" % path)
        if difference is None:
            continue
        changed.append(path)
        if check_mode:
            continue
        if st is None:
            os.makedirs(path, exist_ok=True)
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        os.chmod(path, want_mode)
    return changed


def ensure_links(links, check_mode=False):
    """Make each path of ``links`` a symbolic link to its target (replacing a
    link or file there, atomically); -> the paths changed."""
    changed = []
    for path in sorted(links or {}):
        target = links[path]
        if not isinstance(target, str) or not target:
            raise FileSetError("link %s: needs a target path" % path)
        if os.path.islink(path) and os.readlink(path) == target:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            raise FileSetError("link %s: is a directory, not replaced" % path)
        changed.append(path)
        if check_mode:
            continue
        tmp = os.path.join(os.path.dirname(path), ".%s.%d.link" % (os.path.basename(path), os.getpid()))
        discard(tmp)
        os.symlink(target, tmp)
        os.rename(tmp, path)
    return changed


def apply_sets(sets, dirs, check_mode=False, diff=False, run=None, links=None):
    """dirs, then each set in order, then links; -> result dict."""
    made = ensure_dirs(dirs or {}, check_mode)
    result = {"changed": bool(made), "dirs_changed": made, "changed_sets": [], "written": [],
              "removed": [], "unchanged": [], "sets": {}}
    diffs = []
    for spec in sets:
        name = spec.get("name") or spec.get("path")
        path = spec.get("path")
        if not path:
            raise FileSetError("set %r: needs a path" % name)
        if check_mode and not os.path.isdir(path):
            # a directory that this check run (or an earlier step of it) only
            # reports as to be made: every file of the set would be written
            files = sorted(spec.get("files") or {})
            one = {"changed": bool(files), "written": files, "removed": [], "unchanged": []}
        else:
            one = file_set(path, spec.get("files"), owner=spec.get("owner"), group=spec.get("group"),
                           mode=spec.get("mode") or "0644", prune_patterns=spec.get("prune_patterns"),
                           remove=spec.get("remove"), check_mode=check_mode, diff=diff,
                           validate=spec.get("validate"), run=run)
        diffs.extend(one.pop("diff", []))
        result["sets"][name] = one
        for key in ("written", "removed", "unchanged"):
            result[key].extend(os.path.join(path, entry) for entry in one[key])
        if one["changed"]:
            result["changed"] = True
            result["changed_sets"].append(name)
    result["links_changed"] = ensure_links(links, check_mode)
    result["changed"] = result["changed"] or bool(result["links_changed"])
    if diff:
        result["diff"] = diffs
    return result
