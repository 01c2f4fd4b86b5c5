"""Password reset by emailed single-use link, password change with the current password,
the live checklist, and the forced change after expiry. Real database (SQLite and
PostgreSQL) and a real SMTP server."""

from __future__ import annotations

import datetime as dt
import re
import threading
import unicodedata

import pytest

from models import (
    Account,
    AccountToken,
    AuditEvent,
    MailServer,
    PasswordPolicy,
    UserSession,
    db,
    utcnow,
)
from services import mailer, password_reset, passwords, ratelimit, tokens
from tests.support.factories import PASSWORD, sign_in

LINK = re.compile(r"http://gatehouse\.test/login/reset/([A-Za-z0-9_-]+)")
NEW = "a different long passphrase"


@pytest.fixture(autouse=True)
def fresh_limits():
    ratelimit.set_backend(ratelimit.MemoryBackend())
    yield


@pytest.fixture
def acme(app, create_organisation, create_account, smtp_server):
    organisation = create_organisation("acme", "Acme")
    with app.app_context():
        MailServer.create(organisation=organisation, name="relay", host="127.0.0.1", port=smtp_server.port,
                          security="none", from_address="Gatehouse <no-reply@acme.test>")
    create_account(organisation, "ann")
    return organisation


def deliver(app, smtp_server, count):
    with app.app_context():
        mailer.deliver_due()
    return smtp_server.wait_for(count)


def body(message):
    return message.get_body(("plain",)).get_content()


def without_csrf(response):
    """The body with CSRF tokens blanked (they embed a timestamp)."""
    text = response.get_data(as_text=True)
    text = re.sub(r'("X-CSRFToken":\s*")[^"]+', r"\1", text)
    return re.sub(r'(name="csrf_token"[^>]*value=")[^"]+', r"\1", text)


def ask_reset(client, identifier):
    client.get("/login/reset")
    return client.post("/login/reset", {"identifier": identifier})


def reset_link(client, app, smtp_server, count=1):
    response = ask_reset(client, "ann")
    assert response.status_code == 200
    message = deliver(app, smtp_server, count)[-1]
    return LINK.search(body(message)).group(1)


def test_known_and_unknown_get_the_same_answer_and_only_the_known_is_emailed(app, client, acme, smtp_server):
    known, unknown = ask_reset(client, "ann"), ask_reset(client, "nobody@acme.test")
    assert known.status_code == unknown.status_code == 200
    assert without_csrf(known) == without_csrf(unknown)
    assert "Check your email" in known.get_data(as_text=True)
    messages = deliver(app, smtp_server, 1)
    assert len(messages) == 1 and messages[0]["To"] == "ann@acme.test"
    token = LINK.search(body(messages[0])).group(1)
    with app.app_context():
        row = AccountToken.get()
        assert row.purpose == "password_reset" and row.token_hash == tokens.hash_token(token) != token
        assert dt.timedelta(minutes=59) < row.expires_at - row.created_at <= dt.timedelta(hours=1)


