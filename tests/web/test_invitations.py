"""Accepting an invitation at /invitation/<token>: looking never uses the link; a good
password activates the account and signs this browser in; used, expired, replaced and
unknown links get a page that says which."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from models import Account, AccountToken, AuditEvent, OutboxMessage, UserSession, utcnow
from services import passwords, team
from tests.support.factories import sign_in

LINK = re.compile(r"http://gatehouse\.test/invitation/([A-Za-z0-9_-]+)")
GOOD = "a long enough passphrase here"


@pytest.fixture
def invite(app, owner):
    """``invite(username="tina", role="technician")`` → the token of the emailed link."""

    def make(username="tina", role="technician"):
        with app.app_context():
            actor = team.Actor(account=owner, role="owner", name="olga")
            team.invite(actor, team.NewMember(owner.organisation.id, username, f"{username}@acme.test", role=role),
                        server_url="http://gatehouse.test")
            message = OutboxMessage.select().order_by(OutboxMessage.id.desc()).first()
            return LINK.search(message.text_body).group(1)

    return make


def account(app, username="tina"):
    with app.app_context():
        return Account.get(Account.username == username)


def test_opening_the_link_shows_the_form_and_uses_nothing(app, client, invite):
    token = invite()
    for _ in range(2):
        response = client.get(f"/invitation/{token}")
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and "Set up your account" in html
        assert "tina" in html and "as a technician" in html and "At least 15 characters" in html
        assert response.headers["Referrer-Policy"] == "no-referrer" and response.headers["Cache-Control"] == "no-store"
    assert client.head(f"/invitation/{token}").status_code == 200
    with app.app_context():
        assert AccountToken.get().used_at is None
    assert account(app).status == "pending"


def test_setting_a_password_activates_and_signs_in(app, client, invite):
    token = invite()
    client.get(f"/invitation/{token}")
    response = client.post(f"/invitation/{token}", {"new": GOOD, "confirm": GOOD})
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    assert any(c.startswith("gatehouse_session=") for c in response.headers.getlist("Set-Cookie"))
    tina = account(app)
    assert tina.status == "active" and passwords.check_password(tina, GOOD) and tina.last_sign_in_at is not None
    page = client.get("/admin/").get_data(as_text=True)
    assert "your account is ready and you are signed in" in page
    with app.app_context():
        assert AuditEvent.get(AuditEvent.action == "invitation.accepted").target == "tina"
        assert AuditEvent.get(AuditEvent.action == "sign_in.completed").details == {"method": "invitation"}
        assert not any(token in str(row) for row in AuditEvent.select().dicts())


def test_a_link_used_twice_says_so(app, client, invite):
    token = invite()
    client.get(f"/invitation/{token}")
    client.post(f"/invitation/{token}", {"new": GOOD, "confirm": GOOD})
    response = client.get(f"/invitation/{token}")
    html = response.get_data(as_text=True)
    assert response.status_code == 410 and "This invitation has already been used" in html
    assert "Sign in with the password you chose" in html and "/login/password?identifier=tina" in html
    response = client.post(f"/invitation/{token}", {"new": "another long passphrase", "confirm": "another long passphrase"})
    assert response.status_code == 410
    assert passwords.check_password(account(app), GOOD)


def test_an_expired_link_says_so(app, client, invite):
    token = invite()
    with app.app_context():
        AccountToken.update(expires_at=utcnow() - dt.timedelta(minutes=1)).execute()
    response = client.get(f"/invitation/{token}")
    html = response.get_data(as_text=True)
    assert response.status_code == 410 and "This invitation has expired" in html and "Resend invitation" in html
    assert account(app).status == "pending"


def test_a_resent_invitation_replaces_the_old_link(app, client, invite):
    first = invite()
    with app.app_context():
        owner = Account.get(Account.username == "olga")
        team.resend(team.Actor(account=owner, role="owner", name="olga"), Account.get(Account.username == "tina"),
                    server_url="http://gatehouse.test")
    assert client.get(f"/invitation/{first}").status_code == 410


@pytest.mark.parametrize("token", ["x" * 43, "short", "a" * 500, "%00%00%00%00%00%00%00%00%00%00"])
def test_unknown_links_are_not_found(client, token):
    response = client.get(f"/invitation/{token}")
    assert response.status_code == 404 and "This invitation link is not valid" in response.get_data(as_text=True)


def test_a_weak_or_mismatched_password_keeps_the_link(app, client, invite):
    token = invite()
    client.get(f"/invitation/{token}")
    response = client.post(f"/invitation/{token}", {"new": "password", "confirm": "password"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "Choose a password that meets every rule" in html and "rule-missing" in html
    response = client.post(f"/invitation/{token}", {"new": GOOD, "confirm": GOOD + "!"})
    assert response.status_code == 422 and "The two passwords are not the same." in response.get_data(as_text=True)
    response = client.post(f"/invitation/{token}", {"new": ["a", "b"], "confirm": "x" * 5000})
    assert response.status_code == 422
    with app.app_context():
        assert AccountToken.get().used_at is None
    assert account(app).status == "pending"
    assert client.post(f"/invitation/{token}", {"new": GOOD, "confirm": GOOD}).status_code == 303


def test_the_live_checklist(client, invite):
    token = invite()
    client.get(f"/invitation/{token}")
    response = client.post(f"/invitation/{token}/check", {"new": "short"}, htmx=True, target="password-rules")
    html = response.get_data(as_text=True)
    assert "<html" not in html
    assert 'id="password-rules"' in html and "rule-missing" in html
    ok = client.post(f"/invitation/{token}/check", {"new": GOOD}, htmx=True, target="password-rules").get_data(as_text=True)
    assert "rule-missing" not in ok and "rule-ok" in ok
    gone = client.post("/invitation/" + "x" * 43 + "/check", {"new": GOOD}, htmx=True).get_data(as_text=True)
    assert "<li" not in gone


def test_accepting_signs_out_whoever_was_signed_in_here(app, client, invite):
    token = invite()
    sign_in(client, "olga")
    client.get(f"/invitation/{token}")
    client.post(f"/invitation/{token}", {"new": GOOD, "confirm": GOOD})
    with app.app_context():
        olga = Account.get(Account.username == "olga")
        assert UserSession.select().where((UserSession.account == olga) & UserSession.ended_at.is_null()).count() == 0
    with app.app_context():
        assert UserSession.select().where(UserSession.ended_at.is_null()).get().account.username == "tina"


def test_the_post_needs_the_csrf_token(app, client, invite):
    token = invite()
    client.get(f"/invitation/{token}")
    assert client.post(f"/invitation/{token}", {"new": GOOD, "confirm": GOOD}, csrf=False).status_code == 400
    assert account(app).status == "pending"
