#!/usr/bin/env python3
"""Rename the plugins whose names say the namespace twice (monstack.stack.monstack_probe
becomes monstack.stack.probe), with redirects from the old names. Idempotent: run it again
after merging a branch that still uses or adds old names.

    hacking/rename_plugins.py            rename, rewrite, write meta/runtime.yml
    hacking/rename_plugins.py --check    exit 1 when anything is left to do (changes nothing)

What it does, from the tree as it is:
1. Finds the plugins to rename: files plugins/{modules,action,lookup,test}/monstack_*.py,
   the filters registered as "monstack_*" by a FilterModule in plugins/filter/*.py, the
   filter files plugins/filter/monstack_*.py and their documentation monstack_*.yml. Not
   renamed: module_utils, plugin_utils and roles. The new name drops "monstack_"; a
   filter file whose new name would be that of a module or action plugin file gets
   "_filters" appended (plugins/filter/probe_filters.py beside plugins/modules/probe.py).
   Renames found by an earlier run are kept in hacking/rename_plugins.json, so that a
   rerun also rewrites references to files renamed before.
2. `git mv`s the files.
3. Rewrites the references in every file git tracks (not the changelog history:
   CHANGELOG.md, changelogs/changelog.yaml, changelogs/fragments/):
   - full names monstack.stack.<old> (tasks, filters in Jinja, ansible-doc calls);
   - paths plugins/<kind>/<old>.py|.yml (also the former links filter_plugins/, library/),
     and Python path pieces "modules" / "<old>.py";
   - Python imports ...plugins.<kind>.<old> and "plugins.<kind> import <old>" (an
     unaliased import keeps the old name as its alias: the code below it still reads);
     outside plugins/, a filter file imported by its bare name (`import deployments`, from
     the filter_plugins path the tests once had) is imported by the collection's name;
   - a task key that is a bare old module name (`monstack_file_set:`) becomes the full new name;
   - bare old filter names (words), and bare old module names that are not also the
     name of a module_utils file (monstack_backup is both) and are not followed by .py.
   In Python files only strings and comments are rewritten (and the imports above), never
   identifiers (nor the strings that name them: __all__, getattr()): a function keeps its
   name; FilterModule.filters() registers the new name.
4. Writes plugin_routing in meta/runtime.yml: a redirect (with a deprecation) from each
   old name to the new one, for filters, modules, action and lookup plugins.
5. Prints the lines that still hold an old name in a form it does not rewrite (prose such
   as "monstack_probe.py"), for a human to check.
"""
from __future__ import annotations

