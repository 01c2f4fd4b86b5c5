"""The password policy page: owners and technicians only, validation, saving with an
audit event, and the preview of how many local accounts would have to change."""

from __future__ import annotations

import datetime as dt

import pytest

from models import Account, AuditEvent, PasswordPolicy, utcnow
from tests.support.factories import sign_in

VALID = {"strength": "advanced", "expiry": "days", "expiry_days": "90", "history_count": "5",
         "lockout_threshold": "5", "lockout_minutes": "30"}


def test_page_shows_the_defaults(admin_client):
    page = admin_client.get("/admin/password-policy")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Password policy" in html
    assert '<option selected value="nist">' in html and 'id="lockout_threshold"' in html and 'value="10"' in html
    assert "local account" in html


def test_save_and_audit(app, admin_client, owner):
    admin_client.get("/admin/password-policy")
    response = admin_client.post("/admin/password-policy", VALID)
    assert response.status_code == 303
    with app.app_context():
        policy = PasswordPolicy.get(PasswordPolicy.organisation == owner.organisation)
        assert (policy.strength, policy.expiry_days, policy.history_count, policy.lockout_threshold, policy.lockout_minutes) == ("advanced", 90, 5, 5, 30)
        assert AuditEvent.select().where(AuditEvent.action == "password_policy.updated").count() == 1
    admin_client.get("/admin/password-policy")
    admin_client.post("/admin/password-policy", {**VALID, "expiry": "never"})
    with app.app_context():
        assert PasswordPolicy.get(PasswordPolicy.organisation == owner.organisation).expiry_days is None


@pytest.mark.parametrize("changes, message", [
    ({"strength": "weak"}, "Not a valid choice"),
    ({"expiry_days": ""}, "Enter after how many days"),
    ({"expiry_days": "0"}, "Enter 1 to 3650 days."),
    ({"history_count": "-1"}, "Enter 0 to 24."),
    ({"lockout_threshold": "1"}, "Enter 3 to 100."),
    ({"lockout_minutes": "abc"}, ""),
    ({"history_count": "9" * 400}, ""),
])
def test_invalid_values_are_a_clear_422(admin_client, changes, message):
    admin_client.get("/admin/password-policy")
    response = admin_client.post("/admin/password-policy", {**VALID, **changes})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)


def test_preview_counts_accounts_that_would_have_to_change(app, admin_client, owner, create_account):
    old = create_account(owner.organisation, "bob")
    with app.app_context():
        Account.update(password_changed_at=utcnow() - dt.timedelta(days=100)).where(Account.id == old.id).execute()
    admin_client.get("/admin/password-policy")
    response = admin_client.post("/admin/password-policy/preview", {"expiry": "days", "expiry_days": "90"},
                                 htmx=True, target="expiry-preview")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert "1 of 2 local accounts would have to change" in html
    never = admin_client.post("/admin/password-policy/preview", {"expiry": "never"}, htmx=True, target="expiry-preview")
    assert "0 of 2 local accounts must change" in never.get_data(as_text=True)
    garbage = admin_client.post("/admin/password-policy/preview", {"expiry": "days", "expiry_days": "x" * 100},
                                htmx=True, target="expiry-preview")
    assert garbage.status_code == 200


@pytest.mark.parametrize("role, status", [("technician", 200), ("team", 403), ("user", 403)])
def test_only_owners_and_technicians(client, owner, create_account, role, status):
    create_account(owner.organisation, "pat", role=role)
    sign_in(client, "pat")
    assert client.get("/admin/password-policy").status_code == status


def test_signed_out_goes_to_sign_in(client, owner):
    response = client.get("/admin/password-policy")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_saved_preset_applies_to_the_change_form(app, admin_client, owner):
    admin_client.get("/admin/password-policy")
    admin_client.post("/admin/password-policy", {**VALID, "strength": "medium", "expiry": "never"})
    admin_client.get("/account/password")
    response = admin_client.post("/account/password/check", {"new": "abcdefgh"}, htmx=True, target="password-rules")
    html = response.get_data(as_text=True)
    assert "An upper-case letter" in html and "A digit" in html and "rule-missing" in html
