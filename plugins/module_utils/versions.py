# -*- coding: utf-8 -*-
"""The version matrix: which releases of the servers the roles support, and what follows from a version.

One small table per component; the roles read plain values from it (the filter
monstack.stack.version_settings) instead of comparing versions in templates, and
the preflight refuses a version outside the range, flags the version does not
know, and a downgrade across a data-format boundary. Pure functions, no Ansible.

Sources (upstream CHANGELOGs and the Prometheus 3.0 migration guide):
- Prometheus 2.48.0 added the scrape option track_timestamps_staleness.
- Prometheus 3.0.0 added fallback_scrape_protocol, moved the feature flags "agent" and
  "remote-write-receiver" to --agent and --web.enable-remote-write-receiver and
  removed --storage.tsdb.retention, --alertmanager.timeout and
  --storage.tsdb.allow-overlapping-blocks.
- TSDB: "a Prometheus v3 TSDB can only be read by a Prometheus v2.55 or newer"
  (3.0 migration guide, "TSDB format and downgrade").
- node_exporter 1.3.0 renamed --collector.filesystem.ignored-* to *-exclude;
  1.5.0 renamed --web.config to --web.config.file.
- Alertmanager: no storage format change since 0.5.0 (silences and the
  notification log are the same protobuf snapshots), so no downgrade boundary.
"""
from __future__ import annotations

import re

# component -> (oldest supported, newest tested, first release NOT supported).
# The oldest and newest are in the test mirror (tools/build_mirror.py) and
# tested (tests/unit/test_version_matrix.py, molecule/upgrade). node_exporter
# keeps 1.1.2: Debian 11's build, the only one that starts there (glibc).
MATRIX = {
    "prometheus": ("2.42.0", "3.5.3", "4.0.0"),
    "alertmanager": ("0.25.0", "0.33.1", "1.0.0"),
    "node_exporter": ("1.1.2", "1.11.1", "2.0.0"),
    "blackbox_exporter": ("0.23.0", "0.28.0", "1.0.0"),
}

# A package install (install_method package) has the distribution's version,
# which the controller does not know: treated as current.
PACKAGE_VERSION = "99.0.0"

# Data written by a release at or above `written_by` is read only by releases at
# or above `read_by` (older ones lose the data or refuse to start).
DATA_FORMATS = {
    "prometheus": [("3.0.0", "2.55.0", "a Prometheus 3 TSDB (data directory) can only be read by Prometheus 2.55.0 "
                    "or later (Prometheus 3.0 migration guide, 'TSDB format and downgrade')")],
}

# Flags a release range does not accept: component -> [(flag prefix, first release without it
# (None: never removed), first release with it (None: always there), the fix)].
FLAGS = {
    "prometheus": [
        ("--enable-feature=agent", "3.0.0", None, "use --agent"),
        ("--enable-feature=remote-write-receiver", "3.0.0", None, "use --web.enable-remote-write-receiver"),
        ("--storage.tsdb.retention=", "3.0.0", None, "use --storage.tsdb.retention.time (prometheus_retention_time)"),
        ("--alertmanager.timeout", "3.0.0", None, "set timeout in the alertmanager configuration instead"),
        ("--storage.tsdb.allow-overlapping-blocks", "3.0.0", None, "drop it (overlapping blocks are always allowed)"),
        ("--agent", None, "3.0.0", "use --enable-feature=agent on Prometheus 2"),
        ("--no-auto-gomemlimit", None, "3.0.0", "drop it on Prometheus 2 (the limit is opt-in there)"),
    ],
}

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


class VersionError(ValueError):
    """A version string that is not a release version."""


def parse(version) -> tuple:
    match = _VERSION.match(str(version).strip())
    if not match:
        raise VersionError("%r is not a release version such as 1.2.3" % (version,))
    return tuple(int(part) for part in match.groups())


def effective(version, method="archive") -> str:
    """The version the roles configure for: the given one, or PACKAGE_VERSION for a distribution package."""
    return PACKAGE_VERSION if str(method) == "package" else str(version)


def supported_range(component) -> str:
    """The range as the README and the preflight state it."""
    oldest, newest, before = MATRIX[component]
    return "%s <= version < %s (tested: %s and %s)" % (oldest, before, oldest, newest)


