"""services.team and services.invitations without a web app: who may do what to whom,
invitations (single use, 7 days, all or nothing), generated passwords, bulk actions,
organisation scope and the one-time first-owner setup."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest

from models import Account, AccountToken, AuditEvent, OutboxMessage, Organisation, PasswordPolicy, UserSession, db, utcnow
from services import accounts, invitations, password_policy, password_reset, passwords, sessions, team

PASSWORD = "correct horse battery staple"
SERVER = "https://gatehouse.example"
LINK = re.compile(r"https://gatehouse\.example/invitation/([A-Za-z0-9_-]+)")


@pytest.fixture
def acme(database):
    return Organisation.create(slug="acme", name="Acme")


def make(org, username, role="technician", status="active", **extra):
    account = accounts.create_local(org, username, f"{username}@{org.slug}.test", role=role, password=PASSWORD)
    if status != "active" or extra:
        Account.update(status=status, **extra).where(Account.id == account.id).execute()
    return Account.get_by_id(account.id)


def as_actor(account, role=None):
    return team.Actor(account=account, role=role or account.role, name=account.username, ip="192.0.2.1", user_agent="pytest")


def new(org, username="tina", role="technician", **extra):
    return team.NewMember(organisation_id=org.id, username=username, email=f"{username}@{org.slug}.test", role=role, **extra)


def invited_token(account) -> str:
    message = OutboxMessage.select().order_by(OutboxMessage.id.desc()).first()
    assert message.to_addresses == [account.email]
    return LINK.search(message.text_body).group(1)


# -- availability ------------------------------------------------------------------------


@pytest.mark.parametrize("status, totp, expected", [
    ("pending", False, ["edit", "resend", "delete"]),
    ("active", False, ["edit", "reset_password", "deactivate", "delete"]),
    ("active", True, ["edit", "reset_password", "reset_2fa", "deactivate", "delete"]),
    ("inactive", False, ["edit", "reactivate", "delete"]),
])
def test_actions_follow_the_status(acme, status, totp, expected):
    olga = make(acme, "olga", "owner")
    tina = make(acme, "tina", status=status, totp_enabled_at=utcnow() if totp else None)
    assert team.available(tina, as_actor(olga)) == expected


def test_nobody_deletes_or_deactivates_themselves_and_the_last_owner_stays(acme):
    olga = make(acme, "olga", "owner")
    me = as_actor(olga)
    assert team.available(olga, me) == ["edit", "reset_password"]
    assert "cannot delete your own account" in team.refusal("delete", olga, me)
    oscar = make(acme, "oscar", "owner")
    # With a second owner, each may remove the other, never themselves.
    assert "delete" in team.available(oscar, me) and "delete" not in team.available(olga, me)
    Account.update(status="inactive").where(Account.id == oscar.id).execute()
    tom = make(acme, "tom", "technician")
    # tom (technician) cannot act on owners at all; olga is the last active owner anyway.
    assert team.refusal("delete", olga, as_actor(tom)) == "only an owner can change an owner's account"
    with pytest.raises(team.TeamError, match="Only an owner can change an owner's account."):
        team.delete(as_actor(tom), olga)
    assert Account.get_or_none(Account.id == olga.id) is not None
    assert AuditEvent.select().where((AuditEvent.action == "team.delete") & (AuditEvent.outcome == "denied")).count() == 1


def test_an_elevated_team_user_acts_as_an_owner(acme):
    make(acme, "olga", "owner")
    tess = make(acme, "tess", "team")
    tom = make(acme, "tom")
    assert team.refusal("delete", tom, as_actor(tess, role="owner")) is None  # rank of the session's role
    assert team.refusal("delete", tom, as_actor(tess, role="team")) == "only a technician can change a technician's account"


# -- inviting and accepting ---------------------------------------------------------------


def test_an_invitation_makes_a_pending_account_and_emails_a_7_day_link(acme):
    olga = make(acme, "olga", "owner")
    tina, sendable = team.invite(as_actor(olga), new(acme, display_name="Tina Tech"), server_url=SERVER)
    assert sendable is False  # no mail server yet: the message waits in the outbox
    stored = Account.get_by_id(tina.id)
    assert (stored.status, stored.password_hash, stored.role) == ("pending", None, "technician")
    assert stored.invited_at is not None
    message = OutboxMessage.get()
    assert message.to_addresses == ["tina@acme.test"]
    assert message.subject == "You are invited to administer Acme in Gatehouse"
    assert "olga invited you" in message.text_body and "as a technician" in message.text_body
    token = invited_token(tina)
    assert token not in str(list(AuditEvent.select().dicts()))  # never in the audit log
    row = AccountToken.get()
    assert row.purpose == "invitation" and row.token_hash != token
    assert row.expires_at - row.created_at == dt.timedelta(days=7)
    assert "Choose your password" in message.html_body and token in message.html_body
    assert invitations.lookup(token).state == "valid"


def test_accepting_sets_the_password_and_activates_once(acme):
    tina, _ = team.invite(as_actor(make(acme, "olga", "owner")), new(acme), server_url=SERVER)
    token = invited_token(tina)
    invitations.accept(token, "a long enough passphrase here", ip="192.0.2.9", user_agent="pytest")
    stored = Account.get_by_id(tina.id)
    assert stored.status == "active" and passwords.check_password(stored, "a long enough passphrase here")
    assert stored.must_change_password is False
    with pytest.raises(invitations.InvitationError) as used:
        invitations.accept(token, "another long passphrase here", ip="", user_agent="")
    assert used.value.state == "used" and "already been used" in str(used.value)
    assert passwords.check_password(Account.get_by_id(tina.id), "a long enough passphrase here")
    assert AuditEvent.select().where(AuditEvent.action == "invitation.accepted").count() == 1


def test_a_weak_password_uses_nothing(acme):
    tina, _ = team.invite(as_actor(make(acme, "olga", "owner")), new(acme), server_url=SERVER)
    token = invited_token(tina)
    with pytest.raises(invitations.InvitationError) as weak:
        invitations.accept(token, "password", ip="", user_agent="")
    assert weak.value.state is None and "At least 15 characters" in weak.value.problems
    assert AccountToken.get().used_at is None and Account.get_by_id(tina.id).status == "pending"


def test_expired_and_resent_links_are_refused_with_their_reason(acme):
    olga = make(acme, "olga", "owner")
    tina, _ = team.invite(as_actor(olga), new(acme), server_url=SERVER)
    first = invited_token(tina)
    AccountToken.update(expires_at=utcnow() - dt.timedelta(seconds=1)).execute()
    assert invitations.lookup(first).state == "expired"
    with pytest.raises(invitations.InvitationError, match="expired"):
        invitations.accept(first, "a long enough passphrase here", ip="", user_agent="")
    team.resend(as_actor(olga), tina, server_url=SERVER)
    second = invited_token(tina)
    assert second != first
    assert invitations.lookup(second).state == "valid"
    assert invitations.lookup(first).state == "used"  # replaced by the new link
    assert invitations.lookup("x" * 43).state == "unknown" and invitations.lookup("../etc").state == "unknown"


def test_resend_only_while_pending(acme):
    olga = make(acme, "olga", "owner")
    tom = make(acme, "tom")
    with pytest.raises(team.TeamError, match="Resend invitation works only while the invitation is pending; tom is active"):
        team.resend(as_actor(olga), tom, server_url=SERVER)
    assert OutboxMessage.select().count() == 0


def test_of_parallel_acceptances_exactly_one_wins(acme):
    tina, _ = team.invite(as_actor(make(acme, "olga", "owner")), new(acme), server_url=SERVER)
    token = invited_token(tina)
    db.close()  # each thread opens its own connection
    results: list = []
    barrier = threading.Barrier(8, timeout=20)

    def accept(index):
        db.connect(reuse_if_open=True)
        try:
            barrier.wait()
            invitations.accept(token, f"a long enough passphrase {index:02d}", ip="", user_agent="")
            results.append("won")
        except invitations.InvitationError as exc:
            results.append(exc.state)
        finally:
            db.close()

    threads = [threading.Thread(target=accept, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    db.connect(reuse_if_open=True)
    assert sorted(results) == ["used"] * 7 + ["won"]
    assert AuditEvent.select().where(AuditEvent.action == "invitation.accepted").count() == 1


def test_invitations_into_a_sub_organisation_use_the_nearest_mail_servers(acme):
    from models import MailServer

    child = Organisation.create(slug="acme-eu", name="Acme EU", parent=acme)
    relay = MailServer.create(organisation=acme, name="relay", host="127.0.0.1", port=25, security="none",
                              from_address="no-reply@acme.test")
    assert invitations.mail_servers_for(child) == [relay]
    tina, sendable = team.invite(as_actor(make(acme, "olga", "owner")), new(child), server_url=SERVER)
    assert sendable and tina.organisation.slug == "acme-eu"
    assert OutboxMessage.get().mail_server_ids == [relay.id]


# -- creating with a generated password -----------------------------------------------------


@pytest.mark.parametrize("strength", ["basic", "medium", "advanced", "nist"])
def test_generated_passwords_meet_the_policy(acme, strength):
    PasswordPolicy.create(organisation=acme, strength=strength)
    olga = make(acme, "olga", "owner")
    tina, password = team.create_with_password(as_actor(olga), new(acme))
    assert len(password) == team.GENERATED_LENGTH
    assert password_policy.problems(password, tina, password_policy.policy_for(acme)) == []
    stored = Account.get_by_id(tina.id)
    assert stored.status == "active" and stored.must_change_password is False
    assert passwords.check_password(stored, password) and password not in stored.password_hash
    event = AuditEvent.get(AuditEvent.action == "team.created")
    assert password not in str(event.details) and event.actor == "olga"


def test_nobody_grants_a_role_above_their_own(acme):
    tom = make(acme, "tom")
    assert team.grantable_roles("technician") == ["technician", "team"]
    assert team.grantable_roles("owner") == ["owner", "technician", "team"]
    with pytest.raises(team.TeamError, match="cannot give the owner role") as refused:
        team.invite(as_actor(tom), new(acme, role="owner"), server_url=SERVER)
    assert refused.value.field == "role"
    assert not Account.select().where(Account.username == "tina").exists() and OutboxMessage.select().count() == 0


def test_only_an_owner_allows_elevation(acme):
    olga, tom = make(acme, "olga", "owner"), make(acme, "tom")
    with pytest.raises(team.TeamError, match="Only an owner can allow"):
        team.invite(as_actor(tom), new(acme, role="team", may_elevate=True), server_url=SERVER)
    tess, _ = team.create_with_password(as_actor(olga), new(acme, "tess", role="team", may_elevate=True,
                                                          permissions=["password_policy"]))
    assert tess.may_elevate and tess.permissions == ["password_policy"]
    # A technician may edit tess's name without touching the elevation they cannot give.
    team.update(as_actor(tom), tess, display_name="Tess T", email=tess.email, role="team", permissions=["password_policy"])
    assert Account.get_by_id(tess.id).may_elevate is True
    with pytest.raises(team.TeamError, match="Only an owner"):
        team.update(as_actor(tom), tess, display_name="Tess", email=tess.email, role="team", may_elevate=False)
    # Made a technician, elevation and extra permissions go: they mean nothing for that role.
    team.update(as_actor(olga), tess, display_name="Tess", email=tess.email, role="technician")
    stored = Account.get_by_id(tess.id)
    assert (stored.role, stored.may_elevate, stored.permissions) == ("technician", False, [])


def test_role_changes_are_refused_for_oneself_and_the_last_owner(acme):
    olga = make(acme, "olga", "owner")
    with pytest.raises(team.TeamError, match="cannot change your own role"):
        team.update(as_actor(olga), olga, display_name="Olga", email=olga.email, role="technician")
    oscar = make(acme, "oscar", "owner")
    token = sessions.start(oscar, "password")
    team.update(as_actor(olga), oscar, display_name="Oscar", email=oscar.email, role="technician")
    assert Account.get_by_id(oscar.id).role == "technician"
    assert sessions.load(token) is None  # the old role does not live on in a session
    # Olga is now the only owner: an elevated team user cannot make her a technician.
    tess = as_actor(make(acme, "tess", "team"), role="owner")
    with pytest.raises(team.TeamError, match="olga is the last active owner of Acme"):
        team.update(tess, olga, display_name="Olga", email=olga.email, role="technician")
    assert Account.get_by_id(olga.id).role == "owner"


def test_email_addresses_stay_unique_in_an_organisation(acme):
    olga = make(acme, "olga", "owner")
    with pytest.raises(team.TeamError, match="OLGA@acme.test is already the email address of olga in Acme") as taken:
        team.invite(as_actor(olga), team.NewMember(acme.id, "tina", "OLGA@acme.test"), server_url=SERVER)
    assert taken.value.field == "email"


# -- deactivate, delete, bulk --------------------------------------------------------------------


def test_deactivating_ends_sessions_and_links(acme):
    olga, tom = make(acme, "olga", "owner"), make(acme, "tom")
    token = sessions.start(tom, "password")
    password_reset.issue(tom)  # an emailed reset link, not used yet
    assert AccountToken.select().where(AccountToken.used_at.is_null()).count() == 1
    team.deactivate(as_actor(olga), tom)
    stored = Account.get_by_id(tom.id)
    assert stored.status == "inactive" and stored.deactivated_at is not None
    assert sessions.load(token) is None
    assert AccountToken.select().where(AccountToken.used_at.is_null()).count() == 0
    event = AuditEvent.get(AuditEvent.action == "account.deactivated")
    assert (event.actor, event.target, event.ip) == ("olga", "tom", "192.0.2.1")
    team.reactivate(as_actor(olga), stored)
    assert Account.get_by_id(tom.id).status == "active"


def test_bulk_is_all_or_nothing(acme):
    olga = make(acme, "olga", "owner")
    tom, tina = make(acme, "tom"), make(acme, "tina", status="pending")
    with pytest.raises(team.BulkRefused) as refused:
        team.bulk(as_actor(olga), "deactivate", [tom, tina, olga])
    names = [name for name, _ in refused.value.problems]
    assert names == ["tina", "olga", "olga"]
    assert "Deactivate works only for active accounts; tina is pending" in str(refused.value)
    assert Account.get_by_id(tom.id).status == "active"  # nothing half done
    assert team.bulk(as_actor(olga), "deactivate", [tom]) == 1
    assert Account.get_by_id(tom.id).status == "inactive"
    assert team.bulk(as_actor(olga), "delete", [Account.get_by_id(tom.id), tina]) == 2
    assert Account.select().count() == 1


def test_bulk_refuses_removing_every_owner_at_once(acme):
    olga, oscar = make(acme, "olga", "owner"), make(acme, "oscar", "owner")
    tess = as_actor(make(acme, "tess", "team"), role="owner")  # an elevated team user
    # Each of them alone could go; both at once would leave Acme without an active owner.
    assert team.refusal("delete", olga, tess) is None and team.refusal("delete", oscar, tess) is None
    with pytest.raises(team.BulkRefused, match="they are the last active owners of Acme"):
        team.bulk(tess, "delete", [olga, oscar])
    assert Account.select().where(Account.role == "owner").count() == 2


# -- scope -------------------------------------------------------------------------------------


def test_a_parent_sees_its_childrens_admins_and_never_the_reverse(acme):
    child = Organisation.create(slug="acme-eu", name="Acme EU", parent=acme)
    make(acme, "olga", "owner")
    make(child, "cora", "owner")
    make(child, "ann", "user")  # users are on the users page, not here
    assert [a.username for a in team.members(acme)] == ["olga", "cora"]
    assert [a.username for a in team.members(child)] == ["cora"]
    cora = Account.get(Account.username == "cora")
    assert team.refusal("edit", Account.get(Account.username == "olga"), as_actor(cora)) == \
        "that account is not in an organisation you manage"
    with pytest.raises(team.TeamError, match="do not manage that organisation"):
        team.invite(as_actor(cora), new(acme), server_url=SERVER)
    assert [a.username for a in team.members(acme, search="COR")] == ["cora"]
    assert [a.username for a in team.members(acme, status="pending")] == []


# -- first owner -----------------------------------------------------------------------------------


def test_the_first_owner_is_created_once(database):
    assert team.setup_open()
    with pytest.raises(team.TeamError, match="At least 15 characters"):
        team.create_first_owner(organisation_slug="acme", organisation_name="Acme", username="olga",
                                email="olga@acme.test", password="short")
    assert Organisation.select().count() == 0  # nothing half done
    olga = team.create_first_owner(organisation_slug="Acme", organisation_name="Acme", username="olga",
                                   email="olga@acme.test", password=PASSWORD, ip="192.0.2.7")
    assert (olga.role, olga.status, olga.organisation.slug) == ("owner", "active", "acme")
    assert AuditEvent.get(AuditEvent.action == "setup.completed").ip == "192.0.2.7"
    assert not team.setup_open()
    with pytest.raises(team.SetupClosed):
        team.create_first_owner(organisation_slug="evil", organisation_name="Evil", username="eve",
                                email="eve@evil.test", password=PASSWORD)
    assert Organisation.select().count() == 1 and UserSession.select().count() == 0
