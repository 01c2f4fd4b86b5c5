"""Reading the audit log: filters, keyset pages newest first, CSV rows, and checking the
hash chain in steps whose results are themselves audit events.

An admin reads the events of their organisation and of the organisations below it
(``scope``), never those of a parent. Pages are keyset pages on ``id`` (``before`` = the
last id shown), so the millionth row costs what the first does; each filter has an index
ending in ``id`` (see ``AuditEvent.Meta``).

Time ranges become id ranges: ``audit.record`` takes the chain lock before it reads the
clock and the next id, so ids and times rise together (unless the server clock steps
back, when a few rows at the edges of a range may be shown or left out).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from dataclasses import dataclass, field, fields
from typing import Iterator, Mapping

from models import AuditEvent, Organisation, utcnow

from . import access, audit

PAGE_SIZE = 50
CSV_BATCH = 1000
MAX_TEXT = 320

# Actions Gatehouse records, for the action filter's suggestions. A filter may name any
# action, listed or not; ``group.*`` matches every listed action of that group.
KNOWN_ACTIONS = (
    "sign_in.requested", "sign_in.link_viewed", "sign_in.confirmed", "sign_in.approved", "sign_in.denied",
    "sign_in.cancelled", "sign_in.expired", "sign_in.no_approver", "sign_in.failure_notified",
    "sign_in.password", "sign_in.completed", "sign_out",
    "two_factor.verify", "two_factor.enrolment_started", "two_factor.enrolled", "two_factor.disabled",
    "two_factor.recovery_code_used", "two_factor.recovery_codes_regenerated",
    "password.change", "password.reset_requested", "password.reset", "password.reset_sent_by_admin",
    "mfa.reset_by_admin",
    "account.created", "account.deactivated", "account.reactivated", "account.deleted",
    "email.queued", "email.sent", "email.failed",
    "directory.created", "directory.updated", "directory.deleted", "directory.tested", "directory.user_looked_up",
    "mail_server.created", "mail_server.updated", "mail_server.deleted", "mail_server.tested",
    "profile.created", "profile.updated", "profile.deleted", "profile.default_changed",
    "policy.created", "policy.updated", "policy.deleted", "policy.moved",
    "password_policy.updated", "mfa_policy.changed",
    "audit.verified",
)
ACTION_GROUPS = {
    "sign_in.*": "every sign-in step",
    "two_factor.*": "two-factor authentication",
    "password.*": "passwords",
    "account.*": "accounts",
    "email.*": "email delivery",
}
OUTCOMES = audit.OUTCOMES
CSV_COLUMNS = ("id", "time_utc", "organisation", "actor", "acting_for", "action", "target", "outcome",
               "ip", "user_agent", "details", "row_hash")
VERIFY_ACTION = "audit.verified"
VERIFY_STEP_SECONDS = 4.0


class FilterError(ValueError):
    """A filter value Gatehouse cannot use; ``field`` names the form field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass
class Filters:
    """What the admin asked to see; empty strings and None mean "any"."""

    actor: str = ""
    action: str = ""
    target: str = ""
    outcome: str = ""
    organisation: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    def query_args(self) -> dict[str, str]:
        """The filters as query-string arguments (only those set), for links and the CSV."""
        args = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value:
                key = {"date_from": "from", "date_to": "to"}.get(item.name, item.name)
                args[key] = value.isoformat() if isinstance(value, dt.date) else value
        return args

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return bool(self.query_args())


@dataclass
class Page:
    """One page of events, newest first; ``next_before`` is the cursor of the next page."""

    events: list[AuditEvent]
    next_before: int | None
    errors: dict[str, str] = field(default_factory=dict)


def scope(organisation: Organisation) -> list[str]:
    """Slugs of the organisations whose events an admin of ``organisation`` reads."""
    ids = access.managed_organisation_ids(organisation)
    slugs = dict(Organisation.select(Organisation.id, Organisation.slug).where(Organisation.id.in_(ids)).tuples())
    return [slugs[i] for i in ids if i in slugs]


def _date(value: str, field_name: str, label: str) -> dt.date | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise FilterError(field_name, f"The {label} date must look like 2025-01-31 (year-month-day).") from None


