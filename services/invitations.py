"""Invitations of technicians and team users (DESIGN 3.6; SECURITY.md 1–4, 7).

An invited account is ``pending``: it has no password until its owner opens the emailed
link ``/invitation/<token>`` and chooses one. The link carries a 256-bit token whose
SHA-256 is stored in AccountToken (purpose ``invitation``), valid for seven days. Looking
at the link never consumes it; choosing the password does, by one conditional UPDATE
(``... WHERE used_at IS NULL AND expires_at > now``) in the same transaction that makes
the account active, so of parallel uses exactly one wins and nothing is half done.
**Resend invitation** issues a new link; the earlier ones stop working.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models import Account, AccountToken, MailServer, Organisation, db, utcnow

from . import audit, mailer, password_policy, signin, tokens

PURPOSE = "invitation"
LIFETIME = dt.timedelta(days=7)
ROLE_LABELS = {"owner": "owner", "technician": "technician", "team": "team user", "user": "user"}

# What a person is told about a link that cannot be used, by state.
GONE = {
    "unknown": "This invitation link is not valid. Check that you copied the whole address from the email, "
               "or ask your administrator to send the invitation again.",
    "used": "This invitation has already been used: the account is set up. Sign in with the password you chose.",
    "expired": "This invitation has expired: invitation links work for 7 days. "
               "Ask your administrator to resend the invitation.",
}


class InvitationError(Exception):
    """The link cannot be used (``state``: unknown, used, expired) or the password is
    refused (``problems``: the unmet rules; nothing was consumed)."""

    def __init__(self, message: str, *, state: str | None = None, problems: list[str] | None = None):
        self.state = state
        self.problems = problems or []
        super().__init__(message)


def issue(account: Account) -> str:
    """A new invitation token for ``account``; earlier unused ones stop working."""
    now = utcnow()
    revoke(account, now)
    token, token_hash = tokens.new_token()
    AccountToken.create(account=account, purpose=PURPOSE, token_hash=token_hash, created_at=now,
                        expires_at=now + LIFETIME)
    return token


def revoke(account: Account, now: dt.datetime | None = None) -> int:
    """Make every unused invitation link of ``account`` unusable; return how many."""
    return AccountToken.update(used_at=now or utcnow()).where(
        (AccountToken.account == account) & (AccountToken.purpose == PURPOSE) & AccountToken.used_at.is_null()
    ).execute()


def mail_servers_for(organisation: Organisation) -> list[MailServer]:
    """The mail servers an invitation into ``organisation`` goes through: its own, or
    those of the nearest organisation above it that has some (a new sub-organisation
    usually has none yet)."""
    seen: set[int] = set()
    current = organisation
    while current is not None and current.id not in seen:
        seen.add(current.id)
        servers = list(MailServer.select().where(MailServer.organisation == current)
                       .order_by(MailServer.position, MailServer.id))
        if servers:
            return servers
        current = Organisation.get_or_none(Organisation.id == current.parent_id) if current.parent_id else None
    return []


def send(account: Account, *, server_url: str, inviter: str) -> bool:
    """Issue a fresh link for the pending ``account`` and queue the invitation email.
    Returns whether a mail server exists to send it (False: it waits in the outbox)."""
    token = issue(account)
    link = f"{server_url.rstrip('/')}/invitation/{token}"
    organisation = account.organisation
    expires = utcnow() + LIFETIME
    subject = f"You are invited to administer {organisation.name} in Gatehouse"
    text, html = signin.render_email(
        "invitation", subject=subject, person=account.display_name or account.username, username=account.username,
        organisation=organisation.name, account_id=organisation.slug, role=ROLE_LABELS.get(account.role, account.role),
        inviter=inviter, link=link, expires=expires.strftime("%Y-%m-%d %H:%M UTC"), days=LIFETIME.days,
    )
    servers = mail_servers_for(organisation)
    mailer.queue(account.email, subject, text, html, organisation=organisation, mail_servers=servers or None)
    return bool(servers)


@dataclass
class Lookup:
    """What a link is: ``state`` valid, used, expired or unknown; ``row`` when known."""

    state: str
    row: AccountToken | None = None

    @property
    def account(self) -> Account | None:
        return self.row.account if self.row is not None else None


def lookup(token: str | None) -> Lookup:
    """The state of the invitation link ``token``, without consuming it."""
    if not tokens.plausible(token):
        return Lookup("unknown")
    row = (AccountToken.select(AccountToken, Account, Organisation).join(Account).join(Organisation)
           .where((AccountToken.token_hash == tokens.hash_token(token)) & (AccountToken.purpose == PURPOSE)).first())
    if row is None or not tokens.matches(token, row.token_hash):
        return Lookup("unknown")
    if row.used_at is not None or row.account.status != "pending":
        # A link replaced by a newer one (resent) also counts as used: the newer email has the link.
        return Lookup("used", row)
    if row.expires_at <= utcnow():
        return Lookup("expired", row)
    return Lookup("valid", row)


def accept(token: str, password: str, *, ip: str, user_agent: str) -> Account:
    """Set the invited account's password through the link and make the account active.

    The password must meet the organisation's policy (checked before anything changes);
    then one transaction consumes the token (conditional UPDATE: one caller wins), stores
    the password, activates the account and audits it. InvitationError otherwise."""
    found = lookup(token)
    if found.state != "valid":
        if found.row is not None:
            account = found.account
            audit.record("invitation.accept", actor=account.username, target=account.username,
                         organisation=account.organisation.slug, ip=ip, user_agent=user_agent, outcome="failure",
                         details={"reason": found.state})
        raise InvitationError(GONE[found.state], state=found.state)
    account = found.account
    policy = password_policy.policy_for(account.organisation)
    unmet = password_policy.problems(password, account, policy)
    if unmet:
        raise InvitationError("Choose a password that meets every rule.", problems=unmet)
    with db.atomic():
        now = utcnow()
        won = AccountToken.update(used_at=now).where(
            (AccountToken.id == found.row.id) & AccountToken.used_at.is_null() & (AccountToken.expires_at > now)
        ).execute()
        if not won:
            raise InvitationError(GONE["used"], state="used")
        activated = Account.update(status="active", updated_at=now, failed_attempts=0, locked_until=None).where(
            (Account.id == account.id) & (Account.status == "pending")).execute()
        if not activated:
            raise InvitationError(GONE["used"], state="used")
        account.status = "active"
        password_policy.change(account, password, policy)
        revoke(account, now)
        audit.record("invitation.accepted", actor=account.username, target=account.username,
                     organisation=account.organisation.slug, ip=ip, user_agent=user_agent,
                     details={"role": account.role})
    return account
