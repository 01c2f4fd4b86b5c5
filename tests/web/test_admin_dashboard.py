"""Admin: the dashboard — today's sign-ins, what needs attention, lazy connection health."""

from __future__ import annotations

import datetime as dt
import functools
import re
import socket

import pytest

from models import Account, AuditEvent, Directory, MailServer, Organisation, OutboxMessage, SignInRequest, utcnow
from services import audit, dashboard, mailer
from tests.support.factories import PASSWORD
from tests.support.web import stored


def sign_in_to(client, username: str, organisation: str):
    client.get("/login/password")
    response = client.post("/login/password", {"identifier": username, "password": PASSWORD, "account_id": organisation})
    assert response.status_code == 303, response.get_data(as_text=True)


@pytest.fixture
def in_app(app):
    """Run a function inside an app context with a connection."""
    return functools.partial(stored, app)


@pytest.fixture(autouse=True)
def forget_health_checks():
    """Health results are kept a few seconds per organisation id; each test has a new database."""
    dashboard._health_cache.clear()
    yield
    dashboard._health_cache.clear()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def figure(html: str, label: str) -> str:
    """The number shown (with its link, if any) in the row labelled ``label``."""
    match = re.search(re.escape(label) + r".*?<td>(.*?)</td>", html, re.S)
    assert match, f"no row {label!r}"
    return match.group(1)


def test_todays_sign_ins_by_method_and_outcome_link_to_the_audit_log(admin_client, owner, in_app):
    def seed():
        old = audit.record("sign_in.password", actor="bob", target="bob", organisation="acme", outcome="failure")
        # yesterday: that failure and everything before it (olga's own sign-in)
        AuditEvent.update(created_at=utcnow() - dt.timedelta(days=1)).where(AuditEvent.id <= old.id).execute()
        for method in ("password", "password", "email_link", "manager_approval"):
            audit.record("sign_in.completed", actor="ann", target="ann", organisation="acme", details={"method": method})
        audit.record("sign_in.password", actor="bob", target="bob", organisation="acme", outcome="failure")
        audit.record("sign_in.password", actor="bob", target="bob", organisation="acme", outcome="failure")
        audit.record("two_factor.verify", actor="bob", target="bob", organisation="acme", outcome="denied")
        audit.record("sign_in.completed", actor="gus", target="gus", organisation="globex", details={"method": "password"})

    in_app(seed)
    html = admin_client.get("/admin/").get_data(as_text=True)
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert ">2</a>" in figure(html, "<th scope=\"row\">Password</th>")
    assert ">4</a>" in html.split("Signed in", 1)[1].split("</h3>", 1)[0]
    assert ">1</a>" in figure(html, "<th scope=\"row\">Email link</th>")
    assert ">1</a>" in figure(html, "<th scope=\"row\">Manager approval</th>")
    assert ">2</a>" in figure(html, "Wrong password or locked")
    assert ">1</a>" in figure(html, "Two-factor code refused")
    link = re.search(r'href="([^"]+)"[^>]*>2</a>', figure(html, "Wrong password or locked")).group(1).replace("&amp;", "&")
    assert link.startswith("/admin/audit?") and "action=sign_in.password" in link and f"from={today}" in link
    assert f"to={today}" in link and "outcome=failure" in link
    assert "Configuration" in html and "/admin/directories" in html  # the settings tiles, for an owner


