# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""Compiled Jinja code of this collection's own template strings, kept between workers and runs.

ansible-core forks a worker per task and host, and each worker compiles every
template string it renders again (Jinja parse, code generation, Python compile):
for a component's spec, about 60 strings, most of the controller's CPU of a
no-change rerun per host. ``cached_templar`` gives a templar whose Jinja
environment keeps the compiled code of the template strings that come from this
collection's roles (their defaults/ and vars/, by the source's origin) in a
directory of the user's Ansible temporary directory (``<local tmp>/..``, mode
0700), as Python keeps its ``__pycache__``: a worker loads the code another worker
or an earlier run compiled. Strings from anywhere else (inventory, extra vars,
vault) are compiled as usual and never written down.

The cache key is the source text with everything that changes the generated code
(the escape_backslashes compile option, the Jinja, ansible-core and Python
versions); what is stored is the code object Jinja itself generated. The directory
is emptied when it holds more than MAX_ENTRIES files.
"""
from __future__ import annotations

import hashlib
import marshal
import os
import sys
import tempfile

CACHE_DIR_NAME = "monstack-jinja-code"
MAX_ENTRIES = 5000
# This collection's roles: only their template strings are cached.
ROLES_DIR = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles"))


def from_roles(source, roles_dir=ROLES_DIR):
    """Whether template ``source`` was read from a file of this collection's roles (its origin tag)."""
    try:
        from ansible._internal._datatag._tags import Origin
        origin = Origin.get_tag(source)
    except Exception:  # pylint: disable=broad-except
        return False
    path = getattr(origin, "path", None)
    return bool(path) and os.path.realpath(path).startswith(roles_dir + os.sep)


def escape_backslashes():
    """The escape_backslashes option of the template being compiled (it changes the code)."""
    try:
        from ansible._internal._templating._jinja_bits import _TemplateCompileContext
        context = _TemplateCompileContext.current(optional=True)
        return context.escape_backslashes if context else None
    except Exception:  # pylint: disable=broad-except
        return None


def engine_versions():
    import jinja2
    from ansible.release import __version__ as ansible_version
    return "%s|%s|%s" % (jinja2.__version__, ansible_version, sys.version)


def cache_key(source, escape, versions):
    """The file name of a template source's compiled code."""
    text = "%s\0%r\0%s" % (versions, escape, source)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def load_code(directory, key):
    """The code stored under ``key``, or None (missing or unreadable: compile it again)."""
    try:
        with open(os.path.join(directory, key), "rb") as handle:
            return marshal.load(handle)
    except (OSError, EOFError, ValueError, TypeError):
        return None


def store_code(directory, key, code):
    """Store ``code`` under ``key`` atomically (another worker may write the same key)."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        with os.fdopen(handle, "wb") as out:
            marshal.dump(code, out)
        os.replace(temporary, os.path.join(directory, key))
    except OSError:
        pass


def cache_directory():
    """The directory of compiled template code: beside ansible-playbook's local temporary directory
    of the run (in the user's Ansible temporary directory), or None when there is none."""
    try:
        from ansible import constants as C
        base = C.DEFAULT_LOCAL_TMP
    except Exception:  # pylint: disable=broad-except
        return None
    if not base or not os.path.isdir(base):
        return None
    directory = os.path.join(os.path.dirname(base), CACHE_DIR_NAME)
    try:
        if len(os.listdir(directory)) > MAX_ENTRIES:
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
    except OSError:
        pass
    return directory


def cached_templar(templar, variables, directory=None):
    """A copy of ``templar`` over ``variables`` whose environment loads the compiled code of each
    template source from ``directory`` (default: this run's, see cache_directory) when another worker
    compiled it already, and stores what it compiles. Falls back to plain compiling when the
    environment cannot be reached or template debugging is on."""
    copy = templar.copy_with_new_env(available_variables=variables)
    directory = directory or cache_directory()
    env = getattr(getattr(copy, "_engine", None), "environment", None)
    compile_one = getattr(env, "from_string", None)
    if directory is None or compile_one is None or getattr(env, "_debuggable_template_source", False):
        return copy
    versions = engine_versions()
    loaded = {}

    def from_string(source, globals=None, template_class=None):  # pylint: disable=redefined-builtin
        if not isinstance(source, str) or not from_roles(source):
            return compile_one(source, globals, template_class)
        key = cache_key(str(source), escape_backslashes(), versions)
        code = loaded.get(key) or load_code(directory, key)
        if code is None:
            code = env.compile(source)
            store_code(directory, key, code)
        loaded[key] = code
        return (template_class or env.template_class).from_code(env, code, env.make_globals(globals), None)

    overlay_one = env.overlay

    def overlay(*args, **kwargs):
        # An overlay (other Jinja options, such as a template's own #jinja2: header) copies the
        # environment's attributes: it compiles for itself, without this cache.
        other = overlay_one(*args, **kwargs)
        other.__dict__.pop("from_string", None)
        other.__dict__.pop("overlay", None)
        return other

    env.from_string = from_string
    env.overlay = overlay
    return copy
