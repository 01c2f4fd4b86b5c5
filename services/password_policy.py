"""Password rules per organisation (DESIGN 3.5): strength preset, history, expiry.

Presets:

* ``basic``    — at least 8 characters.
* ``medium``   — at least 8, an upper-case letter and a digit.
* ``advanced`` — as medium, plus a special character (anything not a letter or digit).
* ``nist``     — NIST SP 800-63B: at least 15 characters, or 8 when the account has
  two-factor authentication; not one of the 10,000 most common (breached) passwords,
  shipped offline in ``services/data/common-passwords.txt``; no composition rules.

:func:`check` returns one :class:`Rule` per requirement (met or not), for the live
checklist of the change-password form; :func:`problems` is the list of unmet ones,
including the history rule (the new password may not be one of the last N, compared with
argon2 verify against PasswordHistory rows).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path

from models import (
    STRENGTH_PRESETS,
    Account,
    Organisation,
    PasswordHistory,
    PasswordPolicy,
    utcnow,
)

from . import audit, passwords

BLOCKLIST_PATH = Path(__file__).resolve().parent / "data" / "common-passwords.txt"
PRESET_LABELS = {
    "basic": "Basic: at least 8 characters",
    "medium": "Medium: at least 8 characters with an upper-case letter and a digit",
    "advanced": "Advanced: as medium, plus a special character",
    "nist": "NIST: at least 15 characters (8 with two-factor authentication), not a common password",
}
MAX_HISTORY = 24
MAX_EXPIRY_DAYS = 3650


@dataclass(frozen=True)
class Rule:
    """One requirement and whether the password meets it."""

    key: str
    label: str
    ok: bool


@functools.lru_cache(maxsize=1)
def blocklist() -> frozenset[str]:
    """The shipped common passwords, lower case."""
    with BLOCKLIST_PATH.open(encoding="utf-8") as handle:
        return frozenset(line.strip().lower() for line in handle if line.strip() and not line.startswith("#"))


def is_common(password: str) -> bool:
    """True when ``password`` (case-insensitively) is a known common or breached password."""
    return password.strip().lower() in blocklist()


def policy_for(organisation: Organisation) -> PasswordPolicy:
    """The organisation's policy, or an unsaved one with the defaults."""
    policy = PasswordPolicy.get_or_none(PasswordPolicy.organisation == organisation)
    return policy if policy is not None else PasswordPolicy(organisation=organisation)


def _length(password: str) -> int:
    # Count characters as a person sees them and as they are hashed (NFC), never bytes.
    return len(passwords.prepare(password))


def check(password: str, account: Account | None, policy: PasswordPolicy) -> list[Rule]:
    """Every strength rule of ``policy.strength`` with whether ``password`` meets it."""
    password = password or ""
    strength = policy.strength if policy.strength in STRENGTH_PRESETS else "nist"
    rules: list[Rule] = []
    if strength == "nist":
        has_2fa = account is not None and account.totp_enabled_at is not None
        minimum = 8 if has_2fa else 15
        rules.append(Rule("length", f"At least {minimum} characters", _length(password) >= minimum))
        rules.append(Rule("common", "Not a commonly used password", bool(password) and not is_common(password)))
    else:
        rules.append(Rule("length", "At least 8 characters", _length(password) >= 8))
        if strength in ("medium", "advanced"):
            rules.append(Rule("upper", "An upper-case letter", any(c.isupper() for c in password)))
            rules.append(Rule("digit", "A digit", any(c.isdigit() for c in password)))
        if strength == "advanced":
            rules.append(Rule("special", "A special character", any(not c.isalnum() and not c.isspace() for c in password)))
    rules.append(Rule("max", f"At most {passwords.MAX_PASSWORD_LENGTH} characters", len(password) <= passwords.MAX_PASSWORD_LENGTH))
    return rules


def reused(password: str, account: Account, policy: PasswordPolicy) -> bool:
    """True when ``password`` is the current one or one of the last ``history_count``."""
    count = min(max(policy.history_count or 0, 0), MAX_HISTORY)
    if count == 0:
        return False
    hashes = [account.password_hash] if account.password_hash else []
    rows = (PasswordHistory.select(PasswordHistory.password_hash).where(PasswordHistory.account == account)
            .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc()).limit(count))
    hashes += [row.password_hash for row in rows]
    return any(passwords.verify_hash(stored, password) for stored in hashes[:count])


