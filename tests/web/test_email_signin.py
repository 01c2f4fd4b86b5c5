"""Sign in by emailed link, end to end through the web layer with a real SMTP server:
user approval (same browser and cross-device), links that GET/HEAD never consume,
decoys for unknown users, manager approval, expiry, throttling, and the audit trail."""

import re

import pytest

from models import (
    ApprovalProfile, AuditEvent, MailServer, OutboxMessage, ProfileDirectory, ProfileMailServer, SignInRequest, utcnow,
)
from services import mailer, ratelimit
from tests.support.factories import PASSWORD, sign_in
from tests.support.web import WebClient

LINK = re.compile(r"http://gatehouse\.test/([la])/([A-Za-z0-9_-]+)")


@pytest.fixture(autouse=True)
def fresh_limits():
    ratelimit.set_backend(ratelimit.MemoryBackend())
    yield


@pytest.fixture
def acme(app, create_organisation, create_account, smtp_server):
    """Organisation acme: a user-approval default profile sending through the test SMTP server."""
    organisation = create_organisation("acme", "Acme")
    with app.app_context():
        server = MailServer.create(organisation=organisation, name="relay", host="127.0.0.1", port=smtp_server.port,
                                   security="none", from_address="Gatehouse <no-reply@acme.test>")
        profile = ApprovalProfile.create(
            organisation=organisation, name="Staff", kind="user", server_url="http://gatehouse.test",
            subject="Sign in to {organisation}", message="Hello {user}, sign in: {link} (from {ip}, {browser}, until {expires})",
            is_default=True,
        )
        ProfileMailServer.create(profile=profile, mail_server=server, position=0)
        ProfileDirectory.create(profile=profile, directory=None, position=0)
    create_account(organisation, "ann", display_name="Ann Archer")
    return organisation


def deliver(app, smtp_server, count):
    with app.app_context():
        mailer.deliver_due()
    return smtp_server.wait_for(count)


def link_in(message):
    body = message.get_body(("plain",)).get_content()
    kind, token = LINK.search(body).groups()
    return kind, token


def ask_link(client, identifier="ann"):
    client.get("/login")
    return client.post("/login", {"identifier": identifier, "method": "email"})


def test_user_approval_in_the_same_browser(app, client, acme, smtp_server):
    response = ask_link(client)
    assert response.status_code == 303
    wait_url = response.headers["Location"]
    assert wait_url.startswith("/login/wait/")
    cookies = response.headers.getlist("Set-Cookie")
    assert any(c.startswith("gatehouse_signin=") and "HttpOnly" in c and "SameSite=Lax" in c for c in cookies)
    page = client.get(wait_url).get_data(as_text=True)
    assert "Check your email" in page and 'hx-trigger="every 2s"' in page, re.findall(r"<h1>.*?</h1>|<p>.*?</p>", page, re.S)

    [message] = deliver(app, smtp_server, 1)
    assert message["To"] == "ann@acme.test" and message["Subject"] == "Sign in to Acme"
    kind, token = link_in(message)
    assert kind == "l"

    confirm = client.get(f"/l/{token}")
    assert "Sign in to Acme?" in confirm.get_data(as_text=True)
    response = client.post(f"/l/{token}", {"action": "approve"})
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    assert "Emailed link" in client.get("/account").get_data(as_text=True)


def test_a_password_lockout_leaves_the_emailed_link_working(app, client, acme, smtp_server):
    """The lockout stops password guessing; it must not lock the person out of their
    mailbox-based sign-in (wrong guesses by someone else would otherwise shut them out)."""
    client.get("/login/password")
    for _ in range(10):
        client.post("/login/password", {"identifier": "ann", "password": "a wrong guess", "account_id": "acme"})
    with app.app_context():
        from models import Account

        assert Account.get(Account.username == "ann").locked_until is not None
    ask_link(client)
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    client.get(f"/l/{token}")
    response = client.post(f"/l/{token}", {"action": "approve"})
    assert response.status_code == 303 and response.headers["Location"] == "/account"


def test_the_waiting_tab_says_signed_in_when_the_link_was_used_in_another_tab(app, client, acme, smtp_server):
    wait_url = ask_link(client).headers["Location"]
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    client.get(f"/l/{token}")  # the mail opened in a second tab of the same browser
    assert client.post(f"/l/{token}", {"action": "approve"}).headers["Location"] == "/account"
    for url in (f"{wait_url}/status", wait_url):  # the first tab polls, or is reloaded
        page = client.get(url).get_data(as_text=True)
        assert "You are signed in" in page and 'href="/account"' in page and "Start again" not in page
    other = WebClient(app.test_client())  # a browser that is not signed in learns nothing new
    assert "You are signed in" not in other.get(wait_url).get_data(as_text=True)


