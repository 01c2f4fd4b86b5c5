"""TOTP and recovery codes below the web layer: secret size and storage, the ±1 step
window, replay refused by one conditional UPDATE, recovery codes single use."""

from __future__ import annotations

import base64
import threading
import time

import pyotp
import pytest

from models import Account, OutboxMessage, RecoveryCode, db
from services import crypto, recovery_codes, totp

NOW = 1_800_000_000  # a fixed moment, on a step boundary (divisible by 30)


@pytest.fixture
def ann(app, create_organisation, create_account):
    account = create_account(create_organisation("acme", "Acme"), "ann")
    with app.app_context():
        db.connect(reuse_if_open=True)
        yield Account.get_by_id(account.id)
        db.close()


def enrol(account, now=NOW):
    secret, _uri = totp.start_enrolment(account)
    codes = totp.confirm_enrolment(account, pyotp.TOTP(secret).at(now), now=now)
    assert codes is not None
    return secret, codes


def test_secret_has_160_bits_and_is_stored_encrypted(ann):
    secret, uri = totp.start_enrolment(ann)
    assert len(base64.b32decode(secret)) * 8 >= 160
    stored = Account.get_by_id(ann.id)
    assert secret not in stored.totp_secret_encrypted and crypto.decrypt(stored.totp_secret_encrypted) == secret
    assert stored.totp_enabled_at is None, "not enabled before a code confirms it"
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert totp.qr_svg(uri).lstrip().startswith("<svg")
    assert not totp.verify(ann, pyotp.TOTP(secret).at(NOW), now=NOW), "a pending secret signs nobody in"


def test_confirm_needs_the_right_code(ann):
    secret, _ = totp.start_enrolment(ann)
    assert totp.confirm_enrolment(ann, "000000" if pyotp.TOTP(secret).at(NOW) != "000000" else "111111", now=NOW) is None
    assert Account.get_by_id(ann.id).totp_enabled_at is None
    codes = totp.confirm_enrolment(ann, pyotp.TOTP(secret).at(NOW), now=NOW)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert totp.is_enabled(Account.get_by_id(ann.id))
    with pytest.raises(totp.TotpError):
        totp.start_enrolment(ann)


def test_window_is_one_step_either_side(ann):
    secret, _ = enrol(ann, now=NOW - 300)
    generator = pyotp.TOTP(secret)
    assert not totp.verify(ann, generator.at(NOW - 60), now=NOW)
    assert not totp.verify(ann, generator.at(NOW + 60), now=NOW)
    assert totp.verify(ann, generator.at(NOW - 30), now=NOW)
    assert totp.verify(ann, generator.at(NOW), now=NOW)
    assert totp.verify(ann, generator.at(NOW + 30), now=NOW)
    assert not totp.verify(ann, "12345", now=NOW) and not totp.verify(ann, "", now=NOW)


def test_a_code_is_accepted_once(ann):
    secret, _ = enrol(ann, now=NOW - 300)
    code = pyotp.TOTP(secret).at(NOW)
    assert totp.verify(ann, code, now=NOW)
    assert not totp.verify(ann, code, now=NOW), "replay"
    assert not totp.verify(ann, code, now=NOW + 30), "replay in the next step"
    assert not totp.verify(ann, pyotp.TOTP(secret).at(NOW - 30), now=NOW), "an older step after a newer one"
    assert totp.verify(ann, pyotp.TOTP(secret).at(NOW + 30), now=NOW + 30)


def test_the_enrolment_code_cannot_be_replayed(ann):
    secret, _ = enrol(ann, now=NOW)
    assert not totp.verify(ann, pyotp.TOTP(secret).at(NOW), now=NOW)


def test_concurrent_uses_of_one_code_succeed_once(app, ann):
    if db.obj.__class__.__name__.startswith("Sqlite"):
        pytest.skip("SQLite serialises writers: the concurrency case matters on PostgreSQL")
    secret, _ = enrol(ann, now=NOW - 300)
    code = pyotp.TOTP(secret).at(NOW)
    results = []

    def attempt():
        with app.app_context():
            db.connect(reuse_if_open=True)
            try:
                results.append(totp.verify(ann, code, now=NOW))
            finally:
                db.close()

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1


def test_disable_needs_a_current_code(ann):
    secret, _ = enrol(ann, now=NOW - 300)
    assert not totp.disable(ann, "000000" if pyotp.TOTP(secret).at(NOW) != "000000" else "111111", now=NOW)
    assert totp.disable(ann, pyotp.TOTP(secret).at(NOW), now=NOW)
    stored = Account.get_by_id(ann.id)
    assert stored.totp_secret_encrypted is None and stored.totp_enabled_at is None
    assert RecoveryCode.select().where(RecoveryCode.account == ann.id).count() == 0


def test_recovery_codes_are_long_hashed_and_single_use(ann):
    _, codes = enrol(ann)
    for code in codes:
        assert len(recovery_codes.normalise(code)) * 5 >= 128
    stored = [row.code_hash for row in RecoveryCode.select().where(RecoveryCode.account == ann.id)]
    assert len(stored) == 10 and not any(recovery_codes.normalise(c) in stored or c in stored for c in codes)
    before = OutboxMessage.select().count()
    assert recovery_codes.use(ann, codes[0].upper().replace("-", " "))  # typed loosely
    assert not recovery_codes.use(ann, codes[0])
    assert recovery_codes.remaining(ann) == 9
    assert OutboxMessage.select().count() == before + 1, "the owner is emailed"
    assert OutboxMessage.select().order_by(OutboxMessage.id.desc()).first().to_addresses == ["ann@acme.test"]
    assert not recovery_codes.use(ann, "not-a-code")


def test_regenerated_codes_replace_the_old_ones(ann):
    _, old = enrol(ann)
    new = recovery_codes.regenerate(ann)
    assert not set(old) & set(new)
    assert not recovery_codes.use(ann, old[1])
    assert recovery_codes.use(ann, new[1])


def test_verify_uses_the_clock_by_default(ann):
    secret, _ = enrol(ann, now=time.time() - 300)
    assert totp.verify(ann, pyotp.TOTP(secret).now())
