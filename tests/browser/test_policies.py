"""Policies in a real browser: drag and drop reordering that persists, inline regex
validation while typing, edit in place, delete with confirmation, and the pages at
phone width. Runs against a live server of the test app (not the dev app) so the
browser can sign in as the acme owner.

Set GATEHOUSE_SCREENSHOT_DIR to a directory (outside the repository) to keep a
screenshot of each page at 1280 and 390 pixels wide."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from models import (
    ApprovalProfile,
    Directory,
    Organisation,
    Policy,
    ProfileDirectory,
    db,
)
from services import crypto
from services import directory as directory_service
from tests.support.browser import LiveServer, assert_fits
from tests.support.factories import PASSWORD
from tests.support.slapd import DEMO_SERVICE_DN, DEMO_SERVICE_PASSWORD

pytestmark = pytest.mark.browser

TIMEOUT = 10_000  # ms, for every expect()
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " (" + (e.sample || "") + ")");
});
"""


@pytest.fixture
def policy_server(app, owner):
    """The test app (owner olga of acme already created) served on a free port."""
    server = LiveServer(app).start()
    yield server
    server.stop()
    directory_service.reset_connections()


class Watch:
    """Console errors, uncaught exceptions and CSP violations of a page."""

    def __init__(self, page, expected_statuses=()):
        self.page, self.errors = page, []
        self.expected = tuple(f"the server responded with a status of {s} " for s in expected_statuses)
        page.add_init_script(CSP_WATCH)
        page.on("console", lambda m: m.type == "error" and not any(e in m.text for e in self.expected)
                and self.errors.append(m.text))
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def assert_clean(self):
        assert self.page.evaluate("window.__cspViolations || []") == []
        assert self.errors == []