def test_get_and_head_of_the_link_never_change_anything(app, client, acme, smtp_server):
    ask_link(client)
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    scanner = app.test_client()
    for _ in range(10):
        assert scanner.get(f"/l/{token}").status_code == 200
        assert scanner.head(f"/l/{token}").status_code == 200
    with app.app_context():
        assert SignInRequest.get().status == "pending"


def test_cross_device_approval_signs_in_the_waiting_browser_only(app, client, acme, smtp_server):
    wait_url = ask_link(client).headers["Location"]
    _, token = link_in(deliver(app, smtp_server, 1)[0])


    phone = WebClient(app.test_client())
    phone.get(f"/l/{token}")
    answer = phone.post(f"/l/{token}", {"action": "approve"})
    assert "Go back to the browser where you asked for the link" in answer.get_data(as_text=True)
    assert phone.client.get_cookie("gatehouse_session") is None
    assert phone.get("/account").status_code == 302

    status = client.get(f"{wait_url}/status", htmx=True, target="sign-in-status").get_data(as_text=True)
    assert "Approved" in status and 'hx-trigger="load, submit"' in status and "<html" not in status
    finish = client.post(f"{wait_url}/finish", {}, htmx=True)
    assert finish.headers["HX-Redirect"] == "/account"
    assert client.get("/account").status_code == 200
    # The finish cannot be replayed by another browser, nor twice.
    assert phone.post(f"{wait_url}/finish", {}).headers["Location"] == "/login"


def test_this_was_not_me_denies(app, client, acme, smtp_server):
    wait_url = ask_link(client).headers["Location"]
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    client.get(f"/l/{token}")
    page = client.post(f"/l/{token}", {"action": "deny"}).get_data(as_text=True)
    assert "the sign-in was stopped" in page
    assert "Sign-in denied" in client.get(f"{wait_url}/status", htmx=True, target="sign-in-status").get_data(as_text=True)
    with app.app_context():
        assert AuditEvent.get(AuditEvent.action == "sign_in.denied").outcome == "denied"


def test_used_expired_and_unknown_links_explain_themselves(app, client, acme, smtp_server):
    ask_link(client)
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    client.get(f"/l/{token}")
    client.post(f"/l/{token}", {"action": "approve"})
    used = app.test_client().get(f"/l/{token}")
    assert used.status_code == 410 and "already been used" in used.get_data(as_text=True)
    unknown = app.test_client().get("/l/" + "x" * 43)
    assert unknown.status_code == 404 and "Send a new link" in unknown.get_data(as_text=True)

    other = app.test_client()

    other = WebClient(other)
    ask_link(other)
    _, second = link_in(deliver(app, smtp_server, 2)[1])
    with app.app_context():
        SignInRequest.update(expires_at=utcnow()).where(SignInRequest.status == "pending").execute()
    expired = other.get(f"/l/{second}")
    assert expired.status_code == 410 and "This link has expired" in expired.get_data(as_text=True)


def test_unknown_users_get_the_same_answer_and_nothing_is_sent(app, acme, smtp_server):

    known, unknown = WebClient(app.test_client()), WebClient(app.test_client())
    first, second = ask_link(known, "ann"), ask_link(unknown, "nobody-here")
    assert first.status_code == second.status_code == 303
    # Tokens differ, and the two answers may straddle a second in the cookie's Expires and
    # in the timestamp inside the signed Flask session cookie.
    strip = lambda r: sorted(  # noqa: E731
        (k, re.sub(r"Expires=[^;]+;", "Expires=T;", re.sub(r"^session=[^;]+", "session=S",
                                                            re.sub(r"[A-Za-z0-9_-]{20,}", "X", v))))
        for k, v in r.headers.items() if k != "Date")
    assert strip(first) == strip(second)
    page_known = known.get(first.headers["Location"]).get_data(as_text=True)
    page_unknown = unknown.get(second.headers["Location"]).get_data(as_text=True)
    # Ids and tokens differ, and the two requests may straddle a minute in "works until HH:MM".
    # CSRF tokens carry a timestamp too.
    normalise = lambda page: re.sub(r"\d\d:\d\d UTC", "HH:MM UTC", re.sub(r"[A-Za-z0-9_.-]{20,}", "X", page))  # noqa: E731
    assert normalise(page_known) == normalise(page_unknown)
    with app.app_context():
        assert OutboxMessage.select().count() == 1  # only ann's


def test_link_requests_are_throttled_without_revealing_the_account(app, client, acme):
    for _ in range(5):
        assert ask_link(client, "ann").status_code == 303
    throttled = ask_link(client, "ann")
    assert throttled.status_code == 429
    assert "Try again in 15 minutes" in throttled.get_data(as_text=True)
    for _ in range(5):
        ask_link(client, "ghost")
    assert "Try again in 15 minutes" in ask_link(client, "ghost").get_data(as_text=True)


