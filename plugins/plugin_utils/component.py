# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Pure logic of the monstack.stack.component action (controller side, no Ansible objects).

A component (node_exporter, Prometheus, ...) is data: a mapping ``<role>_component``
(see the action's documentation). This module turns it into what the action needs:
the normalised spec (defaults, checks naming the field that is wrong), the systemd unit
and web configuration texts, the probe's arguments, the steps that the probe's drift and
the run's tags select, and the outcome of a reload read from the program's metrics.
"""
from __future__ import annotations

import hashlib
import hmac

import re

# Where release binaries are unpacked on the hosts: <root>/<name>/<version>/.
INSTALL_ROOT = "/opt/monstack"

# The sandboxing every unit starts from; a component merges its own changes over it
# (service.hardening; a null value removes a directive).
HARDENING_BASE = {
    "CapabilityBoundingSet": "",
    "DevicePolicy": "closed",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "NoNewPrivileges": "yes",
    "PrivateDevices": "yes",
    "PrivateTmp": "yes",
    "ProtectClock": "yes",
    "ProtectControlGroups": "yes",
    "ProtectHome": "read-only",
    "ProtectHostname": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectSystem": "strict",
    "RemoveIPC": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM",
    "SystemCallFilter": ["@system-service", "~@privileged"],
    "UMask": "0027",
}

TOP_KEYS = ("name", "state", "release", "user", "dirs", "file_sets", "web", "service", "check", "remove_paths",
            "tags")
STATES = ("present", "absent")
SET_KEYS = ("path", "files", "owner", "group", "mode", "validate", "on_change", "secret", "prune_patterns", "remove")
FILE_KEYS = ("template", "src", "variable_start_string", "variable_end_string")
ON_CHANGE = ("restart", "reload", "none")
WEB_KEYS = ("config_path", "tls_cert_file", "tls_key_file", "basic_auth_users")
SERVICE_KEYS = ("name", "description", "documentation", "exec", "flags", "environment", "reload", "hardening",
                "manage_unit", "ip_restrict", "ip_allow_hosts", "ip_allow")
CHECK_KEYS = ("metrics_url", "reload_url", "reload_metric_prefix", "ready_url", "user", "password", "targets_url",
              "status_url", "silences_url", "cluster_size", "downgrade_force")
STEPS = ("install", "configure", "run")


class ComponentError(ValueError):
    """A component spec that is wrong; the message names the field."""


def _mapping(value, where):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ComponentError("%s: expected a mapping, got %s" % (where, type(value).__name__))
    return value


def _known(value, keys, where):
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise ComponentError("%s: unknown key(s) %s; known: %s" % (where, ", ".join(map(str, unknown)), ", ".join(keys)))


def _bool(value, where):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise ComponentError("%s: expected a boolean, got %r" % (where, value))


def _list(value, where):
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ComponentError("%s: expected a list, got %s" % (where, type(value).__name__))
    return [str(item) for item in value]


def normalise(spec):
    """The component spec with every default filled in, or ComponentError naming the field."""
    spec = _mapping(spec, "component")
    _known(spec, TOP_KEYS, "component")
    name = str(spec.get("name") or "")
    if not re.match(r"^[a-z][a-z0-9_]*$", name):
        raise ComponentError("component: name %r must be a role name (lower case, digits, _)" % name)
    where = name + "_component"
    out = {"name": name}
    # further tag prefixes that select the steps as the name's do (the exporter catalogue's: exporters)
    out["tags"] = _list(spec.get("tags"), where + ".tags")
    out["state"] = str(spec.get("state") or "present")
    if out["state"] not in STATES:
        raise ComponentError("%s.state: %r must be present or absent (%s_state)" % (where, out["state"], name))
    out["remove_paths"] = _list(spec.get("remove_paths"), where + ".remove_paths")
    for path in out["remove_paths"]:
        if not path.startswith("/") or path.rstrip("/") in ("", "/etc", "/usr", "/var", "/opt"):
            raise ComponentError("%s.remove_paths: %r must be an absolute path below a system directory"
                                 % (where, path))
    out["release"] = dict(_mapping(spec.get("release"), where + ".release"))
    out["release"].setdefault("name", name)

    user = dict(_mapping(spec.get("user"), where + ".user"))
    _known(user, ("name", "groups"), where + ".user")
    out["user"] = {"name": str(user.get("name") or ""), "groups": _list(user.get("groups"), where + ".user.groups")}

    dirs = {}
    for path, mode in _mapping(spec.get("dirs"), where + ".dirs").items():
        entry = _mapping(mode, "%s.dirs[%r]" % (where, path))
        _known(entry, ("owner", "group", "mode"), "%s.dirs[%r]" % (where, path))
        if not str(path).startswith("/"):
            raise ComponentError("%s.dirs: %r must be an absolute path" % (where, path))
        dirs[str(path)] = dict(entry)
    out["dirs"] = dirs

    sets = {}
    for set_name, fset in _mapping(spec.get("file_sets"), where + ".file_sets").items():
        sets[str(set_name)] = _file_set(fset, "%s.file_sets.%s" % (where, set_name))
    out["file_sets"] = sets

    web = dict(_mapping(spec.get("web"), where + ".web"))
    _known(web, WEB_KEYS, where + ".web")
    out["web"] = {"config_path": str(web.get("config_path") or ""), "tls_cert_file": str(web.get("tls_cert_file") or ""),
                  "tls_key_file": str(web.get("tls_key_file") or ""),
                  "basic_auth_users": dict(_mapping(web.get("basic_auth_users"), where + ".web.basic_auth_users"))}

    service = dict(_mapping(spec.get("service"), where + ".service"))
    _known(service, SERVICE_KEYS, where + ".service")
    hardening = _mapping(service.get("hardening"), where + ".service.hardening")
    out["service"] = {
        "name": str(service.get("name") or ""),
        "description": str(service.get("description") or ""),
        "documentation": str(service.get("documentation") or ""),
        "exec": str(service.get("exec") or ""),
        "flags": _list(service.get("flags"), where + ".service.flags"),
        "environment": {str(k): str(v) for k, v in _mapping(service.get("environment"), where + ".service.environment").items()},
        "reload": _bool(service.get("reload", False), where + ".service.reload"),
        "hardening": dict(hardening),
        "manage_unit": _bool(service.get("manage_unit", True), where + ".service.manage_unit"),
        "ip_restrict": _bool(service.get("ip_restrict", False), where + ".service.ip_restrict"),
        "ip_allow_hosts": _list(service.get("ip_allow_hosts"), where + ".service.ip_allow_hosts"),
        "ip_allow": _list(service.get("ip_allow"), where + ".service.ip_allow"),
    }
    check = dict(_mapping(spec.get("check"), where + ".check"))
    _known(check, CHECK_KEYS, where + ".check")
    out["check"] = {key: str(check.get(key) or "") for key in CHECK_KEYS}
    return out


def _file_set(fset, where):
    fset = dict(_mapping(fset, where))
    _known(fset, SET_KEYS, where)
    if not str(fset.get("path") or "").startswith("/"):
        raise ComponentError("%s: path %r must be an absolute directory" % (where, fset.get("path")))
    on_change = fset.get("on_change") or "none"
    if on_change not in ON_CHANGE:
        raise ComponentError("%s: on_change %r must be one of %s" % (where, on_change, ", ".join(ON_CHANGE)))
    files = {}
    for file_name, entry in _mapping(fset.get("files"), where + ".files").items():
        fwhere = "%s.files[%r]" % (where, file_name)
        if isinstance(entry, dict):
            _known(entry, FILE_KEYS, fwhere)
            if bool(entry.get("template")) == bool(entry.get("src")):
                raise ComponentError("%s: give one of template (a file of the role's templates/) or src "
                                     "(a file on the controller)" % fwhere)
            files[str(file_name)] = dict(entry)
        elif entry is None:
            files[str(file_name)] = ""
        elif isinstance(entry, str):
            files[str(file_name)] = entry
        else:
            raise ComponentError("%s: expected text, {template: ...} or {src: ...}, got %s (render data with "
                                 "to_nice_yaml or to_json)" % (fwhere, type(entry).__name__))
    out = {"path": str(fset["path"]), "files": files, "on_change": on_change,
           "secret": _bool(fset.get("secret", False), where + ".secret"),
           "prune_patterns": _list(fset.get("prune_patterns"), where + ".prune_patterns"),
           "remove": _list(fset.get("remove"), where + ".remove")}
    for key in ("owner", "group", "mode", "validate"):
        if fset.get(key) not in (None, ""):
            out[key] = str(fset[key])
    return out


# --------------------------------------------------------------------- install
def install_paths(release, install_root=INSTALL_ROOT):
    """What the probe checks of the release: its binary in the version directory and the
    links in /usr/local/bin, or the packages (method package)."""
    method = release.get("method") or "archive"
    binaries = _list(release.get("binaries"), "release.binaries")
    if method == "package":
        return {"packages": _list(release.get("packages"), "release.packages")}
    if not binaries:
        return {}
    version_dir = release.get("version_dir") or "%s/%s/%s" % (install_root, release["name"], release.get("version"))
    paths = ["%s/%s%s" % (version_dir, release.get("binary_subdir") or "", binary) for binary in binaries]
    return {"path": paths[0], "links": {"/usr/local/bin/" + binary: path for binary, path in zip(binaries, paths)}}


def removed_paths(component, install_root=INSTALL_ROOT):
    """What state absent deletes: the unit, the release directory, the links in
    /usr/local/bin and the component's remove_paths (configuration and data
    directories are kept unless named there)."""
    paths = []
    if component["service"]["name"]:
        paths.append("/etc/systemd/system/%s.service" % component["service"]["name"])
    paths.append("%s/%s" % (install_root, component["name"]))
    paths += ["/usr/local/bin/" + binary for binary in _list(component["release"].get("binaries"), "release.binaries")]
    return paths + component["remove_paths"]


# ------------------------------------------------------------------------ unit
def _comment(text):
    """Ansible's ``comment`` filter (shell style, the default decoration)."""
    return "#\n" + "\n".join(("# " + line).rstrip() for line in text.splitlines()) + "\n#"


