"""Sign-in emails: text + HTML bodies snapshot-tested for fixed inputs, the HTML escaping
what the requester controls, multipart delivery through a real SMTP server, the failed
sign-in notice to the manager (at most once per window), and the expiry audit.

Snapshots live in tests/snapshots/. After an intended change to a template, rerun with
``GATEHOUSE_UPDATE_SNAPSHOTS=1``, review the diff of the snapshot files and commit them.
"""

import datetime as dt
import difflib
import os
from pathlib import Path

import pytest

from models import (
    Account,
    ApprovalProfile,
    AuditEvent,
    Organisation,
    OutboxMessage,
    SignInRequest,
    utcnow,
)
from services import mailer, policy, profiles, ratelimit, signin
from tests.support.web import WebClient
from tests.web.test_email_signin import acme, ask_link, deliver, link_in  # noqa: F401 - acme is a fixture

SNAPSHOTS = Path(__file__).resolve().parent.parent / "snapshots"
REQUESTED_AT = dt.datetime(2025, 3, 1, 14, 2, 37)
EXPIRES_AT = REQUESTED_AT + dt.timedelta(minutes=15)
IP = "192.0.2.10"
BROWSER = "Firefox on Linux"
HOSTILE_BROWSER = "<script>alert(1)</script>"
USER = "Zoë Ångström (zoe)"
TOKEN = "Tq3x9_fixed-token-for-snapshots-0123456789abc"


@pytest.fixture(autouse=True)
def fresh_limits():
    ratelimit.set_backend(ratelimit.MemoryBackend())
    yield


def assert_snapshot(name: str, actual: str) -> None:
    """Compare ``actual`` to tests/snapshots/<name>; write it instead when
    GATEHOUSE_UPDATE_SNAPSHOTS=1. A mismatch fails with a unified diff."""
    path = SNAPSHOTS / name
    if os.environ.get("GATEHOUSE_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="")
        return
    if not path.exists():
        pytest.fail(f"no snapshot {path}: rerun with GATEHOUSE_UPDATE_SNAPSHOTS=1 and review the file", pytrace=False)
    with path.open(encoding="utf-8", newline="") as stored:
        expected = stored.read()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            fromfile=f"snapshots/{name}", tofile="rendered"))
        pytest.fail(f"{name} differs from its snapshot (if intended, rerun with GATEHOUSE_UPDATE_SNAPSHOTS=1):\n{diff}",
                    pytrace=False)


def fixed_profile(kind: str) -> ApprovalProfile:
    # Unsaved rows: composing an email reads the profile and never the database.
    subject, message = profiles.default_texts(kind)
    return ApprovalProfile(organisation=Organisation(slug="acme", name="Acme Corp"), name="Staff", kind=kind,
                           server_url="https://gatehouse.example.com", subject=subject, message=message,
                           link_lifetime_minutes=15)


def user_email(browser=BROWSER, user=USER):
    return signin.sign_in_email(fixed_profile("user"), kind="user", user=user,
                                link=f"https://gatehouse.example.com/l/{TOKEN}", ip=IP, browser=browser,
                                requested_at=REQUESTED_AT, expires_at=EXPIRES_AT, approver="zoe@acme.test")


def manager_email(browser=HOSTILE_BROWSER):
    return signin.sign_in_email(fixed_profile("manager"), kind="manager", user=USER,
                                link=f"https://gatehouse.example.com/a/{TOKEN}", ip=IP, browser=browser,
                                requested_at=REQUESTED_AT, expires_at=EXPIRES_AT, approver="boss@acme.test",
                                department="Research & Development")


def failure_notice():
    return signin.failure_email(organisation="Acme Corp", user=USER, username="zoe",
                                reason="the user said the sign-in was not them", ip=IP, browser=BROWSER,
                                failed_at=REQUESTED_AT + dt.timedelta(minutes=3), department="Research & Development",
                                expires_at=EXPIRES_AT)


# ---------------------------------------------------------------- snapshots

@pytest.mark.parametrize("name, build", [
    ("sign_in_user", user_email), ("sign_in_manager", manager_email), ("failed_sign_in", failure_notice),
])
def test_email_bodies_match_their_snapshots(name, build):
    email = build()
    assert_snapshot(f"{name}.subject.txt", email.subject + "\n")
    assert_snapshot(f"{name}.txt", email.text)
    assert_snapshot(f"{name}.html", email.html)


