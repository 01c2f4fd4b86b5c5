"""Password sign-in, server-side sessions, sign-out, and the admin console's guard."""

import re

import pytest

from models import Account, ApprovalProfile, AuditEvent, Directory, ProfileDirectory, UserSession
from services import passwords, sessions
from tests.support.factories import PASSWORD, sign_in
from tests.support.slapd import free_port

CSRF = re.compile(r'(?<=value=")[^"]{40,}(?=")|(?<="X-CSRFToken": ")[^"]+')


@pytest.fixture
def ann(create_organisation, create_account):
    return create_account(create_organisation("acme", "Acme"), "ann")


def test_password_sign_in_lands_on_the_account_page(client, ann):
    response = sign_in(client, "ann")
    assert response.headers["Location"] == "/account"
    page = client.get("/account").get_data(as_text=True)
    assert "You are signed in to <strong>Acme</strong>" in page
    assert "Password" in page and "ann@acme.test" in page
    cookie = response.headers.getlist("Set-Cookie")
    assert any(c.startswith("gatehouse_session=") and "HttpOnly" in c and "SameSite=Lax" in c for c in cookie)


def test_sign_in_by_email_address_is_case_insensitive(client, ann):
    sign_in(client, "ANN@acme.test")
    assert client.get("/account").status_code == 200


@pytest.mark.parametrize("username, password", [("ann", "wrong password"), ("nobody", PASSWORD), ("ann", "")])
def test_wrong_credentials_get_one_message(client, ann, username, password):
    client.get("/login/password")
    response = client.post("/login/password", {"identifier": username, "password": password})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert ("Wrong username or password." in html) or ("Enter your password." in html)
    assert "gatehouse_session=" not in response.headers.get("Set-Cookie", "")


def test_unknown_and_wrong_password_answers_are_identical(client, ann):
    client.get("/login/password")
    first = client.post("/login/password", {"identifier": "ann", "password": "nope"})
    second = client.post("/login/password", {"identifier": "nobody", "password": "nope"})
    # CSRF tokens are signed with a timestamp, so they differ when the answers straddle a second.
    strip = lambda r: CSRF.sub("CSRF", r.get_data(as_text=True)).replace('value="ann"', 'value="nobody"')  # noqa: E731
    assert first.status_code == second.status_code == 422
    assert strip(first) == strip(second)


def test_failed_and_successful_sign_ins_are_audited_without_the_password(client, app, ann):
    client.get("/login/password")
    client.post("/login/password", {"identifier": "ann", "password": "not-it"})
    sign_in(client, "ann")
    with app.app_context():
        actions = [(e.action, e.outcome) for e in AuditEvent.select().order_by(AuditEvent.id)]
        assert ("sign_in.password", "failure") in actions and ("sign_in.completed", "success") in actions
        assert not any("not-it" in str(e.details) or PASSWORD in str(e.details) for e in AuditEvent.select())


def test_a_directory_that_is_down_is_said_and_counts_nothing(client, app, ann, monkeypatch):
    with app.app_context():
        dead = Directory.create(organisation=ann.organisation, name="Dead LDAP", base_dn="dc=example,dc=org",
                                servers=[f"ldap://127.0.0.1:{free_port()}"], connect_timeout=1, receive_timeout=1)
        profile = ApprovalProfile.create(organisation=ann.organisation, name="Default", kind="user", is_default=True,
                                         server_url="http://gatehouse.test", subject="Sign in", message="{link}")
        ProfileDirectory.create(profile=profile, directory=None, position=0)
        ProfileDirectory.create(profile=profile, directory=dead, position=1)
    sign_in(client, "ann")  # a local account is found before the directory is asked
    client.post("/logout", {})
    client.get("/login/password")
    hashes = []
    real = passwords._verify
    monkeypatch.setattr(passwords, "_verify", lambda stored, typed: hashes.append(stored) or real(stored, typed))
    for attempt in range(12):  # more than the lockout threshold (10): a counted identifier would get 429
        response = client.post("/login/password", {"identifier": "dave", "password": "whatever it is"})
        assert response.status_code == 503
        assert "directory cannot be reached right now" in response.get_data(as_text=True)
    assert len(hashes) == 12  # one hash per answer, as for any other: the timing tells nothing
    with app.app_context():
        failures = AuditEvent.select().where(AuditEvent.action == "sign_in.password")
        assert failures.count() == 12
        assert all(e.outcome == "failure" and e.details["reason"].startswith("directory unreachable: Dead LDAP")
                   for e in failures)
        assert AuditEvent.select().where(AuditEvent.action == "account.locked").count() == 0


def test_inactive_account_cannot_sign_in(client, app, ann):
    with app.app_context():
        type(ann).update(status="inactive").where(type(ann).id == ann.id).execute()
    client.get("/login/password")
    assert client.post("/login/password", {"identifier": "ann", "password": PASSWORD}).status_code == 422