import argparse
import ast
import io
import json
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "hacking" / "rename_plugins.json"
FRAGMENT = ROOT / "changelogs" / "fragments" / "26-plugin-renames.yml"
PREFIX = "monstack_"
COLLECTION = "monstack.stack"
KINDS = {"modules": "modules", "action": "action", "lookup": "lookup", "test": "test"}  # dir -> plugin_routing key
REMOVAL_VERSION = "2.0.0"
# Literal edits for the places where an old name that is also another thing's name (the
# variable monstack_ip_allow, the module_utils file monstack_backup) names the plugin: no
# rule can tell those apart.
MANUAL = {
    "tests/unit/test_ip_access.py": [
        ('check_filter_sidecar(monstack_access, "monstack_ip_allow")', 'check_filter_sidecar(monstack_access, "ip_allow")'),
        ("The filters (monstack_ip_allow, monstack_ip_sources_unknown)", "The filters (ip_allow, ip_sources_unknown)"),
    ],
    # monstack_backup is also the engine's module_utils file: its module's documented name
    "tests/unit/test_backup.py": [('assert doc["module"] == "monstack_backup"', 'assert doc["module"] == "backup"')],
    "plugins/filter/access.py": [
        ('f"monstack_ip_allow: \'{host}\' is not an inventory host"', 'f"ip_allow: \'{host}\' is not an inventory host"'),
        ('"monstack_ip_allow expects a list', '"ip_allow expects a list'),
        ("\nmonstack_ip_allow turns the inventory hosts", "\nip_allow turns the inventory hosts"),
    ],
}
SKIP = ("CHANGELOG.md", "changelogs/changelog.yaml", "changelogs/fragments/", "hacking/rename_plugins.py",
        "hacking/rename_plugins.json", "meta/runtime.yml")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def registered_filters(path: Path) -> list[str]:
    """The names a filter plugin file registers: the string keys of the dict literals in
    FilterModule.filters()."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == "filters":
            for inner in ast.walk(node):
                if isinstance(inner, ast.Dict):
                    names += [k.value for k in inner.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return names


def strip(name: str) -> str:
    return name[len(PREFIX):]


def discover(state: dict) -> dict:
    """The renames: state (from earlier runs) plus what the tree holds now."""
    plugins = ROOT / "plugins"
    found = {"files": dict(state.get("files", {})), "names": {k: dict(v) for k, v in state.get("names", {}).items()}}
    names = found["names"]
    for kind in (*KINDS, "filter"):
        names.setdefault(kind, {})
    plugin_stems = set()  # new stems of module and action files: a filter file must not share one
    for directory, kind in KINDS.items():
        for path in sorted((plugins / directory).glob("*.py")):
            stem = path.stem
            if stem.startswith(PREFIX):
                names[kind][stem] = strip(stem)
                found["files"][f"plugins/{directory}/{path.name}"] = f"plugins/{directory}/{strip(stem)}.py"
                stem = strip(stem)
            if directory in ("modules", "action"):
                plugin_stems.add(stem)
    for path in sorted((plugins / "filter").glob("*.py")):
        for name in registered_filters(path):
            if name.startswith(PREFIX):
                names["filter"][name] = strip(name)
        new = strip(path.stem) if path.stem.startswith(PREFIX) else path.stem
        if new in plugin_stems:
            new += "_filters"
        if new != path.stem:
            found["files"][f"plugins/filter/{path.name}"] = f"plugins/filter/{new}.py"
    for path in sorted((plugins / "filter").glob(f"{PREFIX}*.yml")):
        found["files"][f"plugins/filter/{path.name}"] = f"plugins/filter/{strip(path.stem)}.yml"
    # Old names that a redirect already serves (renamed by an earlier run and merged since).
    return found


def check_collisions(found: dict) -> list[str]:
    problems = []
    for old, new in found["files"].items():
        if (ROOT / old).exists() and (ROOT / new).exists():
            problems.append(f"{old} -> {new}: both exist")
    for kind, table in found["names"].items():
        news = list(table.values())
        for new in set(news):
            if news.count(new) > 1:
                problems.append(f"{kind}: two old names become {new}")
    current_filters = set()
    for path in (ROOT / "plugins" / "filter").glob("*.py"):
        current_filters.update(registered_filters(path))
    for old, new in found["names"]["filter"].items():
        if old in current_filters and new in current_filters:
            problems.append(f"filter {old} -> {new}: a filter {new} exists already")
    return problems


def variables_too(names, files: list[str]) -> set[str]:
    """The old filter names that are also variable names: a YAML key outside plugins/filter,
    or a Jinja expression that uses them as a variable."""
    found = set()
    for name in names:
        key = re.compile(r"^\s*-?\s*" + re.escape(name) + r":", re.M)
        jinja = re.compile(r"(\{\{|\{%)\s*" + re.escape(name) + r"\b|(?<!filters\(\))\[['\"]" + re.escape(name) + r"['\"]\]")
        for rel in files:
            if rel.startswith("plugins/filter/"):
                continue
            path = ROOT / rel
            if path.suffix not in (".yml", ".yaml", ".j2", ".py", ".md") or not path.is_file():
                continue
            text = path.read_text(errors="replace")
            if (path.suffix in (".yml", ".yaml") and key.search(text)) or jinja.search(text):
                found.add(name)
                break
    return found


class Rewriter:
    def __init__(self, found: dict, files: list[str]):
        self.files = found["files"]
        self.names = found["names"]
        utils = {p.stem for p in (ROOT / "plugins" / "module_utils").glob("*.py")}
        self.all_filters = self.names["filter"]
        self.ambiguous = variables_too(self.all_filters, files)
        self.filters = {old: new for old, new in self.all_filters.items() if old not in self.ambiguous}
        self.modules = self.names["modules"]
        every = {}
        for table in self.names.values():
            every.update(table)
        self.every = every
        # stem maps per plugin directory, for paths and imports
        self.stems: dict[str, dict[str, str]] = {}
        for old, new in self.files.items():
            directory = old.split("/")[1]
            self.stems.setdefault(directory, {})[Path(old).name] = Path(new).name
        self.bare_modules = {old: new for old, new in self.modules.items() if old not in utils}

        def alternation(words) -> str:
            return "|".join(sorted(map(re.escape, words), key=len, reverse=True)) or r"(?!x)x"

        self.re_fqcn = re.compile(r"\b" + re.escape(COLLECTION) + r"\.(" + alternation(every) + r")\b")
        self.re_path = re.compile(r"(?<![\w.-])(plugins/(?:filter|modules|action|lookup|test)/|filter_plugins/|library/)"
                                  r"(\w+\.(?:py|yml))\b")
        self.re_pypath = re.compile(r"""(["'](filter|modules|action|lookup|test)["']\s*[/,]\s*["'])"""
                                    r"""(\w+\.(?:py|yml))(["'])""")
        self.re_dotted = re.compile(r"\bplugins\.(filter|modules|action|lookup|test)\.(\w+)\b")
        self.re_import = re.compile(r"\bplugins\.(filter|modules|action|lookup|test) import (\w+)( as \w+)?")
        self.re_task = re.compile(r"^(\s*(?:- )?)(" + alternation(self.modules) + r"):", re.M)
        self.re_doc_name = re.compile(r"^(\s*name:\s*)(" + alternation(self.all_filters) + r")\s*$", re.M)
        self.re_filter_phrase = re.compile(r"(?<![\w.])(`?)(" + alternation(self.all_filters) + r")(`?)(?= filter\b)"
                                           r"|(?<=\bfilter )(`?)(" + alternation(self.all_filters) + r")\b")
        self.re_module_doc = re.compile(r"^(\s*module:\s*)(" + alternation(self.modules) + r")\s*$", re.M)
        self.re_module_phrase = re.compile(r"(?<![\w.])(`?)(" + alternation(self.modules) + r")(`?)(?= module\b)"
                                           r"|(?<=\bmodule )(`?)(" + alternation(self.modules) + r")\b")
        self.re_filter_word = re.compile(r"(?<![\w.\-/])(" + alternation(self.filters) + r")\b(?!\.py|-)")
        self.re_module_word = re.compile(r"(?<![\w.\-/])(" + alternation(self.bare_modules) + r")\b(?!\.py|-)")
        self.re_filter_file = re.compile(r"(?<![\w/.-])(" + PREFIX + r"\w+\.(?:py|yml))\b")
        # what is left: an old name, but not a module_utils path or import (monstack_backup is both)
        unambiguous = {k: 1 for k in {**every, **{Path(o).stem: 1 for o in self.files}} if k not in self.ambiguous}
        self.re_old = re.compile(r"(?<!module_utils/)(?<!module_utils\.)(?<![\w.])(" + alternation(unambiguous)
                                 + r")\b")

    def _stem(self, directory: str, filename: str) -> str:
        return self.stems.get(directory, {}).get(filename, filename)

    def structural(self, text: str) -> str:
        """Rules safe anywhere: full names, paths, imports."""
        text = self.re_fqcn.sub(lambda m: f"{COLLECTION}.{self.every[m[1]]}", text)

        def path(m):
            prefix = {"filter_plugins/": "plugins/filter/", "library/": "plugins/modules/"}.get(m[1], m[1])
            directory = prefix.split("/")[1]
            new = self._stem(directory, m[2])
            if new == m[2] and prefix == m[1]:
                return m[0]
            return prefix + new

        text = self.re_path.sub(path, text)
        text = self.re_pypath.sub(lambda m: m[1] + self._stem(m[2], m[3]) + m[4], text)

        def dotted(m):
            return f"plugins.{m[1]}." + self._stem(m[1], m[2] + ".py").removesuffix(".py")

        def imported(m):
            new = self._stem(m[1], m[2] + ".py").removesuffix(".py")
            if new == m[2]:
                return m[0]
            return f"plugins.{m[1]} import {new}" + (m[3] or f" as {m[2]}")

        text = self.re_import.sub(imported, text)
        text = self.re_dotted.sub(dotted, text)
        return text

    def words(self, text: str) -> str:
        """Rules for prose, YAML and strings: task keys and bare old names."""
        text = self.re_task.sub(lambda m: f"{m[1]}{COLLECTION}.{self.modules[m[2]]}:", text)
        # a filter file or its documentation named without its directory ("defined in monstack_probe.py")
        text = self.re_filter_file.sub(lambda m: self._stem("filter", m[1]), text)
        text = self.re_filter_phrase.sub(
            lambda m: (m[1] + self.all_filters[m[2]] + m[3]) if m[2] else (m[4] + self.all_filters[m[5]]), text)
        text = self.re_module_phrase.sub(
            lambda m: (m[1] + self.modules[m[2]] + m[3]) if m[2] else (m[4] + self.modules[m[5]]), text)
        text = self.re_module_doc.sub(lambda m: m[1] + self.modules[m[2]], text)
        text = self.re_filter_word.sub(lambda m: self.filters[m[1]], text)
        text = self.re_module_word.sub(lambda m: self.bare_modules[m[1]], text)
        return text

    def text(self, content: str, name: str = "") -> str:
        content = self.words(self.structural(content))
        if name.startswith("plugins/filter/"):
            content = self.re_doc_name.sub(lambda m: m[1] + self.all_filters[m[2]], content)
        return content

    def bare_imports(self, source: str) -> str:
        """`import deployments` / `from monstack_hostport import x` (a filter file imported from a
        plugins/filter directory on sys.path, which no longer exists): by the collection's name."""
        import importlib.util

        # not a name that is also a library's (import bcrypt is the library's, not plugins/filter/bcrypt.py)
        stems = {p.stem for p in (ROOT / "plugins" / "filter").glob("*.py") if importlib.util.find_spec(p.stem) is None}
        stems |= {Path(old).stem for old in self.files if old.startswith("plugins/filter/")}
        package = "ansible_collections.monstack.stack.plugins.filter"

        def plain(m):
            if m[2] not in stems:
                return m[0]
            return f"{m[1]}from {package} import {m[2]}{m[3] or ''}"

        def from_(m):
            return f"{m[1]}from {package}.{m[2]} import " if m[2] in stems else m[0]

        source = re.sub(r"^([ \t]*)import (\w+)( as \w+)?(?=[ \t]*(?:#.*)?$)", plain, source, flags=re.M)
        return re.sub(r"^([ \t]*)from (\w+) import ", from_, source, flags=re.M)

    def python(self, source: str, name: str = "", leftovers: list | None = None) -> str:
        if not name.startswith("plugins/"):
            source = self.bare_imports(source)
        source = self.structural(source)
        registry = set()  # lines of FilterModule.filters() in a filter plugin file
        identifiers = set()  # (line, column) of strings that name Python identifiers: kept
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and node.name == "filters" and name.startswith("plugins/filter/"):
                registry.update(range(node.lineno, node.end_lineno + 1))
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                identifiers.update((c.lineno, c.col_offset) for c in ast.walk(node.value) if isinstance(c, ast.Constant))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) > 1 and \
                    isinstance(node.args[1], ast.Constant):
                identifiers.add((node.args[1].lineno, node.args[1].col_offset))
        lines = source.splitlines(keepends=True)
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line))
        edits = []
        try:
            for tok in tokenize.generate_tokens(io.StringIO(source).readline):
                if tok.type in (tokenize.STRING, tokenize.COMMENT) and tok.start not in identifiers:
                    new = self.words(tok.string)
                    if name.startswith("plugins/filter/"):
                        new = self.re_doc_name.sub(lambda m: m[1] + self.all_filters[m[2]], new)
                    if tok.start[0] in registry and tok.string[1:-1] in self.all_filters and tok.string[0] in "\"'":
                        new = tok.string[0] + self.all_filters[tok.string[1:-1]] + tok.string[0]
                    if leftovers is not None:
                        for line in new.splitlines():
                            if self.re_old.search(line):
                                leftovers.append(f"{name}:{tok.start[0]}: {line.strip()[:150]}")
                    if new != tok.string:
                        start = offsets[tok.start[0] - 1] + tok.start[1]
                        end = offsets[tok.end[0] - 1] + tok.end[1]
                        edits.append((start, end, new))
        except (tokenize.TokenError, SyntaxError) as exc:
            raise SystemExit(f"cannot tokenize a Python file: {exc}") from None
        for start, end, new in reversed(edits):
            source = source[:start] + new + source[end:]
        return source