def range_problem(component, version) -> str:
    """Empty when ``version`` is in the supported range, else the message naming the range."""
    if component not in MATRIX:
        return ""
    oldest, _newest, before = MATRIX[component]
    try:
        wanted = parse(version)
    except VersionError as err:
        return "%s_version: %s" % (component, err)
    if parse(oldest) <= wanted < parse(before):
        return ""
    return ("%s_version: %s is outside the supported range %s. Fix: choose a release in that range"
            % (component, version, supported_range(component)))


def _at_least(version, minimum) -> bool:
    return parse(version) >= parse(minimum)


def settings(component, version, method="archive") -> dict:
    """Plain values the roles' templates and flags use for this release (see each key)."""
    version = effective(version, method)
    parse(version)
    if component == "prometheus":
        return {
            "major": parse(version)[0],
            # scrape option (2.48.0); the cadvisor job sets it when wanted
            "track_timestamps_staleness": _at_least(version, "2.48.0"),
            # 3.0 fails a scrape whose Content-Type is missing or unknown unless this is set
            "fallback_scrape_protocol": "PrometheusText0.0.4" if _at_least(version, "3.0.0") else "",
            # agent mode (prometheus_mode: agent): a flag of its own from 3.0, a feature flag before
            "agent_flag": "--agent" if _at_least(version, "3.0.0") else "--enable-feature=agent",
            # the top-level scrape_config_files key (prometheus_scrape_config_dir) came with 2.43.0
            "scrape_config_files": _at_least(version, "2.43.0"),
        }
    if component == "node_exporter":
        renamed = _at_least(version, "1.3.0")
        return {
            "web_config_flag": "--web.config.file" if _at_least(version, "1.5.0") else "--web.config",
            "fs_mount_points_flag": "--collector.filesystem.mount-points-exclude" if renamed
            else "--collector.filesystem.ignored-mount-points",
            "fs_types_flag": "--collector.filesystem.fs-types-exclude" if renamed
            else "--collector.filesystem.ignored-fs-types",
        }
    if component in MATRIX:
        return {"major": parse(version)[0]}
    raise VersionError("unknown component %r; known: %s" % (component, ", ".join(sorted(MATRIX))))


def flag_problems(component, version, flags, method="archive") -> list:
    """Messages for flags (e.g. <role>_extra_flags) the release does not take."""
    problems = []
    try:
        wanted = parse(effective(version, method))
    except VersionError:
        return []
    for flag in flags or []:
        for prefix, removed_in, added_in, fix in FLAGS.get(component, []):
            if not str(flag).startswith(prefix):
                continue
            if prefix == "--agent" and str(flag) not in ("--agent", "--agent=true"):
                continue
            if removed_in and wanted >= parse(removed_in):
                problems.append("%s_extra_flags: %s was removed in %s %s (this host runs %s). Fix: %s"
                                % (component, flag, component, removed_in, version, fix))
            if added_in and wanted < parse(added_in):
                problems.append("%s_extra_flags: %s exists from %s %s on (this host runs %s). Fix: %s"
                                % (component, flag, component, added_in, version, fix))
    return problems


def downgrade_problem(component, installed, wanted) -> str:
    """Empty unless going from ``installed`` to ``wanted`` crosses a data-format boundary."""
    try:
        have, want = parse(installed), parse(wanted)
    except VersionError:
        return ""
    if want >= have:
        return ""
    for written_by, read_by, reason in DATA_FORMATS.get(component, []):
        if have >= parse(written_by) and want < parse(read_by):
            return ("%s_version: %s would replace %s on this host, but %s. The data would be lost or the server "
                    "would not start. Fix: pin %s_version to %s or later, or, to give up the data, set "
                    "%s_force_downgrade: true" % (component, wanted, installed, reason, component, read_by,
                                                  component))
    return ""


def installed_version(link_target) -> str:
    """The version of a release from its linked binary, <install root>/<name>/<version>/<binary> -> version."""
    parts = [p for p in str(link_target or "").split("/") if p]
    if len(parts) < 2:
        return ""
    try:
        parse(parts[-2])
    except VersionError:
        return ""
    return parts[-2]