def parse_filters(args: Mapping[str, str], slugs: list[str]) -> tuple[Filters, dict[str, str]]:
    """Filters from query-string ``args``, and a person-readable error per unusable field.

    An unusable field is left out of the filters (and reported); the others still apply."""
    filters, errors = Filters(), {}

    def text(name: str) -> str:
        value = args.get(name, "")
        value = value.strip() if isinstance(value, str) else ""
        if len(value) > MAX_TEXT:
            errors[name] = f"At most {MAX_TEXT} characters."
            return ""
        if any(ord(char) < 32 for char in value):  # no event holds them; PostgreSQL refuses NUL
            errors[name] = "Remove the control characters."
            return ""
        return value

    filters.actor = text("actor")
    filters.target = text("target")
    action = text("action")
    if action and len(action) > 64:
        errors["action"] = "No action has a name that long."
    else:
        filters.action = action
    outcome = text("outcome")
    if outcome and outcome not in OUTCOMES:
        errors["outcome"] = f"Choose one of: {', '.join(OUTCOMES)}."
    else:
        filters.outcome = outcome
    organisation = text("organisation")
    if organisation and organisation not in slugs:
        errors["organisation"] = "Not an organisation whose log you can read."
    else:
        filters.organisation = organisation
    for name, attribute, label in (("from", "date_from", "from"), ("to", "date_to", "to")):
        try:
            setattr(filters, attribute, _date(text(name), name, label))
        except FilterError as exc:
            errors[exc.field] = str(exc)
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        errors["to"] = "The to date is before the from date."
        filters.date_to = None
    return filters, errors


def parse_before(value) -> int | None:
    """The page cursor from the query string: a positive id, or None for the first page."""
    try:
        before = int(value)
    except (TypeError, ValueError):
        return None
    return before if before > 0 else None


def _actions(action: str) -> list[str]:
    if action.endswith(".*"):
        prefix = action[:-1]
        return [known for known in KNOWN_ACTIONS if known.startswith(prefix)] or [action]
    return [action]


def _id_bounds(filters: Filters) -> tuple[int | None, int | None] | None:
    """The id range of the time range (inclusive), or None when no event is in it."""
    low = high = None
    if filters.date_from:
        start = dt.datetime.combine(filters.date_from, dt.time())
        first = (AuditEvent.select(AuditEvent.id).where(AuditEvent.created_at >= start)
                 .order_by(AuditEvent.created_at).limit(1).scalar())
        if first is None:
            return None
        low = first
    if filters.date_to:
        end = dt.datetime.combine(filters.date_to + dt.timedelta(days=1), dt.time())
        last = (AuditEvent.select(AuditEvent.id).where(AuditEvent.created_at < end)
                .order_by(AuditEvent.created_at.desc()).limit(1).scalar())
        if last is None:
            return None
        high = last
    if low is not None and high is not None and low > high:
        return None
    return low, high


def _one_of(column, values: list[str]):
    return column == values[0] if len(values) == 1 else column.in_(values)


def events_query(slugs: list[str], filters: Filters):
    """The events ``filters`` select within ``slugs``, newest first (a peewee query), or
    None when nothing can match."""
    organisations = [filters.organisation] if filters.organisation else list(slugs)
    if not organisations:
        return None
    bounds = _id_bounds(filters)
    if bounds is None:
        return None
    conditions = [_one_of(AuditEvent.organisation, organisations)]
    if filters.actor:
        conditions.append(AuditEvent.actor == filters.actor)
    if filters.target:
        conditions.append(AuditEvent.target == filters.target)
    if filters.action:
        conditions.append(_one_of(AuditEvent.action, _actions(filters.action)))
    if filters.outcome:
        conditions.append(AuditEvent.outcome == filters.outcome)
    low, high = bounds
    if low is not None:
        conditions.append(AuditEvent.id >= low)
    if high is not None:
        conditions.append(AuditEvent.id <= high)
    query = AuditEvent.select()
    for condition in conditions:
        query = query.where(condition)
    return query.order_by(AuditEvent.id.desc())


def page(slugs: list[str], filters: Filters, before: int | None = None, size: int = PAGE_SIZE) -> Page:
    """Up to ``size`` events older than the id ``before`` (newest first)."""
    query = events_query(slugs, filters)
    if query is None:
        return Page([], None)
    if before:
        query = query.where(AuditEvent.id < before)
    rows = list(query.limit(size + 1))
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, rows[-1].id if more else None)


