"""Account lock-out (SECURITY.md 9, 10): one atomic UPDATE per attempt, so twenty
parallel attempts on SQLite and on PostgreSQL get exactly ``threshold`` password checks;
a lock runs out; success resets; unknown usernames get the same locked answer."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest

from models import Account, AuditEvent, Organisation, PasswordPolicy, db, utcnow
from services import lockout, passwords, ratelimit
from tests.support.factories import PASSWORD

THREADS = 20


@pytest.fixture(autouse=True)
def fresh_limits():
    previous = ratelimit.set_backend(ratelimit.MemoryBackend())
    yield
    ratelimit.set_backend(previous)


@pytest.fixture
def ann(database):
    organisation = Organisation.create(slug="acme", name="Acme")
    account = Account.create(organisation=organisation, username="ann", email="ann@acme.test")
    passwords.set_password(account, PASSWORD)
    return account


def _parallel(work):
    barrier = threading.Barrier(THREADS, timeout=30)
    results: list = [None] * THREADS

    def run(index):
        db.connect(reuse_if_open=True)
        try:
            barrier.wait()
            results[index] = work()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            results[index] = exc
        finally:
            db.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_twenty_parallel_attempts_cannot_slip_past_the_threshold(ann):
    settings = lockout.Settings(threshold=5, minutes=15)

    def attempt():
        try:
            lockout.reserve(ann, settings)
        except lockout.Locked as exc:
            return ("locked", exc.until)
        return "checked"

    results = _parallel(attempt)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert results.count("checked") == 5
    assert len([r for r in results if isinstance(r, tuple)]) == THREADS - 5
    fresh = Account.get_by_id(ann.id)
    assert fresh.failed_attempts == 5
    assert fresh.locked_until is not None and fresh.locked_until > utcnow() + dt.timedelta(minutes=14)
    # The attempt that locked it, and only that one, is in the audit log.
    [event] = AuditEvent.select().where(AuditEvent.action == "account.locked")
    assert event.target == "ann" and event.details["failed_attempts"] == 5 and event.outcome == "failure"


def test_a_lock_runs_out_and_counting_starts_again(ann):
    settings = lockout.Settings(threshold=3, minutes=15)
    for _ in range(3):
        lockout.reserve(ann, settings)
    with pytest.raises(lockout.Locked):
        lockout.reserve(ann, settings)
    later = utcnow() + dt.timedelta(minutes=16)
    lockout.reserve(ann, settings, now=later)
    fresh = Account.get_by_id(ann.id)
    assert fresh.failed_attempts == 1 and fresh.locked_until is None


def test_success_resets_the_count(ann):
    settings = lockout.Settings(threshold=3, minutes=15)
    lockout.reserve(ann, settings)
    lockout.reserve(ann, settings)
    lockout.succeeded(ann)
    fresh = Account.get_by_id(ann.id)
    assert fresh.failed_attempts == 0 and fresh.locked_until is None
    lockout.reserve(ann, settings)
    lockout.reserve(ann, settings)  # 2 of 3: not locked
    assert Account.get_by_id(ann.id).locked_until is None


def test_an_attempt_the_directory_could_not_check_is_given_back(ann):
    settings = lockout.Settings(threshold=3, minutes=15)
    lockout.reserve(ann, settings)
    lockout.reserve(ann, settings)
    lockout.release(ann)  # the second one: the LDAP bind could not be made
    assert Account.get_by_id(ann.id).failed_attempts == 1
    lockout.release(ann)
    lockout.release(ann)  # never below zero
    assert Account.get_by_id(ann.id).failed_attempts == 0
    for _ in range(3):
        lockout.reserve(ann, settings)
    lockout.release(ann)  # a lock already set stays
    locked = Account.get_by_id(ann.id)
    assert locked.locked_until is not None and locked.failed_attempts == 3


def test_unknown_identifiers_lock_the_same_way(ann):
    settings = lockout.Settings(threshold=3, minutes=15)
    for _ in range(3):
        lockout.reserve_unknown(ann.organisation, "nobody", settings)
    with pytest.raises(lockout.Locked) as caught:
        lockout.reserve_unknown(ann.organisation, "NoBody ", settings)
    assert dt.timedelta(minutes=14) < caught.value.until - utcnow() <= dt.timedelta(minutes=15)


def test_settings_come_from_the_policy(ann):
    assert lockout.settings_for(ann.organisation) == lockout.Settings(10, 15)
    PasswordPolicy.create(organisation=ann.organisation, lockout_threshold=4, lockout_minutes=7)
    assert lockout.settings_for(ann.organisation) == lockout.Settings(4, 7)


# ----------------------------------------------------------------------------- through the sign-in form

LOCKED = re.compile(r"Too many failed attempts: this account is locked\. Try again after \d\d:\d\d UTC\.")


@pytest.fixture
def acme_web(app, create_organisation, create_account):
    organisation = create_organisation("acme", "Acme")
    with app.app_context():
        PasswordPolicy.create(organisation=organisation, lockout_threshold=3, lockout_minutes=15)
    create_account(organisation, "ann")
    return organisation


def _blank(response):
    """The body without CSRF tokens (they embed a timestamp) and the lock time."""
    text = LOCKED.sub("", response.get_data(as_text=True))
    text = re.sub(r'("X-CSRFToken":\s*")[^"]+', r"\1", text)
    return re.sub(r'(name="csrf_token"[^>]*value=")[^"]+', r"\1", text)


def _try(client, identifier, password):
    client.get("/login/password")
    return client.post("/login/password", {"identifier": identifier, "password": password})


def test_locked_account_and_unknown_username_get_the_same_answer(app, client, acme_web):
    for identifier in ("ann", "nobody"):
        for _ in range(3):
            assert _try(client, identifier, "wrong password").status_code == 422
    known, unknown = _try(client, "ann", "wrong password"), _try(client, "nobody", "wrong password")
    assert known.status_code == unknown.status_code == 429
    assert LOCKED.search(known.get_data(as_text=True)) and LOCKED.search(unknown.get_data(as_text=True))
    assert _blank(known) == _blank(unknown).replace('value="nobody"', 'value="ann"')
    # Even the right password is refused while locked.
    assert _try(client, "ann", PASSWORD).status_code == 429


def test_right_password_resets_the_count(app, client, acme_web):
    for _ in range(2):
        _try(client, "ann", "wrong password")
    assert _try(client, "ann", PASSWORD).status_code == 303
    with app.app_context():
        assert Account.get(Account.username == "ann").failed_attempts == 0


def test_attempts_are_limited_per_ip(app, client, acme_web, monkeypatch):
    monkeypatch.setattr(lockout, "ATTEMPTS_PER_IP", ratelimit.Limit("password-attempts-per-ip-test", 4, dt.timedelta(minutes=15)))
    for name in ("a", "b", "c", "d"):
        assert _try(client, name, "wrong password").status_code == 422
    response = _try(client, "e", "wrong password")
    assert response.status_code == 429
    assert "Too many sign-in attempts from your network" in response.get_data(as_text=True)