def test_pending_approvals_locked_accounts_and_the_outbox(admin_client, owner, create_account, in_app):
    ann = create_account(owner.organisation, "ann")

    def seed():
        now = utcnow()
        for n, (status, expires) in enumerate([("pending", 10), ("pending", -1), ("approved", 10)]):
            SignInRequest.create(public_id=f"r{n}", organisation=owner.organisation_id, account=ann.id, kind="user",
                                 status=status, token_hash=f"t{n}", binding_hash="b", expires_at=now + dt.timedelta(minutes=expires))
        Account.update(locked_until=now + dt.timedelta(minutes=15)).where(Account.id == ann.id).execute()
        for n in range(3):
            mailer.queue(f"u{n}@acme.test", "Hello", "Hi", organisation="acme")
        first = OutboxMessage.select().order_by(OutboxMessage.id).first()
        OutboxMessage.update(status="failed").where(OutboxMessage.id == first.id).execute()
        mailer.queue("x@globex.test", "Hello", "Hi", organisation="globex")

    in_app(seed)
    html = admin_client.get("/admin/").get_data(as_text=True)
    assert ">1</a>" in figure(html, "Sign-ins waiting for approval")
    assert ">1<" in figure(html, "Locked accounts")
    assert ">2</a>" in figure(html, "Emails in the outbox")
    assert ">1</a>" in figure(html, "Emails not delivered")
    assert "action=email.failed" in figure(html, "Emails not delivered")


def test_health_is_loaded_after_the_page_and_reports_down_servers(admin_client, owner, in_app):
    port = closed_port()

    def seed():
        Directory.create(organisation=owner.organisation_id, name="Acme LDAP", servers=[f"ldap://127.0.0.1:{port}"],
                         base_dn="dc=acme,dc=test")
        MailServer.create(organisation=owner.organisation_id, name="Relay", host="127.0.0.1", port=port, security="none",
                          from_address="gatehouse@acme.test")

    in_app(seed)
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert 'hx-get="/admin/health"' in page and 'hx-trigger="load"' in page and "Relay" not in page
    response = admin_client.get("/admin/health", htmx=True, target="dashboard-health")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body and 'hx-trigger="load"' not in body
    assert "Acme LDAP" in body and "Relay" in body and body.count("badge-danger") == 2
    assert "connection refused" in body
    full = admin_client.get("/admin/health").get_data(as_text=True)  # without JavaScript: a page of its own
    assert "<html" in full and "Connection health" in full and "Relay" in full


def test_health_with_nothing_configured(admin_client):
    body = admin_client.get("/admin/health", htmx=True, target="dashboard-health").get_data(as_text=True)
    assert "No directories or mail servers yet" in body


def test_team_users_see_the_dashboard_without_settings_or_audit_links(client, owner, create_account, in_app):
    create_account(owner.organisation, "tom", role="team")
    in_app(lambda: audit.record("sign_in.password", actor="bob", target="bob", organisation="acme", outcome="failure"))
    sign_in_to(client, "tom", "acme")
    response = client.get("/admin/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Sign-ins today" in html
    assert "Configuration" not in html and "/admin/directories" not in html
    assert "/admin/audit" not in html and "<span class=\"dash-number\">1</span>" in figure(html, "Wrong password or locked")


def test_a_child_organisation_is_counted_for_the_parent_not_the_reverse(client, admin_client, owner, create_account, in_app):
    in_app(lambda: Organisation.create(slug="acme-eu", name="Acme EU", parent=owner.organisation_id))
    child = in_app(lambda: Organisation.get(slug="acme-eu"))
    in_app(lambda: audit.record("sign_in.expired", actor="gatehouse", target="eve", organisation="acme-eu", outcome="failure"))
    in_app(lambda: audit.record("sign_in.expired", actor="gatehouse", target="ann", organisation="acme", outcome="failure"))
    assert ">2</a>" in figure(admin_client.get("/admin/").get_data(as_text=True), "Link expired")
    create_account(child, "erik", role="owner")
    admin_client.post("/logout", {})
    sign_in_to(client, "erik", "acme-eu")
    assert ">1</a>" in figure(client.get("/admin/").get_data(as_text=True), "Link expired")


def test_dashboard_as_an_htmx_partial_is_the_whole_page_for_boosted_navigation(admin_client):
    response = admin_client.get("/admin/", htmx=True, target="dashboard-health")
    assert "<html" not in response.get_data(as_text=True)
