"""The audit log in a real browser: filter while typing, scroll to load older events,
open a row to its details — all in one document, without CSP violations."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from models import Organisation, db
from services import audit
from services.accounts import create_local
from tests.support.browser import TIMEOUT, ConsoleWatch, assert_same_document, mark_document, snap
from tests.support.factories import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def admin_page(live_server, page):
    """``page`` signed in as olga, owner of acme, with 130 events by ann and 20 by bob."""
    with live_server.app.app_context():
        db.connect(reuse_if_open=True)
        try:
            organisation = Organisation.create(slug="acme", name="Acme")
            create_local(organisation, "olga", "olga@acme.test", role="owner", password=PASSWORD)
            for n in range(150):
                who = "ann" if n % 15 else "bob"
                audit.record("sign_in.completed" if n % 2 else "sign_in.requested", actor=who, target=who,
                             organisation="acme", ip=f"10.0.0.{n}", user_agent="Firefox/127",
                             details={"method": "password", "n": n})
        finally:
            db.close()
    page.goto(f"{live_server.url}/login/password")
    page.get_by_label("Username or email").fill("olga")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Admin", exact=True)).to_be_visible(timeout=TIMEOUT)
    return page


def test_filter_scroll_and_expand(admin_page, live_server):
    page = admin_page
    watch = ConsoleWatch(page)
    page.goto(f"{live_server.url}/admin/audit")
    rows = page.locator("details.audit-event")
    expect(rows).to_have_count(50, timeout=TIMEOUT)
    mark_document(page)

    page.get_by_label("Actor").press_sequentially("ann")  # filters while typing, no reload
    expect(page).to_have_url(re.compile(r"/admin/audit\?actor=ann"), timeout=TIMEOUT)
    expect(rows).to_have_count(50, timeout=TIMEOUT)
    expect(page.locator("details.audit-event .audit-actor", has_text="bob")).to_have_count(0)
    page.get_by_label("Outcome").select_option("success")  # a choice filters at once too
    expect(page).to_have_url(re.compile(r"outcome=success"), timeout=TIMEOUT)
    expect(rows).to_have_count(50, timeout=TIMEOUT)
    assert_same_document(page)

    page.locator("#audit-more").scroll_into_view_if_needed()  # revealed: the next 50 arrive
    expect(rows).to_have_count(100, timeout=TIMEOUT)
    page.locator("#audit-more").scroll_into_view_if_needed()
    expect(rows).to_have_count(140, timeout=TIMEOUT)  # ann's 140 events: the end
    expect(page.locator(".audit-end")).to_have_text("No older events.", timeout=TIMEOUT)
    assert_same_document(page)

    last = rows.last
    last.locator("summary").click()
    expect(last.locator(".audit-details")).to_be_visible()
    expect(last.locator(".audit-details")).to_contain_text("10.0.0.1")
    expect(last.locator(".audit-details")).to_contain_text("Firefox/127")
    snap(page, "audit-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/admin/audit?actor=ann")
    rows.first.locator("summary").click()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a phone"
    snap(page, "audit-390")
    watch.assert_clean()
