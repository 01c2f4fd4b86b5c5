"""Password hashing (argon2id) and checking local account passwords.

Parameters are explicit (OWASP: 19 MiB, 2 passes, 1 lane); a hash made with other
parameters is replaced on the next successful check. At most one hash per CPU core runs
at a time, so a burst of sign-ins queues instead of exhausting memory.

A password is prepared before it is hashed or checked (RFC 8265, OpaqueString): Unicode
NFC, and any other space character becomes an ASCII space, so "café" typed on a keyboard
that sends "e" + combining accent is the same password. Hashes stored before that are
still accepted for the exact text typed, and replaced on that sign-in.
"""

from __future__ import annotations

import os
import threading
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from models import Account, utcnow

MEMORY_COST_KIB = 19 * 1024
TIME_COST = 2
PARALLELISM = 1
MAX_PASSWORD_LENGTH = 1024  # long enough for any passphrase; bounds the hashing cost

hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM, hash_len=32, salt_len=16)
_slots = threading.BoundedSemaphore(os.cpu_count() or 1)
# Checked when an account has no password, so an unknown user costs the same time.
_DUMMY_HASH = hasher.hash("gatehouse-dummy-password")


def prepare(password: str) -> str:
    """``password`` as it is hashed: NFC, other space characters as an ASCII space."""
    normalised = unicodedata.normalize("NFC", password)
    if normalised.isascii():
        return normalised
    return "".join(" " if unicodedata.category(char) == "Zs" else char for char in normalised)


def _candidates(password: str) -> list[str]:
    """What to try against a stored hash: the prepared password, then — for hashes from
    before preparation — the text exactly as typed, when it differs."""
    prepared = prepare(password)
    return [prepared] if prepared == password else [prepared, password]


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (prepared)."""
    if not password or len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError("a password must be 1 to 1024 characters long")
    with _slots:
        return hasher.hash(prepare(password))


def _verify(stored: str, password: str) -> bool:
    with _slots:
        try:
            return hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def _match(stored: str, password: str) -> str | None:
    """The candidate of ``password`` that ``stored`` was made from, or None. A wrong
    password costs as many hashes for a known account as for the dummy hash."""
    for candidate in _candidates(password):
        if _verify(stored, candidate):
            return candidate
    return None


def check_password(account: Account | None, password: str) -> bool:
    """True when ``password`` is the account's password; rehashes outdated hashes.

    An unknown account or one without a password costs one hash as well."""
    if not password or len(password) > MAX_PASSWORD_LENGTH:
        return False
    if account is None or not account.password_hash:
        _match(_DUMMY_HASH, password)
        return False
    matched = _match(account.password_hash, password)
    if matched is None:
        return False
    if matched != prepare(password) or hasher.check_needs_rehash(account.password_hash):
        Account.update(password_hash=hash_password(password)).where(Account.id == account.id).execute()
    return True


def set_password(account: Account, password: str) -> None:
    """Store a new password for ``account``."""
    account.password_hash = hash_password(password)
    account.password_changed_at = utcnow()
    Account.update(password_hash=account.password_hash, password_changed_at=account.password_changed_at).where(
        Account.id == account.id
    ).execute()


def verify_hash(stored: str | None, password: str) -> bool:
    """True when ``password`` matches the argon2 hash ``stored`` (no rehash, no account);
    for comparing a new password with earlier ones."""
    if not stored or not password or len(password) > MAX_PASSWORD_LENGTH:
        return False
    return _match(stored, password) is not None
