"""Server-side sessions: a random token in an HttpOnly cookie, its hash in the database.

Signing in always creates a new token (the id rotates); signing out, deactivation or an
admin ends the row, after which the old cookie is refused. Idle and absolute timeouts
are enforced here, on the server clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from models import Account, UserSession, utcnow

from . import audit

IDLE_TIMEOUT = dt.timedelta(minutes=30)
ABSOLUTE_TIMEOUT = dt.timedelta(hours=12)
# Refreshing last_seen_at on every request would be one write per page: do it at most this often.
TOUCH_INTERVAL = dt.timedelta(minutes=1)


def token_hash(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start(account: Account, method: str, ip: str = "", user_agent: str = "", *, acting_role: str | None = None,
          lifetime: dt.timedelta | None = None, sign_in: bool = True) -> str:
    """Create a session for ``account``; return the token for the cookie.

    ``acting_role`` makes it an elevated session acting with that role instead of the
    account's own; ``lifetime`` replaces the absolute timeout (never longer than it).
    ``sign_in=False`` (a session replacing another, as elevation does) leaves the
    account's last sign-in time alone."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    lifetime = min(lifetime, ABSOLUTE_TIMEOUT) if lifetime is not None else ABSOLUTE_TIMEOUT
    UserSession.create(
        token_hash=token_hash(token), account=account, method=method, ip=ip[:64], user_agent=user_agent[:512],
        created_at=now, last_seen_at=now, expires_at=now + lifetime, acting_role=acting_role,
    )
    if sign_in:
        Account.update(last_sign_in_at=now).where(Account.id == account.id).execute()
    return token


def load(token: str | None) -> UserSession | None:
    """The live session for ``token`` (with its account), or None when unknown, ended,
    idle too long, past its absolute lifetime, or its account is not active."""
    if not token or len(token) > 128:
        return None
    now = utcnow()
    session = (
        UserSession.select(UserSession, Account)
        .join(Account)
        .where(UserSession.token_hash == token_hash(token))
        .first()
    )
    if session is None or session.ended_at is not None:
        return None
    if session.expires_at <= now or session.last_seen_at + IDLE_TIMEOUT <= now or session.account.status != "active":
        if end_session(session) and session.acting_role and session.account.status == "active":
            # An elevated session is over: said in the audit log once, by the request that ends it.
            audit.record("session.elevation_ended", actor=session.account.username, target=session.account.username,
                         organisation=session.account.organisation.slug, ip=session.ip, user_agent=session.user_agent,
                         details={"role": session.acting_role,
                                  "reason": "time ran out" if session.expires_at <= now else "idle too long"})
        return None
    if now - session.last_seen_at >= TOUCH_INTERVAL:
        UserSession.update(last_seen_at=now).where(UserSession.id == session.id).execute()
    return session


def end_session(session: UserSession) -> bool:
    """End one session; False when it had already ended."""
    return UserSession.update(ended_at=utcnow()).where(
        (UserSession.id == session.id) & UserSession.ended_at.is_null()).execute() == 1


def end(token: str | None) -> None:
    """End the session of ``token`` if it exists."""
    if token:
        UserSession.update(ended_at=utcnow()).where(
            (UserSession.token_hash == token_hash(token)) & UserSession.ended_at.is_null()
        ).execute()


def end_all(account: Account) -> int:
    """End every session of ``account`` (deactivation, password change); return how many."""
    return UserSession.update(ended_at=utcnow()).where(
        (UserSession.account == account) & UserSession.ended_at.is_null()
    ).execute()