def problems(password: str, account: Account, policy: PasswordPolicy) -> list[str]:
    """What is wrong with ``password`` as the new password of ``account`` (empty: fine)."""
    unmet = [rule.label for rule in check(password, account, policy) if not rule.ok]
    if any(ord(char) < 32 or ord(char) == 127 for char in password or ""):
        # Typed on no keyboard, refused by LDAP binds, and easy to lose in copy and paste.
        unmet.append("No control characters (like NUL or a line break)")
    if not unmet and reused(password, account, policy):
        unmet.append(f"Different from your last {policy.history_count} password{'s' if policy.history_count != 1 else ''}")
    return unmet


def change(account: Account, password: str, policy: PasswordPolicy | None = None) -> None:
    """Store ``password`` as the account's new password, keep the old hash in the
    history, and clear a forced change. The caller has checked :func:`problems`."""
    policy = policy or policy_for(account.organisation)
    old_hash = account.password_hash
    if old_hash:
        PasswordHistory.create(account=account, password_hash=old_hash)
    passwords.set_password(account, password)
    Account.update(must_change_password=False).where(Account.id == account.id).execute()
    account.must_change_password = False
    keep = max(min(policy.history_count or 0, MAX_HISTORY), 0)
    stale = (PasswordHistory.select(PasswordHistory.id).where(PasswordHistory.account == account)
             .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc()).offset(keep))
    stale_ids = [row.id for row in stale]
    if stale_ids:
        PasswordHistory.delete().where(PasswordHistory.id.in_(stale_ids)).execute()


def expires_at(account: Account, policy: PasswordPolicy) -> dt.datetime | None:
    """When the account's password expires under ``policy`` (None: it does not)."""
    if not policy.expiry_days or account.source != "local" or not account.password_hash:
        return None
    return (account.password_changed_at or account.created_at) + dt.timedelta(days=policy.expiry_days)


def expired(account: Account, policy: PasswordPolicy, now: dt.datetime | None = None) -> bool:
    """True when the account's password is older than the policy allows."""
    if not policy.expiry_days or account.source != "local" or not account.password_hash:
        return False
    changed = account.password_changed_at or account.created_at
    return changed + dt.timedelta(days=policy.expiry_days) <= (now or utcnow())


def needs_change(account: Account, policy: PasswordPolicy | None = None) -> bool:
    """True when ``account`` must choose a new password before going on; marks it so."""
    if account.must_change_password:
        return True
    if expired(account, policy or policy_for(account.organisation)):
        Account.update(must_change_password=True).where(Account.id == account.id).execute()
        account.must_change_password = True
        return True
    return False


def preview(organisation: Organisation, expiry_days: int | None, now: dt.datetime | None = None) -> dict:
    """How many active local accounts with a password would have to change it under
    ``expiry_days`` (expired now), out of how many."""
    now = now or utcnow()
    accounts = list(Account.select(Account.id, Account.password_changed_at, Account.created_at, Account.must_change_password)
                    .where((Account.organisation == organisation) & (Account.source == "local")
                           & (Account.status == "active") & Account.password_hash.is_null(False)))
    due = 0
    for account in accounts:
        changed = account.password_changed_at or account.created_at
        if account.must_change_password or (expiry_days and changed + dt.timedelta(days=expiry_days) <= now):
            due += 1
    return {"local": len(accounts), "due": due}


def save(organisation: Organisation, values: dict, *, actor: str) -> PasswordPolicy:
    """Store the organisation's policy and audit the change."""
    policy = PasswordPolicy.get_or_none(PasswordPolicy.organisation == organisation)
    before = None if policy is None else {k: getattr(policy, k) for k in values}
    if policy is None:
        policy = PasswordPolicy(organisation=organisation)
    for key, value in values.items():
        setattr(policy, key, value)
    policy.updated_at = utcnow()
    policy.save()
    audit.record("password_policy.updated", actor=actor, organisation=organisation.slug, target=organisation.slug,
                 details={"before": before, "after": values})
    return policy
