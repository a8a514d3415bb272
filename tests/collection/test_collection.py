"""The collection monstack.stack as its users get it: `ansible-galaxy collection build`
of this checkout, installed into an empty collections path, used from a scratch
directory with no ansible.cfg or plugin path of this repository (only
ANSIBLE_COLLECTIONS_PATH), and `ansible-test sanity` on the installed copy.

The same tarball against real hosts (a converged stack, a rerun that changes
nothing, --tags <role>_configure): molecule/default/tests/test_4_collection.py.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import yaml

from helpers import (REPO, ansible_playbook, ansible_tool, build_collection, install_collection, json_run_tasks,
                     outside_env)

ROLES = ["prometheus", "alertmanager", "grafana", "node_exporter", "cadvisor", "blackbox_exporter", "victoriametrics",
         "journal", "backup"]
PLAYBOOKS = ["site", "exporters", "prometheus", "alertmanager", "grafana", "deployments", "victoriametrics",
             "journal", "logs", "backup", "restore", "backup_schedule"]


def plugin_names(kind: str) -> list[str]:
    """Names of the collection's plugins of one kind: every filter a FilterModule in
    plugins/filter registers, or every module (lookup) file in plugins/modules (plugins/lookup)."""
    if kind in ("module", "lookup"):
        directory = REPO / "plugins" / {"module": "modules", "lookup": "lookup"}[kind]
        return sorted(p.stem for p in directory.glob("*.py") if p.stem != "__init__")
    names = []
    for path in (REPO / "plugins" / "filter").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "filters":
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Dict):
                        names += [k.value for k in ret.keys if isinstance(k, ast.Constant)]
    return sorted(names)


FILTERS = plugin_names("filter")
MODULES = plugin_names("module")
LOOKUPS = plugin_names("lookup")


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> dict:
    """The tarball, built once, and where it is installed."""
    root = tmp_path_factory.mktemp("collection")
    tarball = build_collection(root / "dist")
    installed = install_collection(tarball, root / "collections")
    scratch = root / "scratch"
    scratch.mkdir()
    return {"tarball": tarball, "path": root / "collections", "installed": installed, "scratch": scratch}


def galaxy() -> dict:
    return yaml.safe_load((REPO / "galaxy.yml").read_text())


def test_version_agrees_in_galaxy_yml_changelog_and_readme():
    version = galaxy()["version"]
    changelog = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text())
    released = sorted(changelog["releases"], key=lambda v: [int(x) for x in v.split(".")])
    assert released[-1] == version, f"changelogs/changelog.yaml's newest release is {released[-1]}, galaxy.yml says {version}"
    assert "v" + version.replace(".", "\\.") in (REPO / "CHANGELOG.md").read_text(), \
        "CHANGELOG.md is not generated from the changelog (antsibull-changelog generate)"
    assert f"monstack.stack {version}" in (REPO / "README.md").read_text(), f"README does not name the version {version}"
    assert (REPO / "changelogs" / "config.yaml").is_file()


def test_changelog_fragments_lint():
    """antsibull-changelog lint: every fragment (and the changelog) is well formed."""
    tool = ansible_tool("antsibull-changelog")
    result = subprocess.run([tool, "lint"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_licence_is_the_apache_2_0_text_the_metadata_names():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert galaxy()["license"] == ["Apache-2.0"]
    for role in ROLES:
        meta = yaml.safe_load((REPO / "roles" / role / "meta" / "main.yml").read_text())
        assert meta["galaxy_info"]["license"] == "Apache-2.0", role


def test_runtime_names_the_supported_ansible_core():
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"] == ">=2.19.0"
    pinned = re.search(r"^ansible-core==(\S+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert [int(x) for x in pinned.split(".")[:2]] >= [2, 19], "the tested ansible-core is below requires_ansible"
    for role in ROLES:
        meta = yaml.safe_load((REPO / "roles" / role / "meta" / "main.yml").read_text())
        assert meta["galaxy_info"]["min_ansible_version"] == "2.19", role


def test_tarball_holds_what_users_need_and_no_links(collection):
    with tarfile.open(collection["tarball"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["namespace"] == "monstack"
    assert manifest["collection_info"]["name"] == "stack"
    assert manifest["collection_info"]["version"] == galaxy()["version"]
    links = [name for name, m in members.items() if m.issym() or m.islnk()]
    assert not links, f"links in the tarball (ansible-test refuses directory links): {links}"
    for path in ["LICENSE", "README.md", "CHANGELOG.md", "changelogs/changelog.yaml", "meta/runtime.yml",
                 "plugins/module_utils/monstack_files.py", "inventories/example/hosts.yml"]:
        assert path in members, path
    for path in (REPO / "plugins").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert str(path.relative_to(REPO)) in members, path
    for name in PLAYBOOKS:
        assert f"playbooks/{name}.yml" in members, name
    for role in ROLES + ["common"]:
        assert f"roles/{role}/tasks/main.yml" in members, role
    leaked = [name for name in members if name.split("/")[0] in
              ("molecule", "scripts", "hacking", ".venv", "build", "collections", "filter_plugins", "library",
               "module_utils")
              or name.startswith(("tests/unit", "tests/integration", "inventories/demo"))]
    assert not leaked, leaked


SHORT_FILTER = re.compile(r"(?<![\w.])\|\s*(" + "|".join(FILTERS) + r")\b")
SHORT_ROLE = re.compile(r"(?:(?:include|import)_role:\s*\n\s+name:|^\s*- role:) (" + "|".join(ROLES + ["common"]) + r")\s*$",
                        re.M)


def shipped_texts():
    for top in ("roles", "playbooks"):
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and path.suffix in (".yml", ".j2"):
                yield path, path.read_text()


def task_keys(node):
    """The keys of every task (and handler) in a tasks file or playbook, blocks included."""
    if isinstance(node, list):
        for item in node:
            yield from task_keys(item)
    elif isinstance(node, dict):
        if "hosts" not in node and "import_playbook" not in node and "ansible.builtin.import_playbook" not in node:
            yield from node
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            yield from task_keys(node.get(key))


def test_package_content_uses_full_names():
    """In a collection, short names of its own filters do not resolve from its roles
    (Ansible looks filters up by short name only among ansible.builtin and configured
    paths), so every filter, module and role of the package is named in full; the
    clone resolves the same names through collections/. A module is looked for among the
    keys of the tasks (its short name, such as component, may also be an option's name)."""
    found = []
    for path, text in shipped_texts():
        for pattern in (SHORT_FILTER, SHORT_ROLE):
            found += [f"{path.relative_to(REPO)}: {m.group(1)}" for m in pattern.finditer(text)]
        if path.suffix == ".yml" and ("/tasks/" in str(path) or "/handlers/" in str(path) or "playbooks" in path.parts):
            found += [f"{path.relative_to(REPO)}: {key}" for key in task_keys(yaml.safe_load(text)) if key in MODULES]
    assert not found, found
    # the check finds a short name where one is used
    assert [key for key in task_keys([{"name": "x", "probe": {}}]) if key in MODULES] == ["probe"]



def test_clone_resolves_the_collection_through_itself():
    """One layout: the clone finds its plugins and roles by their collection names only,
    through collections/ (the one link in the repository); no short-name path (the old
    filter_plugins, library and module_utils links, roles_path) loads them a second time."""
    link = REPO / "collections" / "ansible_collections" / "monstack" / "stack"
    assert link.is_symlink() and link.resolve() == REPO
    listed = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    links = [line.split("\t", 1)[1] for line in listed.splitlines() if line.startswith("120000 ")]
    assert links == ["collections/ansible_collections/monstack/stack"], links
    for old in ("filter_plugins", "library", "module_utils"):
        assert not os.path.lexists(REPO / old), old
    cfg = (REPO / "ansible.cfg").read_text()
    assert re.search(r"^collections_path = collections:", cfg, re.M), cfg
    short = re.findall(r"^(roles_path|library|filter_plugins|module_utils|lookup_plugins|action_plugins)\s*=", cfg, re.M)
    assert not short, short


def test_every_role_has_install_configure_run_tags():
    """Each component role tags its steps <role>_install, <role>_configure and <role>_run
    (its monstack.stack.component task carries all four, and the action runs the steps the
    run's tags select, tests/unit/test_component.py::test_selected_steps; the molecule test
    runs them)."""
    for role in ROLES:
        text = "\n".join(p.read_text() for p in (REPO / "roles" / role / "tasks").glob("*.yml"))
        for step in ("install", "configure", "run"):
            assert f"{role}_{step}" in text, f"{role}: no {role}_{step} tag"
        if role in ("journal", "backup"):  # not components: tasks of their own
            continue
        tasks = yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text())
        for task in tasks + [t for b in tasks for t in b.get("block", [])]:
            if "monstack.stack.component" in task:
                assert {role, f"{role}_install", f"{role}_configure", f"{role}_run"} <= set(task["tags"]), role
                break
        else:
            raise AssertionError(f"{role}: no monstack.stack.component task")


