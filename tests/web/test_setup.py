"""The one-time setup page /setup: it creates the first owner and their organisation
while no owner exists anywhere, then answers 404 for good. CSRF protected and audited."""

from __future__ import annotations

import pytest

from models import Account, AuditEvent, Organisation
from services import passwords

GOOD = "a long enough passphrase here"


def form(**overrides):
    values = {"organisation_name": "Acme Corporation", "organisation_slug": "acme", "username": "olga",
              "display_name": "Olga Owner", "email": "olga@acme.test", "new": GOOD, "confirm": GOOD}
    values.update(overrides)
    return values


def test_setup_creates_the_first_owner_and_signs_in(app, client):
    page = client.get("/setup")
    assert page.status_code == 200 and "Set up Gatehouse" in page.get_data(as_text=True)
    response = client.post("/setup", form(organisation_slug="Acme"))
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    with app.app_context():
        olga = Account.get(Account.username == "olga")
        assert (olga.role, olga.status, olga.organisation.slug, olga.organisation.name) == ("owner", "active", "acme", "Acme Corporation")
        assert passwords.check_password(olga, GOOD)
        event = AuditEvent.get(AuditEvent.action == "setup.completed")
        assert (event.actor, event.organisation, event.outcome) == ("olga", "acme", "success")
        assert GOOD not in str(event.details)
    admin = client.get("/admin/")
    assert admin.status_code == 200 and "Gatehouse is set up" in admin.get_data(as_text=True)


def test_setup_is_gone_once_an_owner_exists(app, client, owner):
    assert client.get("/setup").status_code == 404
    client.get("/login")
    assert client.post("/setup", form(username="eve", email="eve@evil.test")).status_code == 404
    assert client.post("/setup/check", {"new": "x"}).status_code == 404
    with app.app_context():
        assert not Account.select().where(Account.username == "eve").exists()


def test_setup_is_gone_after_it_ran(client):
    client.get("/setup")
    client.post("/setup", form())
    assert client.get("/setup").status_code == 404


def test_setup_needs_the_csrf_token(app, client):
    client.get("/setup")
    assert client.post("/setup", form(), csrf=False).status_code == 400
    with app.app_context():
        assert Account.select().count() == 0


@pytest.mark.parametrize("overrides, message", [
    ({"new": "short", "confirm": "short"}, "At least 15 characters"),
    ({"confirm": GOOD + "x"}, "The two passwords are not the same."),
    ({"organisation_slug": "a b"}, "An Account ID is 2 to 64 lower-case letters, digits or hyphens."),
    ({"email": "nobody"}, "Enter one email address, like name@example.com."),
    ({"username": "x" * 300}, "A username is at most 256 characters."),
    ({"organisation_name": ""}, "Enter your organisation&#39;s name."),
])
def test_bad_input_is_refused_and_nothing_is_created(app, client, overrides, message):
    client.get("/setup")
    response = client.post("/setup", form(**overrides))
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and message in html
    assert 'value="Acme Corporation"' in html or overrides.get("organisation_name") == ""  # typed values stay
    with app.app_context():
        assert Account.select().count() == 0 and Organisation.select().count() == 0


def test_setup_uses_an_organisation_that_has_no_owner_yet(app, client, create_organisation, create_account):
    acme = create_organisation("acme", "Acme")
    create_account(acme, "tom", role="technician")
    client.get("/setup")
    assert client.post("/setup", form(organisation_name="Ignored")).status_code == 303
    with app.app_context():
        assert Organisation.select().count() == 1
        assert Account.get(Account.username == "olga").organisation_id == acme.id


def test_the_live_checklist(client):
    client.get("/setup")
    html = client.post("/setup/check", {"new": "short"}, htmx=True, target="password-rules").get_data(as_text=True)
    assert "<html" not in html and "rule-missing" in html
