"""Admin: the audit log page — scope, filters, infinite scroll, CSV export, chain check."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest

from models import AuditEvent, db
from services import audit
from tests.support.factories import PASSWORD

ROW = re.compile(r'<details class="audit-event" id="audit-event-(\d+)"')


@pytest.fixture
def record(app):
    """``record(action, **fields)`` writes one audit event (in the chain)."""

    def write(action, **fields):
        with app.app_context():
            db.connect(reuse_if_open=True)
            try:
                fields.setdefault("organisation", "acme")
                return audit.record(action, **fields)
            finally:
                db.close()

    return write


@pytest.fixture
def orgs(create_organisation, owner):
    """acme (olga's) with a child acme-eu, and an unrelated globex."""
    from models import Organisation

    acme = Organisation.get(slug="acme")
    return {"acme": acme, "acme-eu": create_organisation("acme-eu", parent=acme), "globex": create_organisation("globex")}


def sign_in_to(client, username: str, organisation: str):
    """Sign in where several organisations share the installation (the Account ID is asked)."""
    client.get("/login/password")
    response = client.post("/login/password", {"identifier": username, "password": PASSWORD, "account_id": organisation})
    assert response.status_code == 303, response.get_data(as_text=True)


def ids(html: str) -> list[int]:
    return [int(n) for n in ROW.findall(html)]


def test_lists_events_newest_first_with_details_and_only_managed_organisations(admin_client, orgs, record):
    first = record("sign_in.completed", actor="ann", target="ann", ip="10.0.0.7", user_agent="Firefox/127",
                   details={"method": "password"})
    child = record("account.created", organisation="acme-eu", actor="olga", target="erik")
    foreign = record("sign_in.completed", organisation="globex", actor="gus", target="gus")
    html = admin_client.get("/admin/audit").get_data(as_text=True)
    shown = ids(html)
    assert shown[:2] == [child.id, first.id] and foreign.id not in shown
    assert "10.0.0.7" in html and "Firefox/127" in html and "Method" in html and "password" in html
    assert 'name="organisation"' in html and '<option value="acme-eu"' in html  # the child can be chosen
    assert "gus" not in html


def test_a_child_organisations_admin_never_sees_the_parents_events(client, orgs, create_account, record):
    create_account(orgs["acme-eu"], "erik", role="owner")
    parent = record("policy.updated", actor="olga", target="Finance")
    own = record("sign_in.completed", organisation="acme-eu", actor="eve", target="eve")
    sign_in_to(client, "erik", "acme-eu")
    html = client.get("/admin/audit").get_data(as_text=True)
    assert own.id in ids(html) and parent.id not in ids(html)
    response = client.get("/admin/audit?organisation=acme")
    assert response.status_code == 422
    assert "Not an organisation whose log you can read." in response.get_data(as_text=True)
    assert parent.id not in ids(response.get_data(as_text=True))


@pytest.mark.parametrize("query, expected", [
    ("actor=ann", {"ann-in", "ann-out"}),
    ("target=bob", {"bob-fail"}),
    ("action=sign_in.completed", {"ann-in"}),
    ("action=sign_in.%2A", {"ann-in", "bob-fail"}),
    ("outcome=failure", {"bob-fail"}),
    ("organisation=acme-eu", {"eu"}),
    ("actor=ann&action=sign_out", {"ann-out"}),
])
def test_filters(admin_client, orgs, record, query, expected):
    made = {
        "ann-in": record("sign_in.completed", actor="ann", target="ann"),
        "bob-fail": record("sign_in.password", actor="bob", target="bob", outcome="failure"),
        "ann-out": record("sign_out", actor="ann", target="ann"),
        "eu": record("account.created", organisation="acme-eu", actor="olga", target="erik"),
    }
    html = admin_client.get(f"/admin/audit?{query}").get_data(as_text=True)
    before = min(e.id for e in made.values())
    shown = [n for n in ids(html) if n >= before]  # events before (olga's account, her sign-in) are not this test's
    assert set(shown) <= {e.id for e in made.values()}
    assert {name for name, event in made.items() if event.id in shown} == expected


def test_time_range_is_in_utc_days(admin_client, orgs, record, app):
    old = record("sign_in.completed", actor="ann", target="ann")
    new = record("sign_in.completed", actor="ann", target="ann")
    with app.app_context():
        db.connect(reuse_if_open=True)
        AuditEvent.update(created_at=dt.datetime(2024, 3, 1, 23, 59)).where(AuditEvent.id <= old.id).execute()
        db.close()
    day = "from=2024-03-01&to=2024-03-01"
    assert ids(admin_client.get(f"/admin/audit?{day}").get_data(as_text=True))[0] == old.id
    after = ids(admin_client.get("/admin/audit?from=2024-03-02").get_data(as_text=True))
    assert after == [new.id]
    assert ids(admin_client.get("/admin/audit?to=2024-02-28").get_data(as_text=True)) == []


def test_bad_filters_are_explained_and_the_rest_still_apply(admin_client, orgs, record):
    ann = record("sign_in.completed", actor="ann", target="ann")
    record("sign_in.completed", actor="bob", target="bob")
    response = admin_client.get("/admin/audit?actor=ann&from=31/12/2024&outcome=maybe")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "The from date must look like 2025-01-31" in html and "Choose one of: success" in html
    assert 'value="31/12/2024"' in html and 'value="ann"' in html  # nothing typed is lost
    assert ids(html) == [ann.id]
    long = admin_client.get("/admin/audit?actor=" + "x" * 400)
    assert long.status_code == 422 and "At most 320 characters." in long.get_data(as_text=True)
    garbage = admin_client.get("/admin/audit?actor=%00&target=%00&from=%00&before=%00&organisation=%00")
    assert garbage.status_code == 422 and "Remove the control characters." in garbage.get_data(as_text=True)
    reversed_range = admin_client.get("/admin/audit?from=2025-02-01&to=2025-01-01")
    assert "The to date is before the from date." in reversed_range.get_data(as_text=True)


def test_fifty_a_page_and_the_next_page_is_loaded_when_revealed(admin_client, orgs, record):
    made = [record("sign_in.link_viewed", actor="link holder", target=f"user{n}").id for n in range(120)]
    page = admin_client.get("/admin/audit?action=sign_in.link_viewed").get_data(as_text=True)
    assert ids(page) == made[::-1][:50]
    sentinel = re.search(r'id="audit-more"[^>]*hx-get="([^"]+)"[^>]*hx-trigger="revealed"', page)
    assert sentinel, "the last row is followed by a sentinel that loads more when revealed"
    next_url = sentinel.group(1).replace("&amp;", "&")
    assert f"before={made[::-1][49]}" in next_url and "action=sign_in.link_viewed" in next_url
    more = admin_client.get(next_url, htmx=True, target="audit-more")
    body = more.get_data(as_text=True)
    assert "<html" not in body and 'id="audit-results"' not in body
    assert ids(body) == made[::-1][50:100]
    last_url = re.search(r'id="audit-more"[^>]*hx-get="([^"]+)"', body).group(1).replace("&amp;", "&")
    last = admin_client.get(last_url, htmx=True, target="audit-more").get_data(as_text=True)
    assert ids(last) == made[::-1][100:] and 'id="audit-more"' not in last and "No older events." in last
    # without JavaScript the same URL is a whole page with an "Older events" link
    full = admin_client.get(next_url).get_data(as_text=True)
    assert "<html" in full and ids(full) == made[::-1][50:100] and "Older events" in full


def test_filtering_with_htmx_answers_the_results_only(admin_client, orgs, record):
    ann = record("sign_in.completed", actor="ann", target="ann")
    response = admin_client.get("/admin/audit?actor=ann", htmx=True, target="audit-results")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body and body.lstrip().startswith('<section id="audit-results"')
    assert ids(body) == [ann.id] and "/admin/audit/export.csv?actor=ann" in body


def test_empty_states(admin_client, orgs):
    assert "No events match these filters." in admin_client.get("/admin/audit?actor=nobody").get_data(as_text=True)


def test_csv_export_is_streamed_filtered_scoped_and_formula_safe(admin_client, orgs, record):
    record("sign_in.password", actor="=HYPERLINK(\"http://evil\")", target="+cmd", outcome="failure",
           details={"reason": "-2+3", "password": "hunter2"})
    record("sign_in.completed", actor="ann", target="ann")
    record("sign_in.password", organisation="globex", actor="gus", target="gus", outcome="failure")
    response = admin_client.get("/admin/audit/export.csv?action=sign_in.password")
    assert response.is_streamed and response.mimetype == "text/csv"
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert response.headers["Content-Disposition"] == f'attachment; filename="gatehouse-audit-{today}.csv"'
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:6] == ["id", "time_utc", "organisation", "actor", "acting_for", "action"]
    assert len(rows) == 2  # header + the acme event: not ann's, not globex's
    row = dict(zip(rows[0], rows[1]))
    assert row["actor"] == "'=HYPERLINK(\"http://evil\")" and row["target"] == "'+cmd"
    assert row["time_utc"].endswith("Z") and "hunter2" not in response.get_data(as_text=True)