def test_get_and_head_never_consume_and_post_sets_the_password_once(app, client, acme, smtp_server):
    token = reset_link(client, app, smtp_server)
    sign_in(client, "ann")  # a session that the reset must end
    with app.app_context():
        assert UserSession.select().where(UserSession.ended_at.is_null()).count() == 1
    for _ in range(2):
        assert client.head(f"/login/reset/{token}").status_code == 200
        page = client.get(f"/login/reset/{token}")
        assert page.status_code == 200 and "Choose a new password" in page.get_data(as_text=True)
    response = client.post(f"/login/reset/{token}", {"new": NEW, "confirm": NEW})
    assert response.status_code == 303 and token not in response.headers["Location"]
    with app.app_context():
        account = Account.get(Account.username == "ann")
        assert passwords.check_password(account, NEW) and not passwords.check_password(account, PASSWORD)
        assert UserSession.select().where(UserSession.ended_at.is_null()).count() == 0
    # Used: the link is gone for GET and POST alike.
    assert client.get(f"/login/reset/{token}").status_code == 410
    assert client.post(f"/login/reset/{token}", {"new": "yet another passphrase!", "confirm": "yet another passphrase!"}).status_code == 410
    # The owner is told.
    notices = deliver(app, smtp_server, 2)
    assert "was changed with a reset link" in body(notices[-1])
    sign_in(client, "ann", NEW)
    with app.app_context():
        actions = [(e.action, e.outcome, e.target) for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert ("password.reset_requested", "success", "ann") in actions
    assert ("password.reset", "success", "ann") in actions
    assert not any(token in str(e) for e in actions)


def test_a_reset_link_lifts_a_lockout(app, client, acme, smtp_server):
    """Someone locked out by wrong guesses (theirs or an attacker's) gets back in through
    their mailbox without waiting for the lock to run out."""
    client.get("/login/password")
    for _ in range(10):
        client.post("/login/password", {"identifier": "ann", "password": "a wrong guess"})
    locked = client.post("/login/password", {"identifier": "ann", "password": PASSWORD})
    assert locked.status_code == 429 and "this account is locked" in locked.get_data(as_text=True)
    token = reset_link(client, app, smtp_server)
    client.get(f"/login/reset/{token}")
    assert client.post(f"/login/reset/{token}", {"new": NEW, "confirm": NEW}).status_code == 303
    client.post("/logout", {})
    sign_in(client, "ann", NEW)
    with app.app_context():
        assert Account.get(Account.username == "ann").failed_attempts == 0


def test_a_weak_password_is_refused_and_the_link_stays_usable(app, client, acme, smtp_server):
    token = reset_link(client, app, smtp_server)
    client.get(f"/login/reset/{token}")
    response = client.post(f"/login/reset/{token}", {"new": "password", "confirm": "password"})
    assert response.status_code == 422
    assert "At least 15 characters" in response.get_data(as_text=True)
    mismatch = client.post(f"/login/reset/{token}", {"new": NEW, "confirm": NEW + "x"})
    assert mismatch.status_code == 422 and "not the same" in mismatch.get_data(as_text=True)
    assert client.get(f"/login/reset/{token}").status_code == 200


def test_an_expired_or_unknown_link_is_refused(app, client, acme, smtp_server):
    token = reset_link(client, app, smtp_server)
    with app.app_context():
        AccountToken.update(expires_at=utcnow() - dt.timedelta(seconds=1)).execute()
    expired = client.get(f"/login/reset/{token}")
    assert expired.status_code == 410 and "expired or has already been used" in expired.get_data(as_text=True)
    assert client.get("/login/reset/not-a-real-token-at-all-123").status_code == 410
    assert client.get("/login/reset/x").status_code == 410


def test_a_new_link_replaces_the_previous_one(app, client, acme, smtp_server):
    first = reset_link(client, app, smtp_server, 1)
    second = reset_link(client, app, smtp_server, 2)
    assert first != second
    assert client.get(f"/login/reset/{first}").status_code == 410
    assert client.get(f"/login/reset/{second}").status_code == 200


def test_reset_requests_are_throttled_without_saying_more(app, client, acme, smtp_server):
    for _ in range(3):
        assert ask_reset(client, "ann").status_code == 200
    known, unknown = ask_reset(client, "ann"), ask_reset(client, "nobody")
    assert known.status_code == 429 and "Too many reset requests" in known.get_data(as_text=True)
    assert unknown.status_code == 200  # another identifier has its own count


def test_twenty_parallel_uses_of_one_link_and_exactly_one_wins(app, acme):
    with app.app_context():
        token = password_reset.issue(Account.get(Account.username == "ann"))
    barrier = threading.Barrier(20, timeout=30)
    results = [None] * 20

    def use(index):
        with app.app_context():
            db.connect(reuse_if_open=True)
            try:
                barrier.wait()
                password_reset.complete(token, f"parallel passphrase number {index:02d}", ip="127.0.0.1", user_agent="t")
                results[index] = "won"
            except password_reset.ResetError:
                results[index] = "refused"
            except BaseException as exc:  # noqa: BLE001
                results[index] = exc
            finally:
                db.close()

    threads = [threading.Thread(target=use, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results.count("won") == 1 and results.count("refused") == 19, results


def test_garbage_in_the_forms_is_a_clear_4xx(app, client, acme):
    client.get("/login/reset")
    assert client.post("/login/reset", {"identifier": "x" * 5000}).status_code == 422
    assert client.post("/login/reset", {"identifier": ["a", "b"]}).status_code in (200, 422)
    assert client.post("/login/reset", {}).status_code == 422


# ----------------------------------------------------------------------------- change while signed in


def test_change_needs_the_current_password_emails_the_owner_and_ends_other_sessions(app, client, acme, smtp_server):
    other = type(client)(app.test_client())
    sign_in(other, "ann")
    sign_in(client, "ann")
    page = client.get("/account/password")
    assert page.status_code == 200 and "At least 15 characters" in page.get_data(as_text=True)
    wrong = client.post("/account/password", {"current": "nope", "new": NEW, "confirm": NEW, "end_other_sessions": "y"})
    assert wrong.status_code == 422 and "not your current password" in wrong.get_data(as_text=True)
    response = client.post("/account/password", {"current": PASSWORD, "new": NEW, "confirm": NEW, "end_other_sessions": "y"})
    assert response.status_code == 303
    assert client.get("/account").status_code == 200      # this browser stays signed in
    assert other.get("/account").status_code == 302       # the other one is out
    assert "was changed by you" in body(deliver(app, smtp_server, 1)[0])
    with app.app_context():
        assert passwords.check_password(Account.get(Account.username == "ann"), NEW)
        changes = [(e.outcome, e.details) for e in AuditEvent.select().where(AuditEvent.action == "password.change")
                   .order_by(AuditEvent.id)]
    assert changes == [("failure", {"reason": "wrong current password"}), ("success", {"other_sessions_ended": 1})]


def test_live_checklist_while_typing(app, client, acme):
    sign_in(client, "ann")
    client.get("/account/password")
    short = client.post("/account/password/check", {"new": "short"}, htmx=True, target="password-rules")
    html = short.get_data(as_text=True)
    assert short.status_code == 200 and 'id="password-rules"' in html and "rule-missing" in html and "<html" not in html
    good = client.post("/account/password/check", {"new": NEW}, htmx=True, target="password-rules").get_data(as_text=True)
    assert "rule-missing" not in good and "rule-ok" in good


def test_history_is_enforced_on_change(app, client, acme):
    with app.app_context():
        PasswordPolicy.create(organisation=acme, strength="basic", history_count=2)
    sign_in(client, "ann")
    client.get("/account/password")
    same = client.post("/account/password", {"current": PASSWORD, "new": PASSWORD, "confirm": PASSWORD})
    assert same.status_code == 422 and "Different from your last 2 passwords" in same.get_data(as_text=True)


def test_expired_password_is_changed_at_the_next_sign_in(app, client, acme):
    with app.app_context():
        PasswordPolicy.create(organisation=acme, strength="nist", expiry_days=30)
        Account.update(password_changed_at=utcnow() - dt.timedelta(days=31)).execute()
    response = sign_in(client, "ann")
    assert response.headers["Location"].startswith("/account/password")
    page = client.get("/account/password").get_data(as_text=True)
    assert "Your password has expired" in page
    assert client.post("/account/password", {"current": PASSWORD, "new": NEW, "confirm": NEW}).status_code == 303
    with app.app_context():
        assert not Account.get(Account.username == "ann").must_change_password
    client.post("/logout", {})
    assert sign_in(client, "ann", NEW).headers["Location"] == "/account"


def test_an_expired_password_blocks_everything_but_the_change_form(app, client, create_organisation, create_account):
    from models import Account
    from tests.support.factories import sign_in as sign_in_with_password

    create_account(create_organisation("zeta"), "zed")
    sign_in_with_password(client, "zed")
    with app.app_context():
        Account.update(must_change_password=True).where(Account.username == "zed").execute()
    response = client.get("/account")
    assert response.status_code == 303 and response.headers["Location"] == "/account/password"
    assert client.get("/account/password").status_code == 200



@pytest.mark.parametrize("password, message", [
    ("x" * 10_000, "too long"),
    ("nul\x00inside a long passphrase", "control character"),
])
def test_odd_new_passwords_are_refused_with_a_reason(app, client, acme, smtp_server, password, message):
    token = reset_link(client, app, smtp_server)
    client.get(f"/login/reset/{token}")
    response = client.post(f"/login/reset/{token}", {"new": password, "confirm": password})
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert client.get(f"/login/reset/{token}").status_code == 200  # the link still works


def test_a_non_ascii_password_works_and_odd_ones_at_sign_in_lock_nothing(app, client, acme, smtp_server):
    accented = "Pâté façade 东京 ünïcode wörds"
    token = reset_link(client, app, smtp_server)
    client.get(f"/login/reset/{token}")
    assert client.post(f"/login/reset/{token}", {"new": accented, "confirm": accented}).status_code == 303
    sign_in(client, "ann", accented)
    client.post("/logout", {})
    # Another keyboard may send the accents as separate combining characters (NFD).
    sign_in(client, "ann", unicodedata.normalize("NFD", accented))
    client.post("/logout", {})
    client.get("/login/password")
    for odd in ("x" * 10_000, "nul\x00byte"):
        response = client.post("/login/password", {"identifier": "ann", "password": odd})
        assert response.status_code == 422
    with app.app_context():
        # The oversize password is refused by the form before anything is counted.
        assert Account.get(Account.username == "ann").failed_attempts <= 1
