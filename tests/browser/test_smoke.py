"""Smoke tests in a real browser: the sign-in page and its HTMX form, the dev inbox
(self-refreshing list, message detail, clear with confirmation) and a phone viewport.

Set GATEHOUSE_SCREENSHOT_DIR to a directory (outside the repository) to keep a
screenshot of every page visited."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from devtools.smtp_capture import SMTPCapture, list_messages
from models import MailServer, Organisation, db
from services import mailer
from tests.support.browser import TIMEOUT, ConsoleWatch, assert_same_document, mark_document, snap

pytestmark = pytest.mark.browser

@pytest.fixture
def capture(live_server):
    """An SMTP capture server writing into the live dev app's DEV_MAILDIR."""
    server = SMTPCapture(Path(live_server.app.config["DEV_MAILDIR"]), host="127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def send_mail(live_server, capture, subject: str, text: str) -> None:
    """Queue one email through the real outbox and deliver it to the capture server."""
    with live_server.app.app_context():
        db.connect(reuse_if_open=True)
        try:
            organisation, _ = Organisation.get_or_create(slug="acme", defaults={"name": "Acme"})
            server, _ = MailServer.get_or_create(
                organisation=organisation,
                name="capture",
                defaults=dict(
                    host="127.0.0.1", port=capture.port, security="none",
                    from_address="Gatehouse <no-reply@acme.test>", verify_certificate=False, timeout=5,
                ),
            )
            message = mailer.queue("ann@acme.test", subject, text, organisation=organisation)
            report = mailer.deliver_due()
            assert report.sent == [message.id], report
        finally:
            db.close()


def test_login_htmx_validation_and_not_set_up_notice(live_server, page):
    watch = ConsoleWatch(page, expected_statuses=(422, 503))
    page.goto(f"{live_server.url}/login")
    expect(page).to_have_title(re.compile(r"^Sign in\b"), timeout=TIMEOUT)
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible(timeout=TIMEOUT)
    identifier = page.get_by_label("Username or email")
    expect(identifier).to_be_focused(timeout=TIMEOUT)  # autofocus
    snap(page, "login")
    mark_document(page)

    page.get_by_role("button", name="Email me a sign-in link").click()
    error = page.locator("#login-form .field-error")
    expect(error).to_have_text("Enter your username or email address.", timeout=TIMEOUT)
    expect(page.locator("#login-form .field")).to_have_class(re.compile(r"\bfield-invalid\b"), timeout=TIMEOUT)
    expect(page.locator("form#login-form")).to_have_count(1)  # outerHTML swap, not nested
    expect(page.get_by_role("heading", name="Sign in")).to_have_count(1)
    assert_same_document(page)
    snap(page, "login-error")

    page.get_by_label("Username or email").fill("ann@acme.test")
    page.get_by_role("button", name="Email me a sign-in link").click()
    notice = page.locator("#login-form .notice")
    expect(notice).to_contain_text("Sign-in is not set up yet", timeout=TIMEOUT)
    expect(error).to_have_count(0)
    assert_same_document(page)
    snap(page, "login-unavailable")
    watch.assert_clean()


def test_dev_inbox_refreshes_itself_and_links_are_clickable(live_server, page, capture):
    watch = ConsoleWatch(page)
    page.goto(f"{live_server.url}/dev/mail")
    expect(page.get_by_role("heading", name="Dev inbox", level=1)).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#dev-mail-list .empty-state")).to_contain_text("No messages yet.", timeout=TIMEOUT)
    snap(page, "devmail-empty")
    mark_document(page)

    link = f"http://127.0.0.1:{live_server.port}/login?from=mail"
    subject = "Your sign-in link"
    send_mail(live_server, capture, subject, f"Hello Ann,\n\nOpen {link} to sign in.\n")

    # No reload: the list polls every 3 s and swaps itself.
    item = page.locator("#dev-mail-list .mail-item", has_text=subject)
    expect(item).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#dev-mail-list .empty-state")).to_have_count(0)
    expect(page.locator("#dev-mail-list")).to_have_count(1)  # outerHTML swap, not nested
    expect(item).to_contain_text("ann@acme.test")
    assert_same_document(page)
    snap(page, "devmail-list")
    watch.assert_clean()

    item.click()
    expect(page.get_by_role("heading", name=subject, level=1)).to_be_visible(timeout=TIMEOUT)
    expect(page).to_have_url(re.compile(r"/dev/mail/[0-9A-Za-z-]+$"))
    body_link = page.locator("pre.mail-body a")
    expect(body_link).to_have_attribute("href", link, timeout=TIMEOUT)
    expect(body_link).to_have_text(link)
    expect(page.locator(".link-list a")).to_have_attribute("href", link)
    snap(page, "devmail-show")
    watch.assert_clean()

    body_link.click()
    expect(page).to_have_url(link, timeout=TIMEOUT)
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible(timeout=TIMEOUT)
    watch.assert_clean()


def test_clear_inbox_asks_first(live_server, page, capture):
    maildir = Path(live_server.app.config["DEV_MAILDIR"])
    send_mail(live_server, capture, "Message to keep for now", "Nothing to see.")
    assert len(list_messages(maildir)) == 1

    watch = ConsoleWatch(page)
    clear_posts: list[str] = []
    page.on("request", lambda r: clear_posts.append(r.url) if r.method == "POST" and r.url.endswith("/dev/mail/clear") else None)
    dialogs: list[str] = []

    page.goto(f"{live_server.url}/dev/mail")
    item = page.locator("#dev-mail-list .mail-item", has_text="Message to keep for now")
    expect(item).to_be_visible(timeout=TIMEOUT)
    clear = page.get_by_role("button", name="Clear inbox")

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    clear.click()
    assert dialogs == ["Delete every captured message? This cannot be undone."]
    expect(item).to_be_visible(timeout=TIMEOUT)
    assert len(list_messages(maildir)) == 1

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    clear.click()
    expect(page.locator("#dev-mail-list .empty-state")).to_contain_text("No messages yet.", timeout=TIMEOUT)
    expect(page.locator("#flash-messages")).to_contain_text("Deleted 1 captured message.", timeout=TIMEOUT)
    expect(item).to_have_count(0)
    assert len(dialogs) == 2
    assert len(clear_posts) == 1, clear_posts  # the dismissed dialog sent nothing
    assert list_messages(maildir) == []
    snap(page, "devmail-cleared")
    watch.assert_clean()


@pytest.mark.parametrize("path", ["/login", "/dev/mail"])
def test_phone_viewport_has_no_horizontal_scroll(live_server, page, path):
    watch = ConsoleWatch(page)
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{live_server.url}{path}")
    expect(page.locator("h1")).to_be_visible(timeout=TIMEOUT)
    page.wait_for_load_state("load")
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    snap(page, f"phone{path.replace('/', '-')}")
    assert scroll_width <= 390, f"{path} is {scroll_width}px wide on a 390px phone"
    watch.assert_clean()


def test_phone_viewport_long_mail_wraps(live_server, page, capture):
    long_link = f"http://127.0.0.1:{live_server.port}/login?from=mail&token=" + "x" * 120
    subject = "A rather long subject line that should wrap nicely on a small phone screen " * 2
    send_mail(live_server, capture, subject, f"Open {long_link} now.\n")
    watch = ConsoleWatch(page)
    page.set_viewport_size({"width": 390, "height": 800})

    page.goto(f"{live_server.url}/dev/mail")
    item = page.locator("#dev-mail-list .mail-item").first
    expect(item).to_be_visible(timeout=TIMEOUT)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    snap(page, "phone-dev-mail-list")

    item.click()
    expect(page.locator("pre.mail-body a")).to_have_attribute("href", long_link, timeout=TIMEOUT)
    # The anchor exists before the stylesheet has loaded; measure the styled page.
    page.wait_for_load_state("load")
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    snap(page, "phone-dev-mail-show")
    assert scroll_width <= 390, f"the message page is {scroll_width}px wide on a 390px phone"
    watch.assert_clean()
