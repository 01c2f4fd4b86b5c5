"""Creating accounts and finding them for sign-in."""

from __future__ import annotations

import re

import peewee

from models import ROLES, Account, AccountToken, Organisation, SignInRequest, db, utcnow

from . import audit, passwords, sessions

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
USERNAME = re.compile(r"^[\w.@+-]{1,256}$")


class AccountError(Exception):
    """A person-readable reason why an account cannot be created or changed."""


def find_local(organisation: Organisation | None, identifier: str) -> Account | None:
    """The local account with this username or email (email case-insensitive)."""
    identifier = (identifier or "").strip()
    if not identifier or len(identifier) > 320:
        return None
    query = Account.select(Account, Organisation).join(Organisation).where(
        (Account.source == "local")
        & ((Account.username == identifier) | (peewee.fn.LOWER(Account.email) == identifier.lower()))
    )
    if organisation is not None:
        query = query.where(Account.organisation == organisation)
    matches = list(query.limit(2))
    return matches[0] if len(matches) == 1 else None


def create_local(
    organisation: Organisation, username: str, email: str, *, role: str = "user", display_name: str = "",
    password: str | None = None, actor: str = "system",
) -> Account:
    """Create an active local account (with a password when given) and audit it."""
    username = username.strip()
    email = email.strip()
    if not USERNAME.match(username):
        raise AccountError("a username is 1 to 256 letters, digits or . _ @ + -")
    if not EMAIL.match(email):
        raise AccountError(f"{email!r} is not an email address")
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    with db.atomic():
        if Account.select().where((Account.organisation == organisation) & (Account.username == username)).exists():
            raise AccountError(f"the username {username!r} is already taken in {organisation.slug}")
        account = Account.create(
            organisation=organisation, username=username, email=email, role=role,
            display_name=display_name or username, source="local", status="active",
        )
        if password:
            passwords.set_password(account, password)
        audit.record("account.created", actor=actor, organisation=organisation.slug, target=username, details={"role": role})
    return account


# -- lifecycle: what the users page and the team page do to an account ---------------


def _actor_fields(actor: str, acting_for: str | None, ip: str, user_agent: str) -> dict:
    return {"actor": actor, "acting_for": acting_for, "ip": ip, "user_agent": user_agent}


def deactivate(account: Account, *, actor: str, acting_for: str | None = None, ip: str = "", user_agent: str = "",
               by: Account | None = None) -> None:
    """Make ``account`` inactive: its sessions end, its pending sign-in requests are
    cancelled and its emailed links stop working at once (API keys and support tokens
    follow when they exist). ``by`` (the
    acting admin) cannot deactivate themselves, and the last active owner stays."""
    if by is not None and by.id == account.id:
        raise AccountError("you cannot deactivate your own account: ask another admin")
    if account.status == "inactive":
        raise AccountError(f"{account.username} is already inactive")
    with db.atomic():
        _refuse_losing_last_owner(account, "deactivate")
        now = utcnow()
        Account.update(status="inactive", deactivated_at=now, updated_at=now).where(Account.id == account.id).execute()
        ended = sessions.end_all(account)
        cancelled = SignInRequest.update(status="cancelled", decided_at=now).where(
            (SignInRequest.account == account.id) & (SignInRequest.status == "pending")).execute()
        # Links already emailed (invitation, password reset) stop working too.
        AccountToken.update(used_at=now).where((AccountToken.account == account.id)
                                               & AccountToken.used_at.is_null()).execute()
        audit.record("account.deactivated", organisation=account.organisation.slug, target=account.username,
                     details={"sessions_ended": ended, "requests_cancelled": cancelled},
                     **_actor_fields(actor, acting_for, ip, user_agent))
    account.status = "inactive"


def reactivate(account: Account, *, actor: str, acting_for: str | None = None, ip: str = "", user_agent: str = "") -> None:
    """Make an inactive account active again."""
    if account.status != "inactive":
        raise AccountError(f"{account.username} is not inactive")
    now = utcnow()
    Account.update(status="active", deactivated_at=None, failed_attempts=0, locked_until=None, updated_at=now).where(
        Account.id == account.id).execute()
    audit.record("account.reactivated", organisation=account.organisation.slug, target=account.username,
                 **_actor_fields(actor, acting_for, ip, user_agent))
    account.status = "active"