def test_the_html_escapes_what_the_requester_sent_and_the_text_keeps_the_message():
    email = manager_email()
    assert "<script" not in email.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "Research &amp; Development" in email.html and "Zoë Ångström" in email.html
    # The text part is the admins' message as configured, then the details.
    message = profiles.compose(fixed_profile("manager"), user=USER, link=f"https://gatehouse.example.com/a/{TOKEN}",
                               ip=IP, browser=HOSTILE_BROWSER, expires_at=EXPIRES_AT, approver="boss@acme.test")[1]
    assert email.text.startswith(message + "\n")
    for detail in (USER, "Research & Development", "2025-03-01 14:02 UTC", IP, HOSTILE_BROWSER, "2025-03-01 14:17 UTC"):
        assert detail in email.text
    assert "Approve or Deny" in email.text and "<strong>Approve</strong> or <strong>Deny</strong>" in email.html


def test_a_hostile_name_cannot_add_markup_or_lines():
    email = user_email(user='Mallory <img src=x onerror=alert(1)>\nWho:         Someone Else')
    assert "<img" not in email.html and "&lt;img src=x onerror=alert(1)&gt;" in email.html
    assert "\n" not in email.subject and "\r" not in email.subject
    forged = [line for line in email.text.splitlines() if line.startswith("Who:")]
    assert forged == ["Who:         Mallory <img src=x onerror=alert(1)> Who: Someone Else"]
    assert "Hello Mallory <img src=x onerror=alert(1)> Who: Someone Else," in email.text


@pytest.mark.parametrize("build, path", [(user_email, "/l/"), (manager_email, "/a/")])
def test_both_parts_carry_the_link_and_the_subject_is_one_line(build, path):
    email = build()
    link = f"https://gatehouse.example.com{path}{TOKEN}"
    assert link in email.text
    assert email.html.count(f'href="{link}"') == 3  # in the message, the button, and the plain address
    assert f">{link}</a>" in email.html
    assert email.subject and "\n" not in email.subject and "\r" not in email.subject
    assert "<script" not in email.html and "src=" not in email.html  # no scripts, no external images


# ---------------------------------------------------------------- delivery

def test_a_sign_in_email_arrives_as_text_and_html(app, client, acme, smtp_server):  # noqa: F811
    ask_link(client)
    [message] = deliver(app, smtp_server, 1)
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    kind, token = link_in(message)
    link = f"http://gatehouse.test/{kind}/{token}"
    assert link in plain.get_content() and f'href="{link}"' in html.get_content()
    for part in (plain.get_content(), html.get_content()):
        assert "Ann Archer (ann)" in part and "127.0.0.1" in part  # the test client's address


# ---------------------------------------------------------------- failure notices

@pytest.fixture
def notifying(app, acme):  # noqa: F811
    """acme's profile with notify-on-failure; ann's sponsor is her manager."""
    with app.app_context():
        ApprovalProfile.update(notify_manager_on_failure=True).execute()
        Account.update(sponsor_email="boss@acme.test").where(Account.username == "ann").execute()
    return acme


def notices(app):
    with app.app_context():
        return list(OutboxMessage.select().where(OutboxMessage.subject == "Failed sign-in for ann"))


def deny_fresh_link(app, client, smtp_server, sent_before):
    ask_link(client)
    _, token = link_in(deliver(app, smtp_server, sent_before + 1)[-1])
    client.get(f"/l/{token}")
    client.post(f"/l/{token}", {"action": "deny"})
    return token


def test_this_was_not_me_emails_the_manager_once_per_window(app, client, notifying, smtp_server):
    token = deny_fresh_link(app, client, smtp_server, 0)
    messages = deliver(app, smtp_server, 2)
    notice = messages[1]
    assert notice["To"] == "boss@acme.test" and notice["Subject"] == "Failed sign-in for ann"
    assert notice.get_content_type() == "multipart/alternative"
    text, html = notice.get_body(("plain",)).get_content(), notice.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Ann Archer (ann)" in part and "the user said the sign-in was not them" in part
        assert token not in part

    # A second failure inside the window: audited as usual, but no second email.
    deny_fresh_link(app, WebClient(app.test_client()), smtp_server, 2)
    with app.app_context():
        mailer.deliver_due()
        assert AuditEvent.select().where(AuditEvent.action == "sign_in.denied").count() == 2
        assert AuditEvent.select().where(AuditEvent.action == "sign_in.failure_notified").count() == 1
    assert len(notices(app)) == 1 and len(smtp_server.messages) == 3


