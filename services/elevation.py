"""Elevation (DESIGN 3.8, SECURITY.md 16): a team user whom an owner allowed to elevate
(``Account.may_elevate``) re-enters the password, and the TOTP code when two-factor
authentication is on, and the browser's session is *replaced* by an owner session:
the old session row ends, a new one (new token, so a new cookie) acts with the role
``owner`` for 15 minutes, after which it is refused like any expired session and the
person signs in again. Signing out ends it; :func:`drop` returns early to an ordinary
session. Every attempt, refusal and ending is in the audit log.

The password is checked the way a sign-in checks it (argon2 for local accounts, an LDAP
bind for directory accounts) and counts towards the same lockout and per-IP limit;
the code is single use (``services.totp.verify``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from models import Account, UserSession, db, utcnow

from . import access, audit, lockout, passwords, sessions, totp
from .directory import DirectoryError, bind_as_user, find_user

ELEVATED_ROLE = "owner"
LIFETIME = dt.timedelta(minutes=15)
LIFETIME_MINUTES = int(LIFETIME.total_seconds() // 60)


class ElevationError(Exception):
    """Elevation refused; ``str()`` is a sentence for the person. ``field`` names the form
    field the message belongs under (``password``, ``code``) or is None for the page;
    ``status`` is the HTTP status a view answers with."""

    field: str | None = None
    status = 422


class NotAllowed(ElevationError):
    """This account or session may not elevate (not a team user, not allowed, ...)."""

    status = 403


class WrongPassword(ElevationError):
    """The password is missing or wrong."""

    field = "password"


class WrongCode(ElevationError):
    """Two-factor authentication is on and the code is missing, wrong or already used."""

    field = "code"


class Throttled(ElevationError):
    """The account is locked, or the client's network made too many attempts."""

    field = "password"
    status = 429


class Unavailable(ElevationError):
    """The account's directory cannot check the password right now."""

    field = "password"
    status = 503


@dataclass(frozen=True)
class Elevated:
    """A new session: the token for the cookie and when it ends (naive UTC)."""

    token: str
    expires_at: dt.datetime


def is_elevated(session: UserSession | None) -> bool:
    """Whether ``session`` acts with a role other than its account's own."""
    return session is not None and bool(session.acting_role)


def seconds_left(session: UserSession, now: dt.datetime | None = None) -> int:
    """Seconds (rounded up, so a countdown never ends early) until ``session`` ends; 0 once it has."""
    return max(0, math.ceil((session.expires_at - (now or utcnow())).total_seconds()))


def minutes_left(session: UserSession, now: dt.datetime | None = None) -> int:
    """Whole minutes (rounded up) until ``session`` ends; 0 once it has."""
    seconds = (session.expires_at - (now or utcnow())).total_seconds()
    return max(0, math.ceil(seconds / 60))


def refusal(account: Account, session: UserSession | None) -> str | None:
    """Why ``account`` cannot elevate from ``session`` (a sentence), or None when it may."""
    if account.status != "active":
        return "This account is not active."
    if session is None or session.ended_at is not None or session.account_id != account.id:
        return "This sign-in has ended. Sign in again, then elevate."
    if is_elevated(session):
        return (f"This session is already elevated to {session.acting_role}. "
                f"End the elevation first, or wait until it runs out.")
    if account.role != "team":
        if account.role in ("owner", "technician"):
            return f"Your account is {'an owner' if account.role == 'owner' else 'a technician'} already: it has every right elevation would give."
        return "Only team users can elevate, and only when an owner allows it."
    if not account.may_elevate:
        return (f"An owner has not allowed your account to elevate. Ask {access.whom_to_ask(account)} to turn on "
                f"“Allow this team user to elevate to owner” for you on the Technicians & team page.")
    if account.must_enrol_totp:
        return "Set up two-factor authentication first, then elevate."
    return None


def _fail(account: Account, error: ElevationError, reason: str, *, ip: str, user_agent: str,
          outcome: str = "failure") -> ElevationError:
    audit.record("session.elevation_failed", actor=account.username, target=account.username,
                 organisation=account.organisation.slug, ip=ip, user_agent=user_agent, outcome=outcome,
                 details={"reason": reason, "role": ELEVATED_ROLE})
    return error


def record_refusal(account: Account, reason: str, *, ip: str = "", user_agent: str = "") -> None:
    """Audit an attempt refused before any check (see :func:`refusal`)."""
    _fail(account, NotAllowed(reason), reason, ip=ip, user_agent=user_agent, outcome="denied")


def _password_matches(account: Account, password: str) -> bool:
    """The sign-in's own check: argon2 for a local account, an LDAP bind for a directory
    account (found again by its login name and held to its stored entry id).
    DirectoryError when the directory does not answer."""
    if account.source == "local":
        return passwords.check_password(account, password)
    if account.directory is None:
        raise DirectoryError("the account's directory is no longer configured")
    user = find_user(account.directory, account.username)
    if user is None or (user.unique_id or user.dn) != account.external_id:
        return False
    return bind_as_user(account.directory, user, password)


