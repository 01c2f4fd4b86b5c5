"""Technicians and team users: the admins of an organisation and of those below it
(DESIGN.md §1 and §3.6).

Who may do what to whom, in one place (:func:`refusal`), so the list shows only the
actions that would work and every action refuses the others with a person-readable
reason:

=================  =========================================================
Edit               any member whose role is not above yours
Resend invitation  only while the account is **pending**
Reset password     only **active** local accounts with an email address
Reset 2FA          only **active** accounts that have two-factor on
Deactivate         only **active** accounts; not yourself; not the last active owner
Reactivate         only **inactive** accounts
Delete             any status; not yourself; not the last active owner
=================  =========================================================

Nobody acts on an account whose role is above their own, or gives a role above their
own (``access.can_grant``): a technician neither creates nor promotes owners. Only an
owner allows a team user to elevate (elevation makes them an owner for a while); extra
permissions (``models.PERMISSIONS``) are given by admins who have them themselves.

Accounts are made two ways: **invite** (pending, an emailed link valid 7 days to choose a
password, see services/invitations.py) or **create with a generated password**, shown to
the admin once. Such a password is shown only once and is the login itself, so it does
not have to be changed at the first sign-in (``must_change_password`` stays False); the password policy's expiry
still applies.

Every change runs in one transaction with its audit event: refused or failed, nothing is
half done. Services never see the request: the acting admin comes in as an :class:`Actor`.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field

import peewee

from models import PERMISSIONS, Account, Organisation, PasswordPolicy, db, is_postgres, utcnow

from . import access, accounts, audit, invitations, password_policy

TEAM_ROLES = ("owner", "technician", "team")
ROLE_LABELS = {"owner": "Owner", "technician": "Technician", "team": "Team user", "user": "User"}
STATUS_LABELS = {"pending": "Pending", "active": "Active", "inactive": "Inactive"}
PERMISSION_LABELS = {"password_policy": "Edit the password policy"}
ACTIONS = ("edit", "resend", "reset_password", "reset_2fa", "deactivate", "reactivate", "delete")
BULK_ACTIONS = ("deactivate", "delete")
GENERATED_LENGTH = 20
_SPECIAL = "-_.!@#%+=?"
_ALPHABET = string.ascii_letters + string.digits + _SPECIAL


class TeamError(Exception):
    """A person-readable reason why something was refused; ``field`` names the form
    field it belongs to, when there is one."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