def hardening(service, ip_access):
    """The unit's sandboxing lines: base, then IP access, then the component's own (null drops)."""
    merged = dict(HARDENING_BASE)
    merged.update(ip_access)
    merged.update(service["hardening"])
    lines = []
    for key in sorted(merged):
        value = merged[key]
        if value is None:
            continue
        values = [value] if isinstance(value, str) or not hasattr(value, "__iter__") else list(value)
        lines.extend("%s=%s" % (key, line) for line in values)
    return lines


def ip_access(service, allow_list):
    """systemd IPAddressDeny=/IPAddressAllow= of a restricted service, {} when not restricted."""
    if not service["ip_restrict"]:
        return {}
    return {"IPAddressDeny": "any", "IPAddressAllow": " ".join(allow_list)}


def unit_text(component, user, allow_list=(), managed="Ansible managed"):
    """The systemd unit of the component (what roles/common/templates/service.j2 rendered)."""
    service, web, name = component["service"], component["web"], component["name"]
    out = [_comment(managed)]
    if web["tls_cert_file"]:
        out += ["# Serves HTTPS (web configuration %s): turning TLS on" % web["config_path"],
                "# or off changes this file, so the service restarts to switch its listener."]
    out += ["[Unit]", "Description=" + service["description"], "Documentation=" + service["documentation"],
            "Wants=network-online.target", "After=network-online.target", "", "[Service]", "Type=simple",
            "User=" + user, "Group=" + user]
    out += ['Environment="%s=%s"' % (key, value) for key, value in sorted(service["environment"].items())]
    execstart = "ExecStart=" + service["exec"]
    for flag in service["flags"]:
        execstart += " \\\n    " + flag.replace("%", "%%").replace("$", "$$")
    out.append(execstart)
    if service["reload"]:
        out.append("ExecReload=/bin/kill -HUP $MAINPID")
    out += ["Restart=on-failure", "RestartSec=5s", "TimeoutStopSec=60s", "LimitNOFILE=65536", "",
            "# Sandboxing: see `systemd-analyze security %s`." % service["name"]]
    access = ip_access(service, allow_list)
    if access:
        hosts = ", ".join(sorted(set(service["ip_allow_hosts"]))) or "no host"
        out += ["# Who may connect: localhost, the addresses of %s" % hosts,
                "# and %s_ip_allow (and monstack_ip_allow); every other address" % name,
                "# is dropped, both ways", "# (%s_ip_restrict: false turns this off)." % name]
    out += hardening(service, access)
    out += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(out)