def ended_elevation(token: str | None, now: dt.datetime | None = None) -> UserSession | None:
    """The elevated session of ``token`` when it is over because its time ran out
    (not because someone signed out or ended it), to tell the person why."""
    if not token or len(token) > 128:
        return None
    row = UserSession.get_or_none(UserSession.token_hash == sessions.token_hash(token))
    if row is None or not row.acting_role or row.expires_at > (now or utcnow()):
        return None
    return row


def _replace(session: UserSession, account: Account, *, ip: str, user_agent: str, **options) -> str | None:
    """End ``session`` and start its successor (a new token); None when it had already
    ended. One conditional UPDATE, so two requests racing from one session get one."""
    with db.atomic():
        ended = UserSession.update(ended_at=utcnow()).where(
            (UserSession.id == session.id) & UserSession.ended_at.is_null()).execute()
        if ended != 1:
            return None
        return sessions.start(account, session.method, ip=ip, user_agent=user_agent, sign_in=False, **options)


def elevate(account: Account, session: UserSession | None, password: str, code: str | None = None, *,
            ip: str = "", user_agent: str = "") -> Elevated:
    """Replace ``session`` by an owner session of 15 minutes and return its token.

    Raises NotAllowed (not a team user, not allowed to elevate, inactive, session over
    or already elevated), WrongPassword, WrongCode (two-factor on: missing, wrong or
    replayed), Throttled (account locked, too many attempts from the network) or
    Unavailable (the directory does not answer). Every outcome is audited."""
    account = Account.get_by_id(account.id)  # the current flags, not the ones the request loaded
    why = refusal(account, session)
    if why:
        raise _fail(account, NotAllowed(why), why, ip=ip, user_agent=user_agent, outcome="denied")
    password = password if isinstance(password, str) else ""
    if not password or len(password) > passwords.MAX_PASSWORD_LENGTH:
        raise WrongPassword("Enter your password.")
    two_factor = totp.is_enabled(account)
    if two_factor and not totp.normalise(code):
        typed = isinstance(code, str) and code.strip()
        raise WrongCode("That is not a 6-digit code." if typed else "Enter the 6-digit code from your authenticator app.")
    try:
        lockout.check_ip(ip)
        # Counted before the password is checked, exactly like a sign-in (services.lockout).
        lockout.reserve(account, lockout.settings_for(account.organisation), ip=ip, user_agent=user_agent)
    except lockout.IpThrottled as exc:
        raise _fail(account, Throttled(str(exc)), "throttled per IP", ip=ip, user_agent=user_agent, outcome="denied")
    except lockout.Locked as exc:
        raise _fail(account, Throttled(str(exc)), "locked", ip=ip, user_agent=user_agent, outcome="denied")
    try:
        matches = _password_matches(account, password)
    except DirectoryError:
        raise _fail(account, Unavailable("Your organisation's directory cannot be reached right now. "
                                         "Try again in a few minutes."),
                    "directory unreachable", ip=ip, user_agent=user_agent, outcome="error")
    if not matches:
        raise _fail(account, WrongPassword("That is not your password."), "wrong password", ip=ip, user_agent=user_agent)
    if two_factor and not totp.verify(account, code or ""):
        raise _fail(account, WrongCode("That code is not right, or was already used. Wait for the next code and try again."),
                    "wrong or used code", ip=ip, user_agent=user_agent)
    lockout.succeeded(account)
    token = _replace(session, account, ip=ip, user_agent=user_agent, acting_role=ELEVATED_ROLE, lifetime=LIFETIME)
    if token is None:
        raise _fail(account, NotAllowed("This sign-in has ended. Sign in again, then elevate."), "session ended",
                    ip=ip, user_agent=user_agent, outcome="denied")
    new = UserSession.get(UserSession.token_hash == sessions.token_hash(token))
    audit.record("session.elevated", actor=account.username, target=account.username,
                 organisation=account.organisation.slug, ip=ip, user_agent=user_agent,
                 details={"role": ELEVATED_ROLE, "minutes": LIFETIME_MINUTES, "second_factor": two_factor,
                          "ends_at": new.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")})
    return Elevated(token, new.expires_at)


def drop(account: Account, session: UserSession | None, *, ip: str = "", user_agent: str = "") -> str:
    """End an elevated ``session`` early: it is replaced by a fresh ordinary session of
    the account's own role, whose token is returned. NotAllowed when it is not elevated
    (or already over)."""
    if not is_elevated(session) or session.account_id != account.id:
        raise NotAllowed("This session is not elevated.")
    left = minutes_left(session)
    token = _replace(session, account, ip=ip, user_agent=user_agent)
    if token is None:
        raise NotAllowed("This sign-in has ended. Sign in again.")
    audit.record("session.elevation_ended", actor=account.username, target=account.username,
                 organisation=account.organisation.slug, ip=ip, user_agent=user_agent,
                 details={"role": session.acting_role, "reason": "ended by the user", "minutes_left": left})
    return token
