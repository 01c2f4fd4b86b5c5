"""The team page in a real browser: an owner invites a technician, the technician opens
the emailed link (delivered through a real SMTP server), chooses a password and is signed
in; then the owner deactivates two accounts at once, after a confirmation.

Set GATEHOUSE_SCREENSHOT_DIR to a directory (outside the repository) to keep screenshots
of the pages at 1280 and 390 pixels wide."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from models import Account, MailServer
from services import mailer
from tests.support.browser import TIMEOUT, ConsoleWatch, LiveServer, assert_fits, snap
from tests.support.factories import PASSWORD
from tests.support.web import stored

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1280, "height": 900}
LINK = re.compile(r"http://gatehouse\.test/invitation/([A-Za-z0-9_-]+)")
CHOSEN = "tina's own long passphrase"


@pytest.fixture
def team_server(app, create_organisation, create_account, smtp_server):
    acme = create_organisation("acme", "Acme")
    with app.app_context():
        MailServer.create(organisation=acme, name="relay", host="127.0.0.1", port=smtp_server.port, security="none",
                          from_address="Gatehouse <no-reply@acme.test>")
    create_account(acme, "olga", role="owner", display_name="Olga Owner")
    create_account(acme, "tom", role="technician", display_name="Tom Tech")
    server = LiveServer(app).start()
    yield server
    server.stop()


def _both_widths(page, name: str) -> None:
    assert_fits(page)
    snap(page, f"{name}-1280")
    page.set_viewport_size(PHONE)
    assert_fits(page)
    snap(page, f"{name}-390")
    page.set_viewport_size(WIDE)


def sign_in(page, server, username):
    page.goto(f"{server.url}/login/password")
    page.get_by_label("Username or email").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("You are signed in to")).to_be_visible(timeout=TIMEOUT)


def test_invite_accept_and_bulk_deactivate(app, team_server, smtp_server, page, browser):
    watch = ConsoleWatch(page)
    sign_in(page, team_server, "olga")
    page.goto(f"{team_server.url}/admin/team")
    expect(page.get_by_role("heading", name="Technicians & team users")).to_be_visible()
    _both_widths(page, "team-list")

    # Invite tina.
    page.get_by_role("link", name="Invite or add").click()
    page.get_by_label("Username").fill("tina")
    page.get_by_label("Email").fill("tina@acme.test")
    page.get_by_label("Name", exact=True).fill("Tina Tech")
    page.get_by_label("Role").select_option("technician")
    _both_widths(page, "team-invite")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("Invited tina: an email with a link to choose a password")).to_be_visible()
    row = page.locator("tr", has_text="Tina Tech")
    expect(row.get_by_text("Pending")).to_be_visible()
    row.get_by_text("Actions").click()
    expect(row.get_by_role("button", name="Resend invitation")).to_be_visible()
    expect(row.get_by_role("link", name="Deactivate")).to_have_count(0)  # only for active accounts
    snap(page, "team-menu-1280")
    watch.assert_clean()

    # The email goes through the real SMTP server; tina opens its link in her own browser.
    with app.app_context():
        mailer.deliver_due()
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "tina@acme.test"
    token = LINK.search(message.get_body(("plain",)).get_content()).group(1)
    context = browser.new_context(viewport=PHONE)
    tina = context.new_page()
    tina.set_default_timeout(TIMEOUT)
    tina_watch = ConsoleWatch(tina)
    tina.goto(f"{team_server.url}/invitation/{token}")
    expect(tina.get_by_role("heading", name="Set up your account")).to_be_visible()
    tina.get_by_label("New password", exact=True).fill("short")
    expect(tina.locator("#password-rules .rule-missing")).not_to_have_count(0)  # the live checklist
    tina.get_by_label("New password", exact=True).fill(CHOSEN)
    expect(tina.locator("#password-rules .rule-missing")).to_have_count(0)
    tina.get_by_label("New password again").fill(CHOSEN)
    assert_fits(tina)
    snap(tina, "invitation-390")
    tina.get_by_role("button", name="Set password and sign in").click()
    expect(tina.get_by_text("your account is ready and you are signed in")).to_be_visible()
    assert tina.url == f"{team_server.url}/admin/"
    expect(tina.get_by_role("link", name="Tina Tech")).to_be_visible()
    tina_watch.assert_clean()
    assert stored(app, lambda: Account.get(Account.username == "tina").status) == "active"

    # The link worked once.
    tina.goto(f"{team_server.url}/invitation/{token}")
    expect(tina.get_by_role("heading", name="This invitation has already been used")).to_be_visible()

    # The owner deactivates tom and tina together, after confirming.
    page.goto(f"{team_server.url}/admin/team")
    expect(page.locator("tr", has_text="Tina Tech").get_by_text("Active")).to_be_visible()
    page.get_by_label("Select tom").check()
    page.get_by_label("Select tina").check()
    page.get_by_role("button", name="Deactivate selected").click()
    expect(page.get_by_role("heading", name="Deactivate 2 accounts?")).to_be_visible()
    assert stored(app, lambda: Account.get(Account.username == "tom").status) == "active"  # asking changed nothing
    _both_widths(page, "team-bulk-confirm")
    page.get_by_role("button", name="Deactivate 2 accounts").click()
    expect(page.get_by_text("Deactivated 2 accounts: tina, tom.")).to_be_visible()
    expect(page.locator("tr", has_text="Tom Tech").get_by_text("Inactive")).to_be_visible()
    expect(page.locator("tr", has_text="Tina Tech").get_by_text("Inactive")).to_be_visible()
    watch.assert_clean()

    # Tina's session ended with the deactivation.
    tina.goto(f"{team_server.url}/admin/")
    assert "/login" in tina.url
    context.close()
