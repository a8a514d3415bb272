# -*- coding: utf-8 -*-
"""File-set logic shared by the modules monstack_file_set and monstack_probe.

A *file set* is the files of one directory that one owner manages: their
names and contents, one owner, group and mode, and optionally glob patterns
of the names the set owns (a file matching them that is not in the set is
stale). monstack_file_set applies a set; monstack_probe only compares it, so
that a rerun learns in one round trip whether anything must be written.
"""
from __future__ import annotations

import fnmatch
import grp
import hashlib
import os
import pwd
import stat
import tempfile


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


def read_current(path):
    """-> (bytes or None, os.stat_result or None)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(), os.fstat(handle.fileno())
    except FileNotFoundError:
        return None, None
    except NotADirectoryError:
        return None, None
    except IsADirectoryError:
        raise FileSetError("%s: is a directory, not a file" % path)


def same_file(before, st, data, uid, gid, mode):
    """Whether the file on disk (content ``before``, stat ``st``) is ``data``
    with owner ``uid``, group ``gid`` and ``mode`` (-1: any owner/group).
    ``data`` may be the bytes or their SHA-1 as ``sha1:<hex>``."""
    if st is None or stat.S_IMODE(st.st_mode) != mode:
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


def write_temp(directory, name, data, uid, gid, mode):
    """A temporary file in ``directory`` holding ``data`` (fsync'ed, owner and
    mode set); the caller renames it over ``name`` or removes it."""
    fd, tmp = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if uid != -1 or gid != -1:
            os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
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
