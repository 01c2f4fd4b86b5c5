"""What an admin does to an account (services/accounts.py): deactivate, reactivate,
delete, reset 2FA, send a password reset link — on SQLite and PostgreSQL, with the
emails delivered to a real SMTP server."""

from __future__ import annotations

import datetime as dt

import pytest

from models import Account, AuditEvent, MailServer, SignInRequest, UserSession, utcnow
from services import accounts, mailer, sessions, totp
from services.accounts import AccountError


@pytest.fixture
def acme(app, create_organisation, smtp_server):
    organisation = create_organisation("acme", "Acme")
    with app.app_context():
        MailServer.create(organisation=organisation, name="relay", host="127.0.0.1", port=smtp_server.port,
                          security="none", from_address="Gatehouse <no-reply@acme.test>")
    return organisation


@pytest.fixture
def people(app, acme, create_account):
    return {name: create_account(acme, name, role=role)
            for name, role in (("olga", "owner"), ("tom", "technician"), ("ann", "user"))}


def fresh(account):
    return Account.get_by_id(account.id)


def test_deactivate_ends_sessions_and_cancels_pending_requests(app, people):
    ann = people["ann"]
    with app.app_context():
        token = sessions.start(ann, "password")
        now = utcnow()
        SignInRequest.create(public_id="p1", organisation=ann.organisation_id, account=ann, kind="user", status="pending",
                             token_hash="h" * 64, binding_hash="b" * 64,
                             created_at=now, expires_at=now + dt.timedelta(minutes=15))
        accounts.deactivate(ann, actor="olga", by=people["olga"], ip="192.0.2.1")
        assert fresh(ann).status == "inactive"
        assert fresh(ann).deactivated_at is not None
        assert sessions.load(token) is None
        assert UserSession.get(UserSession.account == ann).ended_at is not None
        assert SignInRequest.get(SignInRequest.public_id == "p1").status == "cancelled"
        event = AuditEvent.get(AuditEvent.action == "account.deactivated")
        assert (event.actor, event.target, event.ip) == ("olga", "ann", "192.0.2.1")
        assert event.details == {"sessions_ended": 1, "requests_cancelled": 1}
        accounts.reactivate(ann, actor="olga")
        assert fresh(ann).status == "active" and fresh(ann).deactivated_at is None


def test_nobody_deactivates_or_deletes_themselves(app, people):
    tom = people["tom"]
    with app.app_context():
        with pytest.raises(AccountError, match="your own account"):
            accounts.deactivate(tom, actor="tom", by=tom)
        with pytest.raises(AccountError, match="your own account"):
            accounts.delete(tom, actor="tom", by=tom)
        assert fresh(tom).status == "active"


def test_the_last_active_owner_stays(app, people, create_account, acme):
    olga = people["olga"]
    with app.app_context():
        for action in (accounts.deactivate, accounts.delete):
            with pytest.raises(AccountError, match="last active owner of Acme"):
                action(olga, actor="tom", by=people["tom"])
        assert fresh(olga).status == "active"
        assert not AuditEvent.select().where(AuditEvent.action.in_(["account.deleted", "account.deactivated"])).exists()
    create_account(acme, "otto", role="owner")
    with app.app_context():
        accounts.delete(olga, actor="tom", by=people["tom"])
        assert Account.get_or_none(Account.id == olga.id) is None
        assert AuditEvent.get(AuditEvent.action == "account.deleted").details == {"role": "owner"}


def test_reset_two_factor_clears_totp_and_emails_the_user(app, people, smtp_server):
    ann = people["ann"]
    with app.app_context():
        secret, _uri = totp.start_enrolment(ann)
        import pyotp

        assert totp.confirm_enrolment(ann, pyotp.TOTP(secret).now()) is not None
        token = sessions.start(ann, "password")
        accounts.reset_two_factor(fresh(ann), actor="olga", ip="192.0.2.9")
        row = fresh(ann)
        assert row.totp_enabled_at is None and row.totp_secret_encrypted is None
        assert row.must_enrol_totp is True
        assert sessions.load(token) is None
        mailer.deliver_due()
    message = smtp_server.wait_for(1)[0]
    assert message["To"] == "ann@acme.test"
    assert "reset the two-factor authentication" in message.get_body(("plain",)).get_content()
    with app.app_context():
        assert AuditEvent.get(AuditEvent.action == "mfa.reset_by_admin").details == {"was_enabled": True}


def test_admin_password_reset_emails_a_link_and_never_a_password(app, people, smtp_server):
    ann = people["ann"]
    with app.app_context():
        before = fresh(ann).password_hash
        accounts.send_password_reset(ann, actor="olga")
        assert fresh(ann).password_hash == before
        mailer.deliver_due()
    text = smtp_server.wait_for(1)[0].get_body(("plain",)).get_content()
    assert "An administrator (olga) asked for a reset" in text
    assert "/login/reset/" in text


def test_admin_password_reset_is_refused_for_directory_and_inactive_users(app, people, acme):
    with app.app_context():
        directory_user = Account.create(organisation=acme, username="dora", email="dora@acme.test", source="directory")
        with pytest.raises(AccountError, match="directory password"):
            accounts.send_password_reset(directory_user, actor="olga")
        ann = people["ann"]
        accounts.deactivate(ann, actor="olga")
        with pytest.raises(AccountError, match="not active"):
            accounts.send_password_reset(fresh(ann), actor="olga")


def test_deactivation_revokes_emailed_links_and_is_not_repeated(app, people):
    from models import AccountToken
    from services import password_reset

    ann = people["ann"]
    with app.app_context():
        token = password_reset.issue(ann)
        assert password_reset.find(token) is not None
        accounts.deactivate(ann, actor="olga")
        accounts.reactivate(fresh(ann), actor="olga")
        assert password_reset.find(token) is None  # the old link stays dead after reactivation
        assert AccountToken.select().where(AccountToken.used_at.is_null()).count() == 0
        accounts.deactivate(fresh(ann), actor="olga")
        with pytest.raises(AccountError, match="already inactive"):
            accounts.deactivate(fresh(ann), actor="olga")


def test_an_admin_changing_an_email_tells_the_old_address(app, people, smtp_server):
    from services import users

    ann = people["ann"]
    with app.app_context():
        users.update_user(fresh(ann), {"email": "new-ann@acme.test", "sponsor_email": "", "display_name": "Ann"},
                          actor_role="owner", actor="olga")
        mailer.deliver_due()
    message = smtp_server.wait_for(1)[0]
    assert message["To"] == "ann@acme.test"
    assert "changed the email address" in message.get_body(("plain",)).get_content()