# ---- CSV ---------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value) -> str:
    """A cell a spreadsheet shows as text: values starting like a formula get a ``'``."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def format_time(moment: dt.datetime) -> str:
    """A stored (naive UTC) time as shown on the page and in the CSV."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def csv_row(event: AuditEvent) -> list[str]:
    """One event as CSV cells, in ``CSV_COLUMNS`` order."""
    values = (
        event.id, event.created_at.isoformat(timespec="seconds") + "Z", event.organisation or "", event.actor,
        event.acting_for or "", event.action, event.target, event.outcome, event.ip, event.user_agent,
        json.dumps(event.details or {}, sort_keys=True, ensure_ascii=False), event.row_hash,
    )
    return [csv_safe(value) for value in values]


def csv_lines(slugs: list[str], filters: Filters, batch: int = CSV_BATCH) -> Iterator[str]:
    """The filtered view as CSV text, a header and then one chunk per batch of events,
    read with the same keyset pages (never the whole log in memory)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    before = None
    while True:
        chunk = page(slugs, filters, before=before, size=batch)
        for event in chunk.events:
            writer.writerow(csv_row(event))
        if chunk.events:
            yield flush()
        if chunk.next_before is None:
            return
        before = chunk.next_before


def csv_filename(today: dt.date | None = None) -> str:
    """``gatehouse-audit-2025-01-31.csv``."""
    return f"gatehouse-audit-{(today or utcnow().date()).isoformat()}.csv"


# ---- hash chain verification --------------------------------------------------


class ChainCheckRefused(Exception):
    """A check that would read the whole log, asked by someone who may only continue one."""


@dataclass
class ChainStatus:
    """The newest verification result (an ``audit.verified`` event) and how far the log
    has grown since."""

    last: AuditEvent | None
    newest_id: int

    @property
    def details(self) -> dict:
        return (self.last.details or {}) if self.last else {}

    @property
    def ok(self) -> bool | None:
        """True intact, False broken, None never checked."""
        return None if self.last is None else bool(self.details.get("ok"))

    @property
    def complete(self) -> bool:
        """Whether the last step reached the newest row it saw (else there is more to do)."""
        return bool(self.details.get("complete"))

    @property
    def through_id(self) -> int:
        return int(self.details.get("through_id") or 0)

    @property
    def unchecked(self) -> int:
        """About how many events were recorded after the checked part (ids may have gaps)."""
        return max(self.newest_id - self.through_id, 0)


def _verification_events(limit: int = 1):
    return (AuditEvent.select().where(AuditEvent.action == VERIFY_ACTION)
            .order_by(AuditEvent.id.desc()).limit(limit))


def chain_status() -> ChainStatus:
    """The last verification result, for the audit page (two index lookups)."""
    newest = AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1).scalar() or 0
    return ChainStatus(last=_verification_events().first(), newest_id=newest)


def verify_step(*, from_start: bool = False, actor: str, organisation: str | None, acting_for: str | None = None,
                ip: str = "", user_agent: str = "", seconds: float = VERIFY_STEP_SECONDS,
                may_start_over: bool = True) -> ChainStatus:
    """Check the chain for about ``seconds`` and record the result as an audit event.

    A step continues from the last intact checkpoint (the previous result) unless
    ``from_start`` is asked or the last result was a break, which is always re-checked
    from the first row. The event records how far the chain is intact (``through_id``),
    where the checked span began and when the run from the first row started, so later
    steps and the page can say how fresh the guarantee is."""
    last = _verification_events().first()
    details = (last.details or {}) if last else {}
    resume = last is not None and not from_start and details.get("ok") and details.get("through_hash")
    if resume:
        after_id, previous = int(details["through_id"]), details["through_hash"]
        run_started = details.get("run_started") or last.created_at.isoformat(timespec="seconds")
    else:
        if not may_start_over:
            raise ChainCheckRefused("a check from the first event reads the whole log of every organisation")
        after_id, previous = 0, audit.GENESIS
        run_started = utcnow().isoformat(timespec="seconds")
    result = audit.verify_from(after_id, previous, deadline=time.monotonic() + seconds)
    recorded = {
        "ok": result.ok,
        "complete": result.complete,
        "checked": result.checked,
        "from_id": after_id + 1,
        "through_id": result.last_id,
        "through_hash": result.last_hash,
        "run_started": run_started,
    }
    if not result.ok:
        recorded.update(broken_id=result.broken_id, reason=result.reason)
    audit.record(VERIFY_ACTION, actor=actor, acting_for=acting_for, organisation=organisation,
                 target="audit log", ip=ip, user_agent=user_agent,
                 outcome="success" if result.ok else "failure", details=recorded)
    return chain_status()