def _json(text):
    import json
    return json.dumps(text)


def web_config_text(component, host, hasher, managed="Ansible managed"):
    """The exporter-toolkit web configuration (TLS, basic auth users as bcrypt hashes made by
    ``hasher(password, seed)``), or None when neither is set."""
    web, name = component["web"], component["name"]
    if not (web["tls_cert_file"] or web["basic_auth_users"]):
        return None
    out = [_comment(managed)]
    if web["tls_cert_file"]:
        out += ["tls_server_config:", "  cert_file: " + _json(web["tls_cert_file"]),
                "  key_file: " + _json(web["tls_key_file"])]
    if web["basic_auth_users"]:
        out.append("basic_auth_users:")
        for user, password in sorted(web["basic_auth_users"].items()):
            out.append("  %s: %s" % (_json(user), _json(hasher(password, "%s:%s:%s" % (host, name, user)))))
    return "\n".join(out) + "\n"


def extra_sets(component, unit, web_config):
    """The component's web configuration and unit as file sets of their own (web, unit)."""
    sets = {}
    web, service = component["web"], component["service"]
    user = component["user"]["name"] or "root"
    if web["config_path"]:
        directory, base = web["config_path"].rsplit("/", 1)
        sets["web"] = {"path": directory or "/", "owner": "root", "group": user, "mode": "0640", "on_change": "none",
                       "secret": True, "prune_patterns": [],
                       "files": {base: web_config} if web_config is not None else {},
                       "remove": [] if web_config is not None else [base]}
    if service["manage_unit"] and service["name"]:
        sets["unit"] = {"path": "/etc/systemd/system", "owner": "root", "group": "root", "mode": "0644",
                        "on_change": "restart", "secret": False, "prune_patterns": [], "remove": [],
                        "files": {service["name"] + ".service": unit}}
    return sets