def delete(account: Account, *, actor: str, acting_for: str | None = None, ip: str = "", user_agent: str = "",
           by: Account | None = None) -> None:
    """Delete ``account`` and everything that belongs to it. Refused for the acting admin
    themselves and for the organisation's last active owner."""
    if by is not None and by.id == account.id:
        raise AccountError("you cannot delete your own account: ask another admin")
    with db.atomic():
        _refuse_losing_last_owner(account, "delete")
        username, slug = account.username, account.organisation.slug
        Account.delete().where(Account.id == account.id).execute()
        audit.record("account.deleted", organisation=slug, target=username, details={"role": account.role},
                     **_actor_fields(actor, acting_for, ip, user_agent))


def _refuse_losing_last_owner(account: Account, verb: str) -> None:
    if account.role != "owner" or account.status != "active":
        return
    others = Account.select().where((Account.organisation == account.organisation_id) & (Account.role == "owner")
                                    & (Account.status == "active") & (Account.id != account.id)).count()
    if others == 0:
        raise AccountError(f"{account.username} is the last active owner of {account.organisation.name}: "
                           f"make someone else an owner before you {verb} this account")


def reset_two_factor(account: Account, *, actor: str, acting_for: str | None = None, ip: str = "",
                     user_agent: str = "") -> None:
    """An admin's **Reset 2FA**: clear the TOTP secret and recovery codes, make the user
    enrol again at their next sign-in, and tell them by email."""
    from . import recovery_codes, totp

    if account.status != "active":
        raise AccountError(f"{account.username} is {account.status}: there is no sign-in to reset two-factor for")
    if account.totp_enabled_at is None:
        raise AccountError(f"{account.username} has not set up two-factor authentication: there is nothing to reset")
    was_enabled = True
    totp.clear(account, must_enrol=True)
    sessions.end_all(account)
    recovery_codes.notify_owner(account, "Your two-factor authentication was reset",
                                f"An administrator ({actor}) reset the two-factor authentication of your account. "
                                "You will be asked to set it up again the next time you sign in.")
    audit.record("mfa.reset_by_admin", organisation=account.organisation.slug, target=account.username,
                 details={"was_enabled": was_enabled}, **_actor_fields(actor, acting_for, ip, user_agent))


def send_password_reset(account: Account, *, actor: str, acting_for: str | None = None, ip: str = "",
                        user_agent: str = "") -> None:
    """An admin's **Reset password**: email the user a single-use reset link (the admin
    never sees or sets the password). Directory users change theirs in the directory."""
    from . import password_reset

    if account.source != "local":
        raise AccountError(f"{account.username} signs in with their directory password: reset it in the directory")
    if account.status != "active" or not account.email:
        raise AccountError(f"{account.username} is not active or has no email address: no link can be sent")
    password_reset.send_link(account, ip=ip, requested_by=actor)
    audit.record("password.reset_sent_by_admin", organisation=account.organisation.slug, target=account.username,
                 **_actor_fields(actor, acting_for, ip, user_agent))


def notify_contact_change(account: Account, old_email: str | None, changed: list[str], *, actor: str) -> None:
    """Tell the account's previous address that an admin changed its email or sponsor
    address (both decide where reset links and approval requests go), so a change the
    owner did not expect does not go unnoticed."""
    from . import mailer

    fields = [name for name in ("email", "sponsor_email") if name in changed]
    if not fields or not old_email or "@" not in old_email:
        return
    what = " and ".join({"email": "email address", "sponsor_email": "sponsor (approver) address"}[f] for f in fields)
    organisation = account.organisation
    mailer.queue(
        old_email, f"The {what} of your {organisation.name} account was changed",
        f"Hello {account.display_name or account.username},\n\n"
        f"An administrator ({actor}) changed the {what} of your {organisation.name} account "
        f"({account.username}). Sign-in links, password reset links and approval requests now go to the new "
        f"address.\n\nIf you did not expect this, contact your administrator now.\n",
        organisation=organisation,
    )
