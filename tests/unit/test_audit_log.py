"""services.audit_log: filter parsing, scope, keyset pages, CSV cells, chain checks in steps."""

from __future__ import annotations

import datetime as dt

import pytest

from models import AuditEvent, Organisation
from services import audit, audit_log

SLUGS = ["acme", "acme-eu"]


@pytest.mark.parametrize("args, expected, errors", [
    ({}, {}, set()),
    ({"actor": "  ann "}, {"actor": "ann"}, set()),
    ({"outcome": "denied", "organisation": "acme-eu"}, {"outcome": "denied", "organisation": "acme-eu"}, set()),
    ({"outcome": "maybe"}, {}, {"outcome"}),
    ({"organisation": "globex"}, {}, {"organisation"}),
    ({"from": "2025-01-31", "to": "2025-02-01"}, {"from": "2025-01-31", "to": "2025-02-01"}, set()),
    ({"from": "31.01.2025"}, {}, {"from"}),
    ({"from": "2025-02-02", "to": "2025-02-01"}, {"from": "2025-02-02"}, {"to"}),
    ({"target": "x" * 321}, {}, {"target"}),
    ({"action": "a" * 65}, {}, {"action"}),
    ({"actor": "ann\x00", "target": "\x1b[31m"}, {}, {"actor", "target"}),
])
def test_parse_filters(args, expected, errors):
    filters, problems = audit_log.parse_filters(args, SLUGS)
    assert filters.query_args() == expected
    assert set(problems) == errors
    assert all(message.endswith(".") for message in problems.values())


@pytest.mark.parametrize("value, expected", [("12", 12), ("0", None), ("-3", None), ("x", None), (None, None)])
def test_parse_before(value, expected):
    assert audit_log.parse_before(value) == expected


@pytest.mark.parametrize("cell, expected", [
    ("=SUM(A1)", "'=SUM(A1)"), ("+1", "'+1"), ("-1", "'-1"), ("@cmd", "'@cmd"), ("\tx", "'\tx"),
    ("ann", "ann"), ("", ""), (None, ""), (12, "12"), ("a=b", "a=b"),
])
def test_csv_cells_never_start_like_a_formula(cell, expected):
    assert audit_log.csv_safe(cell) == expected


def test_csv_filename_has_the_date():
    assert audit_log.csv_filename(dt.date(2025, 1, 31)) == "gatehouse-audit-2025-01-31.csv"


def test_action_groups_expand_to_known_actions():
    assert "sign_in.completed" in audit_log._actions("sign_in.*") and "sign_out" not in audit_log._actions("sign_in.*")
    assert audit_log._actions("custom.thing") == ["custom.thing"]
    assert audit_log._actions("nothing.*") == ["nothing.*"]  # matches nothing, but says so honestly


def test_scope_is_the_organisation_and_its_descendants(database):
    acme = Organisation.create(slug="acme", name="Acme")
    eu = Organisation.create(slug="acme-eu", name="EU", parent=acme)
    Organisation.create(slug="acme-eu-north", name="North", parent=eu)
    Organisation.create(slug="globex", name="Globex")
    assert audit_log.scope(acme) == ["acme", "acme-eu", "acme-eu-north"]
    assert audit_log.scope(eu) == ["acme-eu", "acme-eu-north"]


def test_keyset_pages_cover_every_event_once_newest_first(database):
    made = [audit.record("email.sent", organisation="acme" if n % 3 else "globex", actor="w", target=f"u{n}").id
            for n in range(30)]
    expected = [i for n, i in enumerate(made) if n % 3][::-1]
    filters, _ = audit_log.parse_filters({}, ["acme"])
    seen, before = [], None
    while True:
        page = audit_log.page(["acme"], filters, before=before, size=7)
        seen += [e.id for e in page.events]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == expected


def test_time_range_becomes_an_id_range(database):
    days = [dt.datetime(2025, 1, d, 12) for d in (1, 2, 2, 3)]
    made = []
    for day in days:
        event = audit.record("sign_out", organisation="acme", actor="ann", target="ann")
        AuditEvent.update(created_at=day).where(AuditEvent.id == event.id).execute()
        made.append(event.id)
    filters, _ = audit_log.parse_filters({"from": "2025-01-02", "to": "2025-01-02"}, ["acme"])
    assert [e.id for e in audit_log.page(["acme"], filters).events] == [made[2], made[1]]
    filters, _ = audit_log.parse_filters({"from": "2025-01-04"}, ["acme"])
    assert audit_log.page(["acme"], filters).events == []


def test_csv_lines_stream_in_batches(database):
    for n in range(5):
        audit.record("sign_in.completed", organisation="acme", actor=f"=u{n}", target="t")
    filters, _ = audit_log.parse_filters({"action": "sign_in.completed"}, ["acme"])
    chunks = list(audit_log.csv_lines(["acme"], filters, batch=2))
    assert chunks[0].startswith("id,time_utc,") and len(chunks) == 1 + 3
    assert all("'=u" in chunk for chunk in chunks[1:])


def test_verification_steps_continue_from_the_checkpoint_and_restart_after_a_break(database):
    for n in range(6):
        audit.record("sign_in.completed", organisation="acme", actor=f"u{n}", target="t")
    status = audit_log.verify_step(actor="olga", organisation="acme")
    assert status.ok and status.complete and status.through_id == 6 and status.last.actor == "olga"
    assert status.details["from_id"] == 1 and "through_hash" in status.details
    AuditEvent.update(actor="mallory").where(AuditEvent.id == 2).execute()
    again = audit_log.verify_step(actor="olga", organisation="acme")
    assert again.ok and again.details["from_id"] == 7  # new events only: the old edit is not reread
    full = audit_log.verify_step(actor="olga", organisation="acme", from_start=True)
    assert full.ok is False and full.details["broken_id"] == 2 and "edited" in full.details["reason"]
    after = audit_log.verify_step(actor="olga", organisation="acme")
    assert after.ok is False and after.details["from_id"] == 1  # a break is always checked again from the start


def test_verify_from_stops_at_the_deadline_and_resumes(database):
    for n in range(12):
        audit.record("email.sent", organisation="acme", actor="w", target=f"u{n}")
    first = audit.verify_from(0, audit.GENESIS, deadline=0, batch=5)
    assert first.ok and not first.complete and first.last_id == 5
    rest = audit.verify_from(first.last_id, first.last_hash, batch=5)
    assert rest.ok and rest.complete and rest.last_id == 12 and rest.checked == 7
    wrong = audit.verify_from(first.last_id, audit.GENESIS, batch=5)
    assert not wrong.ok and wrong.broken_id == 6
