"""The audit log: record events in a hash chain and verify the chain.

Each row's hash covers its fields and the previous row's hash. Writers are serialised
(PostgreSQL advisory lock / SQLite write lock) so concurrent requests cannot fork the
chain. ``verify`` names the first row that was edited, or the first gap left by a
deleted row.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from dataclasses import dataclass

from models import AuditEvent, db, is_postgres, utcnow

GENESIS = "0" * 64
OUTCOMES = ("success", "failure", "denied", "error")
# Keys whose values must never reach the log, whatever a caller passes.
SECRET_KEYS = ("password", "secret", "token", "code", "key", "cookie")
_PG_LOCK_ID = 0x6A7465  # arbitrary constant: "the audit chain" advisory lock
# Whom the current actor acts for (a technician for the owner, an elevated team user),
# set by the web layer for one request so every event it records carries it.
_acting_for: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_acting_for", default=None)


def acting_for(value: str | None) -> contextvars.Token:
    """Record ``value`` as ``acting_for`` of the events that follow (until ``reset``)."""
    return _acting_for.set(value)


def reset_acting_for(token: contextvars.Token) -> None:
    """Undo :func:`acting_for`."""
    _acting_for.reset(token)


def _scrub(details: dict | None) -> dict:
    clean = {}
    for key, value in (details or {}).items():
        if any(word in SECRET_KEYS for word in str(key).lower().replace("-", "_").split("_")):
            value = "[redacted]"
        elif isinstance(value, dict):
            value = _scrub(value)
        clean[str(key)] = value
    return clean


def compute_hash(event: AuditEvent) -> str:
    """The hash of one row: its id and fields plus the previous row's hash."""
    payload = {
        "id": event.id,
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "organisation": event.organisation,
        "actor": event.actor,
        "acting_for": event.acting_for,
        "action": event.action,
        "target": event.target,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "outcome": event.outcome,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    data = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def record(
    action: str,
    *,
    actor: str = "",
    acting_for: str | None = None,
    organisation: str | None = None,
    target: str = "",
    ip: str = "",
    user_agent: str = "",
    outcome: str = "success",
    details: dict | None = None,
) -> AuditEvent:
    """Append one event to the audit log and return it.

    Keys in ``details`` that look like secrets are stored as ``[redacted]``.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    database = db.obj
    lock = {} if is_postgres() else {"lock_type": "IMMEDIATE"}
    with database.atomic(**lock):
        if is_postgres():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_ID,))
        last = AuditEvent.select(AuditEvent.id, AuditEvent.row_hash).order_by(AuditEvent.id.desc()).first()
        event = AuditEvent(
            created_at=utcnow(),
            organisation=organisation,
            actor=actor[:320],
            acting_for=acting_for if acting_for is not None else _acting_for.get(),
            action=action,
            target=target[:320],
            ip=ip[:64],
            user_agent=user_agent[:512],
            outcome=outcome,
            details=_scrub(details),
            prev_hash=last.row_hash if last else GENESIS,
            row_hash="pending",
        )
        event.save(force_insert=True)
        event.row_hash = compute_hash(event)
        AuditEvent.update(row_hash=event.row_hash).where(AuditEvent.id == event.id).execute()
    return event


@dataclass
class Verification:
    """The result of checking the chain: ``ok`` or the first broken row and why."""

    ok: bool
    checked: int
    broken_id: int | None = None
    reason: str = ""


def verify(batch: int = 5000) -> Verification:
    """Walk the chain in id order and report the first edited row or deleted row."""
    previous = GENESIS
    checked = 0
    last_id = 0
    while True:
        rows = list(
            AuditEvent.select().where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        )
        if not rows:
            return Verification(ok=True, checked=checked)
        for event in rows:
            if event.prev_hash != previous:
                return Verification(
                    ok=False, checked=checked, broken_id=event.id,
                    reason="the row before it was deleted or edited (its link to the previous row does not match)",
                )
            if compute_hash(event) != event.row_hash:
                return Verification(
                    ok=False, checked=checked, broken_id=event.id,
                    reason="this row was edited (its content no longer matches its hash)",
                )
            previous = event.row_hash
            checked += 1
            last_id = event.id


@dataclass
class PartialVerification:
    """The result of checking part of the chain: where it stopped and what it found."""

    ok: bool
    checked: int
    last_id: int
    last_hash: str
    complete: bool  # reached the newest row
    broken_id: int | None = None
    reason: str = ""


def verify_from(after_id: int = 0, previous: str = GENESIS, *, deadline: float | None = None,
                batch: int = 5000) -> PartialVerification:
    """Check the rows after ``after_id``, the first of which must link to ``previous``.

    Stops at the first broken row, at the newest row, or at the first batch boundary past
    ``deadline`` (a ``time.monotonic()`` value), so a large log can be checked in steps."""
    import time

    checked = 0
    last_id = after_id
    while True:
        rows = list(AuditEvent.select().where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch))
        if not rows:
            return PartialVerification(ok=True, checked=checked, last_id=last_id, last_hash=previous, complete=True)
        for event in rows:
            if event.prev_hash != previous:
                return PartialVerification(
                    ok=False, checked=checked, last_id=last_id, last_hash=previous, complete=False,
                    broken_id=event.id,
                    reason="the row before it was deleted or edited (its link to the previous row does not match)")
            if compute_hash(event) != event.row_hash:
                return PartialVerification(
                    ok=False, checked=checked, last_id=last_id, last_hash=previous, complete=False,
                    broken_id=event.id, reason="this row was edited (its content no longer matches its hash)")
            previous = event.row_hash
            checked += 1
            last_id = event.id
        if len(rows) < batch:  # that was the newest row
            return PartialVerification(ok=True, checked=checked, last_id=last_id, last_hash=previous, complete=True)
        if deadline is not None and time.monotonic() >= deadline:
            return PartialVerification(ok=True, checked=checked, last_id=last_id, last_hash=previous, complete=False)