def test_an_expired_link_used_emails_the_manager(app, client, notifying, smtp_server):
    ask_link(client)
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    with app.app_context():
        SignInRequest.update(expires_at=utcnow()).execute()
    assert client.post(f"/l/{token}", {"action": "approve"}).status_code == 410
    notice = deliver(app, smtp_server, 2)[1]
    assert notice["To"] == "boss@acme.test"
    assert "the sign-in link expired before it was used" in notice.get_body(("plain",)).get_content()
    with app.app_context():
        assert not any(token in str(e.details) or token in e.target for e in AuditEvent.select())


def test_no_notice_when_the_profile_does_not_ask(app, client, acme, smtp_server):  # noqa: F811
    with app.app_context():
        Account.update(sponsor_email="boss@acme.test").where(Account.username == "ann").execute()
    deny_fresh_link(app, client, smtp_server, 0)
    with app.app_context():
        mailer.deliver_due()
        assert not AuditEvent.select().where(AuditEvent.action == "sign_in.failure_notified").exists()
    assert notices(app) == [] and len(smtp_server.messages) == 1


def test_a_wrong_password_emails_the_manager(app, notifying, smtp_server):
    # Service level: the password route calls signin.password_failed after a wrong password.
    with app.app_context():
        organisation = Organisation.get(Organisation.slug == "acme")
        resolution = policy.decide(organisation, "ann")
        assert signin.password_failed(resolution, ip=IP, user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
        assert not signin.password_failed(resolution, ip=IP, user_agent="")  # same window
        assert not signin.password_failed(policy.decide(organisation, "nobody"), ip=IP, user_agent="")
    notice = deliver(app, smtp_server, 1)[0]
    text = notice.get_body(("plain",)).get_content()
    assert "the password was wrong" in text and IP in text and "Firefox on Linux" in text


def test_the_wrong_password_notice_is_queued_after_the_answer(app, client, notifying):
    """The answer to a wrong password is sent first; the manager's notice (a lookup and
    an outbox row, only for known users) follows, so it cannot slow the answer down."""
    client.get("/login/password")
    response = client.post("/login/password", {"identifier": "ann", "password": "not her password",
                                                "account_id": "acme"})
    assert response.status_code == 422
    assert notices(app) == []  # not while the answer is being given
    response.close()  # the server has sent it
    assert len(notices(app)) == 1


# ---------------------------------------------------------------- expiry audit

def expired_events(app):
    with app.app_context():
        return list(AuditEvent.select().where(AuditEvent.action == "sign_in.expired"))


def test_expire_audits_once_and_only_when_due(app, client, acme, smtp_server):  # noqa: F811
    ask_link(client)
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    with app.app_context():
        request = SignInRequest.get()
        assert signin.expire(request).status == "pending" and expired_events(app) == []
        SignInRequest.update(expires_at=utcnow() - dt.timedelta(seconds=1)).execute()
        stale = SignInRequest.get()
        first, second = signin.expire(stale, ip=IP, user_agent="x"), signin.expire(stale)
        assert first.status == second.status == "expired"
        [event] = expired_events(app)
        assert event.target == "ann" and event.outcome == "failure" and event.ip == IP
        assert event.details["request"] == request.public_id and token not in str(event.details)
        assert signin.expire(None) is None


def test_a_decoy_expires_without_an_audit_event(app, client, acme):  # noqa: F811
    ask_link(client, "nobody-here")
    with app.app_context():
        SignInRequest.update(expires_at=utcnow() - dt.timedelta(seconds=1)).execute()
        assert signin.expire(SignInRequest.get()).status == "expired"
    assert expired_events(app) == []


def test_an_expired_link_is_audited_once_however_often_it_is_opened(app, client, acme, smtp_server):  # noqa: F811
    wait_url = ask_link(client).headers["Location"]
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    with app.app_context():
        SignInRequest.update(expires_at=utcnow()).execute()
    assert client.get(f"/l/{token}").status_code == 410
    client.get(wait_url)
    client.post(f"/l/{token}", {"action": "approve"})
    assert len(expired_events(app)) == 1
