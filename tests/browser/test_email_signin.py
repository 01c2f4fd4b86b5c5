"""Email sign-in in a real browser, across two devices: the laptop asks for a link and
waits; the phone opens the emailed link and answers; the laptop's waiting page learns
the answer by itself (HTMX polls every 2 s) without a reload or a click.

Runs against a live server of the test app on SQLite with a real SMTP server. Set
GATEHOUSE_SCREENSHOT_DIR to a directory (outside the repository) to keep screenshots
of the waiting page and the link page at 1280 and 390 pixels wide."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from models import SignInRequest, UserSession
from tests.support.browser import (
    TIMEOUT,
    ConsoleWatch,
    LiveServer,
    assert_fits,
    assert_same_document,
    mark_document,
    snap,
)
from tests.support.web import stored
from tests.web.test_email_signin import acme, deliver, fresh_limits, link_in  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.browser,
    # One engine is enough in the browser; the engines' differences are tested below the web layer.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

PHONE = {"width": 390, "height": 844}
FINISH_WITHIN = 10_000  # ms: a 2 s poll, then the finish and the account page


@pytest.fixture
def signin_server(app, acme):  # noqa: F811
    """The test app, with acme and ann, served on a free port."""
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def phone(browser):
    """A second browser context: another device, with its own cookies."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT)
    yield tab
    context.close()


def ask_for_a_link(page, server) -> str:
    """Type the username, ask for a link, land on the waiting page; its path."""
    page.goto(f"{server.url}/login")
    page.get_by_label("Username or email").fill("ann")
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible(timeout=TIMEOUT)
    assert re.search(r"/login/wait/[A-Za-z0-9_-]+$", page.url), page.url
    return re.sub(r"^https?://[^/]+", "", page.url)


def emailed_link(app, server, smtp_server) -> str:
    """Send the queued email through the real SMTP server and return its link on the live server."""
    kind, token = link_in(deliver(app, smtp_server, 1)[0])
    assert kind == "l"
    return f"{server.url}/l/{token}"


def wait_for_a_poll(page, wait_path: str) -> None:
    with page.expect_response(lambda r: r.url.endswith(f"{wait_path}/status"), timeout=TIMEOUT) as polled:
        pass
    assert polled.value.status == 200


def test_the_link_opened_on_another_device_signs_in_the_waiting_browser(app, signin_server, smtp_server, page, phone):
    laptop, watch, phone_watch = page, ConsoleWatch(page), ConsoleWatch(phone)
    wait_path = ask_for_a_link(laptop, signin_server)
    mark_document(laptop)
    wait_for_a_poll(laptop, wait_path)  # the page polls the status by itself
    expect(laptop.get_by_role("heading", name="Check your email")).to_be_visible()
    assert_same_document(laptop)
    assert_fits(laptop)
    snap(laptop, "email-wait-1280")
    laptop.set_viewport_size(PHONE)
    assert_fits(laptop)
    snap(laptop, "email-wait-390")
    laptop.set_viewport_size({"width": 1280, "height": 900})
    watch.assert_clean()

    link = emailed_link(app, signin_server, smtp_server)
    phone.goto(link)
    expect(phone.get_by_role("heading", name="Sign in to Acme?")).to_be_visible()
    expect(phone.get_by_text("You are on a different browser or device")).to_be_visible()
    assert_fits(phone)
    snap(phone, "email-link-390")
    phone.set_viewport_size({"width": 1280, "height": 900})
    snap(phone, "email-link-1280")
    phone.set_viewport_size(PHONE)
    assert stored(app, lambda: SignInRequest.get().status) == "pending"  # opening the link changes nothing

    phone.get_by_role("button", name="Sign in", exact=True).click()
    expect(phone.get_by_role("heading", name="Sign-in approved")).to_be_visible()
    expect(phone.get_by_text("Go back to the browser where you asked for the link")).to_be_visible()
    snap(phone, "email-link-approved-390")
    phone_watch.assert_clean()
    assert not any(c["name"] == "gatehouse_session" for c in phone.context.cookies())

    # No reload, no click: the laptop's next poll sees the approval and finishes by itself.
    expect(laptop.get_by_text("You are signed in to")).to_be_visible(timeout=FINISH_WITHIN)
    assert laptop.url == f"{signin_server.url}/account"
    expect(laptop.get_by_text("Emailed link")).to_be_visible()
    assert any(c["name"] == "gatehouse_session" for c in laptop.context.cookies())
    assert stored(app, lambda: (SignInRequest.get().status, UserSession.select().count())) == ("completed", 1)
    watch.assert_clean()

    # The used link explains itself on the phone.
    phone.goto(link)
    expect(phone.get_by_role("heading", name="This link has already been used")).to_be_visible()


def test_this_was_not_me_stops_the_waiting_browser(app, signin_server, smtp_server, page, phone):
    laptop, watch, phone_watch = page, ConsoleWatch(page), ConsoleWatch(phone)
    wait_path = ask_for_a_link(laptop, signin_server)
    mark_document(laptop)

    phone.goto(emailed_link(app, signin_server, smtp_server))
    phone.get_by_role("button", name="This wasn't me").click()
    expect(phone.get_by_role("heading", name="Thanks — the sign-in was stopped")).to_be_visible()
    phone_watch.assert_clean()

    expect(laptop.get_by_role("heading", name="Sign-in denied")).to_be_visible(timeout=FINISH_WITHIN)
    assert_same_document(laptop)  # swapped in by HTMX, not a reload
    assert laptop.url.endswith(wait_path)
    expect(laptop.get_by_role("link", name="Start again")).to_be_visible()
    # A final state stops the polling.
    expect(laptop.locator("#sign-in-status[hx-trigger]")).to_have_count(0)
    assert stored(app, lambda: (SignInRequest.get().status, UserSession.select().count())) == ("denied", 0)
    assert not any(c["name"] == "gatehouse_session" for c in laptop.context.cookies())
    watch.assert_clean()
