"""Password policy: strength presets as a table, the offline blocklist, history by argon2
verify, expiry and the preview of how many accounts must change. Rules need no database;
history, expiry and the preview run on SQLite and PostgreSQL (``database`` fixture)."""

from __future__ import annotations

import datetime as dt

import pytest

from models import Account, Organisation, PasswordHistory, PasswordPolicy, utcnow
from services import password_policy, passwords


def policy(strength="nist", **extra):
    return PasswordPolicy(strength=strength, **extra)


class TwoFactor:
    totp_enabled_at = dt.datetime(2026, 1, 1)


class OneFactor:
    totp_enabled_at = None


def unmet(password, strength, account=None):
    return {rule.key for rule in password_policy.check(password, account, policy(strength)) if not rule.ok}


@pytest.mark.parametrize("password, strength, missing", [
    ("short", "basic", {"length"}),
    ("abcdefgh", "basic", set()),
    ("abcdefgh", "medium", {"upper", "digit"}),
    ("Abcdefgh", "medium", {"digit"}),
    ("Abcdefg1", "medium", set()),
    ("Abcdefg1", "advanced", {"special"}),
    ("Abcdefg1!", "advanced", set()),
    ("Äbcdefg1€", "advanced", set()),           # non-ASCII letters and symbols count
    ("fourteen chars", "nist", {"length"}),      # 14 characters, no 2FA
    ("a long passphrase", "nist", set()),        # no composition rules
    ("password1234567", "nist", set()),          # 15 characters and not in the list
    ("", "nist", {"length", "common"}),
])
def test_presets(password, strength, missing):
    assert unmet(password, strength) == missing


def test_nist_needs_only_eight_characters_with_two_factor():
    assert unmet("kx7!qpzv", "nist", TwoFactor()) == set()
    assert unmet("kx7!qpzv", "nist", OneFactor()) == {"length"}


@pytest.mark.parametrize("common", ["password", "PASSWORD", "qwerty123", "iloveyou", "12345678"])
def test_nist_refuses_common_passwords_offline(common):
    assert password_policy.is_common(common)
    assert "common" in unmet(common, "nist", TwoFactor())


def test_blocklist_is_shipped_and_sizeable():
    words = password_policy.blocklist()
    assert len(words) >= 9000 and "123456" in words and not any(w.startswith("#") for w in words)


def test_unknown_preset_falls_back_to_nist():
    assert {r.key for r in password_policy.check("x", None, policy("bogus"))} == {"length", "common", "max"}


def test_checklist_has_a_label_per_rule():
    rules = password_policy.check("Abc", None, policy("advanced"))
    assert [r.key for r in rules] == ["length", "upper", "digit", "special", "max"]
    assert all(r.label for r in rules)


# ----------------------------------------------------------------------------- with a database


@pytest.fixture
def account(database):
    organisation = Organisation.create(slug="acme", name="Acme")
    account = Account.create(organisation=organisation, username="ann", email="ann@acme.test")
    passwords.set_password(account, "first password one")
    return account


def test_history_refuses_the_last_n(account):
    rules = policy("basic", history_count=3)
    for new in ("second password two", "third password three", "fourth password four"):
        assert password_policy.problems(new, account, rules) == []
        password_policy.change(account, new, rules)
    account = Account.get_by_id(account.id)
    # The current one and the two before it are refused; the oldest is allowed again.
    for old in ("fourth password four", "third password three", "second password two"):
        assert password_policy.problems(old, account, rules) == ["Different from your last 3 passwords"]
    assert password_policy.problems("first password one", account, rules) == []
    assert PasswordHistory.select().where(PasswordHistory.account == account).count() <= 3
    # Hashes, never the passwords themselves.
    assert all(row.password_hash.startswith("$argon2id$") for row in PasswordHistory.select())


def test_no_history_allows_reuse(account):
    assert password_policy.problems("first password one", account, policy("basic", history_count=0)) == []


def test_change_clears_a_forced_change(account):
    Account.update(must_change_password=True).where(Account.id == account.id).execute()
    account = Account.get_by_id(account.id)
    password_policy.change(account, "a brand new passphrase", policy("nist"))
    fresh = Account.get_by_id(account.id)
    assert not fresh.must_change_password and passwords.check_password(fresh, "a brand new passphrase")


def test_expiry_marks_must_change_at_next_sign_in(account):
    rules = policy("basic", expiry_days=30)
    assert not password_policy.needs_change(account, rules)
    Account.update(password_changed_at=utcnow() - dt.timedelta(days=31)).where(Account.id == account.id).execute()
    account = Account.get_by_id(account.id)
    assert password_policy.needs_change(account, rules)
    assert Account.get_by_id(account.id).must_change_password
    assert not password_policy.expired(account, policy("basic", expiry_days=None))


def test_preview_counts_local_accounts_that_would_have_to_change(account):
    organisation = account.organisation
    for name, age in (("bob", 10), ("cy", 100), ("dee", 400)):
        other = Account.create(organisation=organisation, username=name)
        passwords.set_password(other, "some password here")
        Account.update(password_changed_at=utcnow() - dt.timedelta(days=age)).where(Account.id == other.id).execute()
    Account.create(organisation=organisation, username="dir", source="directory", external_id="x")  # never counted
    assert password_policy.preview(organisation, None) == {"local": 4, "due": 0}
    assert password_policy.preview(organisation, 90) == {"local": 4, "due": 2}
    assert password_policy.preview(organisation, 365) == {"local": 4, "due": 1}