# ----------------------------------------------------------------------- probe
def probe_args(component, sets_digests, install_root=INSTALL_ROOT):
    """The probe arguments (without the key): ``sets_digests`` are the sets with
    their contents already digested."""
    release, check, service = component["release"], component["check"], component["service"]
    install = install_paths(release, install_root) if release.get("binaries") or release.get("packages") else {}
    user = component["user"]
    args = {"install": install,
            "user": ({"name": user["name"], "groups": [user["name"]] + user["groups"]}
                     if user["name"] not in ("", "root") else {}),
            "dirs": component["dirs"], "sets": sets_digests, "service": service["name"] or None,
            "restart_files": (["/etc/systemd/system/%s.service" % service["name"]] + sorted(install.get("links", {})))
            if service["name"] else []}
    if check["metrics_url"] and check["reload_metric_prefix"]:
        args["reload"] = {"url": check["metrics_url"],
                          "metric": check["reload_metric_prefix"] + "_last_reload_success_timestamp_seconds",
                          "sets": sorted(n for n, s in component["file_sets"].items() if s["on_change"] == "reload"),
                          "username": check["user"], "password": check["password"]}
    return args


# ----------------------------------------------------------------------- steps
def selected_steps(name, run_tags=("all",), skip_tags=(), prefixes=()):
    """The steps (install, configure, run) that the run's --tags/--skip-tags select: every
    step is tagged <name> and <name>_<step> (as the task files of roles/common were), and
    likewise for each of the spec's further tag ``prefixes``."""
    run_tags, skip_tags = set(run_tags or ["all"]), set(skip_tags or [])
    chosen = set()
    if "all" in skip_tags:
        return chosen
    for step in STEPS:
        tags = {tag for prefix in [name] + list(prefixes) for tag in (prefix, "%s_%s" % (prefix, step))}
        wanted = "all" in run_tags or "tagged" in run_tags or bool(tags & run_tags)
        if wanted and not (tags & skip_tags or "tagged" in skip_tags):
            chosen.add(step)
    return chosen


