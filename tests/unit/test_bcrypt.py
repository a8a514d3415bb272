"""plugins/filter/bcrypt.py: bcrypt hashes with a salt derived from a seed."""
from __future__ import annotations

import re

import bcrypt
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.filter.bcrypt import FilterModule, monstack_bcrypt

BCRYPT_HASH = re.compile(r"^\$2b\$(\d\d)\$[./A-Za-z0-9]{53}$")


def test_hash_verifies_with_the_bcrypt_library():
    hashed = monstack_bcrypt("s3cret", "mon1:prometheus:admin", rounds=4)
    assert BCRYPT_HASH.match(hashed)
    assert bcrypt.checkpw(b"s3cret", hashed.encode())
    assert not bcrypt.checkpw(b"s3cret ", hashed.encode())
    assert not bcrypt.checkpw(b"S3cret", hashed.encode())


def test_default_cost_is_12():
    hashed = monstack_bcrypt("s3cret", "seed")
    assert hashed.startswith("$2b$12$")
    assert bcrypt.checkpw(b"s3cret", hashed.encode())


@pytest.mark.parametrize("rounds", [4, 5, 10])
def test_cost_factor_is_written_with_two_digits(rounds):
    hashed = monstack_bcrypt("pw", "seed", rounds=rounds)
    assert BCRYPT_HASH.match(hashed).group(1) == f"{rounds:02d}"
    assert bcrypt.checkpw(b"pw", hashed.encode())


def test_same_password_and_seed_give_the_same_hash():
    # reruns must not change web-config.yml
    assert monstack_bcrypt("pw", "mon1:node_exporter:prometheus", rounds=4) \
        == monstack_bcrypt("pw", "mon1:node_exporter:prometheus", rounds=4)


def test_salt_depends_on_the_seed_only():
    one = monstack_bcrypt("pw", "mon1:node_exporter:prometheus", rounds=4)
    other_password = monstack_bcrypt("other", "mon1:node_exporter:prometheus", rounds=4)
    other_seed = monstack_bcrypt("pw", "mon2:node_exporter:prometheus", rounds=4)
    salt = one[7:29]
    assert other_password[7:29] == salt, "the salt comes from the seed, not the password"
    assert other_seed[7:29] != salt
    assert other_seed != one, "equal passwords on two hosts give different hashes"


def test_hash_is_stable_across_releases():
    # A fixed value: changing how the salt is derived would rewrite every web config
    # (and restart every exporter) on the first run after an upgrade.
    assert monstack_bcrypt("pw", "mon1:node_exporter:prometheus", rounds=4) \
        == "$2b$04$MkCvhpM3HpW/Kr5f.5LNmODNqLCgR1MhokZevkMmOg4RJ9s1ARxvC"


def test_seed_may_be_any_value():
    assert monstack_bcrypt("pw", 42, rounds=4) == monstack_bcrypt("pw", "42", rounds=4)
    assert bcrypt.checkpw(b"pw", monstack_bcrypt("pw", "", rounds=4).encode())


def test_unicode_passwords_are_hashed_as_utf8():
    hashed = monstack_bcrypt("pässwörd✓", "seed", rounds=4)
    assert bcrypt.checkpw("pässwörd✓".encode("utf-8"), hashed.encode())


def test_72_bytes_is_the_longest_password():
    assert bcrypt.checkpw(b"a" * 72, monstack_bcrypt("a" * 72, "seed", rounds=4).encode())
    with pytest.raises(AnsibleFilterError, match="at most 72 bytes"):
        monstack_bcrypt("a" * 73, "seed", rounds=4)
    with pytest.raises(AnsibleFilterError, match="at most 72 bytes"):
        monstack_bcrypt("ä" * 37, "seed", rounds=4)  # 74 bytes in UTF-8


@pytest.mark.parametrize("password", ["", None, 1234, b"bytes", ["pw"]])
def test_password_must_be_a_non_empty_string(password):
    with pytest.raises(AnsibleFilterError, match="the password must be a non-empty string"):
        monstack_bcrypt(password, "seed")


@pytest.mark.parametrize("rounds", [3, 32, 0, -1, "12", 12.0, True, None])
def test_rounds_must_be_an_integer_4_to_31(rounds):
    with pytest.raises(AnsibleFilterError, match=r"rounds must be 4-31, got "):
        monstack_bcrypt("pw", "seed", rounds=rounds)


def test_registered():
    assert FilterModule().filters() == {"bcrypt": monstack_bcrypt}
