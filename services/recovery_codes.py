"""Recovery codes: ten single-use codes that stand in for a lost authenticator.

Each code has 140 bits from ``secrets`` (28 base32 characters, shown in groups of four),
is stored only as a SHA-256 hash and is used by ONE conditional UPDATE
(``... WHERE used_at IS NULL``), so two concurrent uses grant exactly one. Using a code
emails the account owner.
"""

from __future__ import annotations

import secrets

from models import Account, RecoveryCode, db, utcnow

from . import mailer, tokens

COUNT = 10
LENGTH = 28  # base32 characters: 28 × 5 = 140 bits
GROUP = 4
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def new_code() -> str:
    """One fresh code, e.g. ``k3qz-...`` (seven groups of four)."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i:i + GROUP] for i in range(0, LENGTH, GROUP))


def normalise(code: str | None) -> str:
    """The code as stored (lower case, no spaces or dashes); "" when it cannot be one."""
    text = "".join((code or "")[:128].split()).replace("-", "").lower()
    return text if len(text) == LENGTH and all(c in ALPHABET for c in text) else ""


def regenerate(account: Account) -> list[str]:
    """Replace every recovery code of ``account`` by ten new ones; return them (shown once)."""
    codes = [new_code() for _ in range(COUNT)]
    with db.atomic():
        RecoveryCode.delete().where(RecoveryCode.account == account.id).execute()
        now = utcnow()
        RecoveryCode.insert_many(
            [{"account": account.id, "code_hash": tokens.hash_token(normalise(code)), "created_at": now} for code in codes]
        ).execute()
    return codes


def remaining(account: Account) -> int:
    """How many unused recovery codes ``account`` has."""
    return RecoveryCode.select().where((RecoveryCode.account == account.id) & RecoveryCode.used_at.is_null()).count()


def use(account: Account, code: str, *, resets_two_factor: bool = True) -> bool:
    """Spend one recovery code of ``account``; True once per code. Emails the owner
    (saying whether two-factor authentication is being reset, or kept)."""
    text = normalise(code)
    if not text:
        return False
    used = (
        RecoveryCode.update(used_at=utcnow())
        .where(
            (RecoveryCode.account == account.id)
            & (RecoveryCode.code_hash == tokens.hash_token(text))
            & RecoveryCode.used_at.is_null()
        )
        .execute()
    )
    if used != 1:
        return False
    if resets_two_factor:
        notify_owner(account, "A recovery code was used",
                     "A recovery code of your account was just used to sign in, and two-factor authentication "
                     "was reset: you will be asked to set it up again.")
    else:
        left = remaining(account)
        notify_owner(account, "A recovery code was used",
                     "A recovery code of your account was just used to sign in instead of a code from your "
                     f"authenticator app. {left} recovery code{'s are' if left != 1 else ' is'} left; you can make "
                     "new ones on your two-factor page.")
    return True


def notify_owner(account: Account, subject: str, text: str) -> None:
    """Tell the account owner by email (when the account has an address)."""
    if not account.email or "@" not in account.email:
        return
    name = account.display_name or account.username
    mailer.queue(
        account.email, f"{subject} — {account.organisation.name}",
        f"Hello {name},\n\n{text}\n\nIf this was not you, contact your administrator now.\n",
        organisation=account.organisation,
    )
