"""Elevation through the web layer (DESIGN 3.8, SECURITY.md 16): a team user allowed by
an owner re-enters the password (and TOTP code) at /account/elevate and gets a new,
15-minute owner session with a banner; the old cookie stops working; settings pages
open while elevated and close again after "End elevation", sign-out or expiry; the
refusals say whom to ask; every attempt is in the audit log."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest

from models import Account, AuditEvent, Organisation, PasswordPolicy, UserSession, utcnow
from services import sessions, totp
from tests.support.factories import PASSWORD, sign_in
from tests.support.web import WebClient, stored

SETTINGS_PAGE = "/admin/directories"  # needs the "settings" capability: owners, not team users
COOKIE = "gatehouse_session"


pytestmark = pytest.mark.usefixtures("clock")  # services.totp on a clock the tests move


@pytest.fixture
def acme(create_organisation, create_account):
    """acme with its owner Olga, the team user tina (allowed to elevate) and terry (not)."""
    organisation = create_organisation("acme", "Acme")
    create_account(organisation, "olga", role="owner", display_name="Olga Owner")
    create_account(organisation, "tina", role="team", display_name="Tina Team")
    create_account(organisation, "terry", role="team")
    create_account(organisation, "ann", role="user")
    return organisation


@pytest.fixture
def tina(app, acme):
    """tina may elevate, and is signed in (as a team user)."""
    stored(app, lambda: Account.update(may_elevate=True).where(Account.username == "tina").execute())
    return "tina"


def cookie(client) -> str | None:
    found = client.client.get_cookie(COOKIE)
    return found.value if found else None


def session_row(app, token):
    return stored(app, lambda: UserSession.get_or_none(UserSession.token_hash == sessions.token_hash(token)))


def audit_rows(app, action):
    return stored(app, lambda: list(AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)))


def elevate(client, password=PASSWORD, **fields):
    client.get("/account/elevate")
    return client.post("/account/elevate", {"password": password, **fields})


def with_cookie(app, token) -> WebClient:
    """A second browser holding ``token`` (a copied cookie)."""
    other = WebClient(app.test_client())
    other.client.set_cookie(COOKIE, token)
    return other


def body(response) -> str:
    return response.get_data(as_text=True)


# --------------------------------------------------------------------------- refusals


def test_a_team_user_without_permission_is_told_whom_to_ask(app, client, acme):
    sign_in(client, "terry")
    assert "Elevate to owner" not in body(client.get("/account"))
    response = client.get("/account/elevate")
    assert response.status_code == 403
    text = body(response)
    assert "You can't elevate" in text and "has not allowed your account to elevate" in text
    assert "Olga Owner" in text and "Technicians &amp; team" in text
    assert 'name="password"' not in text
    # Posting anyway is refused the same way, and recorded.
    client.get("/account")
    response = client.post("/account/elevate", {"password": PASSWORD})
    assert response.status_code == 403 and "has not allowed" in body(response)
    rows = audit_rows(app, "session.elevation_failed")
    assert [(r.actor, r.outcome) for r in rows] == [("terry", "denied")]
    assert client.get(SETTINGS_PAGE).status_code == 403
    assert audit_rows(app, "session.elevated") == []


@pytest.mark.parametrize("username, says", [("ann", "Only team users can elevate"),
                                            ("olga", "an owner already")])
def test_anyone_but_a_team_user_gets_a_clear_refusal(app, client, acme, username, says):
    sign_in(client, username)
    response = client.get("/account/elevate")
    assert response.status_code == 403 and says in body(response)


def test_elevation_needs_a_signed_in_session(client, acme):
    response = client.get("/account/elevate")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.client.post("/account/elevate/end").status_code in (302, 400)


def test_a_post_without_csrf_token_is_refused(client, tina):
    sign_in(client, tina)
    client.get("/account/elevate")
    response = client.post("/account/elevate", {"password": PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert client.get(SETTINGS_PAGE).status_code == 403


# --------------------------------------------------------------------------- success


def test_elevation_replaces_the_session_with_a_15_minute_owner_session(app, client, tina):
    sign_in(client, tina)
    assert 'href="/account/elevate"' in body(client.get("/account"))
    assert client.get(SETTINGS_PAGE).status_code == 403
    old = cookie(client)
    signed_in_at = stored(app, lambda: Account.get(Account.username == "tina").last_sign_in_at)
    page = client.get("/account/elevate")
    assert page.status_code == 200 and 'name="password"' in body(page) and 'name="code"' not in body(page)
    assert "Elevated to owner" not in body(page)

    response = client.post("/account/elevate", {"password": PASSWORD})
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    new = cookie(client)
    assert new and new != old
    assert "HttpOnly" in next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(COOKIE + "="))

    # The old cookie is refused; its row has ended.
    assert with_cookie(app, old).get("/account").status_code == 302
    assert session_row(app, old).ended_at is not None
    row = session_row(app, new)
    assert row.acting_role == "owner" and row.ended_at is None
    assert dt.timedelta(minutes=14) < row.expires_at - utcnow() <= dt.timedelta(minutes=15)

    settings = client.get(SETTINGS_PAGE)
    assert settings.status_code == 200
    text = body(settings)
    assert "Elevated to owner — " in text and "15 minutes left" in text and "End elevation" in text
    assert "You are acting as an owner of Acme" in text  # the flash after the redirect
    assert "Elevated to owner" in body(client.get("/account"))  # the banner is on every page
    assert 'href="/account/elevate"' not in body(client.get("/account"))

    [event] = audit_rows(app, "session.elevated")
    assert (event.actor, event.target, event.organisation, event.outcome) == ("tina", "tina", "acme", "success")
    assert event.details["role"] == "owner" and event.details["minutes"] == 15
    assert PASSWORD not in str(event.details) and new not in str(event.details)
    # Elevating is not signing in: the account's last sign-in stays the real one.
    assert stored(app, lambda: Account.get(Account.username == "tina").last_sign_in_at) == signed_in_at


def test_minutes_left_are_computed_on_the_server(app, client, tina):
    sign_in(client, tina)
    elevate(client)
    token = cookie(client)
    stored(app, lambda: UserSession.update(expires_at=utcnow() + dt.timedelta(minutes=3, seconds=30))
           .where(UserSession.token_hash == sessions.token_hash(token)).execute())
    text = body(client.get("/account"))
    assert "4 minutes left" in text
    assert re.search(r'data-seconds-left="2\d\d"', text)


def test_the_elevate_page_while_elevated_offers_to_end_it(app, client, tina):
    sign_in(client, tina)
    elevate(client)
    page = client.get("/account/elevate")
    assert page.status_code == 200 and "You are elevated to owner" in body(page) and 'name="password"' not in body(page)
    # Posting again is refused: one elevation at a time.
    response = client.post("/account/elevate", {"password": PASSWORD})
    assert response.status_code == 200 and "You are elevated to owner" in body(response)
    assert len(audit_rows(app, "session.elevated")) == 1


# --------------------------------------------------------------------------- password and lockout


def test_a_wrong_password_is_refused_and_counts_towards_the_lockout(app, client, tina):
    stored(app, lambda: PasswordPolicy.create(organisation=Organisation.get(Organisation.slug == "acme"),
                                              lockout_threshold=3, lockout_minutes=15))
    sign_in(client, tina)
    before = cookie(client)
    for attempt in (1, 2):
        response = elevate(client, "not my password")
        assert response.status_code == 422 and "That is not your password." in body(response)
        assert 'value="not my password"' not in body(response)
        assert stored(app, lambda: Account.get(Account.username == "tina").failed_attempts) == attempt
    assert cookie(client) == before  # nothing changed: still the team session
    response = elevate(client, "not my password")
    assert response.status_code == 422
    locked = stored(app, lambda: Account.get(Account.username == "tina"))
    assert locked.failed_attempts == 3 and locked.locked_until is not None
    # Locked: even the right password is refused now.
    response = elevate(client)
    assert response.status_code == 429 and "this account is locked" in body(response)
    assert client.get(SETTINGS_PAGE).status_code == 403
    reasons = [(r.outcome, r.details["reason"]) for r in audit_rows(app, "session.elevation_failed")]
    assert reasons == [("failure", "wrong password")] * 3 + [("denied", "locked")]


def test_a_right_password_resets_the_count(app, client, tina):
    sign_in(client, tina)
    elevate(client, "wrong")
    assert stored(app, lambda: Account.get(Account.username == "tina").failed_attempts) == 1
    assert elevate(client).status_code == 303
    assert stored(app, lambda: Account.get(Account.username == "tina").failed_attempts) == 0


def test_an_empty_or_oversize_password_is_a_form_error(app, client, tina):
    sign_in(client, tina)
    response = elevate(client, "")
    assert response.status_code == 422 and "Enter your password." in body(response)
    response = elevate(client, "x" * 5000)
    assert response.status_code == 422 and "too long" in body(response)
    assert stored(app, lambda: Account.get(Account.username == "tina").failed_attempts) == 0


# --------------------------------------------------------------------------- two-factor


@pytest.fixture
def tina_totp(app, tina, clock):
    """tina with two-factor authentication on; returns the secret."""
    def enrol():
        account = Account.get(Account.username == "tina")
        secret, _ = totp.start_enrolment(account)
        assert totp.confirm_enrolment(account, pyotp.TOTP(secret).at(clock.now), now=clock.now)
        return secret

    secret = stored(app, enrol)
    clock.tick()
    return secret


def sign_in_with_code(client, secret, clock):
    client.get("/login/password")
    client.post("/login/password", {"identifier": "tina", "password": PASSWORD})
    client.get("/login/totp")
    response = client.post("/login/totp", {"code": pyotp.TOTP(secret).at(clock.now)})
    assert response.status_code == 303
    clock.tick()


def test_with_two_factor_on_the_code_is_required_and_works_once(app, client, tina_totp, clock):
    secret = tina_totp
    sign_in_with_code(client, secret, clock)
    page = client.get("/account/elevate")
    assert 'name="code"' in body(page) and 'autocomplete="one-time-code"' in body(page)

    response = client.post("/account/elevate", {"password": PASSWORD})
    assert response.status_code == 422 and "Enter the 6-digit code" in body(response)
    wrong = "000000" if pyotp.TOTP(secret).at(clock.now) != "000000" else "111111"
    response = client.post("/account/elevate", {"password": PASSWORD, "code": wrong})
    assert response.status_code == 422 and "That code is not right, or was already used" in body(response)
    assert client.get(SETTINGS_PAGE).status_code == 403

    code = pyotp.TOTP(secret).at(clock.now)
    client.get("/account/elevate")
    assert client.post("/account/elevate", {"password": PASSWORD, "code": code}).status_code == 303
    assert client.get(SETTINGS_PAGE).status_code == 200
    [event] = audit_rows(app, "session.elevated")
    assert event.details["second_factor"] is True and code not in str(event.details)

    # Back to a team session, then the same code again: refused as replayed.
    client.post("/account/elevate/end", {})
    response = elevate(client, code=code)
    assert response.status_code == 422 and "already used" in body(response)
    assert client.get(SETTINGS_PAGE).status_code == 403
    reasons = [r.details["reason"] for r in audit_rows(app, "session.elevation_failed")]
    assert reasons == ["wrong or used code", "wrong or used code"]


# --------------------------------------------------------------------------- how it ends


def test_end_elevation_returns_to_a_new_team_session(app, client, tina):
    sign_in(client, tina)
    elevate(client)
    elevated = cookie(client)
    client.get(SETTINGS_PAGE)
    response = client.post("/account/elevate/end", {})
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    ordinary = cookie(client)
    assert ordinary not in (None, elevated)
    page = body(client.get("/account"))
    assert "Elevation ended" in page and "Elevated to owner" not in page
    assert client.get(SETTINGS_PAGE).status_code == 403
    assert session_row(app, ordinary).acting_role is None
    assert with_cookie(app, elevated).get(SETTINGS_PAGE).status_code == 302  # the elevated cookie is dead
    [event] = audit_rows(app, "session.elevation_ended")
    assert event.actor == "tina" and event.details["reason"] == "ended by the user"
    # Ending an ordinary session's elevation only says so.
    client.get("/account")
    response = client.post("/account/elevate/end", {})
    assert response.status_code == 303 and cookie(client) == ordinary


def test_sign_out_ends_the_elevation(app, client, tina):
    sign_in(client, tina)
    elevate(client)
    elevated = cookie(client)
    client.get(SETTINGS_PAGE)
    assert client.post("/logout", {}).status_code == 303
    assert with_cookie(app, elevated).get(SETTINGS_PAGE).status_code == 302
    [event] = audit_rows(app, "sign_out")
    assert event.details == {"elevated_to": "owner"}
    page = body(client.get("/login"))
    assert "You have signed out." in page and "owner session ended" not in page
    assert client.client.get_cookie("gatehouse_elevated") is None
    sign_in(client, tina)
    assert client.get(SETTINGS_PAGE).status_code == 403
    assert "Elevated to owner" not in body(client.get("/account"))


def test_after_15_minutes_the_session_is_over_and_the_page_says_why(app, client, tina):
    sign_in(client, tina)
    elevate(client)
    token = cookie(client)
    assert client.get(SETTINGS_PAGE).status_code == 200
    # Fifteen minutes later (moved in the database, not by sleeping).
    stored(app, lambda: UserSession.update(expires_at=utcnow() - dt.timedelta(seconds=1))
           .where(UserSession.token_hash == sessions.token_hash(token)).execute())
    response = client.get(SETTINGS_PAGE)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    page = body(client.get(response.headers["Location"]))
    assert "Your owner session ended at" in page and "elevation lasts 15 minutes" in page
    assert "Your owner session ended" not in body(client.get("/login"))  # said once
    assert session_row(app, token).ended_at is not None
    [event] = audit_rows(app, "session.elevation_ended")  # written once, by the request that found it over
    assert event.actor == "tina" and event.details == {"role": "owner", "reason": "time ran out"}


def test_an_elevation_ended_by_an_admin_is_not_called_expired(app, client, tina):
    sign_in(client, tina)
    elevate(client)
    token = cookie(client)
    stored(app, lambda: sessions.end(token))
    page = body(client.get("/login"))
    assert "owner session ended" not in page and "Elevated to owner" not in page
    assert audit_rows(app, "session.elevation_ended") == []  # ending it was someone's act, audited there


# --------------------------------------------------------------------------- HTMX


def test_the_form_is_an_htmx_partial_and_success_redirects(app, client, tina):
    sign_in(client, tina)
    client.get("/account/elevate")
    partial = client.get("/account/elevate", htmx=True, target="elevate-form")
    assert partial.status_code == 200 and "<html" not in body(partial) and 'id="elevate-form"' in body(partial)
    response = client.post("/account/elevate", {"password": "wrong"}, htmx=True, target="elevate-form")
    assert response.status_code == 422 and "<html" not in body(response) and "That is not your password." in body(response)
    response = client.post("/account/elevate", {"password": PASSWORD}, htmx=True, target="elevate-form")
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/admin/"


def test_an_htmx_refusal_lands_in_the_flash_area(app, client, acme):
    sign_in(client, "terry")
    client.get("/account")
    response = client.post("/account/elevate", {"password": PASSWORD}, htmx=True, target="elevate-form")
    assert response.status_code == 403 and response.headers["HX-Retarget"] == "#flash-messages"
    assert "<html" not in body(response) and "has not allowed" in body(response)
