# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""A memo that the worker processes of one ansible-playbook run share, in memory only.

ansible-core forks a worker per task and host, and a worker cannot hand a value to
the workers forked after it but through the disk. ``RunMemo`` is an anonymous
shared memory region (Linux ``memfd_create``): the controller process creates it
when it first imports the module that holds it (the strategy loads a task's action
plugin before it forks that task's workers), and every worker forked after that maps
the same pages. Nothing is written to a file system; the region goes away with the
last process of the run. Only processes of this run (and root) can reach it, as
they can reach the run's own memory.

Values are JSON. Records are appended, never changed: ``P`` (a worker computes this
key now), ``V`` (the value) and ``F`` (the computation failed). The first worker that
misses a key claims it; a worker that misses a key another worker has claimed waits
for the value (up to ``wait`` seconds) instead of computing it again. When the region
is full, values are computed and not kept. Where ``memfd_create`` is missing (not
Linux), ``create`` returns None and callers compute everything themselves.
"""
from __future__ import annotations

import fcntl
import json
import mmap
import os
import struct
import time

SIZE = 64 * 1024 * 1024  # virtual: pages are only allocated as records are written
_HEADER = struct.Struct("<Q")  # bytes used, the header included
_RECORD = struct.Struct("<cHI")  # kind, key length, value length
PENDING, VALUE, FAILED = b"P", b"V", b"F"
WAIT = 20.0  # seconds a worker waits for another worker's value before computing it itself
POLL = 0.005


class RunMemo:
    """Shared key -> JSON value memo with one computation per key (see the module docstring)."""

    def __init__(self, size=SIZE):
        self._fd = os.memfd_create("monstack-run-memo", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._size = size
        _HEADER.pack_into(self._map, 0, _HEADER.size)

    @classmethod
    def create(cls, size=SIZE):
        """A new memo, or None where shared anonymous memory is not available."""
        if not hasattr(os, "memfd_create"):
            return None
        try:
            return cls(size)
        except (OSError, ValueError):
            return None

    # -- records (callers hold the lock)
    def _lock(self):
        fcntl.lockf(self._fd, fcntl.LOCK_EX)

    def _unlock(self):
        fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _find(self, key):
        """(kind, value bytes) of the last record of ``key``, or (None, None)."""
        used = _HEADER.unpack_from(self._map, 0)[0]
        offset, found = _HEADER.size, (None, None)
        while offset < used:
            kind, klen, vlen = _RECORD.unpack_from(self._map, offset)
            start = offset + _RECORD.size
            if klen == len(key) and self._map[start:start + klen] == key:
                found = (kind, self._map[start + klen:start + klen + vlen])
            offset = start + klen + vlen
        return found

    def _append(self, kind, key, value=b""):
        """Append a record; False when the region has no room for it."""
        used = _HEADER.unpack_from(self._map, 0)[0]
        end = used + _RECORD.size + len(key) + len(value)
        if end > self._size or len(key) > 0xFFFF:
            return False
        _RECORD.pack_into(self._map, used, kind, len(key), len(value))
        start = used + _RECORD.size
        self._map[start:start + len(key)] = key
        self._map[start + len(key):end] = value
        _HEADER.pack_into(self._map, 0, end)
        return True

    def _state(self, key, claim):
        self._lock()
        try:
            kind, value = self._find(key)
            if kind is None and claim:
                # room for the claim and for the failure record that may have to end it
                room = _HEADER.unpack_from(self._map, 0)[0] + 2 * (_RECORD.size + len(key)) <= self._size
                return ("claimed", None) if room and self._append(PENDING, key) else ("full", None)
            return kind, value
        finally:
            self._unlock()

    def _settle(self, kind, key, value=b""):
        """End a claim with a value (True) or, when the value does not fit, with a failure record
        (False: waiting workers compute for themselves; the claim left room for that record)."""
        self._lock()
        try:
            if self._append(kind, key, value):
                return kind == VALUE
            self._append(FAILED, key)
            return False
        finally:
            self._unlock()

    # -- API
    def get(self, key):
        """The value stored under ``key`` (decoded), or None."""
        kind, value = self._state(key, claim=False)
        return json.loads(value) if kind == VALUE else None

    def get_or_compute(self, key, compute, wait=WAIT):
        """(value, how): the value under ``key``, computing it with ``compute()`` when no worker has
        (how: "hit", "waited", "stored", "computed"). The value is always the decoded JSON, so a
        worker that computed it uses the same data as the workers that read it. ``compute`` raising
        leaves a failure record (a waiting worker computes for itself) and the exception goes to
        the caller."""
        deadline = time.monotonic() + wait
        waited = False
        while True:
            kind, value = self._state(key, claim=True)
            if kind == VALUE:
                return json.loads(value), ("waited" if waited else "hit")
            if kind == PENDING and time.monotonic() < deadline:
                waited = True
                time.sleep(POLL)
                continue
            break
        claimed = kind == "claimed"
        try:
            result = compute()
        except BaseException:
            if claimed:
                self._settle(FAILED, key)
            raise
        try:
            encoded = json.dumps(result, separators=(",", ":")).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError):  # not JSON data: used as it is, not kept
            if claimed:
                self._settle(FAILED, key)
            return result, "computed"
        stored = claimed and self._settle(VALUE, key, encoded)
        return json.loads(encoded), ("stored" if stored else "computed")
