"""Action monstack.stack.preflight: check hosts' variables before any host is changed.

Documented for ansible-doc in plugins/modules/preflight.py. The checks are pure
functions in plugins/plugin_utils/preflight_checks.py (shared by every component
role) and preflight_roles.py (each role's own); this file finds the values they
read, on the controller only (no connection to any host):

- ``hosts`` (the preflight play, run once): for each host, the variables of each
  role it runs (``roles``: inventory group -> roles) in that role's context: the
  role's vars/, the host's inventory and extra vars, the role's defaults/. Each
  value is templated on first use, so a host costs only what its checks read.
  Returns every host's problems (and a report per host) without failing.
- ``role`` (a role's tasks/preflight.yml): the calling task's own variables, with
  the host's facts when gathered; fails with the role's problems.

Each role's meta/argument_specs.yml, defaults/ and vars/ are read once per process.
"""
from __future__ import annotations

import glob
import json
import os
from collections import ChainMap
from collections.abc import Mapping

from ansible.errors import AnsibleError, AnsibleUndefinedVariable
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.monstack.stack.plugins.filter.preflight_filters import _plain
from ansible_collections.monstack.stack.plugins.plugin_utils import alert_overrides
from ansible_collections.monstack.stack.plugins.plugin_utils import preflight_checks as checks
from ansible_collections.monstack.stack.plugins.plugin_utils.preflight_roles import ROLE_CHECKS, notes
from ansible_collections.monstack.stack.plugins.plugin_utils.template_cache import escape_backslashes as _escape_backslashes

ROLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles")

# The roles each host runs, by inventory group (site.yml's plays); 'all': every host.
DEFAULT_ROLES = {
    "all": ["node_exporter", "cadvisor", "exporters"],
    "prometheus": ["prometheus", "blackbox_exporter"],
    "prometheus_agent": ["prometheus", "blackbox_exporter"],
    "alertmanager": ["alertmanager"],
    "grafana": ["grafana"],
    "victoriametrics": ["victoriametrics"],
}

# Roles that are no release of a component: their own checks only.
OWN_CHECKS_ONLY = frozenset(("journal",))

# Per process: role path -> _RoleFiles; (role, values, options left out) -> spec problems.
_ROLE_FILES: dict = {}
_SPEC_PROBLEMS: dict = {}


class _RoleFiles:
    """What the preflight reads from one role's directory."""

    def __init__(self, loader, path: str):
        self.path = path
        specs = _load(loader, os.path.join(path, "meta", "argument_specs.yml")) or {}
        self.spec = ((specs.get("argument_specs") or {}).get("main") or {}).get("options") or {}
        self.defaults = _load_main(loader, os.path.join(path, "defaults"))
        self.vars = _load_main(loader, os.path.join(path, "vars"))
        self.known = sorted(set(self.spec) | set(self.vars))
        # what Ansible sets for a task of the role
        self.magic = {"role_path": path, "role_name": f"monstack.stack.{os.path.basename(path)}"}
        self.rule_groups = sorted(os.path.basename(name)[:-len(".rules.yml.j2")]
                                  for name in glob.glob(os.path.join(path, "templates", "rules", "*.rules.yml.j2")))
        # the shipped alerts and the thresholds of each (prometheus_alert_overrides)
        templates = {}
        for group in self.rule_groups:
            with open(os.path.join(path, "templates", "rules", group + ".rules.yml.j2"), encoding="utf-8") as handle:
                templates[group] = handle.read()
        self.alerts = alert_overrides.catalogue(templates) if templates else {}


def _load(loader, path):
    return loader.load_from_file(path, unsafe=True, trusted_as_template=True) if os.path.isfile(path) else None


def _load_main(loader, base: str) -> dict:
    """defaults/main.yml or every file of defaults/main/ (likewise vars/), as Ansible reads them."""
    merged: dict = {}
    for ext in ("", ".yml", ".yaml"):
        if os.path.isfile(base + "/main" + ext):
            merged.update(_load(loader, base + "/main" + ext) or {})
            return merged
    for name in sorted(glob.glob(os.path.join(base, "main", "*.y*ml"))):
        merged.update(_load(loader, name) or {})
    return merged


