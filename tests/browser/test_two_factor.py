"""Two-factor authentication in a real browser: enrol by reading the secret from the
page and computing codes like an authenticator app, sign out, sign in with the
password and the TOTP step (HTMX form), then reset with a recovery code and enrol again."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from playwright.sync_api import expect

from tests.support.browser import TIMEOUT, ConsoleWatch, LiveServer, snap
from tests.support.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture
def server(app, create_organisation, create_account):
    create_account(create_organisation("acme", "Acme"), "ann", display_name="Ann Archer")
    live = LiveServer(app).start()
    yield live
    live.stop()


def password_sign_in(page, url):
    page.goto(f"{url}/login/password")
    page.get_by_label("Username or email").fill("ann")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def enrol(page, url) -> tuple[str, list[str]]:
    page.goto(f"{url}/account/2fa")
    expect(page.get_by_role("heading", name="Status: off")).to_be_visible(timeout=TIMEOUT)
    page.get_by_role("button", name="Set up two-factor authentication").click()
    expect(page.locator("svg.qr-code")).to_be_visible(timeout=TIMEOUT)
    secret = page.locator("#totp-secret").get_attribute("data-secret")
    assert secret and len(secret) == 32
    assert page.locator("#totp-secret").inner_text().replace(" ", "") == secret  # typeable, in groups
    snap(page, "two-factor-enrol")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm and turn on").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10, timeout=TIMEOUT)
    codes = [c.strip() for c in page.locator("#recovery-codes code").all_inner_texts()]
    snap(page, "two-factor-recovery-codes")
    return secret, codes


def test_enrol_sign_in_with_totp_and_recover(server, page):
    watch = ConsoleWatch(page, expected_statuses=(422,))
    password_sign_in(page, server.url)
    expect(page).to_have_url(re.compile(r"/account$"), timeout=TIMEOUT)
    secret, codes = enrol(page, server.url)
    page.get_by_role("link", name=re.compile("continue")).click()
    page.get_by_role("button", name="Sign out").first.click()
    expect(page).to_have_url(re.compile(r"/login$"), timeout=TIMEOUT)

    password_sign_in(page, server.url)
    expect(page).to_have_url(re.compile(r"/login/totp$"), timeout=TIMEOUT)
    code = page.get_by_label("Code from your authenticator app")
    code.fill("000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text("not right", timeout=TIMEOUT)  # HTMX swap, same page
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(re.compile(r"/account$"), timeout=TIMEOUT)
    expect(page.get_by_role("heading", name="Ann Archer")).to_be_visible(timeout=TIMEOUT)
    watch.assert_clean()

    page.get_by_role("button", name="Sign out").first.click()
    password_sign_in(page, server.url)
    expect(page).to_have_url(re.compile(r"/login/totp$"), timeout=TIMEOUT)
    page.get_by_role("link", name="Reset your two-factor authentication?").click()
    page.get_by_label("Recovery code").fill(codes[0])
    page.get_by_role("button", name="Disable 2FA").click()
    expect(page).to_have_url(re.compile(r"/account/2fa$"), timeout=TIMEOUT)
    page.goto(f"{server.url}/account")
    expect(page).to_have_url(re.compile(r"/account/2fa$"), timeout=TIMEOUT)  # enrolment first
    new_secret, _ = enrol(page, server.url)
    assert new_secret != secret
    page.goto(f"{server.url}/account")
    expect(page.get_by_role("heading", name="Ann Archer")).to_be_visible(timeout=TIMEOUT)
    watch.assert_clean()
