"""Filter plugins for the preflight checks (playbooks/preflight.yml, roles/*/tasks/preflight.yml).

Each returns a list of problem messages ("<variable>: <what is wrong>. Fix: <what to do>"),
empty when all is well, so a role can gather every problem and report them at once.
Documented for ansible-doc in one <filter name>.yml file each, beside this file.
"""
from __future__ import annotations

import difflib
import hashlib
import ipaddress
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.monstack.stack.plugins.plugin_utils.plain_data import plain as _plain


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def monstack_unknown_vars(names, known):
    """Messages for names the role does not know, with a suggestion."""
    known = sorted(set(known))
    problems = []
    for name in sorted(set(names)):
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f" Did you mean {close[0]}?" if close else " Remove it, or check the role's README for the right name."
        problems.append(f"{name}: not a variable of this role, so it would be ignored.{hint}")
    return problems


def monstack_bad_checksums(checksums, var):
    """Messages for pinned checksums that are not SHA-256 hex digests (e.g. a placeholder)."""
    if not isinstance(checksums, dict):
        return [f"{var}: expected a mapping of architecture to SHA-256, e.g. {{amd64: \"<64 hex digits>\"}}"]
    problems = []
    for arch, digest in sorted(checksums.items(), key=lambda item: str(item[0])):
        value = str(digest).strip().lower()
        if value.startswith("sha256:"):
            value = value[len("sha256:"):]
        if not _SHA256.match(value):
            problems.append(
                f"{var}.{arch}: {str(digest)[:40]!r} is not a SHA-256 digest (64 hex digits). "
                "Fix: paste the release's published SHA-256 for that asset")
    return problems


_SPEC_PATTERNS = [
    (re.compile(r"^argument '(\w+)' is of type (\S+) and we were unable to convert to (\w+): (.*)$"),
     "{0}: is a {1}, expected {2} ({3}). Fix: give a {2} value (see the role's README)"),
    (re.compile(r"^value of (\w+) must be one of: (.*), got: (.*)$"),
     "{0}: '{2}' is not allowed. Fix: use one of {1}"),
    (re.compile(r"^Elements value for option '(\w+)' is of type (\S+) and we were unable to convert to (\w+): (.*)$"),
     "{0}: an element is a {1}, expected {2} ({3})"),
]


def _spec_message(error: str) -> str:
    for pattern, template in _SPEC_PATTERNS:
        match = pattern.match(error)
        if match:
            return template.format(*match.groups())
    return error


def monstack_spec_problems(result, spec=None):
    """Messages of a registered validate_argument_spec result (empty when it passed or was skipped),
    or, given ``spec`` (a role's argument_specs options), of validating the values ``result``
    (option name -> value) against it on the controller: the same checks as
    ansible.builtin.validate_argument_spec, without a task of its own."""
    if spec is not None:
        if not isinstance(result, dict) or not isinstance(spec, dict):
            raise AnsibleFilterError("spec_problems: expected values and a spec, both mappings")
        from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
        checked = ArgumentSpecValidator(_plain(spec)).validate(_plain(result))
        return [_spec_message(str(error)) for error in checked.error_messages]
    if not isinstance(result, dict) or result.get("skipped"):
        return []
    errors = result.get("argument_errors")
    if errors:
        return [_spec_message(str(error)) for error in errors]
    if result.get("failed") and result.get("msg"):
        return [str(result["msg"])]
    return []


# SHA-256 of each value in the example inventory's vault
# (inventories/example/group_vars/all/vault.yml), whose password is public
# (README): a copy of the example that kept one must not pass as configured.
# tests/unit/test_preflight.py keeps this list in step with the vault.
EXAMPLE_SECRETS = {
    "cd7817850af15c0753fcd76a75ce5b0ec1c195561d7ee0bf429932e6f35ecc69": "vault_ansible_become_password",
    "0dd0e2a00cf4c38f68397449247b1d575a2bc6b835a572359a8175b027dc580c": "vault_grafana_admin_password",
    "44bc91b2ab07b57c3828a245087a5bcbb0b2cf2448b1de090fcb4d02383f3af4": "vault_alertmanager_smtp_auth_password",
    "5ee528a3886318ec3b74fc85768e538b56991439016ca44b9064214a86dd67cc": "vault_grafana_secret_key",
}


def monstack_example_secrets(values):
    """Messages for the variables (name -> value) that hold a value of the example
    vault, naming the variable and how to set your own."""
    if not isinstance(values, Mapping):
        raise TypeError("expected a mapping of variable name to value")
    problems = []
    for name in sorted(values):
        value = values[name]
        if not isinstance(value, str):
            continue
        example = EXAMPLE_SECRETS.get(hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest())
        if example:
            problems.append(
                f"{name}: still holds the example inventory's value ({example} of inventories/example, whose vault "
                "password is public). Fix: `ansible-vault edit group_vars/all/vault.yml` and set your own "
                f"{example}, then `ansible-vault rekey group_vars/all/vault.yml` with your own vault password. "
                "(Only a test of the example itself sets monstack_allow_example_secrets: true.)")
    return problems


def monstack_loopback(address):
    """True when an address (IP or name) only reaches the host itself."""
    value = str(address).strip().strip("[]").lower()
    if value in ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"):
        return True
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False


class FilterModule:
    """Preflight helper filters."""

    def filters(self):
        return {
            "unknown_vars": _guard(monstack_unknown_vars),
            "bad_checksums": _guard(monstack_bad_checksums),
            "example_secrets": _guard(monstack_example_secrets),
            "loopback": monstack_loopback,
            "spec_problems": monstack_spec_problems,
        }


def _guard(func):
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (TypeError, ValueError) as err:
            raise AnsibleFilterError(f"{func.__name__}: {err}") from err
    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper
