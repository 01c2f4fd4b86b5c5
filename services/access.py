"""Who may do what in the admin console, and over which organisations.

Roles are ranked owner > technician > team > user. Each admin page names one
*capability*; a role has a fixed set of them, and an owner can give a team user extra
ones (``Account.permissions``). An admin manages their own organisation and every
organisation below it (``Organisation.parent``), never one above or beside it.
"""

from __future__ import annotations

from models import PERMISSIONS, Account, Organisation

RANK = {"user": 0, "team": 1, "technician": 2, "owner": 3}
ADMIN_ROLES = ("owner", "technician", "team")

# capability -> what it lets a person do (shown to someone refused it)
CAPABILITIES = {
    "dashboard": "see the admin dashboard",
    "users": "manage users",
    "team": "manage technicians and team users",
    "settings": "change the organisation's sign-in settings",
    "password_policy": "change the password policy",
    "audit": "read the audit log",
}

_ROLE_CAPABILITIES = {
    "owner": frozenset(CAPABILITIES),
    "technician": frozenset(CAPABILITIES),
    "team": frozenset({"dashboard", "users"}),
    "user": frozenset(),
}
assert set(PERMISSIONS) <= set(CAPABILITIES)


def rank(role: str | None) -> int:
    """How high ``role`` is; unknown roles rank below a user."""
    return RANK.get(role or "", -1)


def is_admin_role(role: str | None) -> bool:
    """Whether ``role`` opens the admin console at all."""
    return role in ADMIN_ROLES


def can(role: str | None, capability: str, permissions=()) -> bool:
    """Whether someone acting as ``role`` with the extra ``permissions`` has ``capability``."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}")
    if capability in _ROLE_CAPABILITIES.get(role or "", frozenset()):
        return True
    return role == "team" and capability in PERMISSIONS and capability in (permissions or ())


def can_grant(actor_role: str | None, role: str) -> bool:
    """Nobody gives a role above their own; a team user gives none but ``user``."""
    if role not in RANK:
        return False
    if actor_role == "team":
        return role == "user"
    return is_admin_role(actor_role) and rank(role) <= rank(actor_role)


def managed_organisation_ids(organisation: Organisation | int) -> list[int]:
    """The id of ``organisation`` and of every organisation below it, parents first."""
    root = organisation.id if isinstance(organisation, Organisation) else int(organisation)
    ids, frontier = [root], [root]
    while frontier:
        children = [row.id for row in Organisation.select(Organisation.id).where(Organisation.parent.in_(frontier))]
        children = [child for child in children if child not in ids]  # a cycle never loops forever
        ids.extend(children)
        frontier = children
    return ids


def manages(organisation: Organisation | int, target: Organisation | int | None) -> bool:
    """Whether an admin of ``organisation`` manages ``target`` (itself or a descendant)."""
    if target is None:
        return False
    target_id = target.id if isinstance(target, Organisation) else int(target)
    return target_id in managed_organisation_ids(organisation)


def manageable_account(organisation: Organisation, account_id) -> Account | None:
    """The account with ``account_id`` when it belongs to an organisation an admin of
    ``organisation`` manages; None otherwise (the caller answers 404)."""
    try:
        account_id = int(account_id)
    except (TypeError, ValueError):
        return None
    return (Account.select(Account, Organisation).join(Organisation)
            .where((Account.id == account_id) & (Account.organisation.in_(managed_organisation_ids(organisation))))
            .first())


def owners_to_ask(account: Account, limit: int = 5) -> list[str]:
    """The names of the active owners of ``account``'s organisation (who can change roles
    and settings, and allow elevation)."""
    rows = (Account.select(Account.username, Account.display_name)
            .where((Account.organisation == account.organisation_id) & (Account.role == "owner")
                   & (Account.status == "active"))
            .order_by(Account.username).limit(limit))
    return [row.display_name or row.username for row in rows]


def whom_to_ask(account: Account) -> str:
    """"an owner of Acme (Olga, Oscar)" — or a generic phrase when it has none."""
    names = owners_to_ask(account)
    organisation = account.organisation.name or account.organisation.slug
    return f"an owner of {organisation} ({', '.join(names)})" if names else f"an owner of {organisation}"