class BulkRefused(TeamError):
    """A bulk action refused as a whole: ``problems`` lists (username, reason)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("Nothing was changed: " + "; ".join(f"{name}: {reason}" for name, reason in problems) + ".")


@dataclass
class Actor:
    """The admin doing something, and what the audit log records about them."""

    account: Account
    role: str  # the role the session acts with (an elevated team user acts as owner)
    name: str
    acting_for: str | None = None
    ip: str = ""
    user_agent: str = ""
    grant_role: str | None = None  # what bounds the roles and rights they give: the account's own role

    @property
    def granting(self) -> str:
        """The role whose rights this actor may give (never raised by elevation)."""
        return self.grant_role or self.role

    @property
    def organisation(self) -> Organisation:
        return self.account.organisation

    def audit_fields(self) -> dict:
        return {"actor": self.name, "acting_for": self.acting_for, "ip": self.ip, "user_agent": self.user_agent}


def _transaction():
    # SQLite: take the write lock up front, so two admins acting at once queue instead of
    # reading the same "last owner" count.
    return db.atomic() if is_postgres() else db.atomic(lock_type="IMMEDIATE")


def _name(account: Account) -> str:
    return account.username


# -- reading ------------------------------------------------------------------------


def managed_organisations(organisation: Organisation) -> list[Organisation]:
    """``organisation`` and every organisation below it, parents first."""
    ids = access.managed_organisation_ids(organisation)
    by_id = {org.id: org for org in Organisation.select().where(Organisation.id.in_(ids))}
    return [by_id[i] for i in ids if i in by_id]


def members(organisation: Organisation, *, search: str = "", status: str = "") -> list[Account]:
    """The owners, technicians and team users of ``organisation`` and the organisations
    below it, optionally filtered by a search over username, name and email and by status."""
    query = (Account.select(Account, Organisation).join(Organisation)
             .where(Account.organisation.in_(access.managed_organisation_ids(organisation))
                    & Account.role.in_(TEAM_ROLES)))
    search = (search or "").strip()[:100]
    if search:
        query = query.where(Account.username.contains(search) | Account.display_name.contains(search)
                            | Account.email.contains(search))
    if status in STATUS_LABELS:
        query = query.where(Account.status == status)
    rank = peewee.Case(Account.role, [("owner", 0), ("technician", 1), ("team", 2)], 3)
    # The admin's own organisation first, then the others by name.
    own_first = peewee.Case(None, [(Account.organisation == organisation.id, 0)], 1)
    return list(query.order_by(own_first, Organisation.name, rank, Account.username))


def grantable_roles(actor_role: str) -> list[str]:
    """The team roles someone acting as ``actor_role`` may give."""
    return [role for role in TEAM_ROLES if access.can_grant(actor_role, role)]


def grantable_permissions(actor: Actor) -> list[str]:
    """The extra permissions ``actor`` may give a team user: those they have themselves."""
    return [name for name in PERMISSIONS if access.can(actor.granting, name, actor.account.permissions or ())]


def _other_active_owners(account: Account) -> int:
    return Account.select().where((Account.organisation == account.organisation_id) & (Account.role == "owner")
                                  & (Account.status == "active") & (Account.id != account.id)).count()


def _is_last_owner(account: Account) -> bool:
    return account.role == "owner" and account.status == "active" and _other_active_owners(account) == 0


def refusal(action: str, account: Account, actor: Actor) -> str | None:
    """Why ``actor`` cannot do ``action`` to ``account`` now (None: they can)."""
    if action not in ACTIONS:
        return "that is not something the team page does"
    if not access.manages(actor.organisation, account.organisation_id):
        return "that account is not in an organisation you manage"
    if access.rank(account.role) > access.rank(actor.granting):
        role = ROLE_LABELS[account.role].lower()
        article = "an" if role[0] in "aeiou" else "a"
        return f"only {article} {role} can change {article} {role}'s account"
    is_self = account.id == actor.account.id
    status = account.status
    if action == "resend":
        if status != "pending":
            return f"Resend invitation works only while the invitation is pending; {_name(account)} is {status}"
        if not account.email:
            return f"{_name(account)} has no email address"
    elif action == "reset_password":
        if status != "active":
            return f"Reset password works only for active accounts; {_name(account)} is {status}"
        if account.source != "local":
            return f"{_name(account)} signs in with their directory password: reset it in the directory"
        if not account.email:
            return f"{_name(account)} has no email address to send the link to"
    elif action == "reset_2fa":
        if status != "active":
            return f"Reset 2FA works only for active accounts; {_name(account)} is {status}"
        if account.totp_enabled_at is None:
            return f"{_name(account)} has not set up two-factor authentication: there is nothing to reset"
        if is_self:
            return "turn your own two-factor authentication off on your two-factor page"
    elif action == "deactivate":
        if is_self:
            return "you cannot deactivate your own account: ask another admin"
        if status != "active":
            return (f"Deactivate works only for active accounts; {_name(account)} is {status}"
                    + (" (delete the invitation instead)" if status == "pending" else ""))
        if _is_last_owner(account):
            return (f"{_name(account)} is the last active owner of {account.organisation.name}: "
                    "make someone else an owner first")
    elif action == "reactivate":
        if status != "inactive":
            return f"Reactivate works only for inactive accounts; {_name(account)} is {status}"
    elif action == "delete":
        if is_self:
            return "you cannot delete your own account: ask another admin"
        if _is_last_owner(account):
            return (f"{_name(account)} is the last active owner of {account.organisation.name}: "
                    "make someone else an owner first")
    return None


def available(account: Account, actor: Actor) -> list[str]:
    """The actions the list offers for ``account`` (those :func:`refusal` allows)."""
    return [action for action in ACTIONS if refusal(action, account, actor) is None]


def _check(action: str, account: Account, actor: Actor) -> None:
    reason = refusal(action, account, actor)
    if reason:
        audit.record(f"team.{action}", organisation=account.organisation.slug, target=account.username,
                     outcome="denied", details={"reason": reason}, **actor.audit_fields())
        raise TeamError(reason[0].upper() + reason[1:] + ".")


# -- creating -------------------------------------------------------------------------


def generate_password(organisation: Organisation) -> str:
    """A random password (``secrets``, about 128 bits) that meets ``organisation``'s policy."""
    policy = password_policy.policy_for(organisation)
    while True:
        candidate = "".join(secrets.choice(_ALPHABET) for _ in range(GENERATED_LENGTH))
        kinds = (string.ascii_uppercase, string.ascii_lowercase, string.digits, _SPECIAL)
        if all(any(c in kind for c in candidate) for kind in kinds) and all(
                rule.ok for rule in password_policy.check(candidate, None, policy)):
            return candidate