def plan(drift, sets, steps):
    """What to do for the probe's ``drift`` (list of part names) with the selected ``steps``:
    {'install', 'user', 'dirs', 'sets': [names], 'catch_up_restart', 'catch_up_reload', 'start'}."""
    drift = set(drift or [])
    configure, install, run = "configure" in steps, "install" in steps, "run" in steps
    return {
        "install": install and "install" in drift,
        "user": install and "user" in drift,
        "dirs": configure and "dirs" in drift,
        "sets": [name for name in sets if name in drift] if configure else [],
        # a restart or reload an earlier run lost (the probe compares times)
        "catch_up_restart": "restart" in drift and (install or configure or run),
        "catch_up_reload": "reload" in drift and (configure or run),
        "start": run and "service" in drift,
    }


def service_actions(todo, active, changed_on, installed, has_reload_check):
    """Restart, reload and start after the writes: ``active`` whether the service was
    running at the probe, ``changed_on`` the on_change of the sets this run changed,
    ``installed`` whether the install step changed the release."""
    restart = active and (todo["catch_up_restart"] or installed or "restart" in changed_on)
    reload_ = (not restart and active and has_reload_check
               and (todo["catch_up_reload"] or "reload" in changed_on))
    return {"restart": restart, "reload": reload_, "start": todo["start"]}


# ---------------------------------------------------------------------- reload
# reload_time, reload_outcome: the record store module reads a reload's outcome too
from ansible_collections.monstack.stack.plugins.module_utils.reload_check import (  # noqa: E402  pylint: disable=wrong-import-position,unused-import
    reload_outcome, reload_time)


# ------------------------------------------------------------- probe digests
# Contents travel to the probe as HMAC-SHA256 digests under a random key of
# the run (sent in the probe's no_log argument ``key``), so the arguments shown
# at -vvv or kept by ARA hold no digest that a guessed secret could be checked
# against. The probe_sets filter uses the same functions.
HMAC_PREFIX = "hmac-sha256:"
PROBE_SET_KEYS = ("path", "owner", "group", "mode", "prune_patterns", "remove")


def key_id(key):
    """A short public name of a key (not enough to learn anything about it)."""
    return hashlib.sha256(b"monstack-probe-key-id:" + key.encode("ascii")).hexdigest()[:12]


def content_digest(content, key):
    """``hmac-sha256:<key id>:<hex>`` of text ``content`` under hex ``key``."""
    mac = hmac.new(bytes.fromhex(key), content.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
    return "%s%s:%s" % (HMAC_PREFIX, key_id(key), mac)


def probe_sets(sets, key):
    """Rendered file sets (name -> {path, files: {name: text}, ...}) -> what the probe reads:
    the keys it compares and each content as its digest under ``key``."""
    probed = {}
    for name, fset in sets.items():
        probed[name] = {k: fset[k] for k in PROBE_SET_KEYS if k in fset}
        probed[name]["files"] = {fname: content_digest("" if text is None else text, key)
                                 for fname, text in (fset.get("files") or {}).items()}
    return probed


def scraping(targets_answer) -> bool:
    """Prometheus' /api/v1/targets answer: some active target was scraped successfully (a restarted
    server shows its targets as unknown until it has scraped them)."""
    data = (targets_answer or {}).get("data") or {}
    return any(t.get("health") == "up" for t in data.get("activeTargets") or [] if isinstance(t, dict))


def active_silences(silences_answer) -> list:
    """The ids of the active silences in Alertmanager's /api/v2/silences answer."""
    return sorted(s.get("id") for s in silences_answer or [] if isinstance(s, dict)
                  and (s.get("status") or {}).get("state") == "active" and s.get("id"))


def cluster_rejoined(status_answer, size) -> bool:
    """Alertmanager's /api/v2/status answer: the cluster is ready and this member sees all ``size`` members."""
    cluster = (status_answer or {}).get("cluster") or {}
    return cluster.get("status") == "ready" and len(cluster.get("peers") or []) >= int(size or 0)
