"""services.profiles: the safe message template, validation, save, default and delete rules."""

from datetime import datetime

import pytest

from models import (
    ApprovalProfile,
    AuditEvent,
    Directory,
    MailServer,
    Organisation,
    Policy,
    ProfileDirectory,
    ProfileMailServer,
)
from services import profiles
from services.profiles import (
    MessageTemplateError,
    ProfileError,
    render_message,
    validate_template,
)

VALUES = {"user": "Ann", "link": "https://g.test/l/abc", "ip": "203.0.113.7", "browser": "Firefox",
          "expires": "2025-03-01 14:32 UTC", "minutes": 15, "approver": "boss@acme.test", "organisation": "Acme"}


# ---------------------------------------------------------------- templates (no database)

def test_render_message_fills_placeholders_and_literal_braces():
    text = "Hi {user}, open {link} from {ip} ({browser}) before {expires}. {{not a placeholder}}"
    assert render_message(text, **VALUES) == (
        "Hi Ann, open https://g.test/l/abc from 203.0.113.7 (Firefox) before 2025-03-01 14:32 UTC. {not a placeholder}")


def test_values_are_inserted_as_text_never_formatted_again():
    assert render_message("{user} {link}", **dict(VALUES, user="{link.__class__}")) == "{link.__class__} https://g.test/l/abc"


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{user.__class__.__mro__} {link}", "{user.__class__.__mro__} is not a placeholder"),
        ("{user.__init__.__globals__} {link}", "is not a placeholder"),
        ("{user[0]} {link}", "{user[0]} is not a placeholder"),
        ("{0} {link}", "{0} is not a placeholder"),
        ("{} {link}", "an empty placeholder {} is not allowed"),
        ("{user!r} {link}", "{user!r} cannot be formatted: write just {user}"),
        ("{user:>99999999} {link}", "cannot be formatted"),
        ("{usr} {link}", "unknown placeholder {usr}: use one of {approver}, {browser}, {expires}"),
        ("Hello {user {link}", "a { is not closed"),
        ("Hello user} {link}", "a } has no matching {"),
        ("Hello {user", "a { is not closed"),
    ],
)
def test_hostile_or_broken_templates_are_refused_with_a_reason(template, expected):
    problems = validate_template(template)
    assert problems and expected in " ".join(problems)
    with pytest.raises(MessageTemplateError):
        render_message(template, **VALUES)


def test_the_message_must_carry_the_link():
    assert validate_template("Hello {user}") == ["the message must contain {link}: without it the email carries no link"]
    assert validate_template("Hello {user}", require_link=False) == []
    assert validate_template(profiles.DEFAULT_MESSAGES["user"]) == []
    assert validate_template(profiles.DEFAULT_MESSAGES["manager"]) == []


def test_render_refuses_a_placeholder_without_a_value():
    with pytest.raises(MessageTemplateError, match=r"no value given for \{ip\}"):
        render_message("{link} {ip}", link="x")


def test_preview_uses_sample_values_and_the_server_url():
    subject, body = profiles.preview({"kind": "manager", "server_url": "https://id.acme.test/", "subject": "Approve {user}",
                                      "message": "{user}: {link} ({minutes} min)", "link_lifetime_minutes": "30"}, "Acme")
    assert subject == "Approve Ann Example (ann)"
    assert body == "Ann Example (ann): https://id.acme.test/a/sample-link-token (30 min)"


def test_preview_of_a_broken_template_names_every_problem():
    with pytest.raises(ProfileError) as caught:
        profiles.preview({"subject": "{usr}", "message": "no link"})
    assert set(caught.value.errors) == {"subject", "message"}


def test_lifetime_rules():
    assert profiles.parse_lifetime("15") == 15 and profiles.parse_lifetime(1440) == 1440
    with pytest.raises(ProfileError, match="under 5 minutes most people cannot open their email in time"):
        profiles.parse_lifetime(4)
    with pytest.raises(ProfileError, match="over 24 hours a forwarded or stolen email stays usable too long"):
        profiles.parse_lifetime("1441")
    with pytest.raises(ProfileError, match="whole number"):
        profiles.parse_lifetime("ten")
    assert profiles.lifetime_warning(60) is None and profiles.lifetime_warning(15) is None
    assert "2 hours" in profiles.lifetime_warning(120)


# ---------------------------------------------------------------- saving (SQLite and PostgreSQL)

@pytest.fixture
def org(database):
    return Organisation.create(slug="acme", name="Acme")


