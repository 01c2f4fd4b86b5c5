"""Admin: approval profiles — list, add, edit (all fields, ordered choices), live preview,
default, delete with its refusals."""

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


@pytest.fixture
def relays(app, owner):
    with app.app_context():
        return [MailServer.create(organisation=owner.organisation, name=n, host=f"{n.lower()}.acme.test", port=25,
                                  security="none", from_address="no-reply@acme.test", position=i)
                for i, n in enumerate(["Relay", "Backup"])]


@pytest.fixture
def ldap(app, owner):
    with app.app_context():
        return Directory.create(organisation=owner.organisation, name="Corp LDAP", base_dn="dc=acme,dc=test")


def form(relays, **overrides):
    values = {
        "name": "Staff", "kind": "user", "server_url": "https://id.acme.test", "subject": "Sign in to {organisation}",
        "message": "Hello {user}, sign in: {link}", "link_lifetime_minutes": "15", "first_factor": "password",
        "fallback_approver": "", "mail_server": [str(relays[0].id)], f"mail_server_position_{relays[0].id}": "1",
        "directory": ["local"], "directory_position_local": "1",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def make_profile(app, owner, relays, name="Staff", **fields):
    with app.app_context():
        return profiles.save(owner.organisation, None, {
            "name": name, "kind": "user", "server_url": "https://id.acme.test", "subject": "Sign in",
            "message": "Hello {user}: {link}", "link_lifetime_minutes": 15, **fields}, [relays[0].id], [None], actor="test")


def test_empty_list_explains_what_a_profile_is(admin_client):
    html = admin_client.get("/admin/profiles").get_data(as_text=True)
    assert "No approval profiles yet." in html and "the user, by clicking a link, or their manager" in html
    assert "/admin/profiles/new" in html


def test_list_shows_every_column_as_a_page_and_as_a_partial(admin_client, app, owner, relays):
    staff = make_profile(app, owner, relays)
    make_profile(app, owner, relays, name="Board", kind="manager", link_lifetime_minutes=120)
    with app.app_context():
        Policy.create(organisation=owner.organisation, name="Execs", profile=staff, attribute="department", values=["x"])
    html = admin_client.get("/admin/profiles").get_data(as_text=True)
    assert "<html" in html and "Staff</a> <span class=\"badge badge-brand\">default</span>" in html
    assert "Manager approval" in html and "User approval" in html and "120 min" in html
    assert "Relay" in html and "Local accounts" in html and "1 policy" in html and "no policy" in html
    assert html.index(">Staff</a>") < html.index(">Board</a>")  # the default first
    partial = admin_client.get("/admin/profiles", htmx=True, target="profile-table")
    assert "<html" not in partial.get_data(as_text=True) and 'id="profile-table"' in partial.get_data(as_text=True)


def test_new_form_offers_defaults_and_all_fields(admin_client, relays, ldap):
    response = admin_client.get("/admin/profiles/new")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    for label in ("Profile name", "Type", "Server URL for links", "Email subject", "Message", "Link expiration (minutes)",
                  "Mail servers", "Fallback directories", "Email the user&#39;s manager when a sign-in fails",
                  "First factor asked of the user", "Fallback approver address"):
        assert label in html, label
    assert 'value="http://gatehouse.test"' in html and 'value="15"' in html
    assert "Only for manager approval" in html and "hidden" not in html.split('class="profile-section manager-only"')[1][:20]
    assert "Corp LDAP" in html and "Local accounts (built-in)" in html
    assert "Sign in: http://gatehouse.test/l/sample-link-token" in html  # preview of the suggested message
    partial = admin_client.get("/admin/profiles/new", htmx=True, target="profile-form").get_data(as_text=True)
    assert "<html" not in partial and partial.lstrip().startswith('<form id="profile-form"')


def test_create_saves_every_field_in_the_chosen_order(admin_client, app, owner, relays, ldap):
    admin_client.get("/admin/profiles/new")
    response = admin_client.post("/admin/profiles/new", form(
        relays, kind="manager", first_factor="email_link", fallback_approver="approvals@acme.test",
        notify_manager_on_failure="y", link_lifetime_minutes="30",
        mail_server=[str(relays[0].id), str(relays[1].id)],
        **{f"mail_server_position_{relays[0].id}": "2", f"mail_server_position_{relays[1].id}": "1"},
        directory=["local", str(ldap.id)], directory_position_local="2", **{f"directory_position_{ldap.id}": "1"}))
    assert response.status_code == 303 and response.headers["Location"] == "/admin/profiles"
    with app.app_context():
        profile = ApprovalProfile.get(name="Staff")
        assert (profile.kind, profile.first_factor, profile.fallback_approver) == ("manager", "email_link", "approvals@acme.test")
        assert profile.notify_manager_on_failure and profile.link_lifetime_minutes == 30 and profile.is_default
        assert [s.name for s in profiles.mail_servers_of(profile)] == ["Backup", "Relay"]
        assert [d.name if d else None for d in profiles.directories_of(profile)] == ["Corp LDAP", None]
        assert AuditEvent.get(AuditEvent.action == "profile.created").actor == "olga"
    edit = admin_client.get(f"/admin/profiles/{profile.id}/edit").get_data(as_text=True)
    assert "approvals@acme.test" in edit and "https://id.acme.test/a/sample-link-token" in edit  # preview without JS


def test_htmx_save_navigates_with_hx_redirect(admin_client, app, relays):
    admin_client.get("/admin/profiles/new")
    response = admin_client.post("/admin/profiles/new", form(relays), htmx=True, target="profile-form")
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/admin/profiles"


def test_a_long_lifetime_is_saved_with_a_warning(admin_client, app, relays):
    admin_client.get("/admin/profiles/new")
    admin_client.post("/admin/profiles/new", form(relays, link_lifetime_minutes="240"))
    html = admin_client.get("/admin/profiles").get_data(as_text=True)
    assert "Links stay usable for 4 hours" in html and "240 min" in html


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"name": ""}, "enter the profile name"),
        ({"link_lifetime_minutes": "2"}, "under 5 minutes most people cannot open their email in time"),
        ({"link_lifetime_minutes": "2000"}, "over 24 hours a forwarded or stolen email stays usable too long"),
        ({"link_lifetime_minutes": "soon"}, "enter a whole number of minutes between 5 and 1440"),
        ({"server_url": "id.acme.test"}, "like https://gatehouse.example.com"),
        ({"server_url": "https://id.acme.test/?a=1"}, "remove the ?query or #fragment"),
        ({"message": "Hello {usr}: {link}"}, "unknown placeholder {usr}"),
        ({"message": "Hello {user.__class__.__mro__} {link}"}, "{user.__class__.__mro__} is not a placeholder"),
        ({"message": "Hello {user}"}, "the message must contain {link}"),
        ({"message": "Hello {user {link}"}, "a { is not closed"),
        ({"kind": "manager", "fallback_approver": "boss"}, "enter one email address, like approvals@example.com"),
        ({"kind": "cat"}, "Not a valid choice"),
        ({"mail_server": None}, "choose at least one mail server"),
        ({"directory": None}, "choose at least one directory"),
    ],
)
def test_bad_input_is_explained_next_to_the_field_values_kept_and_nothing_saved(admin_client, app, relays, overrides, message):
    admin_client.get("/admin/profiles/new")
    data = form(relays, **overrides)
    response = admin_client.post("/admin/profiles/new", data, htmx=True, target="profile-form")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message.replace("'", "&#39;") in html and "<html" not in html and "field-error" in html
    assert "Nothing was saved" in html
    if data.get("message"):
        assert data["message"].replace("'", "&#39;") in html  # what was typed is kept
    with app.app_context():
        assert ApprovalProfile.select().count() == 0
    page = admin_client.post("/admin/profiles/new", data)  # without JavaScript: the whole page, same errors
    assert page.status_code == 422 and "<html" in page.get_data(as_text=True)


