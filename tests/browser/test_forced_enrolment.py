"""Two-factor enforcement in a real browser: an admin picks a user with the
search-as-you-type picker and saves; that user, signing in with a password, is sent to
set up two-factor authentication (secret read from the page, code computed like an
authenticator app) before the account page is reachable."""

from __future__ import annotations

import re

import pyotp
import pytest
from playwright.sync_api import expect

from models import Account, db
from services import mfa_policy
from tests.support.browser import TIMEOUT, ConsoleWatch, LiveServer, snap
from tests.support.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture
def server(app, create_organisation, create_account):
    acme = create_organisation("acme", "Acme")
    create_account(acme, "olga", role="owner", display_name="Olga Owner")
    create_account(acme, "ann", display_name="Ann Archer")
    create_account(acme, "bob", display_name="Bob Baker")
    live = LiveServer(app).start()
    yield live
    live.stop()


def password_sign_in(page, url, username):
    page.goto(f"{url}/login/password")
    page.get_by_label("Username or email").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_admin_picks_users_with_the_search(app, server, page):
    watch = ConsoleWatch(page)
    password_sign_in(page, server.url, "olga")
    expect(page).to_have_url(re.compile(r"/account$"), timeout=TIMEOUT)
    page.goto(f"{server.url}/admin/mfa-policy")
    page.get_by_label("Only the selected users must").check()
    page.get_by_label("Find users").press_sequentially("bak")
    page.get_by_role("button", name="Add bob").click()
    expect(page.locator("#mfa-chosen input[type=checkbox]:checked")).to_have_count(1, timeout=TIMEOUT)
    expect(page.locator("#mfa-search-results li")).to_have_count(0, timeout=TIMEOUT)
    snap(page, "mfa-policy-picker")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved the two-factor enforcement.")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#mfa-chosen")).to_contain_text("Bob Baker")
    watch.assert_clean()
    with app.app_context():
        db.connect(reuse_if_open=True)
        policy = mfa_policy.policy_for(Account.get(Account.username == "olga").organisation)
        assert policy.mode == "selected" and [a.username for a in mfa_policy.listed_accounts(policy)] == ["bob"]
        db.close()


def test_forced_enrolment_at_sign_in(app, server, page):
    with app.app_context():
        db.connect(reuse_if_open=True)
        ann = Account.get(Account.username == "ann")
        mfa_policy.save(ann.organisation, "all", [], actor="olga")
        db.close()
    watch = ConsoleWatch(page)
    password_sign_in(page, server.url, "ann")
    expect(page).to_have_url(re.compile(r"/account/2fa$"), timeout=TIMEOUT)
    page.goto(f"{server.url}/account")
    expect(page).to_have_url(re.compile(r"/account/2fa$"), timeout=TIMEOUT)  # nothing else until enrolled
    page.get_by_role("button", name="Set up two-factor authentication").click()
    secret = page.locator("#totp-secret").get_attribute("data-secret")
    assert secret and len(secret) == 32
    snap(page, "forced-enrolment")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm and turn on").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10, timeout=TIMEOUT)
    page.goto(f"{server.url}/account")
    expect(page).to_have_url(re.compile(r"/account$"), timeout=TIMEOUT)
    expect(page.get_by_role("heading", name="Ann Archer")).to_be_visible(timeout=TIMEOUT)
    watch.assert_clean()
