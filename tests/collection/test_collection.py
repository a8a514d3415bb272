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
              ("molecule", "scripts", ".venv", "build", "collections", "filter_plugins", "library", "module_utils")
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
    assert [key for key in task_keys([{"name": "x", "monstack_probe": {}}]) if key in MODULES] == ["monstack_probe"]


def test_clone_resolves_the_collection_through_itself():
    link = REPO / "collections" / "ansible_collections" / "monstack" / "stack"
    assert link.is_symlink() and link.resolve() == REPO
    for old, new in (("filter_plugins", "plugins/filter"), ("library", "plugins/modules"),
                     ("module_utils", "plugins/module_utils")):
        assert (REPO / old).is_symlink() and (REPO / old).resolve() == REPO / new, old
    cfg = (REPO / "ansible.cfg").read_text()
    assert re.search(r"^collections_path = collections:", cfg, re.M), cfg


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
            content: "{{{{ 'secret' | monstack.stack.monstack_bcrypt('seed') }}}}"
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
                  - "'127.0.0.1' | monstack.stack.monstack_loopback"
                  - "('::1' | monstack.stack.monstack_hostport(9090)) == '[::1]:9090'"
                  - content is match('[$]2b[$]')
            - name: A module writing a file set
              monstack.stack.monstack_file_set:
                path: "{{{{ target }}}}"
                files: {{"a.txt": "{{{{ content }}}}"}}
                mode: "0640"
            - name: A module comparing with the wanted state
              monstack.stack.monstack_probe:
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