@pytest.fixture
def relay(org):
    return MailServer.create(organisation=org, name="Relay", host="smtp.acme.test", from_address="no-reply@acme.test")


@pytest.fixture
def ldap(org):
    return Directory.create(organisation=org, name="Corp LDAP", base_dn="dc=acme,dc=test")


def values(**overrides):
    base = {"name": "Staff", "kind": "user", "server_url": "https://id.acme.test/", "subject": "Sign in to {organisation}",
            "message": "Hello {user}: {link}", "link_lifetime_minutes": "15", "notify_manager_on_failure": False,
            "first_factor": "email_link", "fallback_approver": "boss@acme.test"}
    base.update(overrides)
    return base


def test_save_creates_the_first_profile_as_default_with_ordered_links(org, relay, ldap):
    second = MailServer.create(organisation=org, name="Backup", host="b", from_address="b@acme.test")
    profile = profiles.save(org, None, values(), [second.id, relay.id], [ldap.id, None], actor="olga")
    assert profile.is_default and profile.server_url == "https://id.acme.test" and profile.link_lifetime_minutes == 15
    assert [s.name for s in profiles.mail_servers_of(profile)] == ["Backup", "Relay"]
    assert [d.name if d else None for d in profiles.directories_of(profile)] == ["Corp LDAP", None]
    # User approval ignores the manager-only settings.
    assert profile.first_factor == "password" and profile.fallback_approver is None
    assert AuditEvent.get(AuditEvent.action == "profile.created").target == "Staff"
    later = profiles.save(org, None, values(name="Executives", kind="manager"), [relay.id], [None], actor="olga")
    assert not later.is_default and later.first_factor == "email_link" and later.fallback_approver == "boss@acme.test"
    assert profiles.default_profile(org).id == profile.id


def test_update_replaces_the_order(org, relay, ldap):
    backup = MailServer.create(organisation=org, name="Backup", host="b", from_address="b@acme.test")
    profile = profiles.save(org, None, values(), [relay.id, backup.id], [None], actor="olga")
    profiles.save(org, profile, values(subject="New"), [backup.id], [None, ldap.id], actor="olga")
    assert ApprovalProfile.get_by_id(profile.id).subject == "New"
    assert [s.name for s in profiles.mail_servers_of(profile)] == ["Backup"]
    assert profiles.directories_of(profile)[1].id == ldap.id
    assert ProfileMailServer.select().count() == 1 and ProfileDirectory.select().count() == 2


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"name": "  "}, "name", "enter the profile name"),
        ({"kind": "robot"}, "kind", "choose user approval or manager approval"),
        ({"server_url": "ftp://id.acme.test"}, "server_url", "like https://gatehouse.example.com"),
        ({"server_url": "https://id.acme.test/?next=1"}, "server_url", "remove the ?query or #fragment"),
        ({"server_url": "https://id.acme.test/#x"}, "server_url", "remove the ?query or #fragment"),
        ({"server_url": "javascript:alert(1)"}, "server_url", "like https://gatehouse.example.com"),
        ({"link_lifetime_minutes": "4"}, "link_lifetime_minutes", "under 5 minutes"),
        ({"link_lifetime_minutes": 1441}, "link_lifetime_minutes", "over 24 hours"),
        ({"link_lifetime_minutes": ""}, "link_lifetime_minutes", "whole number"),
        ({"message": "Hello {usr} {link}"}, "message", "unknown placeholder {usr}"),
        ({"message": "Hello {user}"}, "message", "must contain {link}"),
        ({"subject": "Hi {user.__class__}"}, "subject", "is not a placeholder"),
        ({"kind": "manager", "fallback_approver": "boss"}, "fallback_approver", "enter one email address"),
        ({"kind": "manager", "first_factor": "retina"}, "first_factor", "choose password, email link or nothing"),
    ],
)
def test_bad_values_are_refused_with_the_reason_and_nothing_saved(org, relay, overrides, field, message):
    with pytest.raises(ProfileError) as caught:
        profiles.save(org, None, values(**overrides), [relay.id], [None], actor="olga")
    assert message in " ".join(caught.value.errors[field])
    assert ApprovalProfile.select().count() == 0


def test_every_problem_is_reported_at_once(org):
    with pytest.raises(ProfileError) as caught:
        profiles.save(org, None, values(name="", link_lifetime_minutes="2"), [], [], actor="olga")
    assert set(caught.value.errors) == {"name", "link_lifetime_minutes", "mail_servers", "directories"}


