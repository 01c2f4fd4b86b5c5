"""The figures of the admin dashboard: today's sign-ins by method and outcome, pending
approvals, locked accounts, the email outbox, and the health of LDAP and SMTP.

Counts cover the admin's organisation and the organisations below it. Sign-in figures
come from the audit log (today = since 00:00 UTC), read through the (action, id) index
from the first id of the day, so they cost the same on a log of any size. The LDAP and
SMTP checks connect to servers: they run with short timeouts, in parallel, and their
result is kept for a few seconds so a reloaded dashboard does not knock on every server.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from peewee import OP, Expression, Value, fn

from models import Account, AuditEvent, Directory, MailServer, Organisation, OutboxMessage, SignInRequest, utcnow

from . import access, audit_log, health
from . import directory as directory_service

# (label, method recorded in sign_in.completed details)
METHODS = (("Password", "password"), ("Email link", "email_link"), ("Manager approval", "manager_approval"))
# (label, action, outcomes) of the sign-in steps that did not let someone in
FAILURES = (
    ("Wrong password or locked", "sign_in.password", ("failure",)),
    ("Two-factor code refused", "two_factor.verify", ("failure", "denied")),
    ("Link request refused", "sign_in.requested", ("failure", "error")),
    ("Denied (“this wasn't me” or manager)", "sign_in.denied", ("denied",)),
    ("Link expired", "sign_in.expired", ("failure",)),
    ("No approver found", "sign_in.no_approver", ("failure",)),
)
HEALTH_TIMEOUT = 3  # seconds per server, whatever the connection is set to
HEALTH_CACHE_SECONDS = 20


@dataclass
class Figure:
    """A number on the dashboard and the filters of the list behind it."""

    label: str
    count: int
    filters: dict = field(default_factory=dict)


@dataclass
class Summary:
    """Everything the dashboard shows except the health checks."""

    day: dt.date
    completed: list[Figure]
    completed_total: Figure
    failed: list[Figure]
    failed_total: int
    pending_approvals: Figure
    locked_accounts: int
    outbox_queued: Figure
    outbox_retrying: int
    outbox_failed: Figure


def start_of_day(now: dt.datetime) -> dt.datetime:
    """00:00 UTC of ``now``'s day."""
    return dt.datetime.combine(now.date(), dt.time())


def _first_id_since(moment: dt.datetime) -> int | None:
    return (AuditEvent.select(AuditEvent.id).where(AuditEvent.created_at >= moment)
            .order_by(AuditEvent.created_at).limit(1).scalar())


def summary(organisation: Organisation, now: dt.datetime | None = None) -> Summary:
    """The dashboard figures for an admin of ``organisation``."""
    now = now or utcnow()
    day = now.date()
    slugs = audit_log.scope(organisation)
    ids = access.managed_organisation_ids(organisation)
    today = {"from": day.isoformat(), "to": day.isoformat()}
    first_id = _first_id_since(start_of_day(now))

    def today_events(*conditions):
        if first_id is None:
            return None
        query = AuditEvent.select(fn.COUNT(AuditEvent.id)).where(
            AuditEvent.id >= first_id, AuditEvent.organisation.in_(slugs), *conditions)
        return query

    completed = []
    for label, method in METHODS:
        # details are stored as compact, key-sorted JSON, so the method is an exact substring
        query = today_events(AuditEvent.action == "sign_in.completed",
                             Expression(AuditEvent.details, OP.ILIKE, Value(f'%"method":"{method}"%', converter=False)))
        completed.append(Figure(label, query.scalar() if query is not None else 0,
                                {"action": "sign_in.completed", **today}))
    total_query = today_events(AuditEvent.action == "sign_in.completed")
    completed_total = Figure("Signed in", total_query.scalar() if total_query is not None else 0,
                             {"action": "sign_in.completed", **today})

    failed = []
    for label, action, outcomes in FAILURES:
        query = today_events(AuditEvent.action == action, AuditEvent.outcome.in_(outcomes))
        filters = {"action": action, **today}
        if len(outcomes) == 1:
            filters["outcome"] = outcomes[0]
        failed.append(Figure(label, query.scalar() if query is not None else 0, filters))

    pending = (SignInRequest.select().where(SignInRequest.organisation.in_(ids), SignInRequest.status == "pending",
                                            SignInRequest.expires_at > now).count())
    locked = Account.select().where(Account.organisation.in_(ids), Account.locked_until > now).count()

    outbox = dict(OutboxMessage.select(OutboxMessage.status, fn.COUNT(OutboxMessage.id))
                  .where(OutboxMessage.organisation.in_(slugs)).group_by(OutboxMessage.status).tuples())
    retrying = (OutboxMessage.select().where(OutboxMessage.organisation.in_(slugs), OutboxMessage.status == "queued",
                                             OutboxMessage.attempts > 0).count())
    yesterday = (day - dt.timedelta(days=1)).isoformat()
    return Summary(
        day=day,
        completed=completed,
        completed_total=completed_total,
        failed=failed,
        failed_total=sum(f.count for f in failed),
        pending_approvals=Figure("Waiting for approval", pending, {"action": "sign_in.requested", "from": yesterday}),
        locked_accounts=locked,
        outbox_queued=Figure("In the outbox", outbox.get("queued", 0) + outbox.get("sending", 0),
                             {"action": "email.queued", **today}),
        outbox_retrying=retrying,
        outbox_failed=Figure("Given up", outbox.get("failed", 0), {"action": "email.failed"}),
    )


# ---- health ------------------------------------------------------------------

_health_cache: dict[int, tuple[float, dict]] = {}
_health_lock = threading.Lock()


def _check_directory(directory: Directory) -> dict:
    check = directory_service.check_connection(directory)
    entry = {"name": directory.name, "ok": check.ok, "server": check.server, "ms": round(check.milliseconds, 1)}
    if not check.ok:
        entry["error"] = check.message
    return entry


def connection_health(organisation: Organisation, *, timeout: int = HEALTH_TIMEOUT, fresh: bool = False) -> dict:
    """``{"ldap": [...], "smtp": [...]}`` for the organisation's directories and mail servers,
    each ``{"name", "ok", "ms" | "error"}``; checked in parallel with at most ``timeout``
    seconds per connection attempt, and remembered for a few seconds."""
    key = organisation.id
    with _health_lock:
        cached = _health_cache.get(key)
        if cached and not fresh and time.monotonic() - cached[0] < HEALTH_CACHE_SECONDS:
            return cached[1]
    directories, servers = [], []
    for directory in Directory.select().where(Directory.organisation == key).order_by(Directory.position, Directory.id):
        # shorter timeouts for this check only; the row is never saved
        directory.connect_timeout = min(directory.connect_timeout or timeout, timeout)
        directory.receive_timeout = min(directory.receive_timeout or timeout, timeout)
        directories.append(directory)
    for server in MailServer.select().where(MailServer.organisation == key).order_by(MailServer.position, MailServer.id):
        server.timeout = min(server.timeout or timeout, timeout)
        servers.append(server)
    jobs = [(_check_directory, d) for d in directories] + [(health.check_mail_server, s) for s in servers]
    results = []
    if jobs:
        with ThreadPoolExecutor(max_workers=min(len(jobs), 8)) as pool:
            results = list(pool.map(lambda job: job[0](job[1]), jobs))
    report = {"ldap": results[:len(directories)], "smtp": results[len(directories):]}
    with _health_lock:
        _health_cache[key] = (time.monotonic(), report)
    return report
