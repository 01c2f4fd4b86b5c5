"""Directories in a real browser: add with inline validation (422 swapped in place), Test
connection and Look up user as HTMX fragments against the embedded demo directory,
reordering, and the pages on a phone. Set GATEHOUSE_SCREENSHOT_DIR to keep screenshots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from models import Directory, db
from services import crypto
from services.accounts import create_local
from tests.support.browser import (
    TIMEOUT,
    ConsoleWatch,
    assert_same_document,
    mark_document,
    snap,
)
from tests.support.factories import PASSWORD
from tests.support.slapd import DEMO_SERVICE_DN, DEMO_SERVICE_PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def admin_page(live_server, page):
    """``page`` signed in as olga, owner of acme, on the live development server."""
    from models import Organisation

    with live_server.app.app_context():
        db.connect(reuse_if_open=True)
        try:
            organisation = Organisation.create(slug="acme", name="Acme")
            create_local(organisation, "olga", "olga@acme.test", role="owner", password=PASSWORD)
        finally:
            db.close()
    page.goto(f"{live_server.url}/login/password")
    page.get_by_label("Username or email").fill("olga")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Admin", exact=True)).to_be_visible(timeout=TIMEOUT)
    return page


def _demo_directory(live_server, embedded_ldap, name="Acme LDAP", position=0):
    from models import Organisation

    with live_server.app.app_context():
        db.connect(reuse_if_open=True)
        try:
            return Directory.create(
                organisation=Organisation.get(slug="acme"), name=name, servers=[embedded_ldap.url],
                base_dn="dc=acme,dc=test", bind_dn=DEMO_SERVICE_DN, login_attributes=["uid", "mail"],
                bind_password_encrypted=crypto.encrypt(DEMO_SERVICE_PASSWORD), position=position)
        finally:
            db.close()


def test_add_with_inline_validation_then_test_and_look_up(live_server, admin_page, embedded_ldap):
    page = admin_page
    watch = ConsoleWatch(page, expected_statuses=(422,))
    page.goto(f"{live_server.url}/admin/directories")
    expect(page.get_by_text("No directories yet.")).to_be_visible(timeout=TIMEOUT)
    snap(page, "directories-empty")
    page.get_by_role("link", name="Add directory").click()

    page.get_by_label("Name").fill("Acme LDAP")
    page.get_by_label("Servers").fill(f"ldaps://127.0.0.1:1636\n{embedded_ldap.url}")
    page.get_by_label("TLS mode").select_option("none")
    page.get_by_label("Bind DN").fill(DEMO_SERVICE_DN)
    page.get_by_label("Bind password").fill(DEMO_SERVICE_PASSWORD)
    page.get_by_label("Login attributes").fill("uid, mail)(x")
    page.get_by_label("Connect timeout (seconds)").fill("0")
    mark_document(page)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#field-servers .field-error")).to_contain_text("is an ldaps:// URL but TLS mode is", timeout=TIMEOUT)
    expect(page.locator("#field-login-attributes .field-error")).to_contain_text("is not an LDAP attribute name")
    expect(page.locator("#field-connect-timeout .field-error")).to_contain_text("out of range (1..60)")
    expect(page.locator("#field-base-dn .field-error")).to_contain_text("Enter the base DN")
    expect(page.locator("#field-bind-password .hint")).to_contain_text("type it again")
    expect(page.get_by_label("Name")).to_have_value("Acme LDAP")
    expect(page.locator("form#directory-form")).to_have_count(1)
    assert_same_document(page)
    snap(page, "directory-form-errors")

    page.get_by_label("Servers").fill(embedded_ldap.url)
    page.get_by_label("Base DN").fill("dc=acme,dc=test")
    page.get_by_label("Bind password").fill(DEMO_SERVICE_PASSWORD)
    page.get_by_label("Login attributes").fill("uid, mail")
    page.get_by_label("Connect timeout (seconds)").fill("5")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Edit Acme LDAP")).to_be_visible(timeout=TIMEOUT)

    mark_document(page)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#directory-test .result")).to_contain_text("Connection works.", timeout=TIMEOUT)
    expect(page.locator("#directory-test .result")).to_contain_text("bind succeeded")

    page.get_by_label("Username or email").fill("zoe")
    page.get_by_role("button", name="Look up").click()
    result = page.locator("#directory-lookup .lookup-result")
    expect(result).to_contain_text("Zoë Ångström", timeout=TIMEOUT)
    expect(result).to_contain_text("Victor Chen <victor@acme.test>")
    assert_same_document(page)
    snap(page, "directory-lookup")

    page.get_by_label("Username or email").fill("tom")
    page.get_by_role("button", name="Look up").click()
    expect(result.locator(".missing")).to_contain_text("Missing: mail", timeout=TIMEOUT)
    watch.assert_clean()


def test_reorder_in_place(live_server, admin_page, embedded_ldap):
    page = admin_page
    watch = ConsoleWatch(page)
    _demo_directory(live_server, embedded_ldap, "First", 0)
    _demo_directory(live_server, embedded_ldap, "Second", 1)
    page.goto(f"{live_server.url}/admin/directories")
    mark_document(page)
    page.get_by_role("button", name="Move Second up").click()
    expect(page.locator("#directory-table tbody tr").first).to_contain_text("Second", timeout=TIMEOUT)
    assert_same_document(page)
    snap(page, "directories-list")
    watch.assert_clean()


@pytest.mark.parametrize("where", ["list", "edit", "new"])
def test_phone_viewport_has_no_horizontal_scroll(live_server, admin_page, embedded_ldap, where):
    page = admin_page
    watch = ConsoleWatch(page, expected_statuses=(422,))
    directory = _demo_directory(live_server, embedded_ldap)
    page.set_viewport_size({"width": 390, "height": 800})
    path = {"list": "", "edit": f"/{directory.id}/edit", "new": "/new"}[where]
    page.goto(f"{live_server.url}/admin/directories{path}")
    if where == "new":
        page.get_by_label("Servers").fill("ldap://a-rather-long-host-name.head-office.example.com:389\nhttp://wrong")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#field-servers .field-error")).to_contain_text("is not an ldap://", timeout=TIMEOUT)
    if where == "edit":
        page.get_by_label("Username or email").fill("zoe")
        page.get_by_role("button", name="Look up").click()
        expect(page.locator("#directory-lookup .lookup-result")).to_contain_text("Zoë Ångström", timeout=TIMEOUT)
    page.wait_for_load_state("load")  # measure the styled page, not one whose CSS is still loading
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    snap(page, f"phone-directories-{where}")
    if where == "edit" and os.environ.get("GATEHOUSE_SCREENSHOT_DIR"):
        page.locator("#directory-lookup").screenshot(
            path=str(Path(os.environ["GATEHOUSE_SCREENSHOT_DIR"]) / "phone-directory-lookup.png"), caret="initial")
    assert scroll_width <= 390, f"{where} is {scroll_width}px wide on a 390px phone"
    watch.assert_clean()


def test_on_a_laptop_every_row_action_is_in_view(live_server, admin_page, embedded_ldap):
    page = admin_page
    directory = _demo_directory(live_server, embedded_ldap, "Head office Active Directory")
    with live_server.app.app_context():
        db.connect(reuse_if_open=True)
        try:
            Directory.update(servers=["ldaps://dc01.head-office.example.com:636",
                                      "ldaps://dc02.head-office.example.com:636"],
                             base_dn="ou=people,dc=head-office,dc=example,dc=com",
                             tls_mode="ldaps").where(Directory.id == directory.id).execute()
        finally:
            db.close()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/admin/directories")
    page.wait_for_load_state("load")
    snap(page, "laptop-directories-list")
    wrap = page.locator("#directory-table .table-wrap").bounding_box()
    delete = page.get_by_role("link", name="Delete").bounding_box()
    assert delete["x"] + delete["width"] <= wrap["x"] + wrap["width"], "Delete is cut off at 1280 px"
    assert page.evaluate("document.querySelector('#directory-table .table-wrap').scrollWidth") <= wrap["width"] + 1
    edit = page.get_by_role("link", name="Edit").bounding_box()
    assert (edit["x"], edit["width"]) == (delete["x"], delete["width"])  # stacked, one above the other