# Inventory facts that need no templating (and must not be: groups lists every host).
_MAGIC = frozenset(("groups", "group_names", "inventory_hostname"))


class _Vars(Mapping):
    """One host's variables in one role's context, each templated (to plain data) on first use,
    with the templar shared by every host (see _shared_templar)."""

    def __init__(self, templar, layers):
        self._raw = ChainMap(*layers)
        self._templar = templar
        self._values: dict = {}

    def __getitem__(self, name):
        try:
            return self._values[name]
        except KeyError:
            pass
        raw = self._raw[name]
        if name in _MAGIC:
            return raw
        self._templar.available_variables = self._raw
        value = self._values[name] = _plain(self._templar.template(raw))
        return value

    def __contains__(self, name):
        return name in self._raw

    def __iter__(self):
        return iter(self._raw)

    def __len__(self):
        return len(self._raw)


def _shared_templar(templar):
    """A templar for every host of this run: one Jinja environment whose compiled templates are
    kept (by source), so the template strings that every host shares (group_vars, role defaults)
    are compiled once, not once per host and role."""
    shared = templar.copy_with_new_env(available_variables={})
    env = getattr(getattr(shared, "_engine", None), "environment", None)
    compile_one = getattr(env, "from_string", None)
    if compile_one is None:
        return shared
    compiled: dict = {}

    def from_string(source, *args, **kwargs):
        if args or kwargs or not isinstance(source, str):
            return compile_one(source, *args, **kwargs)
        key = (str(source), _escape_backslashes())
        template = compiled.get(key)
        if template is None:
            template = compiled[key] = compile_one(source)
        return template

    env.from_string = from_string
    return shared