def snap(page, name: str) -> None:
    directory = os.environ.get("GATEHOUSE_SCREENSHOT_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True, caret="initial")


def seed(app, names=("first", "second", "third"), with_ldap_url=None):
    """A default profile searching local accounts, and one username policy per name."""
    with app.app_context():
        db.connect(reuse_if_open=True)
        try:
            org = Organisation.get(slug="acme")
            directories = [None]
            if with_ldap_url:
                directories.append(Directory.create(
                    organisation=org, name="Acme LDAP", servers=[with_ldap_url], base_dn="dc=acme,dc=test",
                    bind_dn=DEMO_SERVICE_DN, bind_password_encrypted=crypto.encrypt(DEMO_SERVICE_PASSWORD),
                    login_attributes=["uid", "mail"]))
            profile = ApprovalProfile.create(organisation=org, name="Everyone", kind="user", server_url="http://x",
                                             subject="Sign in", message="{link}", is_default=True)
            managers = ApprovalProfile.create(organisation=org, name="Managers", kind="manager", server_url="http://x",
                                              subject="Approve", message="{link}")
            for position, directory in enumerate(directories):
                ProfileDirectory.create(profile=profile, directory=directory, position=position)
                ProfileDirectory.create(profile=managers, directory=directory, position=position)
            for position, name in enumerate(names):
                Policy.create(organisation=org, position=position, profile=profile, name=name, attribute="username",
                              values=[name])
            if with_ldap_url:
                Policy.create(organisation=org, position=len(names), profile=managers, directory=directories[1],
                              name="Finance approvers", attribute="memberOf",
                              values=["cn=finance-approvers,ou=groups,dc=acme,dc=test", "re:cn=sensitive,.*"])
        finally:
            db.close()


def stored_order(app) -> list[str]:
    with app.app_context():
        db.connect(reuse_if_open=True)
        try:
            return [p.name for p in Policy.select().order_by(Policy.position, Policy.id)]
        finally:
            db.close()


def sign_in(page, server) -> None:
    page.goto(f"{server.url}/login/password")
    page.get_by_label("Username or email").fill("olga")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/login"), timeout=TIMEOUT)


def shown_order(page) -> list[str]:
    return page.locator("#policy-rows tr[data-policy-id] .policy-name").all_inner_texts()


def test_drag_a_policy_to_the_top_and_the_order_persists(app, policy_server, page):
    seed(app)
    watch = Watch(page)
    sign_in(page, policy_server)
    page.goto(f"{policy_server.url}/admin/policies")
    expect(page.locator("#policy-rows .drag-handle").first).to_be_visible(timeout=TIMEOUT)  # JS is running
    assert shown_order(page) == ["first", "second", "third"]

    rows = page.locator("#policy-rows tr[data-policy-id]")
    with page.expect_response(re.compile(r"/admin/policies/reorder$")) as answer:
        rows.nth(2).locator(".drag-handle").drag_to(rows.nth(0), target_position={"x": 30, "y": 4})
    assert answer.value.status == 200
    expect(page.locator("#policy-rows tr[data-policy-id] .policy-name").first).to_have_text("third", timeout=TIMEOUT)
    assert stored_order(app) == ["third", "first", "second"]

    page.reload()
    assert shown_order(page) == ["third", "first", "second"]
    expect(page.locator("#policy-rows .policy-index")).to_have_text(["1", "2", "3"])
    # The up/down buttons still work after the swap.
    page.get_by_role("button", name="Move first up").click()
    expect(page.locator("#policy-rows tr[data-policy-id] .policy-name").first).to_have_text("first", timeout=TIMEOUT)
    assert stored_order(app) == ["first", "third", "second"]
    watch.assert_clean()


def test_a_bad_regex_is_reported_while_typing(app, policy_server, page):
    seed(app)
    watch = Watch(page)
    sign_in(page, policy_server)
    page.goto(f"{policy_server.url}/admin/policies")
    values = page.locator("#new-values")
    values.press_sequentially("Finance\nre:abc(", delay=20)
    feedback = page.locator("#new-values-feedback")
    expect(feedback).to_contain_text("not a valid regular expression: missing ), unterminated subpattern at position 3",
                                     timeout=TIMEOUT)
    expect(values).to_be_focused()
    expect(values).to_have_value("Finance\nre:abc(")  # typing is never overwritten by the check
    values.press_sequentially(")", delay=20)
    expect(feedback).to_contain_text("2 values", timeout=TIMEOUT)
    expect(feedback.locator(".field-error")).to_have_count(0)
    watch.assert_clean()


def test_edit_in_place_and_delete_with_confirmation(app, policy_server, page):
    seed(app)
    watch = Watch(page, expected_statuses=(422,))
    sign_in(page, policy_server)
    page.goto(f"{policy_server.url}/admin/policies")
    second = page.locator("#policy-rows tr").nth(1)
    row_id = second.get_attribute("id")
    second.get_by_role("link", name="Edit").click()
    editing = page.locator(f"#{row_id}")
    textarea = editing.locator("textarea")
    expect(textarea).to_have_value("second", timeout=TIMEOUT)
    textarea.fill("re:[")
    saved = re.compile(r"/admin/policies/\d+/edit$")
    with page.expect_response(lambda r: saved.search(r.url) and r.request.method == "POST") as answer:
        editing.get_by_role("button", name="Save").click()
    assert answer.value.status == 422
    expect(editing.locator(".field-error").first).to_contain_text("not a valid regular expression", timeout=TIMEOUT)
    textarea = editing.locator("textarea")
    textarea.fill("second, 2nd")
    with page.expect_response(lambda r: saved.search(r.url) and r.request.method == "POST") as answer:
        editing.get_by_role("button", name="Save").click()
    assert answer.value.status == 200
    expect(page.locator(f"#{row_id} .policy-value")).to_have_text(["second", "2nd"], timeout=TIMEOUT)
    assert page.url.endswith("/admin/policies")  # stayed on the page

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#{row_id}").get_by_role("link", name="Delete").click()
    expect(page.locator(f"#{row_id}")).to_have_count(0, timeout=TIMEOUT)
    assert stored_order(app) == ["first", "third"]
    watch.assert_clean()


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_fit_the_screen(app, policy_server, page, embedded_ldap, width):
    seed(app, with_ldap_url=embedded_ldap.url)
    page.set_viewport_size({"width": width, "height": 900})
    watch = Watch(page)
    sign_in(page, policy_server)

    page.goto(f"{policy_server.url}/admin/policies")
    expect(page.locator("#policy-rows tr")).to_have_count(4, timeout=TIMEOUT)
    assert_fits(page)
    snap(page, f"policies-{width}")

    page.locator("#new-directory").select_option(label="Acme LDAP")
    page.locator("#new-attribute").fill("group_name")
    page.get_by_role("button", name="Pick from the directory").click()
    picker = page.locator("#new-picker select")
    expect(picker).to_be_visible(timeout=TIMEOUT)
    picker.select_option("finance-approvers")
    expect(page.locator("#new-values")).to_have_value("finance-approvers")
    expect(page.locator("#new-values-feedback")).to_contain_text("1 value", timeout=TIMEOUT)
    page.locator("#policy-rows tr").nth(3).get_by_role("link", name="Edit").click()
    expect(page.locator("#policy-rows tr").nth(3).locator("textarea")).to_be_visible(timeout=TIMEOUT)
    assert_fits(page)
    snap(page, f"policies-editing-{width}")

    page.goto(f"{policy_server.url}/admin/policies/tester")
    page.get_by_label("Username or email").fill("fiona")
    page.get_by_role("button", name="Test").click()
    expect(page.locator("#tester-result")).to_contain_text("Finance approvers", timeout=TIMEOUT)
    expect(page.locator("#tester-result")).to_contain_text("matched policy 4")
    assert page.url.endswith("/admin/policies/tester?identifier=fiona")  # the result can be linked
    assert_fits(page)
    snap(page, f"tester-{width}")
    watch.assert_clean()
