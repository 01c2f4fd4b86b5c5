"""Account lock-out after failed password attempts (SECURITY.md 9, 10; DESIGN 3.5).

An attempt is *reserved before the password is checked*: one atomic UPDATE adds 1 to
``failed_attempts`` and, when the new count reaches the policy's threshold, sets
``locked_until`` in the same statement. It only matches while the account is not locked,
so of any number of parallel attempts at most ``threshold`` are ever checked against
the password; the rest are refused as locked (rowcount 0). A right password then resets
the count (and lifts the lock its own reservation may have set). A wrong one leaves the
reservation counted. After a lock has run out, the next reservation starts again at 1.

Unknown identifiers (and inactive accounts) are counted the same way in the rate limiter,
keyed by organisation and identifier, so a locked-out answer — "Too many failed attempts:
try again after HH:MM UTC." — is given to known and unknown usernames alike and reveals
nothing about whether the account exists. Every attempt is also counted per client IP.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee

from models import Account, Organisation, PasswordPolicy, utcnow

from . import audit, ratelimit

ATTEMPTS_PER_IP = ratelimit.Limit("password-attempts-per-ip", 100, dt.timedelta(minutes=15))
# Failures of identifiers without a usable account; the long window stands in for a
# database counter that never ages.
_UNKNOWN_FAILURES = "password-failures-unknown"
_UNKNOWN_LOCK = "password-lock-unknown"
DEFAULT_THRESHOLD = 10
DEFAULT_MINUTES = 15


class Locked(Exception):
    """The account (or identifier) is locked until ``until`` (naive UTC)."""

    def __init__(self, until: dt.datetime):
        self.until = until
        super().__init__(message(until))


class IpThrottled(Exception):
    """Too many password attempts from one client network."""

    def __init__(self, minutes: int):
        self.minutes = minutes
        super().__init__(f"Too many sign-in attempts from your network. Try again in {minutes} minute{'s' if minutes != 1 else ''}.")


def message(until: dt.datetime) -> str:
    """The one text for a locked account, the same for unknown usernames."""
    # Round up to the minute so "after HH:MM" is never a moment when it is still locked.
    shown = until.replace(second=0, microsecond=0) + (dt.timedelta(minutes=1) if until.second or until.microsecond else dt.timedelta())
    return f"Too many failed attempts: this account is locked. Try again after {shown:%H:%M} UTC."


@dataclass(frozen=True)
class Settings:
    threshold: int
    minutes: int


def settings_for(organisation: Organisation | None) -> Settings:
    """The organisation's threshold and lock duration (defaults when it has no policy)."""
    policy = PasswordPolicy.get_or_none(PasswordPolicy.organisation == organisation) if organisation is not None else None
    return settings_from(policy)


def settings_from(policy: PasswordPolicy | None) -> Settings:
    """The threshold and lock duration of a password policy the caller has already read."""
    if policy is None:
        return Settings(DEFAULT_THRESHOLD, DEFAULT_MINUTES)
    return Settings(max(1, policy.lockout_threshold), max(1, policy.lockout_minutes))


def check_ip(ip: str) -> None:
    """Count one password attempt for the client's network; IpThrottled when over the limit."""
    verdict = ratelimit.hit(ATTEMPTS_PER_IP, ratelimit.ip_key(ip or "unknown"))
    if not verdict.allowed:
        raise IpThrottled(verdict.minutes())


def reserve(account: Account, settings: Settings, now: dt.datetime | None = None, *, ip: str = "",
            user_agent: str = "") -> None:
    """Count one attempt for ``account`` before its password is checked; Locked when it
    is locked (then nothing is counted). One UPDATE, so parallel callers cannot pass it;
    the attempt that reaches the threshold records ``account.locked`` (exactly once: the
    UPDATE returns the count it wrote)."""
    now = now or utcnow()
    expired = Account.locked_until.is_null(False) & (Account.locked_until <= now)
    new_count = peewee.Case(None, [(expired, 1)], Account.failed_attempts + 1)
    locked_until = peewee.Case(None, [(new_count >= settings.threshold, now + dt.timedelta(minutes=settings.minutes)),
                                      (expired, None)], Account.locked_until)
    written = list(
        Account.update(failed_attempts=new_count, locked_until=locked_until)
        .where((Account.id == account.id) & (Account.locked_until.is_null() | (Account.locked_until <= now)))
        .returning(Account.failed_attempts, Account.locked_until)
        .tuples()
        .execute()
    )
    if written:
        count, until = written[0]
        if count == settings.threshold:
            audit.record("account.locked", actor="gatehouse", organisation=account.organisation.slug,
                         target=account.username, ip=ip, user_agent=user_agent, outcome="failure",
                         details={"failed_attempts": count, "locked_until": until.isoformat(timespec="seconds")
                                  if isinstance(until, dt.datetime) else str(until), "minutes": settings.minutes})
        return
    until = Account.select(Account.locked_until).where(Account.id == account.id).scalar()
    raise Locked(until or now + dt.timedelta(minutes=settings.minutes))


def release(account: Account) -> None:
    """Give back the attempt :func:`reserve` counted when the password could not be
    checked at all (the directory did not answer). A lock it set stays."""
    Account.update(failed_attempts=Account.failed_attempts - 1).where(
        (Account.id == account.id) & (Account.failed_attempts > 0) & Account.locked_until.is_null()).execute()


def succeeded(account: Account) -> None:
    """A right password: the count starts again and any lock is lifted."""
    Account.update(failed_attempts=0, locked_until=None).where(Account.id == account.id).execute()
    account.failed_attempts, account.locked_until = 0, None


def _unknown_key(organisation: Organisation | None, identifier: str) -> str:
    return f"{organisation.slug if organisation else '-'}:{ratelimit.normalise_key(identifier or '')[:320]}"


def _limits(settings: Settings) -> tuple[ratelimit.Limit, ratelimit.Limit]:
    failures = ratelimit.Limit(_UNKNOWN_FAILURES, settings.threshold, dt.timedelta(days=1))
    lock = ratelimit.Limit(_UNKNOWN_LOCK, 1, dt.timedelta(minutes=settings.minutes))
    return failures, lock


def reserve_unknown(organisation: Organisation | None, identifier: str, settings: Settings) -> None:
    """The same as :func:`reserve` for an identifier with no usable account, counted in
    the rate limiter: the ``threshold``-th attempt locks it for ``minutes``."""
    failures, lock = _limits(settings)
    key = _unknown_key(organisation, identifier)
    held = ratelimit.peek(lock, key)
    if not held.allowed:
        raise Locked(utcnow() + dt.timedelta(seconds=held.retry_after))
    verdict = ratelimit.hit(failures, key)
    if not verdict.allowed or verdict.remaining == 0:  # the threshold-th failure (or over it in a race): lock
        ratelimit.hit(lock, key)
        ratelimit.reset(failures, key)