def test_csv_export_of_more_than_one_batch(admin_client, orgs, record, app, monkeypatch):
    from services import audit_log

    monkeypatch.setattr(audit_log, "CSV_BATCH", 7)
    made = [record("email.sent", actor="mail-worker", target=f"u{n}@acme.test").id for n in range(20)]
    response = admin_client.get("/admin/audit/export.csv?action=email.sent")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert [int(r[0]) for r in rows[1:]] == made[::-1]


def test_csv_export_refuses_bad_filters_with_a_message(admin_client, orgs):
    response = admin_client.get("/admin/audit/export.csv?from=yesterday")
    assert response.status_code == 303 and "/admin/audit?from=yesterday" in response.headers["Location"]
    html = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The export was not made" in html


def test_checking_the_chain_records_the_result_and_shows_it(admin_client, orgs, record, app):
    for n in range(5):
        record("sign_in.completed", actor=f"u{n}", target=f"u{n}")
    page = admin_client.get("/admin/audit").get_data(as_text=True)
    assert "never checked" in page
    response = admin_client.post("/admin/audit/verify", {}, htmx=True, target="audit-chain")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body and 'id="audit-chain"' in body
    assert "intact" in body and "Check new events" in body
    with app.app_context():
        db.connect(reuse_if_open=True)
        checked = AuditEvent.select().where(AuditEvent.action == "audit.verified").get()
        assert checked.actor == "olga" and checked.details["ok"] is True and checked.details["complete"] is True
        # someone edits a row behind Gatehouse's back
        victim = AuditEvent.select().where(AuditEvent.actor == "u2").get()
        AuditEvent.update(target="mallory").where(AuditEvent.id == victim.id).execute()
        db.close()
    # checking only the new events does not reread old rows; from the first event finds it
    assert "intact" in admin_client.post("/admin/audit/verify", {}, htmx=True, target="audit-chain").get_data(as_text=True)
    broken = admin_client.post("/admin/audit/verify", {"from_start": "1"}, htmx=True, target="audit-chain").get_data(as_text=True)
    assert "broken" in broken and f"Event #{victim.id}: this row was edited" in broken
    assert "broken" in admin_client.get("/admin/audit").get_data(as_text=True)