def test_errors_keep_the_chosen_order(admin_client, relays):
    admin_client.get("/admin/profiles/new")
    html = admin_client.post("/admin/profiles/new", form(
        relays, name="", mail_server=[str(relays[0].id), str(relays[1].id)],
        **{f"mail_server_position_{relays[0].id}": "2", f"mail_server_position_{relays[1].id}": "1"})).get_data(as_text=True)
    assert f'name="mail_server_position_{relays[1].id}" value="1"' in html
    assert f'name="mail_server_position_{relays[0].id}" value="2"' in html
    assert html.index("Backup (") < html.index("Relay (")


def test_csrf_is_required(admin_client, app, relays):
    admin_client.get("/admin/profiles/new")
    response = admin_client.post("/admin/profiles/new", form(relays), csrf=False)
    assert response.status_code == 400
    with app.app_context():
        assert ApprovalProfile.select().count() == 0


def test_duplicate_name_is_refused(admin_client, app, owner, relays):
    make_profile(app, owner, relays)
    admin_client.get("/admin/profiles/new")
    response = admin_client.post("/admin/profiles/new", form(relays))
    assert response.status_code == 422 and "another approval profile is already called &#39;Staff&#39;" in response.get_data(as_text=True)


def test_edit_as_page_and_partial_and_user_kind_clears_manager_fields(admin_client, app, owner, relays):
    profile = make_profile(app, owner, relays, kind="manager", first_factor="none", fallback_approver="a@acme.test")
    url = f"/admin/profiles/{profile.id}/edit"
    page = admin_client.get(url).get_data(as_text=True)
    assert "Edit Staff" in page and "<html" in page and 'value="a@acme.test"' in page
    partial = admin_client.get(url, htmx=True, target="profile-form").get_data(as_text=True)
    assert "<html" not in partial and "a@acme.test" in partial
    response = admin_client.post(url, form(relays, name="Staff", kind="user", first_factor="none", fallback_approver="a@acme.test"))
    assert response.status_code == 303
    with app.app_context():
        stored = ApprovalProfile.get_by_id(profile.id)
        assert stored.kind == "user" and stored.first_factor == "password" and stored.fallback_approver is None
        assert AuditEvent.get(AuditEvent.action == "profile.updated").target == "Staff"


def test_preview_block_updates_from_the_typed_values(admin_client, relays):
    admin_client.get("/admin/profiles/new")
    response = admin_client.post("/admin/profiles/preview", form(relays, message="Hi {user}, go to {link} before {expires}",
                                                               subject="For {user}"), htmx=True, target="profile-preview")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html and html.lstrip().startswith('<section id="profile-preview"')
    assert "Hi Ann Example (ann), go to https://id.acme.test/l/sample-link-token before" in html and "For Ann Example (ann)" in html
    bad = admin_client.post("/admin/profiles/preview", form(relays, message="Hi {usr}"), htmx=True, target="profile-preview")
    assert "unknown placeholder {usr}" in bad.get_data(as_text=True)


def test_changing_the_type_rerenders_the_form_with_the_suggested_texts(admin_client, relays):
    admin_client.get("/admin/profiles/new")
    user_subject, user_message = profiles.default_texts("user")
    response = admin_client.post("/admin/profiles/preview", form(relays, kind="manager", subject=user_subject, message=user_message,
                                                               name="Typed name"), htmx=True, target="profile-form")
    html = response.get_data(as_text=True)
    assert "<html" not in html and 'id="profile-form"' in html and 'value="Typed name"' in html
    assert "asks to sign in: approve or deny" in html and "First factor asked of the user" in html
    assert "/a/sample-link-token" in html  # the preview is the manager's email
    assert 'class="profile-section manager-only" >' in html  # shown
    user = admin_client.post("/admin/profiles/preview", form(relays, kind="user"), htmx=True, target="profile-form").get_data(as_text=True)
    assert 'class="profile-section manager-only" hidden' in user
    custom = admin_client.post("/admin/profiles/preview", form(relays, kind="manager", message="Mine {link}"),
                               htmx=True, target="profile-form").get_data(as_text=True)
    assert "Mine {link}" in custom  # a message someone wrote is never replaced


def test_lifetime_note_warns_or_explains_while_typing(admin_client, relays):
    admin_client.get("/admin/profiles/new")
    for value, expected in (("120", "Links stay usable for 2 hours"), ("3", "This will be refused: at least 5 minutes"),
                            ("15", "")):
        html = admin_client.post("/admin/profiles/preview", form(relays, link_lifetime_minutes=value),
                                 htmx=True, target="profile-lifetime-note").get_data(as_text=True)
        assert "<html" not in html and html.lstrip().startswith('<p id="profile-lifetime-note"') and expected in html


def test_preview_button_without_javascript_shows_the_whole_page(admin_client, relays):
    admin_client.get("/admin/profiles/new")
    html = admin_client.post("/admin/profiles/preview", form(relays, message="Plain {link}")).get_data(as_text=True)
    assert "<html" in html and "Plain https://id.acme.test/l/sample-link-token" in html


def test_make_default_as_page_and_partial(admin_client, app, owner, relays):
    make_profile(app, owner, relays)
    other = make_profile(app, owner, relays, name="Board")
    admin_client.get("/admin/profiles")
    response = admin_client.post(f"/admin/profiles/{other.id}/default", htmx=True, target="profile-table")
    html = response.get_data(as_text=True)
    assert "<html" not in html and "Board</a> <span class=\"badge badge-brand\">default</span>" in html
    with app.app_context():
        assert [p.name for p in ApprovalProfile.select().where(ApprovalProfile.is_default)] == ["Board"]
    response = admin_client.post(f"/admin/profiles/{other.id}/default")
    assert response.status_code == 303


def test_delete_asks_then_deletes(admin_client, app, owner, relays):
    profile = make_profile(app, owner, relays)
    page = admin_client.get(f"/admin/profiles/{profile.id}/delete").get_data(as_text=True)
    assert "Delete the approval profile Staff?" in page and "<html" in page
    partial = admin_client.get(f"/admin/profiles/{profile.id}/delete", htmx=True, target="profile-delete").get_data(as_text=True)
    assert "<html" not in partial and "Delete Staff" in partial
    response = admin_client.post(f"/admin/profiles/{profile.id}/delete")
    assert response.status_code == 303
    with app.app_context():
        assert ApprovalProfile.select().count() == 0 and ProfileMailServer.select().count() == 0
        assert ProfileDirectory.select().count() == 0


def test_delete_of_a_profile_used_by_a_policy_says_so_and_keeps_it(admin_client, app, owner, relays):
    make_profile(app, owner, relays, name="Default")
    profile = make_profile(app, owner, relays)
    with app.app_context():
        Policy.create(organisation=owner.organisation, name="Executives", profile=profile, attribute="department", values=["exec"])
    page = admin_client.get(f"/admin/profiles/{profile.id}/delete").get_data(as_text=True)
    assert "It cannot be deleted yet." in page and "It is used by the policy: Executives" in page
    response = admin_client.post(f"/admin/profiles/{profile.id}/delete")
    assert response.status_code == 303
    follow = admin_client.get("/admin/profiles").get_data(as_text=True)
    assert "Staff cannot be deleted: it is used by the policy: Executives" in follow
    with app.app_context():
        assert ApprovalProfile.select().count() == 2


def test_the_default_cannot_be_deleted_while_others_exist(admin_client, app, owner, relays):
    default = make_profile(app, owner, relays)
    make_profile(app, owner, relays, name="Other")
    page = admin_client.get(f"/admin/profiles/{default.id}/delete").get_data(as_text=True)
    assert "make another profile the default first" in page
    admin_client.post(f"/admin/profiles/{default.id}/delete")
    with app.app_context():
        assert ApprovalProfile.select().count() == 2


def test_another_organisations_profile_is_not_found(admin_client, app, relays):
    with app.app_context():
        other = Organisation.create(slug="other", name="Other")
        theirs = ApprovalProfile.create(organisation=other, name="Theirs", server_url="http://x", subject="s", message="{link}")
    admin_client.get("/admin/profiles")
    assert admin_client.get(f"/admin/profiles/{theirs.id}/edit").status_code == 404
    assert admin_client.get(f"/admin/profiles/{theirs.id}/delete").status_code == 404
    assert admin_client.post(f"/admin/profiles/{theirs.id}/delete").status_code == 404
    assert admin_client.post(f"/admin/profiles/{theirs.id}/default").status_code == 404
    assert admin_client.post("/admin/profiles/preview", {"profile_id": str(theirs.id)}).status_code == 404
    assert "Theirs" not in admin_client.get("/admin/profiles").get_data(as_text=True)
    with app.app_context():
        assert ApprovalProfile.get_by_id(theirs.id).is_default is False


def test_other_organisations_mail_servers_cannot_be_chosen(admin_client, app, relays):
    with app.app_context():
        other = Organisation.create(slug="other", name="Other")
        theirs = MailServer.create(organisation=other, name="Theirs", host="t", port=25, security="none", from_address="t@o.test")
    page = admin_client.get("/admin/profiles/new").get_data(as_text=True)
    assert "Theirs" not in page
    response = admin_client.post("/admin/profiles/new", form(relays, mail_server=[str(theirs.id)]))
    assert response.status_code == 422 and "choose at least one mail server" in response.get_data(as_text=True)


@pytest.mark.parametrize("url", ["/admin/profiles", "/admin/profiles/new"])
def test_pages_need_an_admin(client, url):
    response = client.get(url)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
