"""Time-based one-time passwords (RFC 6238) as a second factor.

The secret has 160 bits (32 base32 characters) from ``secrets`` (through pyotp) and is
stored encrypted (``services.crypto``). Enrolment keeps the pending secret in the account
row with ``totp_enabled_at`` NULL until a code from the authenticator confirms it.

A code is accepted in the current 30 s step or one step either side, and only once:
the accepted step is written with ONE conditional UPDATE (``totp_last_counter < step``),
so a replayed code, or two concurrent uses of the same code, succeed at most once.
"""

from __future__ import annotations

import hmac
import io
import time

import pyotp
import segno

from models import Account, RecoveryCode, db, utcnow

from . import crypto

SECRET_LENGTH = 32  # base32 characters: 32 × 5 = 160 bits
STEP = 30  # seconds
WINDOW = 1  # steps accepted either side of the current one
ISSUER = "Gatehouse"


class TotpError(Exception):
    """The two-factor state does not allow this (already enabled, not enrolled, ...)."""


def _fresh(account: Account) -> Account:
    return Account.get_by_id(account.id)


def is_enabled(account: Account) -> bool:
    """Whether ``account`` signs in with a second factor."""
    return account.totp_enabled_at is not None and bool(account.totp_secret_encrypted)


def normalise(code: str | None) -> str:
    """The digits a person typed, without spaces or dashes; "" when it cannot be a code."""
    digits = "".join((code or "")[:32].split()).replace("-", "")
    return digits if len(digits) == 6 and digits.isascii() and digits.isdigit() else ""


def _secret(account: Account) -> str:
    if not account.totp_secret_encrypted:
        raise TotpError("two-factor authentication is not set up for this account")
    return crypto.decrypt(account.totp_secret_encrypted)


def provisioning_uri(account: Account, secret: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code."""
    issuer = f"{ISSUER} ({account.organisation.name})" if account.organisation.name else ISSUER
    return pyotp.TOTP(secret).provisioning_uri(name=account.email or account.username, issuer_name=issuer)


def start_enrolment(account: Account) -> tuple[str, str]:
    """A new pending secret for ``account`` (not enabled until confirmed): (secret, otpauth URI).
    TotpError when two-factor authentication is already enabled."""
    secret = pyotp.random_base32(SECRET_LENGTH)
    updated = (
        Account.update(totp_secret_encrypted=crypto.encrypt(secret), totp_last_counter=None, updated_at=utcnow())
        .where((Account.id == account.id) & Account.totp_enabled_at.is_null())
        .execute()
    )
    if updated != 1:
        raise TotpError("two-factor authentication is already enabled")
    account.totp_secret_encrypted = Account.get_by_id(account.id).totp_secret_encrypted
    return secret, provisioning_uri(account, secret)


def pending_enrolment(account: Account) -> tuple[str, str] | None:
    """The pending (unconfirmed) secret and URI, to show the QR again after a wrong code."""
    account = _fresh(account)
    if account.totp_enabled_at is not None or not account.totp_secret_encrypted:
        return None
    secret = _secret(account)
    return secret, provisioning_uri(account, secret)


def _matching_step(secret: str, code: str, now: float | None) -> int | None:
    """The time step in the window whose code is ``code``, or None."""
    code = normalise(code)
    if not code:
        return None
    totp = pyotp.TOTP(secret)
    current = int(now if now is not None else time.time()) // STEP
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        # Compare every candidate (constant work), keep the latest match.
        if hmac.compare_digest(totp.at(step * STEP), code):
            found = step
    return found


def _claim(account: Account, step: int, extra=None) -> bool:
    """Record ``step`` as used: one conditional UPDATE, so each step is accepted once."""
    condition = (Account.id == account.id) & (
        Account.totp_last_counter.is_null() | (Account.totp_last_counter < step)
    )
    if extra is not None:
        condition &= extra
    values = {"totp_last_counter": step}
    return Account.update(**values).where(condition).execute() == 1


def confirm_enrolment(account: Account, code: str, now: float | None = None) -> list[str] | None:
    """Enable two-factor authentication when ``code`` fits the pending secret; return the
    ten new recovery codes (shown once), or None when the code is wrong."""
    from . import recovery_codes

    account = _fresh(account)
    if account.totp_enabled_at is not None or not account.totp_secret_encrypted:
        raise TotpError("there is no pending two-factor set-up: start again")
    step = _matching_step(_secret(account), code, now)
    if step is None:
        return None
    with db.atomic():
        enabled = (
            Account.update(totp_enabled_at=utcnow(), totp_last_counter=step, must_enrol_totp=False, updated_at=utcnow())
            .where(
                (Account.id == account.id)
                & Account.totp_enabled_at.is_null()
                & (Account.totp_secret_encrypted == account.totp_secret_encrypted)
            )
            .execute()
        )
        if enabled != 1:
            return None
        return recovery_codes.regenerate(account)


def verify(account: Account, code: str, now: float | None = None) -> bool:
    """Whether ``code`` is a current code of ``account`` not used before (±1 step)."""
    account = _fresh(account)
    if not is_enabled(account):
        return False
    step = _matching_step(_secret(account), code, now)
    if step is None:
        return False
    return _claim(account, step, Account.totp_enabled_at.is_null(False))


def clear(account: Account, must_enrol: bool = False) -> None:
    """Turn two-factor authentication off and delete the recovery codes (no code asked:
    callers check one first, or act as an admin)."""
    with db.atomic():
        Account.update(
            totp_secret_encrypted=None, totp_enabled_at=None, totp_last_counter=None,
            must_enrol_totp=must_enrol, updated_at=utcnow(),
        ).where(Account.id == account.id).execute()
        RecoveryCode.delete().where(RecoveryCode.account == account.id).execute()
    account.totp_secret_encrypted = account.totp_enabled_at = account.totp_last_counter = None
    account.must_enrol_totp = must_enrol


def disable(account: Account, code: str, now: float | None = None) -> bool:
    """Turn two-factor authentication off when ``code`` is a current, unused code."""
    if not verify(account, code, now):
        return False
    clear(account)
    return True


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as inline SVG, drawn here (no external service sees the secret)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(
        out, kind="svg", scale=5, border=2, dark="#000", light="#fff", xmldecl=False, svgns=True, nl=False,
        title="QR code for your authenticator app", svgclass="qr-code", lineclass=None,
    )
    return out.getvalue().decode("utf-8")