def test_checking_the_chain_without_javascript(admin_client, orgs, record):
    record("sign_in.completed", actor="ann", target="ann")
    admin_client.get("/admin/audit")
    response = admin_client.post("/admin/audit/verify", {})
    assert response.status_code == 303 and response.headers["Location"] == "/admin/audit"
    assert "hash chain is intact" in admin_client.get("/admin/audit").get_data(as_text=True)


def test_a_long_check_goes_on_in_steps(admin_client, orgs, record, monkeypatch):
    for n in range(12):
        record("email.sent", actor="mail-worker", target=f"u{n}")
    real = audit.verify_from
    monkeypatch.setattr(audit, "verify_from", lambda *a, **k: real(*a, **{**k, "batch": 5, "deadline": 0}))
    admin_client.get("/admin/audit")
    body = admin_client.post("/admin/audit/verify", {}, htmx=True, target="audit-chain").get_data(as_text=True)
    assert "Checking…" in body and 'hx-trigger="load delay:50ms, submit"' in body  # continues by itself
    steps = 1
    while "load delay:50ms" in body and steps < 30:  # each step checks 5 rows and records one
        body = admin_client.post("/admin/audit/verify", {}, htmx=True, target="audit-chain").get_data(as_text=True)
        steps += 1
    assert steps > 3
    assert "intact" in body and "load delay:50ms" not in body and "Check new events" in body