@dataclass
class NewMember:
    """What the invite / create form gives."""

    organisation_id: int | str | None
    username: str
    email: str
    display_name: str = ""
    role: str = "technician"
    may_elevate: bool = False
    permissions: list[str] = field(default_factory=list)


def _target_organisation(actor: Actor, organisation_id) -> Organisation:
    try:
        wanted = int(organisation_id)
    except (TypeError, ValueError):
        raise TeamError("Choose an organisation.", "organisation") from None
    if not access.manages(actor.organisation, wanted):
        raise TeamError("You do not manage that organisation: choose one from the list.", "organisation")
    return Organisation.get_by_id(wanted)


def _check_grant(actor: Actor, role: str, may_elevate: bool | None, permissions: list[str] | None,
                 current: Account | None = None) -> tuple[bool, list[str]]:
    """The role, elevation and permissions to store, or TeamError. ``None`` for
    elevation or permissions keeps what ``current`` has."""
    if may_elevate is None:
        may_elevate = bool(current.may_elevate) if current is not None else False
    if permissions is None:
        permissions = list(current.permissions or ()) if current is not None else []
    if role not in TEAM_ROLES:
        raise TeamError("Choose owner, technician or team user.", "role")
    if not access.can_grant(actor.granting, role) and not (current is not None and current.role == role):
        raise TeamError(f"You cannot give the {ROLE_LABELS[role].lower()} role: nobody gives a role above their own.", "role")
    unknown = [name for name in permissions if name not in PERMISSIONS]
    if unknown:
        raise TeamError("Choose permissions from the list.", "permissions")
    if role != "team":
        return False, []  # elevation and extra permissions are for team users only
    before_elevate = bool(current.may_elevate) if current is not None else False
    before = set(current.permissions or ()) if current is not None else set()
    if current is not None and current.id == actor.account.id and (
            bool(may_elevate) != before_elevate or before != set(permissions)):
        raise TeamError("You cannot change your own rights: ask an owner.", "permissions")
    if bool(may_elevate) != before_elevate and actor.granting != "owner":
        raise TeamError("Only an owner can allow a team user to elevate to owner.", "may_elevate")
    changed = before.symmetric_difference(permissions)
    allowed = set(grantable_permissions(actor))
    if changed - allowed:
        raise TeamError("You can only give permissions you have yourself.", "permissions")
    return bool(may_elevate), sorted(set(permissions))


def _email_taken(organisation: Organisation, email: str, except_id: int | None = None) -> Account | None:
    query = Account.select().where((Account.organisation == organisation)
                                   & (peewee.fn.LOWER(Account.email) == email.strip().lower()))
    if except_id is not None:
        query = query.where(Account.id != except_id)
    return query.first()


def _create(actor: Actor, new: NewMember, *, password: str | None) -> Account:
    organisation = _target_organisation(actor, new.organisation_id)
    may_elevate, permissions = _check_grant(actor, new.role, new.may_elevate, list(new.permissions or ()))
    email = (new.email or "").strip()
    if email and (taken := _email_taken(organisation, email)) is not None:
        raise TeamError(f"{email} is already the email address of {taken.username} in {organisation.name}.", "email")
    display_name = (new.display_name or "").strip()[:200]
    try:
        account = accounts.create_local(organisation, new.username, email, role=new.role, display_name=display_name,
                                        password=password, actor=actor.name)
    except accounts.AccountError as exc:
        message = str(exc)
        raise TeamError(message[0].upper() + message[1:] + ".",
                        "email" if "email" in message else "username") from None
    Account.update(may_elevate=may_elevate, permissions=permissions).where(Account.id == account.id).execute()
    account.may_elevate, account.permissions = may_elevate, permissions
    return account


def invite(actor: Actor, new: NewMember, *, server_url: str) -> tuple[Account, bool]:
    """Create a pending account and email it an invitation to choose a password.
    Returns the account and whether a mail server exists to send the email."""
    with _transaction():
        account = _create(actor, new, password=None)
        now = utcnow()
        Account.update(status="pending", invited_at=now, updated_at=now).where(Account.id == account.id).execute()
        account.status, account.invited_at = "pending", now
        sendable = invitations.send(account, server_url=server_url, inviter=actor.account.display_name or actor.name)
        audit.record("team.invited", organisation=account.organisation.slug, target=account.username,
                     details={"role": account.role, "email": account.email, "may_elevate": account.may_elevate,
                              "permissions": account.permissions}, **actor.audit_fields())
    return account, sendable