def test_duplicate_names_and_foreign_objects_are_refused(org, relay):
    profiles.save(org, None, values(), [relay.id], [None], actor="olga")
    with pytest.raises(ProfileError, match="another approval profile is already called 'Staff'"):
        profiles.save(org, None, values(), [relay.id], [None], actor="olga")
    other = Organisation.create(slug="other", name="Other")
    theirs = MailServer.create(organisation=other, name="Theirs", host="t", from_address="t@other.test")
    their_directory = Directory.create(organisation=other, name="Theirs", base_dn="dc=other")
    with pytest.raises(ProfileError) as caught:
        profiles.save(org, None, values(name="B"), [theirs.id], [their_directory.id], actor="olga")
    assert "does not exist" in caught.value.errors["mail_servers"][0]
    assert "does not exist" in caught.value.errors["directories"][0]
    with pytest.raises(ProfileError, match="only once"):
        profiles.save(org, None, values(name="C"), [relay.id, relay.id], [None], actor="olga")
    # The same name is fine in another organisation.
    other_relay = MailServer.create(organisation=other, name="R", host="r", from_address="r@other.test")
    assert profiles.save(other, None, values(), [other_relay.id], [None], actor="root").is_default


def test_a_directory_a_policy_uses_cannot_be_removed(org, relay, ldap):
    profile = profiles.save(org, None, values(), [relay.id], [None, ldap.id], actor="olga")
    Policy.create(organisation=org, name="Engineers", profile=profile, directory=ldap, attribute="department", values=["eng"])
    with pytest.raises(ProfileError, match="the policy Engineers looks users up in Corp LDAP"):
        profiles.save(org, profile, values(), [relay.id], [None], actor="olga")


def test_set_default_keeps_exactly_one(org, relay):
    first = profiles.save(org, None, values(), [relay.id], [None], actor="olga")
    second = profiles.save(org, None, values(name="Managers"), [relay.id], [None], actor="olga")
    profiles.set_default(second, actor="olga")
    assert [p.name for p in ApprovalProfile.select().where(ApprovalProfile.is_default)] == ["Managers"]
    assert AuditEvent.get(AuditEvent.action == "profile.default_changed").details == {"previous": ["Staff"]}
    third = profiles.save(org, None, values(name="Third", is_default=True), [relay.id], [None], actor="olga")
    assert [p.id for p in ApprovalProfile.select().where(ApprovalProfile.is_default)] == [third.id]
    assert not ApprovalProfile.get_by_id(first.id).is_default


def test_delete_rules(org, relay):
    default = profiles.save(org, None, values(), [relay.id], [None], actor="olga")
    other = profiles.save(org, None, values(name="Managers"), [relay.id], [None], actor="olga")
    Policy.create(organisation=org, name="Board", profile=other, attribute="memberOf", values=["cn=board"])
    Policy.create(organisation=org, position=1, profile=other, attribute="department", values=["exec"])
    with pytest.raises(ProfileError, match="used by the policies: Board, #2"):
        profiles.delete(other, actor="olga")
    with pytest.raises(ProfileError, match="make another profile the default first"):
        profiles.delete(default, actor="olga")
    Policy.delete().execute()
    profiles.delete(other, actor="olga")
    assert ProfileMailServer.select().count() == 1
    profiles.delete(default, actor="olga")  # the last profile may go, default or not
    assert ApprovalProfile.select().count() == 0
    assert AuditEvent.select().where(AuditEvent.action == "profile.deleted").count() == 2


def test_compose_renders_the_stored_profile_for_one_request(org, relay):
    profile = profiles.save(org, None, values(subject="{user} from {browser}", message="{user}: {link} until {expires}"),
                            [relay.id], [None], actor="olga")
    subject, body = profiles.compose(profile, user="Ann", link="https://id.acme.test/l/t", ip="198.51.100.1",
                                     browser="Evil\r\nBcc: x@y", expires_at=datetime(2025, 3, 1, 14, 32))
    assert subject == "Ann from Evil Bcc: x@y"
    assert body == "Ann: https://id.acme.test/l/t until 2025-03-01 14:32 UTC"


def test_a_missing_link_is_reported_with_the_other_problems():
    problems = validate_template("Hello {usr}")
    assert len(problems) == 2 and "unknown placeholder {usr}" in problems[0] and "must contain {link}" in problems[1]
    assert validate_template("Literal {{link}} only") == ["the message must contain {link}: without it the email carries no link"]
