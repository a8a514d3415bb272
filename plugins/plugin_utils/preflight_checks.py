"""The checks every component role shares, for the preflight (action monstack.stack.preflight).

Pure functions: each takes plain values and returns a list of problem messages
("<variable>: <what is wrong>. Fix: <what to do>"), empty when all is well. The
messages of the pre-existing filters (spec_problems, unknown_vars,
bad_checksums, example_secrets, release_problems,
sums_problems) come from those filters, so a playbook that calls a filter
and the preflight say the same thing.

``v`` below is a read-only mapping of one host's variables in one role's context
(the role's vars/, the host's inventory and extra vars, the role's defaults/):
``v.get(name, default)``, ``name in v``, ``v[name]``. The action templates each
value on first use; the unit tests pass plain dicts.
"""
from __future__ import annotations

from ansible_collections.monstack.stack.plugins.filter.preflight_filters import (
    monstack_bad_checksums,
    monstack_example_secrets,
    monstack_loopback,
    monstack_spec_problems,
    monstack_unknown_vars,
)
from ansible_collections.monstack.stack.plugins.filter.release import (
    monstack_release_problems,
    monstack_sums_problems,
)

__all__ = [
    "become_password_problems", "example_secret_problems", "host_report", "local_var", "monstack_loopback",
    "shared_problems", "spec_problems", "unknown_var_problems", "unresolved_problems",
]

UNRESOLVED = (": its value refers to a variable that is not defined (a vault variable whose vault file is missing or"
              " not decrypted?). Fix: define that variable (secrets in group_vars/all/vault.yml, encrypted with"
              " ansible-vault) and run with --ask-vault-pass or --vault-password-file.")

BECOME_UNRESOLVED = (
    "ansible_become_password: its value refers to a variable that is not defined (a vault variable whose vault"
    " file is missing or not decrypted?). Fix: put vault_ansible_become_password in group_vars/all/vault.yml"
    " (ansible-vault edit) and run with --ask-vault-pass or --vault-password-file, or remove the line if sudo"
    " needs no password.")

# The secrets the example inventory's vault sets, and the group whose hosts use each.
EXAMPLE_SECRET_VARS = (("ansible_become_password", "all"), ("alertmanager_smtp_auth_password", "alertmanager"),
                       ("grafana_admin_password", "grafana"), ("grafana_secret_key", "grafana"))

# Roles whose file for install_method local is not <role>_local_archive.
_LOCAL_VARS = {"cadvisor": "cadvisor_local_binary", "grafana": "grafana_local_package"}


def local_var(role: str) -> str:
    """The variable naming the controller file of install_method local."""
    return _LOCAL_VARS.get(role, f"{role}_local_archive")


def unresolved_problems(names) -> list[str]:
    """Messages for variables whose value refers to an undefined variable (a missing vault)."""
    return [f"{name}{UNRESOLVED}" for name in names]


def become_password_problems(set_in_inventory: bool, resolved: bool) -> list[str]:
    """ansible_become_password set but referring to an undefined (vault) variable."""
    return [BECOME_UNRESOLVED] if set_in_inventory and not resolved else []


def example_secret_problems(secrets: dict, allowed: bool = False) -> list[str]:
    """Secrets (variable -> value) that still hold the example vault's public values."""
    return [] if allowed else monstack_example_secrets(secrets)


def spec_problems(values: dict, spec: dict) -> list[str]:
    """Values (option -> value) that do not match the role's argument spec (types, choices)."""
    return monstack_spec_problems(values, spec) if values else []


def unknown_var_problems(role: str, names, known) -> list[str]:
    """Variables with the role's prefix that the role does not know (typos), with a suggestion."""
    prefix = f"{role}_"
    return monstack_unknown_vars([name for name in names if name.startswith(prefix)], known)


def _length(value) -> int:
    try:
        return len(value)
    except TypeError:
        return len(str(value))


def shared_problems(role: str, v, inventory_hostname: str, prometheus_hosts) -> list[str]:
    """What every component role shares: pinned checksums that are SHA-256 digests, a release
    version and download URL upstream can serve (archive method), no plain http:// download
    without pinned checksums, a local file for install_method local, TLS certificate and key
    together, and a listen address the Prometheus servers on other hosts reach (not for
    blackbox_exporter: only the Prometheus beside it scrapes it)."""
    problems: list[str] = []
    method = v.get(f"{role}_install_method", "")
    checksums = v.get(f"{role}_checksums", {})
    problems += monstack_bad_checksums(checksums, f"{role}_checksums")
    if method == "archive" and role != "grafana":
        problems += monstack_release_problems(role, v[f"{role}_version"],
                                              v.get(f"{role}_download_base_url", "https://github.com"))
    if method == "archive":
        problems += monstack_sums_problems(role, v.get(f"{role}_download_base_url", ""), checksums)
    local = local_var(role)
    if method == "local" and _length(v.get(local, "")) == 0:
        problems.append(f"{local}: empty, but {role}_install_method is 'local'. "
                        "Fix: give the path of the file on the controller, or use install_method archive.")
    cert = _length(v.get(f"{role}_web_tls_cert_file", "")) > 0
    key = _length(v.get(f"{role}_web_tls_key_file", "")) > 0
    if cert != key:
        problems.append(f"{role}_web_tls_cert_file / {role}_web_tls_key_file: "
                        "only one is set. Fix: set both (TLS) or neither (plain HTTP).")
    listen = v.get(f"{role}_listen_address", "0.0.0.0")
    others = [host for host in prometheus_hosts if host != inventory_hostname]
    if role != "blackbox_exporter" and others and monstack_loopback(listen):
        problems.append(f"{role}_listen_address: '{listen}' is loopback, so the Prometheus server(s) on other hosts "
                        f"({', '.join(others)}) cannot reach it. Fix: listen on 0.0.0.0 (and firewall the port) "
                        "or on this host's address.")
    return problems


def host_report(host: str, problems) -> list[str]:
    """The preflight's report of one host: a heading, then each problem prefixed with '[host] '."""
    return ([f"{len(problems)} problem(s) in the variables of {host}; nothing has been changed on any host. "
             "Fix them and rerun:"] + [f"[{host}] {problem}" for problem in problems]) if problems else []