class ActionModule(ActionBase):
    """Check hosts' variables for the roles they run; see the module documentation."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("hosts", "roles", "role"))
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        if bool(args.get("hosts") is not None) == bool(args.get("role")):
            return {**result, "failed": True, "msg": "monstack.stack.preflight: give either hosts or role"}
        if args.get("role"):
            return {**result, **self._run_role(str(args["role"]), task_vars)}
        return {**result, **self._run_hosts(list(args["hosts"]), args.get("roles") or DEFAULT_ROLES, task_vars)}

    # ------------------------------------------------------------------ helpers
    def _files(self, role: str, path: str | None = None) -> _RoleFiles:
        path = path or os.path.join(ROLES_DIR, role)
        files = _ROLE_FILES.get(path)
        if files is None:
            files = _ROLE_FILES[path] = _RoleFiles(self._loader, path)
        return files

    def _check_role(self, role: str, v: _Vars, files: _RoleFiles, collect: bool, names=()) -> list[str]:
        """The problems of one role on one host: (collect: argument spec and unknown variables),
        unresolved (vault) variables, then, once those are fixed, the shared and the role's checks."""
        if role in OWN_CHECKS_ONLY:
            return ROLE_CHECKS[role](v, facts=not collect)
        unresolved, broken, values = [], [], {}
        for name in files.spec:
            if name in v:
                try:
                    value = v[name]
                except AnsibleUndefinedVariable:
                    unresolved.append(name)
                    continue
                except AnsibleError as err:
                    broken.append(f"{name}: its value could not be templated: {err.message}")
                    continue
                if collect:
                    values[name] = value
        problems = []
        if collect:
            # not checked: the options whose value could not be templated
            left_out = tuple(name for name in files.spec if name in v and name not in values)
            key = (role, json.dumps(values, sort_keys=True, default=repr), left_out)
            if key not in _SPEC_PROBLEMS:
                checked = {name: option for name, option in files.spec.items() if name not in left_out}
                _SPEC_PROBLEMS[key] = checks.spec_problems(values, checked)
            problems += _SPEC_PROBLEMS[key]
            problems += checks.unknown_var_problems(role, names, files.known)
        problems += checks.unresolved_problems(unresolved) + broken
        if unresolved or broken:
            return problems
        try:
            problems += checks.shared_problems(role, v, v["inventory_hostname"],
                                               v.get("groups", {}).get("prometheus", []))
            extra = {"rule_groups": files.rule_groups, "alerts": files.alerts} if role == "prometheus" else {}
            problems += ROLE_CHECKS[role](v, facts=not collect, **extra)
        except AnsibleError as err:
            problems.append(f"{role}: its variables could not be checked: {err.message}")
        return problems

    # ------------------------------------------------------- a role on its host
    def check_role(self, role: str, task_vars: dict) -> dict:
        """What O(role) gives for the calling task's variables (the component action calls it for a
        host the preflight play has not checked): failed with the problems, or fine."""
        return self._run_role(role, task_vars)

    def _run_role(self, role: str, task_vars: dict) -> dict:
        if role not in ROLE_CHECKS:
            return {"failed": True, "msg": f"monstack.stack.preflight: no checks for role {role!r}; "
                                           f"known: {', '.join(sorted(ROLE_CHECKS))}"}
        own = getattr(self._task, "_role", None)
        path = getattr(own, "_role_path", None) if own is not None and own.get_name(False) == role else None
        files = self._files(role, path)
        v = _Vars(self._templar.copy_with_new_env(available_variables=task_vars), [task_vars])
        problems = self._check_role(role, v, files, collect=False)
        if problems:
            return {"failed": True, "msg": problems}
        return {"changed": False, "msg": f"the variables of {role} are fine"}

    # ---------------------------------------------------- every host at once
    def _run_hosts(self, hosts: list, roles: Mapping, task_vars: dict) -> dict:
        hostvars = task_vars["hostvars"]
        manager = getattr(hostvars, "_variable_manager", None)
        extra = dict(getattr(manager, "extra_vars", {}) or {})
        problems, reports, said = {}, {}, []
        templar = _shared_templar(self._templar)
        for host in hosts:
            raw = hostvars.raw_get(host)
            host_problems, host_notes = self._check_host(templar, raw, roles, extra, hostvars)
            said += host_notes
            if host_problems:
                problems[host] = host_problems
                reports[host] = checks.host_report(host, host_problems)
        return {"changed": False, "problems": problems, "reports": reports, "notes": said,
                "msg": (f"{len(problems)} of {len(hosts)} host(s) have problems" if problems
                        else f"the variables of all {len(hosts)} host(s) are fine")}

    def _check_host(self, templar, raw: Mapping, roles: Mapping, extra: dict, hostvars) -> tuple[list, list]:
        base = _Vars(templar, [raw])
        group_names = list(raw.get("group_names", []))
        problems: list[str] = []
        if "ansible_become_password" in raw:
            problems += checks.become_password_problems(True, _resolves(base, "ansible_become_password"))
        names = [name for name in raw if isinstance(name, str)]
        said: list[str] = []
        for group, group_roles in roles.items():
            if group != "all" and group not in group_names:
                continue
            for role in group_roles:
                files = self._files(role)
                v = _Vars(templar, [files.magic, extra, files.vars, raw, files.defaults, {"hostvars": hostvars}])
                problems += self._check_role(role, v, files, collect=True, names=names)
                try:
                    said += notes(role, v)
                except (AnsibleError, KeyError):
                    pass
        allowed = "monstack_allow_example_secrets" in raw and _resolves(base, "monstack_allow_example_secrets") \
            and boolean(base["monstack_allow_example_secrets"], strict=False)
        if not allowed:
            secrets = {name: base[name] for name, group in checks.EXAMPLE_SECRET_VARS
                       if (group == "all" or group in group_names) and name in raw and _resolves(base, name)}
            problems += checks.example_secret_problems(secrets)
        return problems, said


def _resolves(v: _Vars, name: str) -> bool:
    try:
        v[name]
    except AnsibleUndefinedVariable:
        return False
    return True
