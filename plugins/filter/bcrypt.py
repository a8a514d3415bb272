"""Filter plugin: bcrypt hash with a deterministic salt (idempotent web configs)."""
from __future__ import annotations

import base64
import hashlib

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: bcrypt
short_description: Hash a password with bcrypt, reproducibly
description:
  - Returns a bcrypt hash (C($2b$)) of the password for the C(basic_auth_users) of an
    exporter-toolkit web configuration (Prometheus, Alertmanager, node_exporter).
  - The salt is derived from O(seed) (for example host, component and user name), so the
    same password and seed always give the same hash and a rerun changes no file.
    A different seed per host and user keeps equal passwords from giving equal hashes.
  - Uses the C(bcrypt) Python library directly (no passlib).
positional: seed
options:
  _input:
    description: The plain-text password.
    type: str
    required: true
  seed:
    description: Any string that identifies where the hash is used.
    type: str
    required: true
  rounds:
    description: The bcrypt cost factor (4 to 31).
    type: int
    default: 12
"""

EXAMPLES = r"""
- name: Hash the basic auth password of user prometheus
  ansible.builtin.debug:
    msg: "{{ 'secret' | monstack.stack.bcrypt(inventory_hostname ~ ':node_exporter:prometheus') }}"
"""

RETURN = r"""
_value:
  description: The bcrypt hash, e.g. C($2b$12$...).
  type: str
"""

_STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = str.maketrans(_STD, _BCRYPT)


def monstack_bcrypt(password, seed, rounds=12):
    """Return a bcrypt hash of password whose salt is derived from seed."""
    try:
        import bcrypt
    except ImportError as exc:  # pragma: no cover - depends on the controller
        raise AnsibleFilterError(
            "bcrypt needs the Python 'bcrypt' library on the controller: "
            "pip install bcrypt") from exc
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("bcrypt: the password must be a non-empty string")
    data = password.encode("utf-8")
    if len(data) > 72:
        raise AnsibleFilterError(
            "bcrypt: bcrypt uses at most 72 bytes of a password; use a shorter one")
    if not isinstance(rounds, int) or not 4 <= rounds <= 31:
        raise AnsibleFilterError(f"bcrypt: rounds must be 4-31, got {rounds!r}")
    raw = hashlib.sha256(f"monstack-bcrypt:{seed}".encode("utf-8")).digest()[:16]
    salt22 = base64.b64encode(raw).decode("ascii")[:22].translate(_TO_BCRYPT)
    salt = f"$2b${rounds:02d}${salt22}".encode("ascii")
    return bcrypt.hashpw(data, salt).decode("ascii")


class FilterModule:
    """monstack bcrypt filter."""

    def filters(self):
        return {"bcrypt": monstack_bcrypt}