def test_waiting_page_of_another_browser_reveals_nothing(app, client, acme):
    wait_url = ask_link(client).headers["Location"]
    stranger = app.test_client()
    page = stranger.get(wait_url).get_data(as_text=True)
    assert "Continue in the browser where you started" in page and "ann" not in page.lower().replace("cancel", "")


def test_cancel(app, client, acme):
    wait_url = ask_link(client).headers["Location"]
    client.get(wait_url)
    client.post(f"{wait_url}/cancel", {})
    with app.app_context():
        assert SignInRequest.get().status == "cancelled"


def test_tokens_never_reach_the_audit_log(app, client, acme, smtp_server):
    ask_link(client)
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    client.get(f"/l/{token}")
    client.post(f"/l/{token}", {"action": "approve"})
    with app.app_context():
        actions = [e.action for e in AuditEvent.select().order_by(AuditEvent.id)]
        for expected in ("sign_in.requested", "email.queued", "email.sent", "sign_in.link_viewed", "sign_in.confirmed", "sign_in.completed"):
            assert expected in actions
        assert not any(token in str(e.details) or token in e.target for e in AuditEvent.select())


@pytest.fixture
def manager_profile(app, acme, create_account):
    """Switch acme's default profile to manager approval with the password first; ann's sponsor approves."""
    with app.app_context():
        ApprovalProfile.update(kind="manager", first_factor="password", subject="{user} wants to sign in",
                               message="Approve or deny: {link}").execute()
        from models import Account

        Account.update(sponsor_email="boss@acme.test").where(Account.username == "ann").execute()


def test_manager_approval_after_the_password(app, client, manager_profile, smtp_server):
    response = ask_link(client)
    assert response.headers["Location"].startswith("/login/password?identifier=ann")
    client.get(response.headers["Location"])
    wrong = client.post("/login/password", {"identifier": "ann", "password": "nope", "account_id": "acme"})
    assert wrong.status_code == 422
    response = client.post("/login/password", {"identifier": "ann", "password": PASSWORD, "account_id": "acme"})
    wait_url = response.headers["Location"]
    assert wait_url.startswith("/login/wait/")
    page = client.get(wait_url).get_data(as_text=True)
    assert "Waiting for manager approval" in page and "b***@a***.test" in page

    [message] = deliver(app, smtp_server, 1)
    assert message["To"] == "boss@acme.test"
    kind, token = link_in(message)
    assert kind == "a"

    boss = WebClient(app.test_client())
    assert "Ann Archer" in boss.get(f"/a/{token}").get_data(as_text=True)
    assert "Approved" in boss.post(f"/a/{token}", {"action": "approve"}).get_data(as_text=True)
    assert boss.client.get_cookie("gatehouse_session") is None

    client.get(f"{wait_url}/status")
    assert client.post(f"{wait_url}/finish", {}).headers["Location"] == "/account"
    assert "Manager approval" in client.get("/account").get_data(as_text=True)


def test_manager_denial_reaches_the_waiting_page(app, client, manager_profile, smtp_server):
    client.get("/login/password")
    wait_url = client.post("/login/password", {"identifier": "ann", "password": PASSWORD, "account_id": "acme"}).headers["Location"]
    _, token = link_in(deliver(app, smtp_server, 1)[0])

    boss = WebClient(app.test_client())
    boss.get(f"/a/{token}")
    boss.post(f"/a/{token}", {"action": "deny"})
    assert "denied by your manager" in client.get(f"{wait_url}/status").get_data(as_text=True)
    assert client.post(f"{wait_url}/finish", {}).headers["Location"] == "/login"


def test_no_approver_is_said_clearly(app, client, manager_profile):
    with app.app_context():
        from models import Account

        Account.update(sponsor_email=None).where(Account.username == "ann").execute()
    client.get("/login/password")
    response = client.post("/login/password", {"identifier": "ann", "password": PASSWORD, "account_id": "acme"})
    assert "no approver is known for your account" in response.get_data(as_text=True)
    with app.app_context():
        assert AuditEvent.get(AuditEvent.action == "sign_in.no_approver").outcome == "failure"


def test_approval_pages_need_csrf(app, client, acme, smtp_server):
    ask_link(client)
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    assert app.test_client().post(f"/l/{token}", data={"action": "approve"}).status_code == 400
    with app.app_context():
        assert SignInRequest.get().status == "pending"


def test_password_sign_in_for_a_user_approval_profile_is_direct(app, client, acme):
    sign_in(client, "ann")
    assert client.get("/account").status_code == 200