def is_python(path: Path, head: str) -> bool:
    return path.suffix == ".py" or (not path.suffix and head.startswith("#!") and "python" in head.splitlines()[0])


def tracked() -> list[str]:
    return [f for f in git("ls-files", "-z").split("\0") if f and not f.startswith(SKIP)]


def write_runtime(found: dict, check: bool) -> bool:
    """meta/runtime.yml's plugin_routing: a redirect from every old name. The file's other
    content is kept; the plugin_routing section is written again, sorted."""
    import yaml

    path = ROOT / "meta" / "runtime.yml"
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    routing = data.get("plugin_routing") or {}
    for kind, table in found["names"].items():
        key = "modules" if kind == "modules" else kind
        for old, new in table.items():
            routing.setdefault(key, {})[old] = {
                "redirect": f"{COLLECTION}.{new}",
                "deprecation": {"removal_version": REMOVAL_VERSION,
                                "warning_text": f"Use {COLLECTION}.{new}; the name {old} says the namespace twice."}}
    routing = {k: dict(sorted(v.items())) for k, v in sorted(routing.items()) if v}
    head = text.split("\nplugin_routing:", 1)[0].rstrip("\n") + "\n"
    if not routing:
        new_text = head
    else:
        block = yaml.safe_dump({"plugin_routing": routing}, sort_keys=False, width=120, default_flow_style=False)
        comment = ("# Old names of renamed plugins (hacking/rename_plugins.py): each redirects to the new\n"
                   "# name, with a deprecation warning, until " + REMOVAL_VERSION + ".\n")
        head = head.split("\n# Old names of renamed plugins", 1)[0].rstrip("\n") + "\n"
        new_text = head + comment + block
    if new_text == text:
        return False
    if not check:
        path.write_text(new_text)
    return True