def test_verify_needs_the_csrf_token(admin_client, orgs, app):
    admin_client.get("/admin/audit")
    response = admin_client.post("/admin/audit/verify", {}, csrf=False)
    assert response.status_code in (400, 303)
    with app.app_context():
        db.connect(reuse_if_open=True)
        assert AuditEvent.select().where(AuditEvent.action == "audit.verified").count() == 0
        db.close()


def test_team_users_may_not_read_the_audit_log(client, orgs, create_account):
    create_account(orgs["acme"], "tom", role="team")
    sign_in_to(client, "tom", "acme")
    assert client.get("/admin/audit").status_code == 403
    assert client.get("/admin/audit/export.csv").status_code == 403


def test_an_export_is_itself_audited_and_odd_arguments_are_harmless(app, admin_client, orgs):
    response = admin_client.get("/admin/audit/export.csv?outcome=failure")
    response.get_data()
    response.close()
    with app.app_context():
        event = AuditEvent.select().where(AuditEvent.action == "audit.exported").get()
        assert event.actor == "olga" and event.details == {"filters": {"outcome": "failure"}}
    odd = admin_client.get("/admin/audit/export.csv?from=x&endpoint=a&_external=1&_scheme=http")
    assert odd.status_code == 303 and odd.headers["Location"] == "/admin/audit?from=x"


def test_a_sub_organisation_admin_continues_checks_but_never_reads_the_whole_chain(app, admin_client, orgs, record,
                                                                                     create_account):
    from tests.support.web import WebClient

    record("sign_in.completed", actor="ann", target="ann")
    create_account(orgs["acme-eu"], "eve", role="owner")
    client = WebClient(app.test_client())
    sign_in_to(client, "eve", "acme-eu")
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "Check the chain" not in page and "checked by the administrators of Acme" in page
    refused = client.post("/admin/audit/verify", {"from_start": "1"}, htmx=True, target="audit-chain")
    assert refused.status_code == 422 and "for the administrators of Acme" in refused.get_data(as_text=True)
    # Once the top organisation has checked, new events can be checked from that point.
    admin_client.get("/admin/audit")
    assert "intact" in admin_client.post("/admin/audit/verify", {}, htmx=True, target="audit-chain").get_data(as_text=True)
    record("sign_in.completed", actor="eve", target="eve", organisation="acme-eu")
    client.get("/admin/audit")
    checked = client.post("/admin/audit/verify", {}, htmx=True, target="audit-chain")
    assert checked.status_code == 200 and "intact" in checked.get_data(as_text=True)
    assert client.post("/admin/audit/verify", {"from_start": "1"}, htmx=True, target="audit-chain").status_code == 422
