"""services.elevation without the web layer: who may elevate, the password (local and a
real directory bind) and TOTP checks with the lockout, the session replaced by a new
15-minute owner session, dropping back early, and the audit rows."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest

from models import Account, AuditEvent, Directory, Organisation, PasswordPolicy, UserSession, utcnow
from services import crypto, elevation, lockout, ratelimit, sessions, totp
from services.accounts import create_local
from services.directory import reset_connections

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.usefixtures("clock")  # services.totp on a clock the tests move


@pytest.fixture
def acme(database):
    organisation = Organisation.create(slug="acme", name="Acme")
    create_local(organisation, "olga", "olga@acme.test", role="owner", display_name="Olga Owner", password=PASSWORD)
    return organisation


def team_user(organisation, username="tina", may_elevate=True, role="team"):
    account = create_local(organisation, username, f"{username}@acme.test", role=role, password=PASSWORD)
    Account.update(may_elevate=may_elevate).where(Account.id == account.id).execute()
    return Account.get_by_id(account.id)


def signed_in(account):
    """(token, session) of a fresh ordinary session of ``account``."""
    token = sessions.start(account, "password", ip="192.0.2.7", user_agent="pytest")
    return token, sessions.load(token)


def events(action):
    return list(AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id))


def test_success_replaces_the_session_with_a_15_minute_owner_session(acme):
    tina = team_user(acme)
    old_token, session = signed_in(tina)
    result = elevation.elevate(tina, session, PASSWORD, ip="192.0.2.7", user_agent="pytest")
    assert result.token != old_token
    assert sessions.load(old_token) is None
    new = sessions.load(result.token)
    assert new.acting_role == "owner" and new.method == "password" and new.account.id == tina.id
    assert new.expires_at == result.expires_at
    assert dt.timedelta(minutes=14, seconds=50) < new.expires_at - utcnow() <= dt.timedelta(minutes=15)
    assert elevation.is_elevated(new) and elevation.minutes_left(new) == 15
    assert Account.get_by_id(tina.id).role == "team"  # the account itself is unchanged
    [event] = events("session.elevated")
    assert (event.actor, event.target, event.organisation, event.ip, event.outcome) == (
        "tina", "tina", "acme", "192.0.2.7", "success")
    assert event.details["role"] == "owner" and PASSWORD not in str(event.details)


def test_the_elevated_session_is_refused_once_its_15_minutes_are_over(acme):
    tina = team_user(acme)
    _, session = signed_in(tina)
    token = elevation.elevate(tina, session, PASSWORD).token
    UserSession.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(
        UserSession.token_hash == sessions.token_hash(token)).execute()
    assert sessions.load(token) is None
    assert elevation.ended_elevation(token).acting_role == "owner"


def test_ended_elevation_only_names_elevations_that_ran_out(acme):
    tina = team_user(acme)
    token, session = signed_in(tina)
    assert elevation.ended_elevation(token) is None  # ordinary session
    token = elevation.elevate(tina, session, PASSWORD).token
    sessions.end(token)
    assert elevation.ended_elevation(token) is None  # ended, but not by time
    assert elevation.ended_elevation("x" * 200) is None and elevation.ended_elevation(None) is None


@pytest.mark.parametrize("role, may, says", [
    ("team", False, "An owner has not allowed your account to elevate. Ask an owner of Acme (Olga Owner)"),
    ("user", True, "Only team users can elevate"),
    ("technician", True, "a technician already"),
    ("owner", True, "an owner already"),
])
def test_refused_unless_a_team_user_allowed_to_elevate(acme, role, may, says):
    account = team_user(acme, "someone", may_elevate=may, role=role)
    token, session = signed_in(account)
    with pytest.raises(elevation.NotAllowed, match=re.escape(says)) as refused:
        elevation.elevate(account, session, PASSWORD)
    assert refused.value.status == 403
    assert sessions.load(token) is not None  # nothing changed
    [event] = events("session.elevation_failed")
    assert event.outcome == "denied" and says.split(".")[0] in event.details["reason"]
    assert events("session.elevated") == []
    assert Account.get_by_id(account.id).failed_attempts == 0  # a refusal checks no password


def test_refused_for_an_inactive_account_and_an_ended_or_elevated_session(acme):
    tina = team_user(acme)
    token, session = signed_in(tina)
    Account.update(status="inactive").where(Account.id == tina.id).execute()
    with pytest.raises(elevation.NotAllowed, match="not active"):
        elevation.elevate(tina, session, PASSWORD)
    Account.update(status="active").where(Account.id == tina.id).execute()
    elevated = sessions.load(elevation.elevate(tina, session, PASSWORD).token)
    with pytest.raises(elevation.NotAllowed, match="already elevated"):
        elevation.elevate(tina, elevated, PASSWORD)


def test_two_elevations_racing_from_one_session_give_one_owner_session(acme):
    tina = team_user(acme)
    _, session = signed_in(tina)
    stale = UserSession.get_by_id(session.id)  # the second request loaded the session before the first ended it
    elevation.elevate(tina, session, PASSWORD)
    with pytest.raises(elevation.NotAllowed, match="ended"):
        elevation.elevate(tina, stale, PASSWORD)
    assert UserSession.select().where(UserSession.acting_role == "owner").count() == 1


def test_the_flags_are_read_fresh_not_from_the_loaded_account(acme):
    tina = team_user(acme)
    _, session = signed_in(tina)
    Account.update(may_elevate=False).where(Account.id == tina.id).execute()  # an owner just took it back
    with pytest.raises(elevation.NotAllowed, match="has not allowed"):
        elevation.elevate(tina, session, PASSWORD)


def test_a_wrong_password_counts_towards_the_lockout(acme):
    PasswordPolicy.create(organisation=acme, lockout_threshold=2, lockout_minutes=15)
    tina = team_user(acme)
    token, session = signed_in(tina)
    with pytest.raises(elevation.WrongPassword, match="That is not your password"):
        elevation.elevate(tina, session, "nope")
    assert Account.get_by_id(tina.id).failed_attempts == 1
    with pytest.raises(elevation.WrongPassword):
        elevation.elevate(tina, session, "nope again")
    assert Account.get_by_id(tina.id).locked_until is not None
    with pytest.raises(elevation.Throttled, match="this account is locked") as refused:
        elevation.elevate(tina, session, PASSWORD)
    assert refused.value.status == 429
    assert sessions.load(token) is not None and events("session.elevated") == []
    assert [e.details["reason"] for e in events("session.elevation_failed")] == ["wrong password", "wrong password", "locked"]
    assert all("nope" not in str(e.details) for e in events("session.elevation_failed"))


def test_the_per_ip_limit_applies(acme, monkeypatch):
    monkeypatch.setattr(lockout, "ATTEMPTS_PER_IP", ratelimit.Limit("password-attempts-per-ip", 1, dt.timedelta(minutes=15)))
    tina = team_user(acme)
    _, session = signed_in(tina)
    with pytest.raises(elevation.WrongPassword):
        elevation.elevate(tina, session, "nope", ip="198.51.100.1")
    with pytest.raises(elevation.Throttled, match="from your network"):
        elevation.elevate(tina, session, PASSWORD, ip="198.51.100.1")


def test_an_empty_password_is_not_an_attempt(acme):
    tina = team_user(acme)
    _, session = signed_in(tina)
    for empty in ("", None, ["list"]):
        with pytest.raises(elevation.WrongPassword, match="Enter your password"):
            elevation.elevate(tina, session, empty)
    assert Account.get_by_id(tina.id).failed_attempts == 0


def enrol(account, clock):
    secret, _ = totp.start_enrolment(account)
    assert totp.confirm_enrolment(account, pyotp.TOTP(secret).at(clock.now), now=clock.now)
    clock.now += 30
    return secret


def test_with_two_factor_on_the_code_is_required_and_single_use(acme, clock):
    tina = team_user(acme)
    secret = enrol(tina, clock)
    _, session = signed_in(tina)
    with pytest.raises(elevation.WrongCode, match="Enter the 6-digit code"):
        elevation.elevate(tina, session, PASSWORD)
    assert Account.get_by_id(tina.id).failed_attempts == 0  # a missing code is a form error, not an attempt
    with pytest.raises(elevation.WrongCode, match="That is not a 6-digit code"):
        elevation.elevate(tina, session, PASSWORD, "123 45x")
    code = pyotp.TOTP(secret).at(clock.now)
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(elevation.WrongCode, match="not right, or was already used"):
        elevation.elevate(tina, session, PASSWORD, wrong)
    assert Account.get_by_id(tina.id).failed_attempts == 1  # a wrong code counts like a wrong password
    # A wrong password with the right code does not use the code up.
    with pytest.raises(elevation.WrongPassword):
        elevation.elevate(tina, session, "nope", code)
    elevated = sessions.load(elevation.elevate(tina, session, PASSWORD, code).token)
    assert Account.get_by_id(tina.id).failed_attempts == 0
    assert events("session.elevated")[0].details["second_factor"] is True
    ordinary = sessions.load(elevation.drop(tina, elevated))
    with pytest.raises(elevation.WrongCode, match="already used"):
        elevation.elevate(tina, ordinary, PASSWORD, code)


def test_an_account_that_must_enrol_first_cannot_elevate(acme):
    tina = team_user(acme)
    Account.update(must_enrol_totp=True).where(Account.id == tina.id).execute()
    _, session = signed_in(tina)
    with pytest.raises(elevation.NotAllowed, match="Set up two-factor authentication first"):
        elevation.elevate(tina, session, PASSWORD)


def test_drop_returns_to_a_new_ordinary_session(acme):
    tina = team_user(acme)
    _, session = signed_in(tina)
    elevated_token = elevation.elevate(tina, session, PASSWORD).token
    elevated = sessions.load(elevated_token)
    token = elevation.drop(tina, elevated, ip="192.0.2.9", user_agent="pytest")
    assert sessions.load(elevated_token) is None
    ordinary = sessions.load(token)
    assert ordinary.acting_role is None and not elevation.is_elevated(ordinary)
    assert ordinary.expires_at - utcnow() > dt.timedelta(hours=11)
    [event] = events("session.elevation_ended")
    assert event.details == {"role": "owner", "reason": "ended by the user", "minutes_left": 15}
    with pytest.raises(elevation.NotAllowed, match="not elevated"):
        elevation.drop(tina, ordinary)
    with pytest.raises(elevation.NotAllowed, match="ended"):
        elevation.drop(tina, elevated)  # already replaced


def test_sessions_start_keeps_lifetimes_within_the_absolute_timeout(acme):
    tina = team_user(acme)
    token = sessions.start(tina, "password", acting_role="owner", lifetime=dt.timedelta(days=30))
    row = sessions.load(token)
    assert row.acting_role == "owner" and row.expires_at - utcnow() <= sessions.ABSOLUTE_TIMEOUT


# --------------------------------------------------------------------------- a directory team user


@pytest.fixture
def directory_team_user(acme, slapd):
    """bob of the slapd example directory, a team user of acme allowed to elevate."""
    from tests.support.slapd import EXAMPLE_SERVICE_DN, EXAMPLE_SERVICE_PASSWORD, EXAMPLE_SUFFIX
    from services.directory import find_user

    reset_connections()
    directory = Directory.create(
        organisation=acme, name="Example LDAP", servers=[slapd.url], base_dn=EXAMPLE_SUFFIX, bind_dn=EXAMPLE_SERVICE_DN,
        bind_password_encrypted=crypto.encrypt(EXAMPLE_SERVICE_PASSWORD), login_attributes=["uid", "mail"],
        connect_timeout=2, receive_timeout=5,
    )
    user = find_user(directory, "bob")
    account = Account.create(organisation=acme, username="bob", source="directory", directory=directory,
                             external_id=user.unique_id or user.dn, role="team", may_elevate=True)
    yield account
    reset_connections()


def test_a_directory_team_user_elevates_with_the_directory_password(directory_team_user):
    bob = directory_team_user
    _, session = signed_in(bob)
    with pytest.raises(elevation.WrongPassword):
        elevation.elevate(bob, session, "not-bobs-password")
    assert Account.get_by_id(bob.id).failed_attempts == 1
    elevated = sessions.load(elevation.elevate(bob, session, "secret-bob").token)
    assert elevated.acting_role == "owner" and Account.get_by_id(bob.id).failed_attempts == 0


def test_a_directory_that_does_not_answer_is_not_a_wrong_password(directory_team_user):
    from tests.support.slapd import free_port

    bob = directory_team_user
    Directory.update(servers=[f"ldap://127.0.0.1:{free_port()}"]).where(Directory.id == bob.directory_id).execute()
    reset_connections()
    _, session = signed_in(bob)
    with pytest.raises(elevation.Unavailable, match="cannot be reached") as refused:
        elevation.elevate(Account.get_by_id(bob.id), session, "secret-bob")
    assert refused.value.status == 503
    assert events("session.elevation_failed")[-1].outcome == "error"