def test_docs_of_every_plugin_and_role_from_the_installed_collection(collection):
    """ansible-doc finds every filter, module and role by its full name in the installed
    copy, from a directory that has no configuration of this repository."""
    env = outside_env(collection["path"])
    doc = ansible_tool("ansible-doc")
    for kind, names in (("filter", FILTERS), ("module", MODULES), ("lookup", LOOKUPS), ("role", ROLES)):
        fq = [f"monstack.stack.{n}" for n in names]
        result = subprocess.run([doc, "-t", kind, "--json", *fq], cwd=collection["scratch"], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "WARNING" not in result.stderr, result.stderr
        docs = json.loads(result.stdout)
        assert sorted(docs) == sorted(fq), (kind, sorted(docs))
        if kind != "role":
            for name, entry in docs.items():
                assert str(collection["installed"]) in entry["doc"]["filename"], (name, entry["doc"]["filename"])


def test_playbooks_by_name_from_the_installed_collection(collection):
    env = outside_env(collection["path"])
    inventory = collection["scratch"] / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n  children:\n    prometheus: {hosts: {h1: }}\n"
                         "    alertmanager: {hosts: {h1: }}\n    grafana: {hosts: {h1: }}\n")
    for name in PLAYBOOKS:
        result = subprocess.run([ansible_playbook(), "-i", str(inventory), f"monstack.stack.{name}", "--syntax-check"],
                                cwd=collection["scratch"], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert str(collection["installed"] / "playbooks" / f"{name}.yml") in result.stdout, result.stdout


def test_fqcn_playbook_with_filters_and_modules_converges_and_reruns_clean(collection, tmp_path):
    """Modules of the installed collection run (their module_utils, imported by the
    collection's name, travel with them) and its filters resolve, on localhost."""
    target = tmp_path / "target"
    target.mkdir()
    playbook = collection["scratch"] / "local.yml"
    playbook.write_text(textwrap.dedent(f"""\
        - name: The collection's filters and modules by their full names
          hosts: localhost
          connection: local
          gather_facts: false
          vars:
            ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
            target: {target}
            content: "{{{{ 'secret' | monstack.stack.bcrypt('seed') }}}}"
            wanted:
              demo:
                path: "{{{{ target }}}}"
                files: {{"a.txt": "sha1:{{{{ content | hash('sha1') }}}}"}}
                owner: "{{{{ lookup('ansible.builtin.pipe', 'id -un') }}}}"
                group: "{{{{ lookup('ansible.builtin.pipe', 'id -gn') }}}}"
                mode: "0640"
          tasks:
            - name: Filters
              ansible.builtin.assert:
                that:
                  - "'127.0.0.1' | monstack.stack.loopback"
                  - "('::1' | monstack.stack.hostport(9090)) == '[::1]:9090'"
                  - content is match('[$]2b[$]')
            - name: A module writing a file set
              monstack.stack.file_set:
                path: "{{{{ target }}}}"
                files: {{"a.txt": "{{{{ content }}}}"}}
                mode: "0640"
            - name: A module comparing with the wanted state
              monstack.stack.probe:
                sets: "{{{{ wanted }}}}"
              register: probe
            - name: The probe sees what the file set wrote
              ansible.builtin.assert:
                that: probe.drift == []
        """))
    env = outside_env(collection["path"], ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    runs = []
    for _ in range(2):
        result = subprocess.run([ansible_playbook(), "-i", "localhost,", str(playbook)], cwd=collection["scratch"],
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        runs.append(json_run_tasks(result.stdout))
    assert [r["task"] for r in runs[0] if r["changed"]] == ["A module writing a file set"]
    assert [r["task"] for r in runs[1] if r["changed"]] == []
    assert (target / "a.txt").read_text().startswith("$2b$")


def runtime_redirects() -> list[tuple[str, str, str]]:
    """(plugin kind, old name, new full name) of every redirect in meta/runtime.yml."""
    routing = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text()).get("plugin_routing") or {}
    return [(kind, old, entry["redirect"]) for kind, table in routing.items() for old, entry in table.items()]


def test_no_plugin_name_says_the_namespace_twice():
    """monstack.stack.<name>: no name starts with monstack_ again; each old name redirects
    (meta/runtime.yml) to a plugin that exists; no filter file has the name of a module or
    action plugin file (hacking/rename_plugins.py does the renames)."""
    doubled = [name for name in FILTERS + MODULES + LOOKUPS if name.startswith("monstack_")]
    assert not doubled, f"run hacking/rename_plugins.py: {doubled}"
    live = {"filter": FILTERS, "modules": MODULES, "lookup": LOOKUPS}
    for kind, old, new in runtime_redirects():
        assert new.startswith("monstack.stack."), (kind, old, new)
        assert new.split(".", 2)[2] in live[kind], f"{kind} {old} redirects to {new}, which does not exist"
        assert old not in live[kind], f"{kind} {old} redirects and exists"
    filter_files = {p.stem for p in (REPO / "plugins" / "filter").glob("*.py")}
    plugin_files = {p.stem for d in ("modules", "action") for p in (REPO / "plugins" / d).glob("*.py")}
    assert not filter_files & plugin_files, filter_files & plugin_files


def test_old_names_redirect_in_the_installed_collection(collection, tmp_path):
    """A playbook that still uses an old filter name and an old module name (monstack.stack.monstack_
    and hostport, file_set) runs, with a deprecation warning naming the new name."""
    # spelled in two pieces, so that hacking/rename_plugins.py leaves them as they are
    old_filter, old_module = "monstack_" "hostport", "monstack_" "file_set"
    redirects = {(kind, old): new for kind, old, new in runtime_redirects()}
    if ("filter", old_filter) not in redirects or ("modules", old_module) not in redirects:
        pytest.skip("no redirects in meta/runtime.yml (hacking/rename_plugins.py has not run)")
    playbook = tmp_path / "old_names.yml"
    playbook.write_text(textwrap.dedent(f"""\
        - name: Old names
          hosts: localhost
          connection: local
          gather_facts: false
          vars:
            ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
          tasks:
            - name: An old filter name
              ansible.builtin.assert:
                that: ("::1" | monstack.stack.{old_filter}(9090)) == "[::1]:9090"
            - name: An old module name
              monstack.stack.{old_module}:
                path: "{tmp_path}"
                files: {{"a.txt": "a"}}
                mode: "0640"
        """))
    result = subprocess.run([ansible_playbook(), "-i", "localhost,", str(playbook)], cwd=collection["scratch"],
                            env=outside_env(collection["path"]), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    output = result.stdout + result.stderr
    for new in (redirects[("filter", old_filter)], redirects[("modules", old_module)]):
        assert f"Use {new};" in output, output[-3000:]
    assert (tmp_path / "a.txt").read_text() == "a"


# The commands a user runs, shipped in the collection's tools/ (docs name them by that path).
TOOLS = ["ara_changes.py", "build_mirror.py", "dashboard_queries.py", "monstack-record", "shard_plan.py"]


def run_tool(collection, name: str, *args: str) -> subprocess.CompletedProcess:
    """A tool of the installed collection, run as a user would: its path in the collections
    path, from a scratch directory, with no setting or Python path of this repository."""
    env = outside_env(collection["path"])
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, str(collection["installed"] / "tools" / name), *args],
                          cwd=collection["scratch"], env=env, capture_output=True, text=True, timeout=300)


def test_tarball_ships_the_user_tools_and_not_the_harness(collection):
    with tarfile.open(collection["tarball"]) as tar:
        names = set(tar.getnames())
    assert sorted(n.split("/", 1)[1] for n in names if n.startswith("tools/")) == TOOLS
    assert sorted(p.name for p in (REPO / "tools").iterdir() if p.is_file()) == TOOLS
    assert not [n for n in names if n.split("/")[0] in ("scripts", "hacking")]
    for name in TOOLS:
        assert run_tool(collection, name, "--help").returncode == 0, name


def test_record_check_runs_from_the_installed_collection(collection, tmp_path):
    """tools/monstack-record of the installed copy reads records with the collection's own
    lookup and filters (imported from the installed copy, not from this checkout)."""
    examples = collection["installed"] / "examples" / "deployments"
    result = run_tool(collection, "monstack-record", "validate", str(examples))
    assert result.returncode == 0, result.stdout + result.stderr
    files = json.loads(result.stdout)
    assert sorted(files) == ["production--exchange-rate-api.json", "staging--fraud-scorer.json"], sorted(files)
    assert files["production--exchange-rate-api.json"][0]["targets"] == ["app1.example.com:8000",
                                                                          "app2.example.com:8000"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"service": "Bad Name", "environment": "production"}))
    result = run_tool(collection, "monstack-record", "validate", str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "service" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not result.stdout


def test_shard_plan_and_dashboard_queries_run_from_the_installed_collection(collection, tmp_path):
    """tools/shard_plan.py (the prometheus role's prometheus.yml names it) predicts with
    Prometheus' hashmod; tools/dashboard_queries.py finds the installed dashboards."""
    import hashlib

    targets = [f"app{i}.example.com:9100" for i in range(20)]
    sd = tmp_path / "node.yml"
    sd.write_text(yaml.safe_dump([{"targets": targets, "labels": {"job": "node"}}]))
    result = run_tool(collection, "shard_plan.py", "--shards", "3", "--json", str(sd))
    assert result.returncode == 0, result.stdout + result.stderr
    expected = {t: int.from_bytes(hashlib.md5(t.encode()).digest()[8:], "big") % 3 for t in targets}
    assert json.loads(result.stdout) == {"shards": 3, "plan": expected}
    prometheus_yml = (collection["installed"] / "roles" / "prometheus" / "templates" / "prometheus.yml.j2").read_text()
    assert "tools/shard_plan.py" in prometheus_yml
    result = run_tool(collection, "dashboard_queries.py", "--list")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hosts.json" in result.stdout and len(result.stdout.splitlines()) > 20, result.stdout[-2000:]


def ansible_test_env(cache: Path) -> dict[str, str]:
    """ansible-test keeps its per-test virtual environments under $HOME/.ansible/test:
    a HOME of its own in the cache (reused between runs). It bootstraps pip in each with
    a get-pip script it downloads from a host this machine cannot reach; the stand-in
    here takes pip from the interpreter (ensurepip), then the pinned pip from the
    package index the machine's pip configuration names."""
    home = cache / "home"
    stand_in = home / ".ansible" / "test" / "cache"
    stand_in.mkdir(parents=True, exist_ok=True)
    script = textwrap.dedent('''\
        """Stand-in for get-pip.py (written by tests/collection/test_collection.py)."""
        import ensurepip
        import os
        import subprocess
        import sys

        saved = os.environ.get("PIP_CONFIG_FILE")
        ensurepip.bootstrap()  # sets PIP_CONFIG_FILE=/dev/null in this process
        os.environ.pop("PIP_CONFIG_FILE", None)
        if saved is not None:
            os.environ["PIP_CONFIG_FILE"] = saved
        args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
        sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *args]))
        ''')
    # the pip version this ansible-test bootstraps (python_requirements.py: pip='24.2')
    import ansible_test
    source = (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
    version = re.search(r"\bpip='([\d.]+)'", source).group(1)
    (stand_in / f"get_pip_{version.replace('.', '_')}.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["HOME"] = str(home)
    return env


def test_ansible_test_sanity_passes_on_the_installed_collection(collection):
    """ansible-test sanity (every test it runs without containers) on the installed copy.
    tests/sanity/ignore-2.19.txt lists the one deliberate exception: validate-modules wants
    a GPLv3 header in modules, and this collection is Apache-2.0 (ansible-lint's production
    profile refuses any other ignore, e.g. use-run-command-not-popen)."""
    ignores = (REPO / "tests" / "sanity" / "ignore-2.19.txt").read_text().splitlines()
    assert all(" validate-modules:missing-gplv3-license " in line for line in ignores), ignores
    cache = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack")) / "ansible-test"
    env = ansible_test_env(cache)
    tool = Path(sys.executable).with_name("ansible-test")
    result = subprocess.run([str(tool), "sanity", "--venv", "--python", f"{sys.version_info.major}.{sys.version_info.minor}",
                             "--color", "no"],
                            cwd=collection["installed"], env=env, capture_output=True, text=True, timeout=3000)
    output = result.stdout + result.stderr
    if result.returncode != 0 and ("Could not find a version that satisfies" in output
                                   or "does not have pip available" in output):
        pytest.skip("ansible-test could not install its sanity requirements (no package index reachable): "
                    + output[-500:])
    assert result.returncode == 0, output[-6000:]
    assert "Running sanity test" in output
