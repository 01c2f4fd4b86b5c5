"""Two-factor authentication through the web layer: enrolment (QR and secret only in a
no-store POST response), the TOTP step after a password and after an emailed link,
wrong and replayed codes, recovery at sign-in with forced re-enrolment, and no way
around the second factor while it is pending."""

from __future__ import annotations

import datetime as dt
import re
import time

import pyotp
import pytest

from models import Account, AuditEvent, OutboxMessage, RecoveryCode, UserSession, db, utcnow
from services import totp
from tests.support.factories import sign_in
from tests.support.web import WebClient, stored
from tests.web.test_email_signin import acme, ask_link, deliver, link_in  # noqa: F401  (fixtures)
from tests.web.test_manager_approval import demo, fresh_state  # noqa: F401  (fixtures)

SECRET = re.compile(r'data-secret="([A-Z2-7]+)"')
CODE = re.compile(r"<code>([a-z2-7]{4}(?:-[a-z2-7]{4}){6})</code>")


pytestmark = pytest.mark.usefixtures("clock")  # services.totp on a clock the tests move


def code_now(secret, clock):
    return pyotp.TOTP(secret).at(clock.now)


def enrol_by_web(client, clock):
    """Set up TOTP through the pages, as a person with an authenticator app would."""
    page = client.get("/account/2fa")
    assert page.status_code == 200 and "Status: off" in page.get_data(as_text=True)
    response = client.post("/account/2fa/enrol", {})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    secret = SECRET.search(body).group(1)
    assert len(secret) == 32 and "<svg" in body
    response = client.post("/account/2fa/confirm", {"code": code_now(secret, clock)})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    codes = CODE.findall(response.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


@pytest.fixture
def ann_with_totp(app, client, create_organisation, create_account, clock):
    """ann of acme, TOTP enrolled through the web, signed out again."""
    create_account(create_organisation("acme", "Acme"), "ann")
    sign_in(client, "ann")
    secret, codes = enrol_by_web(client, clock)
    client.get("/account")
    client.post("/logout", {})
    clock.tick()
    return secret, codes


def password_first(client, username="ann"):
    client.get("/login/password")
    response = client.post("/login/password", {"identifier": username, "password": "correct horse battery staple"})
    assert response.status_code == 303 and response.headers["Location"] == "/login/totp"
    # No session yet: at most the removal of an earlier cookie.
    assert not any(c.startswith("gatehouse_session=") and not c.startswith("gatehouse_session=;")
                   for c in response.headers.getlist("Set-Cookie"))
    return response


def test_enrolment_shows_the_secret_only_in_a_post(app, client, create_organisation, create_account, clock):
    create_account(create_organisation("acme", "Acme"), "ann")
    sign_in(client, "ann")
    assert "data-secret" not in client.get("/account/2fa").get_data(as_text=True)
    assert client.get("/account/2fa/enrol").status_code == 405
    response = client.post("/account/2fa/enrol", {})
    secret = SECRET.search(response.get_data(as_text=True)).group(1)
    wrong = client.post("/account/2fa/confirm", {"code": "000000" if code_now(secret, clock) != "000000" else "111111"})
    assert wrong.status_code == 422 and secret in wrong.get_data(as_text=True)
    assert stored(app, lambda: Account.get(Account.username == "ann").totp_enabled_at) is None
    response = client.post("/account/2fa/confirm", {"code": code_now(secret, clock)})
    assert response.status_code == 200
    account = stored(app, lambda: Account.get(Account.username == "ann"))
    assert account.totp_enabled_at is not None and secret not in account.totp_secret_encrypted
    assert "Status: on" in client.get("/account/2fa").get_data(as_text=True)
    actions = stored(app, lambda: [e.action for e in AuditEvent.select().order_by(AuditEvent.id)])
    assert "two_factor.enrolment_started" in actions and "two_factor.enrolled" in actions
    assert stored(app, lambda: AuditEvent.select().where(AuditEvent.action == "two_factor.verify").count()) == 1
    assert all(secret not in str(e.details) for e in stored(app, lambda: list(AuditEvent.select())))


def test_password_then_totp(app, client, ann_with_totp, clock):
    secret, _ = ann_with_totp
    password_first(client)
    page = client.get("/login/totp")
    assert page.status_code == 200 and "Reset your two-factor authentication?" in page.get_data(as_text=True)
    response = client.post("/login/totp", {"code": code_now(secret, clock)})
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    assert any(c.startswith("gatehouse_session=") for c in response.headers.getlist("Set-Cookie"))
    assert client.get("/account").status_code == 200
    last = stored(app, lambda: AuditEvent.select().where(AuditEvent.action == "sign_in.completed").order_by(AuditEvent.id.desc()).first())
    assert last.details == {"method": "password", "second_factor": "totp"}


def test_wrong_code_is_refused_and_audited(app, client, ann_with_totp, clock):
    secret, _ = ann_with_totp
    password_first(client)
    client.get("/login/totp")
    good = code_now(secret, clock)
    response = client.post("/login/totp", {"code": "000000" if good != "000000" else "111111"})
    assert response.status_code == 422 and "not right" in response.get_data(as_text=True)
    assert client.get("/account").status_code == 302
    assert stored(app, lambda: AuditEvent.select().where(
        (AuditEvent.action == "two_factor.verify") & (AuditEvent.outcome == "failure")).count()) >= 1
    assert client.post("/login/totp", {"code": good}).status_code == 303


def test_a_replayed_code_is_refused(app, client, ann_with_totp, clock):
    secret, _ = ann_with_totp
    password_first(client)
    client.get("/login/totp")
    code = code_now(secret, clock)
    assert client.post("/login/totp", {"code": code}).status_code == 303
    client.post("/logout", {})
    password_first(client)
    client.get("/login/totp")
    assert client.post("/login/totp", {"code": code}).status_code == 422
    clock.tick()
    assert client.post("/login/totp", {"code": code_now(secret, clock)}).status_code == 303


def test_too_many_wrong_codes_are_throttled(app, client, ann_with_totp, clock):
    secret, _ = ann_with_totp
    password_first(client)
    client.get("/login/totp")
    statuses = [client.post("/login/totp", {"code": "00000%d" % i}).status_code for i in range(6)]
    assert statuses[-1] == 429
    assert client.post("/login/totp", {"code": code_now(secret, clock)}).status_code == 429


def test_no_path_around_a_pending_second_factor(app, client, create_organisation, create_account, clock):
    create_account(create_organisation("acme", "Acme"), "olga", role="owner")
    sign_in(client, "olga")
    secret, _ = enrol_by_web(client, clock)
    client.get("/account")
    client.post("/logout", {})
    clock.tick()
    password_first(client, "olga")
    for url in ("/account", "/admin/", "/account/2fa"):
        assert client.get(url).status_code == 302, url
    client.get("/login/totp")  # a fresh CSRF token for this browser
    assert client.post("/account/2fa/disable", {"code": code_now(secret, clock)}).status_code == 302
    assert client.post("/account/2fa/enrol", {}).status_code == 302
    assert stored(app, lambda: UserSession.select().count()) == 1  # only the session before sign-out
    # A pending marker expires after five minutes.
    with client.client.session_transaction() as flask_session:
        flask_session["pending_second_factor"] = {**flask_session["pending_second_factor"], "expires": int(time.time()) - 1}
    assert client.post("/login/totp", {"code": code_now(secret, clock)}).headers["Location"] == "/login"


def test_email_link_then_totp(app, client, acme, smtp_server, clock):  # noqa: F811
    with app.app_context():
        db.connect(reuse_if_open=True)
        account = Account.get(Account.username == "ann")
        secret, _ = totp.start_enrolment(account)
        assert totp.confirm_enrolment(account, code_now(secret, clock), now=clock.now)
        db.close()
    clock.tick()
    ask_link(client)
    [message] = deliver(app, smtp_server, 1)
    _, token = link_in(message)
    client.get(f"/l/{token}")
    response = client.post(f"/l/{token}", {"action": "approve"})
    assert response.status_code == 303 and response.headers["Location"] == "/login/totp"
    assert client.get("/account").status_code == 302
    client.get("/login/totp")
    response = client.post("/login/totp", {"code": code_now(secret, clock)})
    assert response.headers["Location"] == "/account"
    assert "Emailed link" in client.get("/account").get_data(as_text=True)


def test_recovery_code_at_sign_in_forces_enrolment(app, client, ann_with_totp, clock):
    secret, codes = ann_with_totp
    password_first(client)
    client.get("/login/totp")
    client.get("/login/totp/reset")
    assert client.post("/login/totp/reset", {"code": "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg"}).status_code == 422
    mails_before = stored(app, lambda: OutboxMessage.select().count())
    response = client.post("/login/totp/reset", {"code": codes[3]})
    assert response.status_code == 303 and response.headers["Location"] == "/account/2fa"
    account = stored(app, lambda: Account.get(Account.username == "ann"))
    assert account.must_enrol_totp and account.totp_enabled_at is None and account.totp_secret_encrypted is None
    assert stored(app, lambda: RecoveryCode.select().count()) == 0
    assert stored(app, lambda: OutboxMessage.select().count()) == mails_before + 1
    for url in ("/account", "/admin/", "/"):
        assert client.get(url).headers.get("Location") == "/account/2fa", url
    actions = stored(app, lambda: [e.action for e in AuditEvent.select()])
    assert "two_factor.recovery_code_used" in actions and "two_factor.disabled" in actions
    new_secret, _ = enrol_by_web(client, clock)
    assert new_secret != secret
    assert client.get("/account").status_code == 200


def test_regenerate_download_and_disable(app, client, ann_with_totp, clock):
    secret, codes = ann_with_totp
    password_first(client)
    client.get("/login/totp")
    client.post("/login/totp", {"code": code_now(secret, clock)})
    client.get("/account/2fa")
    response = client.post("/account/2fa/recovery-codes", {"format": "txt"})
    assert response.mimetype == "text/plain" and "attachment" in response.headers["Content-Disposition"]
    new_codes = CODE.findall("".join(f"<code>{line}</code>" for line in response.get_data(as_text=True).splitlines()))
    assert len(new_codes) == 10 and not set(new_codes) & set(codes)
    download = client.post("/account/2fa/recovery-codes.txt", {"codes": " ".join(new_codes)})
    assert download.status_code == 200 and new_codes[0] in download.get_data(as_text=True)
    client.get("/account/2fa")
    assert client.post("/account/2fa/disable", {"code": "000000" if code_now(secret, clock) != "000000" else "111111"}).status_code == 422
    clock.tick()
    assert client.post("/account/2fa/disable", {"code": code_now(secret, clock)}).status_code == 303
    assert "Status: off" in client.get("/account/2fa").get_data(as_text=True)
    client.post("/logout", {})
    sign_in(client, "ann")  # no second factor any more


def test_an_earlier_session_ends_when_a_second_factor_is_pending(app, client, ann_with_totp, create_account, clock):
    secret, _ = ann_with_totp
    create_account(stored(app, lambda: Account.get(Account.username == "ann").organisation), "bob")
    sign_in(client, "bob")
    assert client.get("/account").status_code == 200
    password_first(client, "ann")
    assert client.get("/account").status_code == 302, "bob's session must not stay usable"
    client.get("/login/totp")
    assert client.post("/login/totp", {"code": code_now(secret, clock)}).headers["Location"] == "/account"
    assert "ann" in client.get("/account").get_data(as_text=True)


def test_manager_approval_then_totp(app, client, demo, smtp_server, clock):  # noqa: F811
    wait_url = ask_link(client, "fiona").headers["Location"]
    with app.app_context():
        db.connect(reuse_if_open=True)
        fiona = Account.get(Account.username == "fiona")
        secret, _ = totp.start_enrolment(fiona)
        assert totp.confirm_enrolment(fiona, code_now(secret, clock), now=clock.now)
        db.close()
    clock.tick()
    [message] = deliver(app, smtp_server, 1)
    _, token = link_in(message)
    olivia = WebClient(app.test_client())
    olivia.get(f"/a/{token}")
    olivia.post(f"/a/{token}", {"action": "approve"})
    client.get(wait_url)
    assert client.post(f"{wait_url}/finish", {}).headers["Location"] == "/login/totp"
    assert client.get("/account").status_code == 302
    client.get("/login/totp")
    assert client.post("/login/totp", {"code": code_now(secret, clock)}).headers["Location"] == "/account"
    assert "Manager approval" in client.get("/account").get_data(as_text=True)


def test_wrong_recovery_codes_count_towards_the_lockout(app, client, ann_with_totp, clock):
    _, codes = ann_with_totp
    password_first(client)
    client.get("/login/totp/reset")
    with app.app_context():
        before = Account.get(Account.username == "ann").failed_attempts
    assert client.post("/login/totp/reset", {"code": "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg"}).status_code == 422
    with app.app_context():
        assert Account.get(Account.username == "ann").failed_attempts == before + 1
        # A locked account's right recovery code is refused too, and nothing is reset.
        Account.update(locked_until=utcnow() + dt.timedelta(minutes=10)).where(Account.username == "ann").execute()
    response = client.post("/login/totp/reset", {"code": codes[0]})
    assert response.status_code == 429 and "locked" in response.get_data(as_text=True)
    with app.app_context():
        assert Account.get(Account.username == "ann").totp_enabled_at is not None
        Account.update(locked_until=None).where(Account.username == "ann").execute()
    assert client.post("/login/totp/reset", {"code": codes[0]}).status_code == 303
    with app.app_context():
        assert Account.get(Account.username == "ann").failed_attempts == 0


@pytest.mark.parametrize("url, code, message", [
    ("/login/totp", "abc", "A code is 6 digits"),
    ("/login/totp", "12345", "A code is 6 digits"),
    ("/login/totp", "1234567", "A code is 6 digits"),
    ("/login/totp/reset", "not-a-code", "A recovery code is seven groups"),
])
def test_a_code_of_the_wrong_shape_is_explained_and_not_counted(app, client, ann_with_totp, url, code, message):
    password_first(client)
    client.get(url)
    with app.app_context():
        before = Account.get(Account.username == "ann").failed_attempts
    for _ in range(7):  # more than the per-account code limit: none of them is counted
        response = client.post(url, {"code": code})
        assert response.status_code == 422 and message in response.get_data(as_text=True)
    with app.app_context():
        assert Account.get(Account.username == "ann").failed_attempts == before


def test_a_recovery_code_signs_in_instead_of_the_app_and_two_factor_stays_on(app, client, ann_with_totp, clock):
    _, codes = ann_with_totp
    password_first(client)
    page = client.get("/login/totp")
    assert "Use a recovery code instead" in page.get_data(as_text=True)
    assert "Sign in with a recovery code" in client.get("/login/totp/recovery").get_data(as_text=True)
    mails_before = stored(app, lambda: OutboxMessage.select().count())
    response = client.post("/login/totp/recovery", {"code": codes[5]})
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    assert client.get("/account").status_code == 200
    account = stored(app, lambda: Account.get(Account.username == "ann"))
    assert account.totp_enabled_at is not None and not account.must_enrol_totp  # still on
    assert stored(app, lambda: RecoveryCode.select().where(RecoveryCode.used_at.is_null()).count()) == 9
    mail = stored(app, lambda: OutboxMessage.select().order_by(OutboxMessage.id.desc()).first())
    assert stored(app, lambda: OutboxMessage.select().count()) == mails_before + 1
    assert "instead of a code from your authenticator app. 9 recovery codes are left" in mail.text_body
    # The same code never works twice.
    client.post("/logout", {})
    clock.tick()
    password_first(client)
    client.get("/login/totp/recovery")
    again = client.post("/login/totp/recovery", {"code": codes[5]})
    assert again.status_code == 422 and "already used" in again.get_data(as_text=True)
