# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Action monstack.stack.component: converge one component (install, user, files, service) from its spec.

The documentation is in plugins/modules/component.py (ansible-doc reads it there)."""
from __future__ import annotations

import hashlib
import os
import secrets
import time

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template

from ansible_collections.monstack.stack.plugins.filter.access import monstack_ip_allow
from ansible_collections.monstack.stack.plugins.filter.bcrypt import monstack_bcrypt
from ansible_collections.monstack.stack.plugins.module_utils import versions
from ansible_collections.monstack.stack.plugins.plugin_utils import component as logic
from ansible_collections.monstack.stack.plugins.plugin_utils.preflight_roles import ROLE_CHECKS

from ansible_collections.monstack.stack.plugins.plugin_utils.release_install import ensure_release
from ansible_collections.monstack.stack.plugins.plugin_utils.run_memo import RunMemo
from ansible_collections.monstack.stack.plugins.plugin_utils.template_cache import cached_templar, engine_versions
from ansible_collections.monstack.stack.plugins.plugin_utils.template_inputs import analyse, inputs_digest

PROBE = "monstack.stack.probe"
FILE_SET = "monstack.stack.file_set"
ACTIVE = ("active", "activating", "reloading")
# The run's memo of templated specs (plugin_utils/run_memo.py): created when the controller
# process loads this plugin, before it forks the task's workers, so all of them share it.
# MONSTACK_SPEC_MEMO=off makes every host template its spec itself.
MEMO = RunMemo.create()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("spec", "specs"))
    _SPEC_ARGS = ("spec", "specs")

    @classmethod
    def finalize_task_arg(cls, name, value, templar, context):
        """spec and specs are templated by run(), through the run's cache of compiled templates
        (plugin_utils/template_cache.py): a spec is tens of template strings that every host's
        worker would otherwise compile again."""
        if name in cls._SPEC_ARGS:
            return value
        return super().finalize_task_arg(name, value, templar, context)

    def _spec_args(self, task_vars):
        """(args, memo): the task's spec/specs templated (once only: finalize_task_arg may be gone in a
        later ansible-core, which then templated them already: plain data is left as it is), and how.
        A host whose spec reads the same variable values as a host templated before in this run gets
        that host's result from the run's memo (memo "hit"; plugin_utils/template_inputs.py says when
        two hosts' inputs count as the same); otherwise it templates ("stored", or "off" when the
        spec may read more than its variables show)."""
        args = dict(self._task.args)
        raw = {name: args[name] for name in self._SPEC_ARGS if args.get(name) is not None}

        def render():
            templar = cached_templar(self._templar, task_vars)
            return {name: templar.template(value) for name, value in raw.items()}

        if MEMO is None:
            key, why = None, "no shared memory on this controller"
        elif os.environ.get("MONSTACK_SPEC_MEMO", "on").lower() in ("off", "0", "false", "no"):
            key, why = None, "MONSTACK_SPEC_MEMO is off"
        else:
            key, why = inputs_digest(raw, task_vars, analyse_one=self._analysed, salt=engine_versions())
        if key is None:
            args.update(render())
            return args, "off: " + why
        value, how = MEMO.get_or_compute(b"S" + key.encode("ascii"), render)
        args.update(value)
        return args, how

    @staticmethod
    def _analysed(source):
        """analyse(source) through the run's memo: each template string is parsed once per run."""
        key = b"A" + hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest().encode("ascii")
        return MEMO.get_or_compute(key, lambda: analyse(source))[0]

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        try:
            args, memo = self._spec_args(task_vars)
        except AnsibleError as exc:
            return dict(result, failed=True, msg="monstack.stack.component: %s" % exc)
        if (args.get("spec") is None) == (args.get("specs") is None):
            return dict(result, failed=True, msg="monstack.stack.component: give either spec or specs")
        single = args.get("spec") is not None
        raw = [args["spec"]] if single else args["specs"]
        if not isinstance(raw, list):
            return dict(result, failed=True, msg="monstack.stack.component: specs must be a list of component specs")
        components = []
        for entry in raw:
            try:
                components.append(logic.normalise(entry))
            except logic.ComponentError as exc:
                return dict(result, failed=True, msg=str(exc))
        result["memo"] = memo
        self._result = result
        self._name = ", ".join(c["name"] for c in components)
        self._changed = []
        run_tags, skip_tags = task_vars.get("ansible_run_tags"), task_vars.get("ansible_skip_tags")
        # the steps each component's tags select; a component with none is left alone
        work = [(c, logic.selected_steps(c["name"], run_tags, skip_tags, c["tags"])) for c in components]
        work = [(c, steps) for c, steps in work if steps]
        if not work:
            return dict(result, changed=False, skipped=True, skip_reason="no step of %s selected by the tags"
                        % self._name)
        outcomes = {}
        try:
            self._preflight([c for c, _steps in work if c["state"] == "present"], task_vars)
            present = []
            for component, steps in work:
                if component["state"] == "absent":
                    outcomes[component["name"]] = self._remove(component, steps, task_vars)
                else:
                    present.append((component, steps))
            if present:
                outcomes.update(self._converge(present, task_vars))
        except _StepFailed as exc:
            return dict(result, failed=True, msg=exc.msg, changed=bool(self._changed), steps=self._changed)
        except (AnsibleError, logic.ComponentError) as exc:
            return dict(result, failed=True, msg="%s: %s" % (self._name, exc), changed=bool(self._changed))
        if single:
            result.update(next(iter(outcomes.values())))
        else:
            result["components"] = outcomes
        return dict(result, changed=any(o.get("changed") for o in outcomes.values()), steps=self._changed)

    def _converge(self, present, task_vars):
        """Probe every component in one module call, then do each one's drifted steps:
        name -> {drift, details, unit, changed, steps}."""
        key = secrets.token_hex(32)
        install_root = self._install_root(task_vars)
        rendered, probes = [], []
        for component, _steps in present:
            self._name = component["name"]
            sets = self._all_sets(component, task_vars)
            rendered.append(sets)
            probes.append(logic.probe_args(component, logic.probe_sets(sets, key), install_root))
        answer = self._module(PROBE, {"components": probes, "key": key}, task_vars, check_mode=False)
        if answer.get("failed"):
            self._name = ", ".join(c["name"] for c, _steps in present)
            return self._fail("probe", answer)
        outcomes = {}
        for (component, steps), sets, probe in zip(present, rendered, answer["components"]):
            probe["arch"] = answer.get("arch", "")
            self._component, self._name = component, component["name"]
            outcome = {"drift": probe.get("drift", []), "details": probe.get("details", {})}
            if "unit" in probe:
                outcome["unit"] = {k: probe["unit"].get(k) for k in ("LoadState", "ActiveState", "UnitFileState")}
            outcome["changed"], outcome["steps"] = False, []
            if probe["drift"]:
                before = len(self._changed)
                todo = logic.plan(probe["drift"], list(sets), steps)
                self._apply(todo, probe, sets, probe.get("unit") or {}, task_vars)
                outcome["steps"] = self._changed[before:]
                outcome["changed"] = bool(outcome["steps"])
            outcomes[component["name"]] = outcome
        return outcomes

    def _preflight(self, components, task_vars):
        """The role's variables checked as its preflight does, for a host the preflight play has
        not checked (monstack_preflight unset: the role used on its own, or a host added later)."""
        if "monstack_preflight" in task_vars:
            return
        checker = None
        for component in components:
            if component["name"] not in ROLE_CHECKS:
                continue
            if checker is None:
                checker = self._shared_loader_obj.action_loader.get(
                    "monstack.stack.preflight", task=self._task, connection=self._connection,
                    play_context=self._play_context, loader=self._loader, templar=self._templar,
                    shared_loader_obj=self._shared_loader_obj)
            answer = checker.check_role(component["name"], task_vars)
            if answer.get("failed"):
                problems = answer.get("msg")
                if isinstance(problems, list):
                    problems = "; ".join(problems)
                raise _StepFailed("%s, preflight: %s" % (component["name"], problems))

    def _remove(self, component, steps, task_vars):
        """state absent: stop and disable the service, delete its unit, release, links and
        remove_paths (tagged N and N_install, as the role's Remove tasks were)."""
        self._component, self._name = component, component["name"]
        outcome = {"changed": False, "steps": []}
        if "install" not in steps:
            return outcome
        before = len(self._changed)
        service = component["service"]["name"]
        if service:
            answer = self._module("ansible.builtin.systemd_service",
                                  {"name": service, "state": "stopped", "enabled": False}, task_vars)
            if answer.get("changed") and not answer.get("failed"):  # a unit that is gone already is fine
                self._changed.append("stop")
        deleted = False
        for path in logic.removed_paths(component, self._install_root(task_vars)):
            answer = self._module("ansible.builtin.file", {"path": path, "state": "absent"}, task_vars)
            if answer.get("failed"):
                self._fail("remove %s" % path, answer)
            if answer.get("diff"):
                self._diff(answer["diff"])
            if answer.get("changed"):
                deleted = True
                self._changed.append("remove " + path)
        if deleted and service and not self._task.check_mode:
            answer = self._module("ansible.builtin.systemd_service", {"daemon_reload": True}, task_vars)
            if answer.get("failed"):
                self._fail("daemon-reload", answer)
        outcome["steps"] = self._changed[before:]
        outcome["changed"] = bool(outcome["steps"])
        return outcome

    # ------------------------------------------------------------------ helpers
    def _module(self, module, args, task_vars, check_mode=None, no_log=False):
        saved = self._task.check_mode, self._task.no_log
        try:
            if check_mode is not None:
                self._task.check_mode = check_mode
            if no_log:
                self._task.no_log = True
            answer = self._execute_module(module_name=module, module_args=args, task_vars=task_vars)
        finally:
            self._task.check_mode, self._task.no_log = saved
        answer.pop("invocation", None)
        return answer

    def _fail(self, step, answer, secret=False):
        msg = answer.get("msg") or "failed"
        if secret:
            msg = "(details hidden: the set holds secrets)"
        raise _StepFailed("%s, step %s: %s" % (self._name, step, msg))

    @staticmethod
    def _install_root(task_vars):
        return str(task_vars.get("common_install_root") or logic.INSTALL_ROOT)

    def _render(self, entry, task_vars):
        if isinstance(entry, str):
            return entry
        if entry.get("src"):
            path = self._find_needle("files", entry["src"])
            with open(path, "r", encoding="utf-8", errors="surrogateescape") as handle:
                return handle.read()
        path = self._find_needle("templates", entry["template"])
        data = trust_as_template(self._loader.get_text_file_contents(path))
        overrides = {"trim_blocks": True, "lstrip_blocks": False}
        for key in ("variable_start_string", "variable_end_string"):
            if entry.get(key):
                overrides[key] = entry[key]
        searchpath = [os.path.dirname(path)] + list(task_vars.get("ansible_search_path", []))
        variables = task_vars
        if "ansible_managed" not in task_vars:  # as the template action and lookup give it
            variables = dict(task_vars, ansible_managed=C.DEFAULT_MANAGED_STR)
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=variables)
        text = templar.template(data, escape_backslashes=False, overrides=overrides)
        return "" if text is None else str(text)

    def _all_sets(self, component, task_vars):
        """The component's file sets with their contents rendered, then its web configuration and unit."""
        sets = {}
        for set_name, fset in component["file_sets"].items():
            rendered = dict(fset)
            rendered["files"] = {}
            for fname, entry in fset["files"].items():
                try:
                    rendered["files"][fname] = self._render(entry, task_vars)
                except AnsibleError as exc:
                    raise AnsibleError("file set %s, file %s: %s" % (set_name, fname, exc)) from exc
            sets[set_name] = rendered
        service = component["service"]
        allow = []
        if service["ip_restrict"]:
            allow = monstack_ip_allow(service["ip_allow_hosts"], task_vars["hostvars"], service["ip_allow"],
                                      component["name"] + "_ip_allow")
        managed = str(task_vars.get("ansible_managed") or C.DEFAULT_MANAGED_STR)
        unit = logic.unit_text(component, component["user"]["name"] or "root", allow, managed) \
            if service["manage_unit"] and service["name"] else None
        web = None
        if component["web"]["config_path"]:
            web = logic.web_config_text(component, task_vars.get("inventory_hostname"), monstack_bcrypt, managed)
        sets.update(logic.extra_sets(component, unit, web))
        return sets

    # -------------------------------------------------------------------- steps
    def _apply(self, todo, probe, sets, unit_state, task_vars):
        component = self._component
        check_mode = bool(self._task.check_mode)
        installed = False
        if todo["install"]:
            self._downgrade_guard(component, task_vars)
            installed = self._install(component["release"], probe, task_vars, check_mode)
        if todo["user"]:
            self._user(component["user"], probe, task_vars)
        changed_on = set()
        if todo["dirs"] or todo["sets"]:
            changed_on = self._files(todo, sets, task_vars)
        service = component["service"]["name"]
        active = unit_state.get("ActiveState", "") in ACTIVE
        check = component["check"]
        actions = logic.service_actions(todo, active, changed_on, installed,
                                        bool(check["reload_metric_prefix"] or check["reload_url"]))
        restarted = started = False
        # A running member restarted (an upgrade, new flags): after it is ready it must also scrape
        # again (Prometheus) or be back in its cluster with the silences it had (Alertmanager)
        # before the play goes on to the next member (serial plays: one member at a time).
        rejoin = service and actions["restart"] and active and not check_mode
        silences = self._silences(check, task_vars) if rejoin and check["silences_url"] else None
        if service and actions["restart"]:
            answer = self._module("ansible.builtin.systemd_service",
                                  {"name": service, "state": "restarted", "daemon_reload": True}, task_vars)
            if answer.get("failed"):
                self._fail("restart", answer)
            restarted = True
            self._changed.append("restart")
        elif service and actions["reload"] and not check_mode:
            self._reload(service, check, task_vars)
        if service and actions["start"] and (not check_mode or unit_state.get("LoadState", "") != "not-found"):
            answer = self._module("ansible.builtin.systemd_service",
                                  {"name": service, "state": "started", "enabled": True,
                                   "daemon_reload": "unit" in probe["drift"]}, task_vars)
            if answer.get("failed"):
                self._fail("start", answer)
            if answer.get("changed"):
                started = True
                self._changed.append("start")
        if check["ready_url"] and (restarted or started) and not check_mode:
            self._wait(check, task_vars)
        if rejoin and restarted:
            self._wait_rejoined(check, silences, task_vars)

    def _downgrade_guard(self, component, task_vars):
        """Refuse, before any change, a release the data on the host cannot survive (the version
        matrix's DATA_FORMATS; check.downgrade_force: true allows it). Runs only when the release
        differs, so a rerun without a version change costs nothing."""
        name, release = component["name"], component["release"]
        if name not in versions.DATA_FORMATS or component["check"]["downgrade_force"].lower() in ("true", "yes", "1"):
            return
        if str(release.get("method") or "archive") == "package":
            return
        binary = (release.get("binaries") or [name])[0]
        link = "%s/%s" % (str(release.get("link_dir") or "/usr/local/bin").rstrip("/"), binary)
        answer = self._module("ansible.builtin.stat", {"path": link, "follow": False, "get_checksum": False},
                              task_vars, check_mode=False)
        stat = answer.get("stat") or {}
        installed = versions.installed_version(stat.get("lnk_source") or "") if stat.get("islnk") else ""
        problem = versions.downgrade_problem(name, installed, str(release.get("version") or ""))
        if problem:
            raise _StepFailed("%s on %s: refused before any change to it: %s"
                              % (name, task_vars.get("inventory_hostname"), problem))

    def _install(self, release, probe, task_vars, check_mode):
        release = dict(release)
        if task_vars.get("common_cache_dir") and not release.get("cache_dir"):
            release["cache_dir"] = task_vars["common_cache_dir"]
        release.setdefault("install_root", self._install_root(task_vars))
        answer = ensure_release(self, task_vars, release, probe.get("arch", ""), check_mode)
        if answer.get("failed"):
            self._fail("install", answer)
        if answer.get("diff"):
            self._diff(answer["diff"])
        if answer.get("changed"):
            self._changed.append("install")
            return True
        return False

    def _user(self, user, probe, task_vars):
        for group in user["groups"]:
            answer = self._module("ansible.builtin.group", {"name": group, "system": True}, task_vars)
            if answer.get("failed"):
                self._fail("user (group %s)" % group, answer)
            if answer.get("changed"):
                self._changed.append("group " + group)
        args = {"name": user["name"], "groups": user["groups"], "append": True, "system": True,
                "shell": "/usr/sbin/nologin", "home": "/nonexistent", "create_home": False}
        if probe.get("user_group_exists", True):
            args["group"] = user["name"]
        answer = self._module("ansible.builtin.user", args, task_vars)
        if answer.get("failed"):
            self._fail("user", answer)
        if answer.get("changed"):
            self._changed.append("user")

    def _diff(self, diff):
        self._result.setdefault("diff", [])
        self._result["diff"].extend(diff if isinstance(diff, list) else [diff])

    def _files(self, todo, sets, task_vars):
        """Directories and the drifted sets (secret ones in a call of their own, not logged) ->
        the on_change values of the sets that changed."""
        drifted = [dict(sets[n], name=n) for n in todo["sets"]]
        plain = [s for s in drifted if not s["secret"]]
        hidden = [s for s in drifted if s["secret"]]
        changed = []
        for group, secret in ((plain, False), (hidden, True)):
            dirs = self._component["dirs"] if todo["dirs"] and not secret else {}
            if not group and not dirs:
                continue
            args = {"sets": [{k: v for k, v in s.items() if k not in ("on_change", "secret")} for s in group]}
            if dirs:
                args["dirs"] = dirs
            answer = self._module(FILE_SET, args, task_vars, no_log=secret)
            if answer.get("failed"):
                self._fail("files", answer, secret=secret)
            if not secret and answer.get("diff"):
                self._diff(answer["diff"])
            if answer.get("dirs_changed"):
                self._changed.append("dirs")
            changed.extend(answer.get("changed_sets") or [])
        self._changed.extend("files " + n for n in changed)
        return {sets[n]["on_change"] for n in changed}

    def _http(self, url, check, task_vars, method="GET", status=(200,)):
        args = {"url": url, "method": method, "validate_certs": False, "return_content": True,
                "status_code": list(status)}
        if check["user"]:
            args.update(url_username=check["user"], url_password=check["password"], force_basic_auth=True)
        return self._module("ansible.builtin.uri", args, task_vars, check_mode=False, no_log=bool(check["user"]))

    def _reload(self, service, check, task_vars):
        if check["reload_url"]:
            answer = self._http(check["reload_url"], check, task_vars, method="POST")
            if answer.get("failed"):
                raise _StepFailed("%s on %s did not load its new configuration: %s; it keeps running with the "
                                  "previous one" % (service, task_vars.get("inventory_hostname"),
                                                    answer.get("content") or answer.get("msg")))
            self._changed.append("reload")
            return
        prefix = check["reload_metric_prefix"]
        before = self._http(check["metrics_url"], check, task_vars, status=range(100, 600)).get("content", "")
        answer = self._module("ansible.builtin.systemd_service", {"name": service, "state": "reloaded"}, task_vars)
        if answer.get("failed"):
            self._fail("reload", answer)
        outcome = "pending"
        for _attempt in range(16):
            after = self._http(check["metrics_url"], check, task_vars, status=range(100, 600)).get("content", "")
            outcome = logic.reload_outcome(before, after, prefix)
            if outcome != "pending":
                break
            time.sleep(1)
        if outcome != "applied":
            journal = self._module("ansible.builtin.command", {"argv": [
                "journalctl", "--unit=" + service, "--since=-5min", "--no-pager", "--output=cat",
                "--grep=level=(ERROR|error)"]}, task_vars, check_mode=False)
            lines = (journal.get("stdout_lines") or [])[-5:]
            raise _StepFailed("%s on %s did not load its new configuration (%s); it keeps running with the previous "
                              "one. Its log: %s" % (service, task_vars.get("inventory_hostname"), outcome,
                                                    " | ".join(lines) or "see journalctl -u " + service))
        self._changed.append("reload")

    def _wait(self, check, task_vars):
        for _attempt in range(60):
            answer = self._http(check["ready_url"], check, task_vars, status=range(100, 600))
            if answer.get("status") == 200:
                return
            time.sleep(1)
        raise _StepFailed("%s: not ready after 60 s (%s)" % (self._name, check["ready_url"]))

    def _json(self, url, check, task_vars):
        answer = self._http(url, check, task_vars, status=range(100, 600))
        return answer.get("json") if answer.get("status") == 200 else None

    def _silences(self, check, task_vars):
        return logic.active_silences(self._json(check["silences_url"], check, task_vars))

    def _wait_rejoined(self, check, silences, task_vars):
        """Wait (up to 120 s) until the restarted member scrapes, or is in its cluster with its silences."""
        state = "not checked"
        for _attempt in range(120):
            waiting = []
            if check["targets_url"] and not logic.scraping(self._json(check["targets_url"], check, task_vars)):
                waiting.append("no target scraped yet (%s)" % check["targets_url"])
            if check["status_url"] and not logic.cluster_rejoined(self._json(check["status_url"], check, task_vars),
                                                                  check["cluster_size"] or 0):
                waiting.append("not back in its cluster of %s (%s)" % (check["cluster_size"], check["status_url"]))
            if silences:
                missing = set(silences) - set(self._silences(check, task_vars))
                if missing:
                    waiting.append("%d of its %d active silences missing" % (len(missing), len(silences)))
            if not waiting:
                self._changed.append("rejoined")
                return
            state = "; ".join(waiting)
            time.sleep(1)
        raise _StepFailed("%s on %s: restarted, but after 120 s: %s. The play stops here so the other members "
                          "keep running" % (self._name, task_vars.get("inventory_hostname"), state))


class _StepFailed(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg
