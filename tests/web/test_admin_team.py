"""Admin: technicians and team users — list (page and partial), invite, create with a
generated password, edit, resend, reset password / 2FA, deactivate, reactivate, delete,
bulk actions; who may do what to whom, inside and outside their organisation."""

from __future__ import annotations

import pytest

from models import Account, AccountToken, AuditEvent, Organisation, OutboxMessage, UserSession, utcnow
from services import passwords
from tests.support.factories import PASSWORD, sign_in


def sign_in_to(client, username, slug):
    """Sign in when several organisations exist (the Account ID is asked for)."""
    client.get("/login/password")
    response = client.post("/login/password", {"identifier": username, "password": PASSWORD, "account_id": slug})
    assert response.status_code == 303, response.get_data(as_text=True)


@pytest.fixture
def acme(owner):
    return owner.organisation


@pytest.fixture
def tom(create_account, acme):
    return create_account(acme, "tom", role="technician", display_name="Tom Tech")


def stored(app, account_id):
    with app.app_context():
        return Account.get_or_none(Account.id == account_id)


def invite_form(**overrides):
    values = {"organisation": "", "username": "tina", "email": "tina@acme.test", "display_name": "Tina",
              "role": "technician", "mode": "invite"}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


# -- the list ----------------------------------------------------------------------------


def test_the_list_shows_status_two_factor_and_last_sign_in(app, admin_client, tom, acme):
    with app.app_context():
        Account.update(totp_enabled_at=utcnow()).where(Account.id == tom.id).execute()
    html = admin_client.get("/admin/team").get_data(as_text=True)
    assert "<html" in html and "Technicians &amp; team users" in html
    assert "Tom Tech" in html and "Technician" in html
    assert 'badge badge-success">On<' in html  # tom's 2FA
    assert "UTC" in html  # olga's last sign-in (she just signed in)
    assert "never" in html  # tom never signed in
    assert "Organisation</th>" not in html  # one organisation: no column
    assert f'href="/admin/team/{tom.id}/deactivate"' in html


def test_the_list_as_an_htmx_partial_with_search(admin_client, tom):
    response = admin_client.get("/admin/team?q=tom", htmx=True, target="team-table")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="team-table"') and "Tom Tech" in html and "olga@" not in html
    empty = admin_client.get("/admin/team?q=nobody&status=inactive", htmx=True, target="team-table").get_data(as_text=True)
    assert "Nobody matches “nobody” with status inactive." in empty


@pytest.mark.parametrize("role, expected", [("owner", 200), ("technician", 200), ("team", 403), ("user", 403)])
def test_owners_and_technicians_manage_the_team(client, create_organisation, create_account, role, expected):
    create_account(create_organisation("acme", "Acme"), "pat", role=role)
    sign_in(client, "pat")
    for url in ("/admin/team", "/admin/team/new", "/admin/team/bulk?action=delete&ids=1"):
        assert client.get(url).status_code in ((expected,) if expected == 403 else (200, 303)), url


def test_strangers_are_sent_to_sign_in(client):
    response = client.get("/admin/team")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=/admin/team"


@pytest.mark.parametrize("role", ["owner", "technician"])
def test_members_of_other_organisations_do_not_exist(app, client, create_organisation, create_account, role):
    parent = create_organisation("holding", "Holding")
    acme = create_organisation("acme", "Acme", parent=parent)
    other = create_organisation("other", "Other")
    create_account(acme, "pat", role=role)
    outsiders = [create_account(parent, "harry", role="technician"), create_account(other, "otto", role="technician")]
    inside = create_account(acme, "ivy", role="technician")
    sign_in_to(client, "pat", "acme")
    for action in ("edit", "deactivate", "delete", "reset-2fa", "reactivate"):
        for outsider in outsiders:
            assert client.get(f"/admin/team/{outsider.id}/{action}").status_code == 404, action
        assert client.get(f"/admin/team/{inside.id}/{action}").status_code == 200, action
    assert "holding" not in client.get("/admin/team").get_data(as_text=True)  # the parent stays invisible
    client.get("/admin/team")
    assert client.post(f"/admin/team/{outsiders[0].id}/delete").status_code == 404
    assert stored(app, outsiders[0].id) is not None


def test_a_parent_sees_its_childrens_admins_with_their_organisation(client, create_organisation, create_account):
    parent = create_organisation("holding", "Holding")
    child = create_organisation("acme", "Acme Child", parent=parent)
    create_account(parent, "olga", role="owner")
    create_account(child, "cora", role="owner")
    create_account(child, "ann", role="user")
    sign_in_to(client, "olga", "holding")
    html = client.get("/admin/team").get_data(as_text=True)
    assert "Organisation</th>" in html and "Acme Child" in html and "cora" in html and "ann@" not in html
    form = client.get("/admin/team/new").get_data(as_text=True)
    assert "Holding (holding)" in form and "Acme Child (acme)" in form


def test_users_of_the_users_page_are_not_team_members(app, admin_client, create_account, acme):
    ann = create_account(acme, "ann", role="user")
    assert "ann@acme.test" not in admin_client.get("/admin/team").get_data(as_text=True)
    assert admin_client.get(f"/admin/team/{ann.id}/edit").status_code == 404


# -- invite and create -------------------------------------------------------------------------


def test_invite_a_technician(app, admin_client, acme):
    admin_client.get("/admin/team/new")
    response = admin_client.post("/admin/team/new", invite_form(organisation=str(acme.id)))
    assert response.status_code == 303 and response.headers["Location"] == "/admin/team"
    with app.app_context():
        tina = Account.get(Account.username == "tina")
        assert (tina.status, tina.role, tina.password_hash) == ("pending", "technician", None)
        message = OutboxMessage.get()
        assert message.to_addresses == ["tina@acme.test"] and "/invitation/" in message.text_body
        event = AuditEvent.get(AuditEvent.action == "team.invited")
        assert (event.actor, event.target, event.outcome) == ("olga", "tina", "success")
    html = admin_client.get("/admin/team").get_data(as_text=True)
    assert "Invited tina" in html and "has no mail server yet" in html
    assert "badge badge-warning\">Pending" in html and "Resend invitation" in html
    assert f"/admin/team/{tina.id}/reset-password" not in html  # only for active accounts
    assert f"/admin/team/{tina.id}/deactivate" not in html


def test_invite_errors_come_back_in_the_form_partial(app, admin_client, acme):
    admin_client.get("/admin/team/new")
    response = admin_client.post("/admin/team/new", invite_form(organisation=str(acme.id), email="not-an-email",
                                                               username="has space"), htmx=True, target="team-member-form")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "<html" not in html
    assert html.lstrip().startswith('<form id="team-member-form"')
    assert "Enter one email address, like name@example.com." in html and "no spaces" in html
    assert 'value="has space"' in html  # nothing typed is lost
    response = admin_client.post("/admin/team/new", invite_form(organisation=str(acme.id), username="olga", email="o2@acme.test"))
    assert response.status_code == 422 and "the username &#39;olga&#39; is already taken in acme" in response.get_data(as_text=True).replace("The", "the")
    with app.app_context():
        assert Account.select().count() == 1 and OutboxMessage.select().count() == 0


GARBAGE = [
    ("organisation", "not-a-number"), ("organisation", "99999"), ("role", "owner\x00"), ("role", "superuser"),
    ("username", "x" * 5000), ("email", "a@b.c" * 200), ("mode", "steal"),
]


def test_garbage_is_refused_clearly(app, admin_client, acme):
    admin_client.get("/admin/team/new")
    for field, value in GARBAGE:
        form = invite_form(organisation=str(acme.id))
        form[field] = value
        response = admin_client.post("/admin/team/new", form)
        assert response.status_code == 422, (field, response.get_data(as_text=True)[:300])
    with app.app_context():
        assert Account.select().count() == 1


def test_a_list_where_a_string_belongs_is_refused(app, admin_client, acme):
    admin_client.get("/admin/team/new")
    response = admin_client.client.post("/admin/team/new", data={
        "csrf_token": admin_client.csrf_token, "organisation": [str(acme.id), "2"], "username": ["a", "b"],
        "email": "x@acme.test", "role": "technician", "mode": "invite"})
    assert response.status_code in (303, 422)
    with app.app_context():
        assert Account.select().count() <= 2


def test_a_technician_cannot_create_owners(app, client, acme, tom):
    sign_in(client, "tom")
    form = client.get("/admin/team/new").get_data(as_text=True)
    assert '<option value="owner"' not in form and "elevate" not in form
    response = client.post("/admin/team/new", invite_form(organisation=str(acme.id), role="owner"))
    assert response.status_code == 422 and "Not a valid choice" in response.get_data(as_text=True)
    with app.app_context():
        assert not Account.select().where(Account.username == "tina").exists()


def test_create_with_a_generated_password_shown_once(app, admin_client, client_factory, acme):
    admin_client.get("/admin/team/new")
    response = admin_client.post("/admin/team/new", invite_form(organisation=str(acme.id), role="team", mode="create",
                                                               username="tess", email="tess@acme.test"))
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "shown only this once" in html
    assert response.headers["Cache-Control"] == "no-store"
    password = html.split('<code id="generated-password">')[1].split("</code>")[0]
    assert len(password) == 20
    with app.app_context():
        tess = Account.get(Account.username == "tess")
        assert tess.status == "active" and tess.must_change_password is False
        assert passwords.check_password(tess, password.replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&"))
        assert OutboxMessage.select().count() == 0
    partial = admin_client.post("/admin/team/new", invite_form(organisation=str(acme.id), role="team", mode="create",
                                                              username="tess2", email="tess2@acme.test"),
                                htmx=True, target="team-member-form").get_data(as_text=True)
    assert "<html" not in partial and partial.lstrip().startswith('<section id="team-member-form"')


@pytest.fixture
def client_factory(app):
    from tests.support.web import WebClient

    return lambda: WebClient(app.test_client())


# -- edit ------------------------------------------------------------------------------------------


def test_an_owner_lets_a_team_user_elevate_and_edit_the_password_policy(app, admin_client, create_account, acme):
    tess = create_account(acme, "tess", role="team")
    page = admin_client.get(f"/admin/team/{tess.id}/edit").get_data(as_text=True)
    assert "Allow this team user to elevate to owner" in page and "Edit the password policy" in page
    response = admin_client.post(f"/admin/team/{tess.id}/edit", {"display_name": "Tess", "email": "tess@acme.test",
                                                                 "role": "team", "may_elevate": "y",
                                                                 "permissions": "password_policy"})
    assert response.status_code == 303
    with app.app_context():
        saved = Account.get_by_id(tess.id)
        assert saved.may_elevate is True and saved.permissions == ["password_policy"]
        assert AuditEvent.get(AuditEvent.action == "team.updated").details["after"]["may_elevate"] is True


def test_a_technician_sees_no_elevation_switch_and_keeps_it(app, client, create_account, acme, tom):
    tess = create_account(acme, "tess", role="team")
    with app.app_context():
        Account.update(may_elevate=True).where(Account.id == tess.id).execute()
    sign_in(client, "tom")
    page = client.get(f"/admin/team/{tess.id}/edit").get_data(as_text=True)
    assert "elevate" not in page
    response = client.post(f"/admin/team/{tess.id}/edit", {"display_name": "Tess T", "email": "tess@acme.test", "role": "team"})
    assert response.status_code == 303
    assert stored(app, tess.id).may_elevate is True and stored(app, tess.id).display_name == "Tess T"


def test_nobody_changes_their_own_role(app, admin_client, owner):
    admin_client.get(f"/admin/team/{owner.id}/edit")
    response = admin_client.post(f"/admin/team/{owner.id}/edit", {"display_name": "Olga", "email": owner.email,
                                                                  "role": "technician"},
                                 htmx=True, target="team-edit-form")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "<html" not in html and "You cannot change your own role" in html
    assert stored(app, owner.id).role == "owner"


def test_a_technician_cannot_touch_an_owner(app, client, owner, tom):
    sign_in(client, "tom")
    response = client.get(f"/admin/team/{owner.id}/delete")
    assert "Only an owner can change an owner&#39;s account" in response.get_data(as_text=True)
    response = client.post(f"/admin/team/{owner.id}/delete")
    assert response.status_code == 303 and stored(app, owner.id) is not None
    assert "Only an owner can change an owner" in client.get("/admin/team").get_data(as_text=True)
    assert client.get(f"/admin/team/{owner.id}/edit").headers["Location"] == "/admin/team"


# -- single actions -----------------------------------------------------------------------------------


def test_resend_only_while_pending(app, admin_client, acme, tom):
    admin_client.get("/admin/team/new")
    admin_client.post("/admin/team/new", invite_form(organisation=str(acme.id)))
    with app.app_context():
        tina = Account.get(Account.username == "tina")
        first = AccountToken.get().token_hash
    admin_client.get("/admin/team")
    assert admin_client.post(f"/admin/team/{tina.id}/resend").status_code == 303
    with app.app_context():
        assert OutboxMessage.select().count() == 2
        assert AccountToken.get(AccountToken.token_hash == first).used_at is not None  # the old link stops working
    admin_client.post(f"/admin/team/{tom.id}/resend")
    html = admin_client.get("/admin/team").get_data(as_text=True)
    assert "Resend invitation works only while the invitation is pending; tom is active." in html
    with app.app_context():
        assert OutboxMessage.select().count() == 2


def test_reset_password_sends_a_link(app, admin_client, tom):
    admin_client.get("/admin/team")
    assert admin_client.post(f"/admin/team/{tom.id}/reset-password", htmx=True).headers["HX-Redirect"] == "/admin/team"
    with app.app_context():
        message = OutboxMessage.get()
        assert message.to_addresses == ["tom@acme.test"] and "/login/reset/" in message.text_body
        assert AuditEvent.get(AuditEvent.action == "password.reset_sent_by_admin").acting_for is None


def test_reset_two_factor_asks_first(app, admin_client, tom):
    with app.app_context():
        Account.update(totp_enabled_at=utcnow(), totp_secret_encrypted="x").where(Account.id == tom.id).execute()
    page = admin_client.get(f"/admin/team/{tom.id}/reset-2fa").get_data(as_text=True)
    assert "Reset two-factor authentication of Tom Tech?" in page
    assert stored(app, tom.id).totp_enabled_at is not None  # asking changes nothing
    assert admin_client.post(f"/admin/team/{tom.id}/reset-2fa").status_code == 303
    account = stored(app, tom.id)
    assert account.totp_enabled_at is None and account.must_enrol_totp is True


def test_deactivate_asks_then_ends_sessions_and_reactivate_undoes_it(app, admin_client, client_factory, tom):
    other = client_factory()
    sign_in(other, "tom")
    assert other.get("/admin/team").status_code == 200
    page = admin_client.get(f"/admin/team/{tom.id}/deactivate").get_data(as_text=True)
    assert "Deactivate Tom Tech?" in page and "every session of theirs ends now" in page
    assert stored(app, tom.id).status == "active"
    assert admin_client.post(f"/admin/team/{tom.id}/deactivate").status_code == 303
    assert stored(app, tom.id).status == "inactive"
    assert other.get("/admin/team").status_code == 302  # tom's session is over
    with app.app_context():
        assert UserSession.select().where((UserSession.account == tom.id) & UserSession.ended_at.is_null()).count() == 0
    html = admin_client.get("/admin/team").get_data(as_text=True)
    assert "Deactivated tom." in html and "badge badge-danger\">Inactive" in html
    admin_client.post(f"/admin/team/{tom.id}/reactivate")
    assert stored(app, tom.id).status == "active"


def test_deleting_yourself_is_refused_with_the_reason(app, admin_client, owner):
    page = admin_client.get(f"/admin/team/{owner.id}/delete").get_data(as_text=True)
    assert "You cannot delete your own account: ask another admin." in page and "button-danger" not in page
    admin_client.post(f"/admin/team/{owner.id}/delete")
    assert stored(app, owner.id) is not None
    assert "You cannot delete your own account" in admin_client.get("/admin/team").get_data(as_text=True)


def test_delete_asks_then_deletes(app, admin_client, tom):
    page = admin_client.get(f"/admin/team/{tom.id}/delete").get_data(as_text=True)
    assert "Delete Tom Tech?" in page and "This cannot be undone" in page
    assert admin_client.post(f"/admin/team/{tom.id}/delete").status_code == 303
    assert stored(app, tom.id) is None
    with app.app_context():
        assert AuditEvent.get(AuditEvent.action == "account.deleted").target == "tom"


def test_a_technicians_actions_are_recorded_under_their_name(app, client, create_account, acme, tom):
    tess = create_account(acme, "tess", role="team")
    sign_in(client, "tom")
    client.get(f"/admin/team/{tess.id}/deactivate")
    client.post(f"/admin/team/{tess.id}/deactivate")
    with app.app_context():
        event = AuditEvent.get(AuditEvent.action == "account.deactivated")
        assert (event.actor, event.acting_for, event.target) == ("tom", "olga (owner of acme)", "tess")


def test_posts_need_the_csrf_token(app, admin_client, tom):
    admin_client.get("/admin/team")
    assert admin_client.post(f"/admin/team/{tom.id}/delete", csrf=False).status_code == 400
    assert stored(app, tom.id) is not None


# -- bulk ----------------------------------------------------------------------------------------------


def test_bulk_deactivate_asks_then_changes_all(app, admin_client, create_account, acme, tom):
    tess = create_account(acme, "tess", role="team")
    page = admin_client.get(f"/admin/team/bulk?action=deactivate&ids={tom.id}&ids={tess.id}").get_data(as_text=True)
    assert "Deactivate 2 accounts?" in page and "Tom Tech" in page and "tess" in page
    assert stored(app, tom.id).status == "active"
    response = admin_client.post("/admin/team/bulk", {"action": "deactivate", "ids": [str(tom.id), str(tess.id)]})
    assert response.status_code == 303
    assert stored(app, tom.id).status == stored(app, tess.id).status == "inactive"
    assert "Deactivated 2 accounts: tom, tess." in admin_client.get("/admin/team").get_data(as_text=True)


def test_bulk_with_yourself_changes_nothing(app, admin_client, owner, tom):
    page = admin_client.get(f"/admin/team/bulk?action=delete&ids={tom.id}&ids={owner.id}").get_data(as_text=True)
    assert "nothing will be changed" in page and "olga: you cannot delete your own account" in page
    assert 'type="submit">Delete 2 accounts' not in page
    admin_client.post("/admin/team/bulk", {"action": "delete", "ids": [str(tom.id), str(owner.id)]})
    assert stored(app, tom.id) is not None and stored(app, owner.id) is not None
    assert "Nothing was changed" in admin_client.get("/admin/team").get_data(as_text=True)


def test_bulk_without_a_selection_says_what_to_do(admin_client):
    response = admin_client.get("/admin/team/bulk?action=delete")
    assert response.status_code == 303
    assert "Select at least one technician or team user first" in admin_client.get("/admin/team").get_data(as_text=True)
    assert admin_client.get("/admin/team/bulk?action=delete&ids=abc").status_code == 303
    assert admin_client.get("/admin/team/bulk?action=explode&ids=1").status_code == 303
