"""Two-factor enforcement per organisation.

Modes (``models.MFA_MODES``):

* ``off``        — nobody is made to set up two-factor authentication.
* ``all``        — every account must.
* ``selected``   — only the listed accounts must.
* ``all_except`` — every account except the listed ones must.

An account that already has TOTP on never needs enrolment. :func:`requires_enrolment` is
asked at sign-in (``blueprints.auth.cookies.sign_in``), which then marks the account
``must_enrol_totp`` so the enrolment guard sends the session to /account/2fa first.
"""

from __future__ import annotations

from peewee import fn

from models import (
    MFA_MODES,
    Account,
    MfaPolicy,
    MfaPolicyAccount,
    Organisation,
    db,
    utcnow,
)

from . import audit

MODE_LABELS = {
    "off": "Off: users choose whether to use two-factor authentication",
    "all": "All users must use two-factor authentication",
    "selected": "Only the selected users must",
    "all_except": "All users except the selected ones must",
}
MAX_QUERY = 100


class InvalidPolicy(ValueError):
    """An unknown mode or an account id that is not of the organisation."""


def policy_for(organisation: Organisation) -> MfaPolicy:
    """The organisation's policy, or an unsaved one with mode ``off``."""
    policy = MfaPolicy.get_or_none(MfaPolicy.organisation == organisation)
    return policy if policy is not None else MfaPolicy(organisation=organisation, mode="off")


def listed_accounts(policy: MfaPolicy) -> list[Account]:
    """The accounts selected (or excluded) by ``policy``, by username."""
    if policy.id is None:
        return []
    return list(Account.select().join(MfaPolicyAccount, on=(MfaPolicyAccount.account == Account.id))
                .where(MfaPolicyAccount.policy == policy).order_by(Account.username))


def _clean_ids(organisation: Organisation, account_ids) -> list[int]:
    ids: set[int] = set()
    for raw in account_ids or ():
        try:
            ids.add(int(raw))
        except (TypeError, ValueError):
            raise InvalidPolicy(f"Not an account id: {str(raw)[:40]!r}.") from None
    if not ids:
        return []
    found = {row.id for row in Account.select(Account.id).where((Account.id.in_(list(ids)))
                                                               & (Account.organisation == organisation))}
    if found != ids:
        raise InvalidPolicy("Some of the chosen accounts are not in this organisation.")
    return sorted(ids)


def save(organisation: Organisation, mode: str, account_ids, actor: str) -> MfaPolicy:
    """Store the mode and the listed accounts (ids, all of ``organisation``), audited as
    ``mfa_policy.changed``. Raises :class:`InvalidPolicy` and changes nothing otherwise."""
    if mode not in MFA_MODES:
        raise InvalidPolicy(f"Unknown mode: {str(mode)[:40]!r}.")
    ids = _clean_ids(organisation, account_ids)
    with db.atomic():
        policy = MfaPolicy.get_or_none(MfaPolicy.organisation == organisation)
        if policy is None:
            before = None
            policy = MfaPolicy(organisation=organisation)
        else:
            before = {"mode": policy.mode, "accounts": sorted(
                row.account_id for row in MfaPolicyAccount.select(MfaPolicyAccount.account)
                .where(MfaPolicyAccount.policy == policy))}
        policy.mode = mode
        policy.updated_at = utcnow()
        policy.save()
        MfaPolicyAccount.delete().where(MfaPolicyAccount.policy == policy).execute()
        if ids:
            MfaPolicyAccount.insert_many([{"policy": policy.id, "account": i} for i in ids]).execute()
    audit.record("mfa_policy.changed", actor=actor, organisation=organisation.slug, target=organisation.slug,
                 details={"before": before, "after": {"mode": mode, "accounts": ids}})
    return policy


def requires_enrolment(account: Account) -> bool:
    """True when the organisation's policy makes ``account`` set up two-factor
    authentication (never when it already has it on)."""
    if account.totp_enabled_at is not None:
        return False
    policy = MfaPolicy.get_or_none(MfaPolicy.organisation == account.organisation_id)
    if policy is None or policy.mode == "off":
        return False
    if policy.mode == "all":
        return True
    listed = MfaPolicyAccount.select().where((MfaPolicyAccount.policy == policy)
                                             & (MfaPolicyAccount.account == account.id)).exists()
    if policy.mode == "selected":
        return listed
    if policy.mode == "all_except":
        return not listed
    return False  # an unknown stored mode enforces nothing


def search_accounts(organisation: Organisation, query: str, limit: int = 20) -> list[Account]:
    """Accounts of ``organisation`` whose username, email or display name contains
    ``query`` (case-insensitive), by username; none for an empty query."""
    needle = (query or "").strip().lower()[:MAX_QUERY]
    if not needle:
        return []
    # LIKE wildcards in the query only widen the SQL match; the check below is exact.
    lowered = [fn.LOWER(Account.username), fn.LOWER(Account.email), fn.LOWER(Account.display_name)]
    condition = lowered[0].contains(needle) | lowered[1].contains(needle) | lowered[2].contains(needle)
    results: list[Account] = []
    for account in (Account.select().where((Account.organisation == organisation) & condition)
                    .order_by(Account.username, Account.id).iterator()):
        if any(needle in (value or "").lower() for value in (account.username, account.email, account.display_name)):
            results.append(account)
            if len(results) >= limit:
                break
    return results

