"""Password expiry in a real browser: a user whose password is older than the policy
allows signs in, lands on the change form (nothing else is reachable), watches the live
checklist while typing, changes it, and then reaches their account; the new password
works for the next sign-in and the old one does not."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from models import Account, PasswordPolicy, db, utcnow
from tests.support.browser import TIMEOUT, ConsoleWatch, LiveServer, snap
from tests.support.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
NEW = "Quiet Meadow 42 lanterns!"


@pytest.fixture
def server(app, create_organisation, create_account):
    acme = create_organisation("acme", "Acme")
    ann = create_account(acme, "ann", display_name="Ann Archer")
    with app.app_context():
        PasswordPolicy.create(organisation=acme, expiry_days=30, history_count=1, strength="advanced",
                              lockout_threshold=10, lockout_minutes=15, updated_at=utcnow())
        Account.update(password_changed_at=utcnow() - dt.timedelta(days=31)).where(Account.id == ann.id).execute()
        db.close()
    live = LiveServer(app).start()
    yield live
    live.stop()


def password_sign_in(page, url, password):
    page.goto(f"{url}/login/password")
    page.get_by_label("Username or email").fill("ann")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_an_expired_password_must_be_changed_first(app, server, page):
    watch = ConsoleWatch(page, expected_statuses=(422,))  # the old password, refused at the end
    password_sign_in(page, server.url, PASSWORD)
    expect(page).to_have_url(re.compile(r"/account/password"), timeout=TIMEOUT)
    expect(page.get_by_role("alert").filter(has_text="Your password has expired")).to_be_visible(timeout=TIMEOUT)
    page.goto(f"{server.url}/account")
    expect(page).to_have_url(re.compile(r"/account/password$"), timeout=TIMEOUT)  # nothing else until changed

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).press_sequentially("short")
    expect(page.locator("#password-rules li.rule-missing")).not_to_have_count(0, timeout=TIMEOUT)
    page.get_by_label("New password", exact=True).fill(NEW)
    page.get_by_label("New password", exact=True).press("End")  # an input event for the checklist
    page.get_by_label("New password", exact=True).press_sequentially(" ")
    page.get_by_label("New password", exact=True).press("Backspace")
    expect(page.locator("#password-rules li.rule-missing")).to_have_count(0, timeout=TIMEOUT)
    expect(page.locator("#password-rules li.rule-ok")).not_to_have_count(0, timeout=TIMEOUT)
    snap(page, "password-expired-change")
    page.get_by_label("New password again").fill(NEW)
    page.get_by_role("button", name="Change password").click()
    expect(page).to_have_url(re.compile(r"/account$"), timeout=TIMEOUT)
    expect(page.get_by_text("Your password has been changed.")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_role("heading", name="Ann Archer")).to_be_visible(timeout=TIMEOUT)

    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
    password_sign_in(page, server.url, PASSWORD)
    expect(page.get_by_text("Wrong username or password.")).to_be_visible(timeout=TIMEOUT)
    password_sign_in(page, server.url, NEW)
    expect(page).to_have_url(re.compile(r"/account$"), timeout=TIMEOUT)
    watch.assert_clean()
    with app.app_context():
        account = Account.get(Account.username == "ann")
        assert not account.must_change_password and account.password_changed_at > utcnow() - dt.timedelta(minutes=5)
        db.close()
