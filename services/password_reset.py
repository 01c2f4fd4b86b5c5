"""Password reset by an emailed single-use link (DESIGN 3.5; SECURITY.md 1–4, 7, 8, 12).

``request_reset`` always behaves the same for the caller (known, unknown, inactive or
directory account: no difference in what it returns); only an active local account with
an email address gets a message, sent by the outbox worker so timing does not differ.
The link carries a 256-bit token whose SHA-256 is stored in AccountToken (purpose
``password_reset``, one hour). Looking at the link never consumes it; setting the new
password does, by one conditional UPDATE, so of parallel uses exactly one wins.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import current_app

from models import Account, AccountToken, Organisation, utcnow

from . import accounts, audit, mailer, password_policy, ratelimit, sessions, tokens

PURPOSE = "password_reset"
LIFETIME = dt.timedelta(hours=1)
REQUESTS_PER_IDENTIFIER = ratelimit.Limit("password-reset-per-identifier", 3, dt.timedelta(minutes=15))
REQUESTS_PER_IP = ratelimit.Limit("password-reset-per-ip", 20, dt.timedelta(minutes=15))


class Throttled(Exception):
    def __init__(self, minutes: int):
        self.minutes = minutes
        super().__init__(f"Too many reset requests. Try again in {minutes} minute{'s' if minutes != 1 else ''}.")


class ResetError(Exception):
    """The link cannot be used (unknown, used or expired) or the password is refused."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = problems or []
        super().__init__(message)


def _server_url() -> str:
    return (current_app.config.get("SERVER_URL") or "").rstrip("/")


def request_reset(organisation: Organisation | None, identifier: str, *, ip: str, user_agent: str) -> None:
    """Email a reset link to the account named by ``identifier`` if it may have one."""
    identifier = (identifier or "").strip()[:320]
    verdict = ratelimit.check_all([
        (REQUESTS_PER_IDENTIFIER, f"{organisation.slug if organisation else '-'}:{identifier}"),
        (REQUESTS_PER_IP, ratelimit.ip_key(ip or "unknown")),
    ])
    if not verdict.allowed:
        raise Throttled(verdict.minutes())
    account = accounts.find_local(organisation, identifier) if organisation is not None else None
    if account is None or account.status != "active" or not account.email:
        audit.record("password.reset_requested", actor=identifier, target=identifier,
                     organisation=organisation.slug if organisation else None, ip=ip, user_agent=user_agent,
                     outcome="failure", details={"sent": False})
        return
    send_link(account, ip=ip)
    audit.record("password.reset_requested", actor=account.username, target=account.username,
                 organisation=account.organisation.slug, ip=ip, user_agent=user_agent, details={"sent": True})


def send_link(account: Account, *, ip: str = "", requested_by: str | None = None) -> None:
    """Queue the email with a fresh reset link for ``account`` (asked for by the user, or
    by the admin named in ``requested_by``)."""
    token = issue(account)
    link = f"{_server_url()}/login/reset/{token}"
    org_name = account.organisation.name
    who = (f"An administrator ({requested_by}) asked for" if requested_by
           else "Someone (hopefully you) asked")
    text = (f"Hello {account.display_name or account.username},\n\n"
            f"{who} a reset of the password of your {org_name} account.\n"
            f"Choose a new password here within one hour:\n\n{link}\n\n"
            f"The link works once. If you did not expect this, ignore this email: your password stays as it is.\n"
            f"Requested from {ip or 'an unknown address'}.\n")
    mailer.queue(account.email, f"Reset your {org_name} password", text, organisation=account.organisation)


def issue(account: Account) -> str:
    """A new reset token for ``account`` (earlier unused ones stop working)."""
    now = utcnow()
    AccountToken.update(used_at=now).where((AccountToken.account == account) & (AccountToken.purpose == PURPOSE)
                                           & AccountToken.used_at.is_null()).execute()
    token, token_hash = tokens.new_token()
    AccountToken.create(account=account, purpose=PURPOSE, token_hash=token_hash, created_at=now, expires_at=now + LIFETIME)
    return token


def find(token: str | None) -> AccountToken | None:
    """The usable reset token for ``token`` (unused, unexpired), without consuming it."""
    if not tokens.plausible(token):
        return None
    row = (AccountToken.select(AccountToken, Account).join(Account)
           .where((AccountToken.token_hash == tokens.hash_token(token)) & (AccountToken.purpose == PURPOSE)).first())
    if row is None or not tokens.matches(token, row.token_hash):
        return None
    if row.used_at is not None or row.expires_at <= utcnow() or row.account.status != "active":
        return None
    return row


@dataclass
class Done:
    account: Account
    sessions_ended: int


def complete(token: str, password: str, *, ip: str, user_agent: str) -> Done:
    """Set the new password through the link: checks the policy, then consumes the token
    by one conditional UPDATE (only one caller wins), stores the password, ends every
    session of the account and emails its owner. ResetError otherwise."""
    row = find(token)
    if row is None:
        raise ResetError("This reset link has expired or has already been used. Ask for a new one.")
    account = row.account
    policy = password_policy.policy_for(account.organisation)
    unmet = password_policy.problems(password, account, policy)
    if unmet:
        raise ResetError("Choose a password that meets every rule.", unmet)
    now = utcnow()
    won = AccountToken.update(used_at=now).where(
        (AccountToken.id == row.id) & AccountToken.used_at.is_null() & (AccountToken.expires_at > now)
    ).execute()
    if not won:
        raise ResetError("This reset link has expired or has already been used. Ask for a new one.")
    password_policy.change(account, password, policy)
    Account.update(failed_attempts=0, locked_until=None).where(Account.id == account.id).execute()
    ended = sessions.end_all(account)
    notify_changed(account, ip=ip, how="with a reset link")
    audit.record("password.reset", actor=account.username, target=account.username, organisation=account.organisation.slug,
                 ip=ip, user_agent=user_agent, details={"sessions_ended": ended})
    return Done(account, ended)


def notify_changed(account: Account, *, ip: str, how: str) -> None:
    """Tell the account owner that the password changed."""
    if not account.email:
        return
    org_name = account.organisation.name
    text = (f"Hello {account.display_name or account.username},\n\n"
            f"The password of your {org_name} account was changed {how} from {ip or 'an unknown address'}.\n"
            f"If this was not you, reset your password now and tell your administrator.\n")
    mailer.queue(account.email, f"Your {org_name} password was changed", text, organisation=account.organisation)