def write_fragment(found: dict, check: bool) -> bool:
    """The changelog fragment that lists every rename (written again from the whole table)."""
    import yaml

    items = []
    labels = {"modules": "modules", "action": "action plugins", "lookup": "lookups", "test": "tests", "filter": "filters"}
    for kind in ("modules", "action", "lookup", "test", "filter"):
        table = found["names"].get(kind, {})
        if table:
            pairs = ", ".join(f"``{COLLECTION}.{old}`` -> ``{COLLECTION}.{new}``" for old, new in sorted(table.items()))
            items.append(f"{labels[kind]} - renamed, as their names said the namespace twice; the old names still work "
                         f"(meta/runtime.yml redirects them, with a deprecation warning) until {REMOVAL_VERSION}. "
                         f"{pairs} (issue 26).")
    if not items:
        return False
    class Dumper(yaml.SafeDumper):
        """Indent list items under their key, as yamllint expects."""

        def increase_indent(self, flow=False, indentless=False):
            return super().increase_indent(flow, False)

    text = "---\n# Written by hacking/rename_plugins.py.\n" + yaml.dump(
        {"deprecated_features": items}, Dumper=Dumper, sort_keys=False, width=110, default_flow_style=False)
    if FRAGMENT.exists() and FRAGMENT.read_text() == text:
        return False
    if not check:
        FRAGMENT.write_text(text)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when something is left to do")
    args = parser.parse_args(argv)
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    found = discover(state)
    problems = check_collisions(found)
    if problems:
        print("not renamed, fix these first:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    todo = []
    for old, new in sorted(found["files"].items()):
        if (ROOT / old).exists():
            todo.append(f"git mv {old} {new}")
            if not args.check:
                git("mv", old, new)
    files = tracked()
    rewriter = Rewriter(found, files)
    leftovers = []
    for name in files:
        path = ROOT / name
        if path.is_symlink() or not path.is_file():
            continue
        try:
            content = path.read_text()
        except UnicodeDecodeError:
            continue
        python = is_python(path, content[:200])
        new = rewriter.python(content, name, leftovers) if python else rewriter.text(content, name)
        for old_text, new_text in MANUAL.get(name, []):
            new = new.replace(old_text, new_text)
        if new != content:
            todo.append(f"rewrite {name}")
            if not args.check:
                path.write_text(new)
        if not python:
            for number, line in enumerate(new.splitlines(), 1):
                if rewriter.re_old.search(line):
                    leftovers.append(f"{name}:{number}: {line.strip()[:150]}")
    if write_runtime(found, args.check):
        todo.append("write meta/runtime.yml plugin_routing")
    if write_fragment(found, args.check):
        todo.append(f"write {FRAGMENT.relative_to(ROOT)}")
    state_text = json.dumps(found, indent=2, sort_keys=True) + "\n"
    if not STATE.exists() or STATE.read_text() != state_text:
        todo.append(f"write {STATE.relative_to(ROOT)}")
        if not args.check:
            STATE.write_text(state_text)
    if not args.check:
        git("add", "--", *(str(p.relative_to(ROOT)) for p in (STATE, FRAGMENT, ROOT / "meta" / "runtime.yml")
                           if p.exists()))
    print("\n".join(todo) if todo else "nothing to rename or rewrite")
    if rewriter.ambiguous:
        print("\nalso variable names, so renamed only as full names, registrations, doc names and 'the X filter': "
              + ", ".join(sorted(rewriter.ambiguous)))
    if leftovers:
        print(f"\n{len(leftovers)} lines still hold an old name in a form this script leaves alone (check them):")
        print("\n".join(leftovers))
    return 1 if args.check and todo else 0


if __name__ == "__main__":
    sys.exit(main())
