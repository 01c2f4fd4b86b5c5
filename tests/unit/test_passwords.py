"""services.passwords: explicit argon2id parameters, rehash when they change, at most one
hash per core at a time, odd inputs."""

from __future__ import annotations

import os
import threading
import time

import pytest
from argon2 import PasswordHasher

from models import Account, Organisation
from services import passwords

PASSWORD = "correct horse battery staple"


@pytest.fixture
def ann(database):
    organisation = Organisation.create(slug="acme", name="Acme")
    return Account.create(organisation=organisation, username="ann", email="ann@acme.test")


def test_hashes_carry_the_explicit_parameters():
    stored = passwords.hash_password(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_a_hash_with_old_parameters_is_replaced_on_the_next_right_password(ann):
    old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    Account.update(password_hash=old).where(Account.id == ann.id).execute()
    ann = Account.get_by_id(ann.id)
    assert not passwords.check_password(ann, "wrong password")
    assert Account.get_by_id(ann.id).password_hash == old  # a wrong password changes nothing
    assert passwords.check_password(ann, PASSWORD)
    renewed = Account.get_by_id(ann.id).password_hash
    assert renewed != old and renewed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.check_password(Account.get_by_id(ann.id), PASSWORD)


def test_no_more_hashes_run_at_once_than_there_are_cores(monkeypatch):
    real = passwords.hasher
    running, peak, lock = [0], [0], threading.Lock()

    class Counting:
        def verify(self, stored, password):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            try:
                time.sleep(0.02)  # long enough for the other threads to pile up
                return real.verify(stored, password)
            finally:
                with lock:
                    running[0] -= 1

    stored = real.hash(PASSWORD)
    monkeypatch.setattr(passwords, "hasher", Counting())
    threads = [threading.Thread(target=passwords.verify_hash, args=(stored, PASSWORD)) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert 1 <= peak[0] <= (os.cpu_count() or 1)


@pytest.mark.parametrize("password", ["", "x" * (passwords.MAX_PASSWORD_LENGTH + 1)])
def test_empty_and_oversize_passwords_never_match_and_cannot_be_set(ann, password):
    passwords.set_password(ann, PASSWORD)
    assert not passwords.check_password(Account.get_by_id(ann.id), password)
    with pytest.raises(ValueError):
        passwords.hash_password(password)


def test_non_ascii_and_nul_passwords_are_compared_exactly(ann):
    passwords.set_password(ann, "Pâté façade 东京")
    ann = Account.get_by_id(ann.id)
    assert passwords.check_password(ann, "Pâté façade 东京")
    assert not passwords.check_password(ann, "Pate facade 东京")
    assert not passwords.check_password(ann, "Pâté façade 东京\x00")


COMPOSED = "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"  # é, è, û as one code point each (NFC)
DECOMPOSED = "Cafe\u0301 cre\u0300me bru\u0302le\u0301e"  # the same letters as base + combining accent (NFD)


def test_a_password_typed_in_another_unicode_form_is_the_same_password(ann):
    passwords.set_password(ann, COMPOSED)
    ann = Account.get_by_id(ann.id)
    assert passwords.check_password(ann, DECOMPOSED)
    assert passwords.check_password(ann, COMPOSED)
    assert not passwords.check_password(ann, "Cafe creme brulee")


def test_other_space_characters_count_as_a_space(ann):
    passwords.set_password(ann, "four\u00a0words\u2003in a row")  # no-break space, em space
    ann = Account.get_by_id(ann.id)
    assert passwords.check_password(ann, "four words in a row")
    assert passwords.verify_hash(ann.password_hash, "four words\u202fin a row")  # narrow no-break space


def test_a_hash_of_the_unprepared_text_still_signs_in_and_is_replaced(ann):
    legacy = passwords.hasher.hash(DECOMPOSED)  # stored before passwords were prepared
    Account.update(password_hash=legacy).where(Account.id == ann.id).execute()
    assert not passwords.check_password(Account.get_by_id(ann.id), "Cafe creme brulee")
    assert Account.get_by_id(ann.id).password_hash == legacy
    assert passwords.check_password(Account.get_by_id(ann.id), DECOMPOSED)
    renewed = Account.get_by_id(ann.id).password_hash
    assert renewed != legacy and passwords.hasher.verify(renewed, COMPOSED)
    assert passwords.check_password(Account.get_by_id(ann.id), COMPOSED)  # now either form works


def test_a_wrong_password_costs_the_same_hashes_for_a_known_and_an_unknown_account(ann, monkeypatch):
    passwords.set_password(ann, COMPOSED)
    calls = []
    real = passwords._verify
    monkeypatch.setattr(passwords, "_verify", lambda stored, password: calls.append(stored) or real(stored, password))
    for typed in ("wrong password", "wro\u0301ng password"):  # one candidate, then two
        calls.clear()
        assert not passwords.check_password(Account.get_by_id(ann.id), typed)
        known = len(calls)
        calls.clear()
        assert not passwords.check_password(None, typed)
        assert len(calls) == known == (1 if typed.isascii() else 2)