def create_with_password(actor: Actor, new: NewMember) -> tuple[Account, str]:
    """Create an active account with a generated password; the password is returned once
    (shown to the admin, stored only as a hash)."""
    with _transaction():
        organisation = _target_organisation(actor, new.organisation_id)
        password = generate_password(organisation)
        account = _create(actor, new, password=password)
        audit.record("team.created", organisation=account.organisation.slug, target=account.username,
                     details={"role": account.role, "email": account.email, "may_elevate": account.may_elevate,
                              "permissions": account.permissions, "generated_password": True},
                     **actor.audit_fields())
    return account, password


# -- changing -------------------------------------------------------------------------


def update(actor: Actor, account: Account, *, display_name: str, email: str | None, role: str,
           may_elevate: bool | None = None, permissions: list[str] | None = None) -> Account:
    """Edit a member: name, email (local accounts), role, elevation and permissions
    (``None``: unchanged)."""
    _check("edit", account, actor)
    with _transaction():
        account = Account.get_by_id(account.id)  # fresh, inside the lock
        if role != account.role:
            if account.id == actor.account.id:
                raise TeamError("You cannot change your own role: ask another owner.", "role")
            if _is_last_owner(account):
                raise TeamError(f"{account.username} is the last active owner of {account.organisation.name}: "
                                "make someone else an owner first.", "role")
        may_elevate, permissions = _check_grant(actor, role, may_elevate, permissions, current=account)
        changes: dict = {}
        display_name = (display_name or "").strip()[:200] or account.username
        if display_name != account.display_name:
            changes["display_name"] = display_name
        if account.source == "local" and email is not None:
            email = email.strip()
            if not accounts.EMAIL.match(email) or len(email) > 320:
                raise TeamError("Enter one email address, like name@example.com.", "email")
            if email != account.email:
                if (taken := _email_taken(account.organisation, email, account.id)) is not None:
                    raise TeamError(f"{email} is already the email address of {taken.username}.", "email")
                changes["email"] = email
        if role != account.role:
            changes["role"] = role
        if may_elevate != bool(account.may_elevate):
            changes["may_elevate"] = may_elevate
        if permissions != sorted(account.permissions or ()):
            changes["permissions"] = permissions
        if not changes:
            return account
        before = {key: getattr(account, key) for key in changes}
        accounts.notify_contact_change(account, account.email, list(changes), actor=actor.name)
        Account.update(updated_at=utcnow(), **changes).where(Account.id == account.id).execute()
        if "role" in changes or "may_elevate" in changes:
            # A changed role must not live on in sessions that were granted the old one.
            from . import sessions
            sessions.end_all(account)
        audit.record("team.updated", organisation=account.organisation.slug, target=account.username,
                     details={"before": before, "after": changes}, **actor.audit_fields())
    return Account.get_by_id(account.id)


def resend(actor: Actor, account: Account, *, server_url: str) -> bool:
    """**Resend invitation** (pending only): a new 7-day link; the earlier ones stop working."""
    _check("resend", account, actor)
    with _transaction():
        now = utcnow()
        Account.update(invited_at=now, updated_at=now).where(Account.id == account.id).execute()
        sendable = invitations.send(account, server_url=server_url, inviter=actor.account.display_name or actor.name)
        audit.record("team.invitation_resent", organisation=account.organisation.slug, target=account.username,
                     details={"email": account.email}, **actor.audit_fields())
    return sendable


def reset_password(actor: Actor, account: Account) -> None:
    """**Reset password**: email a single-use reset link (the admin never sees it)."""
    _check("reset_password", account, actor)
    with _transaction():
        accounts.send_password_reset(account, **actor.audit_fields())


def reset_two_factor(actor: Actor, account: Account) -> None:
    """**Reset 2FA**: clear it, end the sessions, email the member; enrolment next sign-in."""
    _check("reset_2fa", account, actor)
    with _transaction():
        accounts.reset_two_factor(account, **actor.audit_fields())


def _deactivate(actor: Actor, account: Account) -> None:
    accounts.deactivate(account, by=actor.account, **actor.audit_fields())  # emailed links stop working too


def deactivate(actor: Actor, account: Account) -> None:
    """**Deactivate**: the account is inactive; its sessions end, its pending sign-in
    requests are cancelled and its emailed links stop working."""
    _check("deactivate", account, actor)
    with _transaction():
        try:
            _deactivate(actor, account)
        except accounts.AccountError as exc:
            raise TeamError(str(exc)[0].upper() + str(exc)[1:] + ".") from None


def reactivate(actor: Actor, account: Account) -> None:
    """**Reactivate** an inactive account (it signs in with its old password again)."""
    _check("reactivate", account, actor)
    with _transaction():
        accounts.reactivate(account, **actor.audit_fields())


