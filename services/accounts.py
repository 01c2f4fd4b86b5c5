"""Creating accounts and finding them for sign-in."""

from __future__ import annotations

import re

import peewee

from models import ROLES, Account, Organisation, db

from . import audit, passwords

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
