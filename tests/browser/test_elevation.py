"""Elevation in a real browser: a team user allowed to elevate types a wrong password
(the HTMX form answers in place), then the right one, lands in the admin console as an
owner with the banner counting down, ends the elevation, elevates again and lets the
time run out: the banner says so and the next page explains the sign-out."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from models import Account, UserSession, db, utcnow
from tests.support.browser import TIMEOUT, ConsoleWatch, LiveServer, snap
from tests.support.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture
def server(app, create_organisation, create_account):
    organisation = create_organisation("acme", "Acme")
    create_account(organisation, "olga", role="owner", display_name="Olga Owner")
    create_account(organisation, "tina", role="team", display_name="Tina Team")
    with app.app_context():
        db.connect(reuse_if_open=True)
        Account.update(may_elevate=True).where(Account.username == "tina").execute()
        db.close()
    live = LiveServer(app).start()
    yield live
    live.stop()


def elevate(page, url, password=PASSWORD):
    page.goto(f"{url}/account")
    page.get_by_role("link", name="Elevate to owner").click()
    expect(page).to_have_url(re.compile(r"/account/elevate$"), timeout=TIMEOUT)
    page.get_by_label("Your password").fill(password)
    page.get_by_role("button", name="Elevate to owner").click()


def test_elevate_see_the_banner_end_it_and_let_it_run_out(app, server, page):
    watch = ConsoleWatch(page, expected_statuses=(422,))
    page.goto(f"{server.url}/login/password")
    page.get_by_label("Username or email").fill("tina")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/account$"), timeout=TIMEOUT)
    expect(page.locator("#elevation-banner")).to_have_count(0)

    elevate(page, server.url, "not my password")
    expect(page.get_by_role("alert")).to_contain_text("That is not your password.", timeout=TIMEOUT)
    expect(page).to_have_url(re.compile(r"/account/elevate$"), timeout=TIMEOUT)
    snap(page, "elevate-form-error")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Elevate to owner").click()

    expect(page).to_have_url(re.compile(r"/admin/$"), timeout=TIMEOUT)
    page.goto(f"{server.url}/admin/directories")  # an owner-only settings page
    expect(page.get_by_role("heading", name="Directories")).to_be_visible(timeout=TIMEOUT)
    banner = page.locator("#elevation-banner")
    expect(banner).to_be_visible(timeout=TIMEOUT)
    expect(banner).to_contain_text(re.compile(r"Elevated to owner — 1[45] minutes left"), timeout=TIMEOUT)
    snap(page, "elevated-settings-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(banner.get_by_role("button", name="End elevation")).to_be_visible(timeout=TIMEOUT)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    snap(page, "elevated-settings-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    banner.get_by_role("button", name="End elevation").click()
    expect(page).to_have_url(re.compile(r"/account$"), timeout=TIMEOUT)
    expect(page.locator("#flash-messages")).to_contain_text("Elevation ended", timeout=TIMEOUT)
    expect(page.locator("#elevation-banner")).to_have_count(0)
    watch.assert_clean()

    # Elevate again, then let the time run out (moved in the database): the banner says
    # so by itself, and the next page explains the sign-out.
    elevate(page, server.url)
    expect(page).to_have_url(re.compile(r"/admin/$"), timeout=TIMEOUT)
    page.goto(f"{server.url}/account")
    with app.app_context():
        db.connect(reuse_if_open=True)
        UserSession.update(expires_at=utcnow() + dt.timedelta(seconds=2)).where(
            UserSession.acting_role == "owner", UserSession.ended_at.is_null()).execute()
        db.close()
    page.reload()
    expect(page.locator("#elevation-banner")).to_contain_text("1 minute left", timeout=TIMEOUT)
    expect(page.locator("#elevation-banner")).to_contain_text("time is up", timeout=TIMEOUT)
    expect(page.locator("#elevation-banner").get_by_role("button", name="End elevation")).to_be_hidden()
    snap(page, "elevation-time-is-up")
    page.reload()
    expect(page).to_have_url(re.compile(r"/login"), timeout=TIMEOUT)
    expect(page.locator("#flash-messages")).to_contain_text("Your owner session ended at", timeout=TIMEOUT)
    snap(page, "elevation-ended-login")
    watch.assert_clean()
