"""The users page in a real browser: search as you type (the list updates without a
page load), open a user, reset their two-factor authentication through the confirmation
page; no console errors or CSP violations, and the pages at phone width.

Set GATEHOUSE_SCREENSHOT_DIR to a directory (outside the repository) to keep a
screenshot of each page at 1280 and 390 pixels wide."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from models import Account, Organisation, db, utcnow
from tests.support.browser import LiveServer
from tests.support.factories import PASSWORD

pytestmark = pytest.mark.browser

TIMEOUT = 10_000
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture
def users_server(app, owner):
    """The test app with acme's owner olga and a few users, served on a free port."""
    with app.app_context():
        db.connect(reuse_if_open=True)
        try:
            acme = Organisation.get(Organisation.slug == "acme")
            for name, display in (("ann", "Ann Archer"), ("annika", "Annika Berg"), ("bert", "Bert Baker"),
                                  ("carla", "Carla Cole")):
                Account.create(organisation=acme, username=name, email=f"{name}@acme.test", display_name=display,
                               totp_enabled_at=utcnow() if name == "annika" else None)
        finally:
            db.close()
    server = LiveServer(app).start()
    yield server
    server.stop()


def snap(page, name: str) -> None:
    directory = os.environ.get("GATEHOUSE_SCREENSHOT_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=str(Path(directory) / f"users-{name}-{width}.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})


def test_search_open_a_user_and_reset_their_two_factor(app, users_server, page):
    errors = []
    page.add_init_script(CSP_WATCH)
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{users_server.url}/login/password")
    page.get_by_label("Username or email").fill("olga")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/login"), timeout=TIMEOUT)

    page.goto(f"{users_server.url}/admin/users")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#user-results")).to_contain_text("Carla Cole", timeout=TIMEOUT)
    snap(page, "list")
    page.get_by_label("Search").press_sequentially("ann", delay=40)
    expect(page.locator("#user-results")).not_to_contain_text("Carla Cole", timeout=TIMEOUT)
    expect(page.locator("#user-results")).to_contain_text("Annika Berg")
    assert page.evaluate("window.__sameDocument") is True           # updated in place, no page load
    expect(page).to_have_url(re.compile(r"q=ann"))                   # the search is in the address bar
    snap(page, "search")

    page.get_by_role("link", name="Annika Berg").click()
    expect(page.get_by_role("heading", name="Annika Berg")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#user-two-factor")).to_contain_text("on")
    snap(page, "detail")
    page.get_by_role("link", name="Reset 2FA").click()
    expect(page.get_by_role("heading", name=re.compile("Reset the two-factor authentication"))).to_be_visible()
    snap(page, "confirm")
    page.get_by_role("button", name="Reset two-factor authentication").click()
    expect(page.locator("#flash-messages")).to_contain_text("will enrol again", timeout=TIMEOUT)
    expect(page.locator("#user-two-factor")).to_contain_text("must enrol")
    with app.app_context():
        db.connect(reuse_if_open=True)
        try:
            annika = Account.get(Account.username == "annika")
            assert annika.totp_enabled_at is None and annika.must_enrol_totp
        finally:
            db.close()
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []


def test_pages_fit_a_phone(users_server, page):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{users_server.url}/login/password")
    page.get_by_label("Username or email").fill("olga")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/login"), timeout=TIMEOUT)
    for path in ("/admin/users", "/admin/users/new", "/admin/users/import", "/admin/users/2"):
        page.goto(f"{users_server.url}{path}")
        page.wait_for_load_state("load")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 392, f"{path} is {width}px wide at 390"
