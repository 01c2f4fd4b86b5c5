"""Sign-in requests: create them, and move them through their states safely.

States: pending → approved → completed, or pending → denied / expired / cancelled.
Every transition is ONE conditional UPDATE (``... WHERE status = 'pending' AND
expires_at > now``), so when a link is confirmed twice at once, or confirmed and denied
at once, exactly one of them happens. A session is only ever handed to the browser that
holds the request's binding secret (``complete``); confirming elsewhere only approves.
Reading a request (the confirmation page behind GET and HEAD) never changes it.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from models import Account, ApprovalProfile, Organisation, SignInRequest, utcnow

from . import tokens

FINAL_STATUSES = ("denied", "expired", "completed", "cancelled")


@dataclass
class Created:
    """A new request plus the two secrets that exist only in the email and the cookie."""

    request: SignInRequest
    link_token: str
    binding_secret: str


def create(
    organisation: Organisation, account: Account | None, profile: ApprovalProfile | None, kind: str, *,
    lifetime_minutes: int, approver_email: str | None = None, ip: str = "", user_agent: str = "",
    escalate: bool = False, binding_hash: str | None = None,
) -> Created:
    """Create a pending request for ``account`` (None: a decoy for an unknown identifier).

    ``binding_hash`` continues an earlier request's browser binding (its secret is then
    not known here and ``Created.binding_secret`` is None)."""
    if kind not in ("user", "manager"):
        raise ValueError(f"kind must be 'user' or 'manager', not {kind!r}")
    link_token, link_hash = tokens.new_token()
    binding_secret = None
    if binding_hash is None:
        binding_secret, binding_hash = tokens.new_token()
    now = utcnow()
    request = SignInRequest.create(
        public_id=secrets.token_urlsafe(24), organisation=organisation, account=account,
        profile=profile, kind=kind, status="pending", token_hash=link_hash, binding_hash=binding_hash,
        approver_email=approver_email, ip=ip[:64], user_agent=user_agent[:512], created_at=now,
        expires_at=now + dt.timedelta(minutes=lifetime_minutes), escalate=escalate,
    )
    return Created(request, link_token, binding_secret)


def by_token(token: str | None) -> SignInRequest | None:
    """The request an emailed link points to, unchanged (for the confirmation page)."""
    if not tokens.plausible(token):
        return None
    return SignInRequest.get_or_none(SignInRequest.token_hash == tokens.hash_token(token))


def by_public_id(public_id: str | None) -> SignInRequest | None:
    """The request a waiting page polls."""
    if not tokens.plausible(public_id):
        return None
    return SignInRequest.get_or_none(SignInRequest.public_id == public_id)


def expire_if_due(request: SignInRequest, now: dt.datetime | None = None) -> SignInRequest:
    """Mark a pending request past its lifetime as expired (on the server clock)."""
    return expire_due(request, now)[0]


def expire_due(request: SignInRequest, now: dt.datetime | None = None) -> tuple[SignInRequest, bool]:
    """:func:`expire_if_due`, also saying whether this call was the one that moved the
    request from pending (one conditional UPDATE: of concurrent callers exactly one is)."""
    now = now or utcnow()
    if request.status != "pending" or request.expires_at > now:
        return request, False  # nothing to do, and no write: the waiting page polls every 2 s
    moved = SignInRequest.update(status="expired", decided_at=now).where(
        (SignInRequest.id == request.id) & (SignInRequest.status == "pending") & (SignInRequest.expires_at <= now)
    ).execute()
    return SignInRequest.get_by_id(request.id), bool(moved)


def _decide(token: str | None, new_status: str, kind: str) -> tuple[str, SignInRequest | None]:
    request = by_token(token)
    if request is None or request.kind != kind:
        # A user's own link posted to the manager's page (or the reverse) changes nothing.
        return "unknown", None
    now = utcnow()
    won = SignInRequest.update(status=new_status, decided_at=now).where(
        (SignInRequest.id == request.id)
        & (SignInRequest.kind == kind)
        & (SignInRequest.status == "pending")
        & (SignInRequest.expires_at > now)
    ).execute()
    request = expire_if_due(SignInRequest.get_by_id(request.id), now)
    if won:
        return new_status, request
    return ("expired" if request.status == "expired" else "used"), request


def approve(token: str | None, kind: str) -> tuple[str, SignInRequest | None]:
    """Approve through the emailed link of ``kind`` ("user": the user's own link,
    "manager": the approver's).

    Returns ("approved", request) for exactly one caller; otherwise "expired", "used"
    (already approved, denied, cancelled or completed) or "unknown" (no such link of
    that kind)."""
    return _decide(token, "approved", kind)


def deny(token: str | None, kind: str) -> tuple[str, SignInRequest | None]:
    """Deny through the emailed link of ``kind`` ("This wasn't me" / the manager's Deny)."""
    return _decide(token, "denied", kind)


def abandon(request: SignInRequest) -> None:
    """End an approved request that cannot go on (its manager step could not start)."""
    SignInRequest.update(status="denied", decided_at=utcnow()).where(
        (SignInRequest.id == request.id) & (SignInRequest.status == "approved")
    ).execute()


def complete(request: SignInRequest, binding_secret: str | None) -> bool:
    """Hand out the session: True for exactly one call, and only from the browser whose
    binding secret matches an approved request. A request that escalates to a manager is
    never completed itself: only the manager request that follows it can be."""
    if not tokens.matches(binding_secret, request.binding_hash):
        return False
    return bool(
        SignInRequest.update(status="completed", completed_at=utcnow()).where(
            (SignInRequest.id == request.id)
            & (SignInRequest.status == "approved")
            & (SignInRequest.escalate == False)  # noqa: E712 (peewee expression)
            & (SignInRequest.binding_hash == request.binding_hash)
        ).execute()
    )


def cancel(request: SignInRequest, binding_secret: str | None) -> bool:
    """The waiting browser gives up on a pending request."""
    if not tokens.matches(binding_secret, request.binding_hash):
        return False
    return bool(
        SignInRequest.update(status="cancelled", decided_at=utcnow()).where(
            (SignInRequest.id == request.id) & (SignInRequest.status == "pending")
        ).execute()
    )


def status_for(request: SignInRequest, binding_secret: str | None) -> str | None:
    """The current status as the waiting browser may see it (None without its binding)."""
    if not tokens.matches(binding_secret, request.binding_hash):
        return None
    return expire_if_due(SignInRequest.get_by_id(request.id)).status