def delete(actor: Actor, account: Account) -> None:
    """**Delete** the account and everything that belongs to it."""
    _check("delete", account, actor)
    with _transaction():
        try:
            accounts.delete(account, by=actor.account, **actor.audit_fields())
        except accounts.AccountError as exc:
            raise TeamError(str(exc)[0].upper() + str(exc)[1:] + ".") from None


def bulk_problems(action: str, selected: list[Account], actor: Actor) -> list[tuple[str, str]]:
    """Why each of ``selected`` cannot get ``action`` ((username, reason) pairs), including
    a selection that would leave an organisation without an active owner."""
    if action not in BULK_ACTIONS:
        return [("", "choose deactivate or delete")]
    problems = [(account.username, reason) for account in selected
                if (reason := refusal(action, account, actor)) is not None]
    chosen = {account.id for account in selected}
    for org_id in {account.organisation_id for account in selected}:
        owners = [a for a in selected if a.organisation_id == org_id and a.role == "owner" and a.status == "active"]
        if owners and not Account.select().where(
                (Account.organisation == org_id) & (Account.role == "owner") & (Account.status == "active")
                & Account.id.not_in(list(chosen))).exists():
            names = ", ".join(a.username for a in owners)
            problems.append((names, f"{'they are' if len(owners) > 1 else 'this is'} the last active owner"
                                    f"{'s' if len(owners) > 1 else ''} of {owners[0].organisation.name}"))
    return problems


def bulk(actor: Actor, action: str, selected: list[Account]) -> int:
    """Deactivate or delete every account in ``selected``, all or nothing: one refusal
    and nothing changes (BulkRefused lists why). Returns how many were changed."""
    if not selected:
        raise TeamError("Select at least one account first.")
    problems = bulk_problems(action, selected, actor)
    if problems:
        raise BulkRefused(problems)
    with _transaction():
        for account in selected:
            try:
                if action == "deactivate":
                    _deactivate(actor, account)
                else:
                    accounts.delete(account, by=actor.account, **actor.audit_fields())
            except accounts.AccountError as exc:
                raise BulkRefused([(account.username, str(exc))]) from None
        audit.record(f"team.bulk_{action}", organisation=actor.organisation.slug,
                     target=", ".join(a.username for a in selected)[:320],
                     details={"count": len(selected), "accounts": [a.username for a in selected]},
                     **actor.audit_fields())
    return len(selected)


# -- the first owner ----------------------------------------------------------------------

SLUG = re.compile(r"^[a-z0-9-]{2,64}$")
_SETUP_LOCK_ID = 0x6A7366  # arbitrary constant: "first-owner setup" advisory lock (PostgreSQL)


class SetupClosed(Exception):
    """An owner exists already: the one-time setup is over."""


def setup_open() -> bool:
    """Whether the one-time setup may run: no owner exists anywhere."""
    return not Account.select().where(Account.role == "owner").exists()


def create_first_owner(*, organisation_slug: str, organisation_name: str, username: str, email: str, password: str,
                       display_name: str = "", ip: str = "", user_agent: str = "") -> Account:
    """The one-time setup: create the organisation (or use the one with that slug, when
    it has no owner) and its first owner with ``password``. Refused with SetupClosed as
    soon as any owner exists — checked under a lock, so two setups racing make one owner."""
    slug = (organisation_slug or "").strip().lower()
    name = (organisation_name or "").strip()
    if not SLUG.match(slug):
        raise TeamError("An Account ID is 2 to 64 lower-case letters, digits or hyphens.", "organisation_slug")
    if not name or len(name) > 200:
        raise TeamError("Give the organisation a name (at most 200 characters).", "organisation_name")
    with _transaction():
        if is_postgres():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK_ID,))
        if not setup_open():
            raise SetupClosed("an owner exists already")
        organisation = Organisation.get_or_none(Organisation.slug == slug)
        created = organisation is None
        policy = password_policy.policy_for(organisation) if organisation else PasswordPolicy()
        unmet = password_policy.problems(password or "", Account(), policy)
        if unmet:
            raise TeamError("Choose a password that meets every rule: " + "; ".join(unmet) + ".", "password")
        if organisation is None:
            organisation = Organisation.create(slug=slug, name=name)
        try:
            account = accounts.create_local(organisation, username, email, role="owner",
                                            display_name=(display_name or "").strip()[:200], password=password,
                                            actor="setup")
        except accounts.AccountError as exc:
            message = str(exc)
            raise TeamError(message[0].upper() + message[1:] + ".", "email" if "email" in message else "username") from None
        audit.record("setup.completed", actor=account.username, target=account.username, organisation=slug,
                     ip=ip, user_agent=user_agent, details={"organisation_created": created})
    return account