def test_sign_in_rotates_the_session_and_sign_out_kills_the_old_cookie(client, app, ann):
    sign_in(client, "ann")
    first = client.client.get_cookie("gatehouse_session").value
    sign_in(client, "ann")
    second = client.client.get_cookie("gatehouse_session").value
    assert first != second

    client.get("/account")
    response = client.post("/logout", {})
    assert response.status_code == 303
    assert client.client.get_cookie("gatehouse_session") is None
    # Replaying the old cookie after sign-out does not work.
    client.client.set_cookie("gatehouse_session", second)
    assert client.get("/account").status_code == 302
    with app.app_context():
        assert UserSession.get(UserSession.token_hash == sessions.token_hash(second)).ended_at is not None


def test_idle_session_expires(client, app, ann):
    sign_in(client, "ann")
    token = client.client.get_cookie("gatehouse_session").value
    with app.app_context():
        session = UserSession.get(UserSession.token_hash == sessions.token_hash(token))
        UserSession.update(last_seen_at=session.last_seen_at - sessions.IDLE_TIMEOUT).where(UserSession.id == session.id).execute()
    assert client.get("/account").status_code == 302


def test_next_only_goes_to_this_site(client, ann):
    for target, expected in [("/admin/", "/admin/"), ("//evil.test/x", "/account"), ("https://evil.test/", "/account"), ("/\\evil.test", "/account")]:
        client.get(f"/login/password?next={target}")
        response = client.post("/login/password", {"identifier": "ann", "password": PASSWORD, "next": target})
        assert response.headers["Location"] == expected, target


def test_account_page_needs_sign_in(client):
    response = client.get("/account")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_identifier_page_leads_to_the_password_page(client, ann):
    client.get("/login")
    response = client.post("/login", {"identifier": "ann", "method": "password"})
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/login/password?identifier=ann&account_id=acme")


@pytest.mark.parametrize("role, dashboard, settings", [
    ("owner", 200, 200), ("technician", 200, 200), ("team", 200, 403), ("user", 403, 403)])
def test_admin_console_is_for_admins_and_settings_for_owners_and_technicians(
        client, create_organisation, create_account, role, dashboard, settings):
    create_account(create_organisation("acme"), "pat", role=role)
    sign_in(client, "pat")
    assert client.get("/admin/").status_code == dashboard
    assert client.get("/admin/mail-servers").status_code == settings


def test_a_team_user_with_the_permission_edits_the_password_policy(app, client, create_organisation, create_account):
    organisation = create_organisation("acme", "Acme")
    tess = create_account(organisation, "tess", role="team")
    sign_in(client, "tess")
    assert client.get("/admin/password-policy").status_code == 403
    with app.app_context():
        Account.update(permissions=["password_policy"]).where(Account.id == tess.id).execute()
    assert client.get("/admin/password-policy").status_code == 200
    assert client.get("/admin/mfa-policy").status_code == 403  # only what was given


def test_a_view_without_a_declared_capability_is_closed_to_everyone(app, client, owner):
    sign_in(client, "olga")
    view = app.view_functions["admin.home"]
    saved = view.capability
    try:
        del view.capability
        response = client.get("/admin/")
        assert response.status_code == 403
    finally:
        view.capability = saved


def test_admin_console_sends_strangers_to_sign_in(client):
    response = client.get("/admin/mail-servers")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/admin/mail-servers"


def test_a_team_user_is_told_whom_to_ask(client, create_organisation, create_account):
    organisation = create_organisation("acme", "Acme")
    create_account(organisation, "olga", role="owner", display_name="Olga Owner")
    create_account(organisation, "tess", role="team")
    sign_in(client, "tess")
    for url in ("/admin/directories", "/admin/password-policy", "/admin/mfa-policy"):
        response = client.get(url)
        assert response.status_code == 403
        assert "Ask an owner of Acme (Olga Owner)" in response.get_data(as_text=True)


def test_a_technician_acts_for_the_owner_under_their_own_name(app, client, create_organisation, create_account):
    organisation = create_organisation("acme", "Acme")
    create_account(organisation, "olga", role="owner", display_name="Olga Owner")
    create_account(organisation, "tom", role="technician")
    sign_in(client, "tom")
    page = client.get("/admin/mail-servers").get_data(as_text=True)
    assert "acting for the owner Olga Owner" in page
    client.post("/admin/password-policy", {"strength": "basic", "expiry": "never", "history_count": "0",
                                           "lockout_threshold": "10", "lockout_minutes": "15"})
    with app.app_context():
        event = AuditEvent.select().where(AuditEvent.action == "password_policy.updated").get()
        assert (event.actor, event.acting_for) == ("tom", "olga (owner of acme)")
        # Outside the admin console nothing is carried over.
    client.post("/logout", {})
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.action == "sign_out").get().acting_for is None
