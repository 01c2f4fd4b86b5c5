"""The admin users page through the Flask client (CSRF on): list and search as a page
and as HTMX partials, paging, organisation scope, team users' limits, create / edit,
the confirmation pages of reset password / reset 2FA / deactivate / reactivate / delete,
CSV import (preview, refusals, all or nothing) and export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest

from models import Account, AuditEvent, Directory, OutboxMessage, Organisation, utcnow
from services import crypto
from tests.support.factories import sign_in
from tests.support.slapd import free_port


def html(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def acme(app, owner):
    with app.app_context():
        return Organisation.get(Organisation.slug == "acme")


@pytest.fixture
def people(acme, create_account):
    """Three users of acme with distinct names."""
    return [create_account(acme, name, display_name=display) for name, display in
            (("ann", "Ann Archer"), ("bert", "Bert Baker"), ("carla", "Carla Cole"))]


def acme_of(account_row):
    return Organisation.get_by_id(account_row.organisation_id)


def account(app, username) -> Account | None:
    with app.app_context():
        return Account.get_or_none(Account.username == username)


def events(app, action) -> list[AuditEvent]:
    with app.app_context():
        return list(AuditEvent.select().where(AuditEvent.action == action))


# -- the list ----------------------------------------------------------------


def test_list_shows_users_as_page_and_as_partial(admin_client, people):
    page = admin_client.get("/admin/users")
    assert page.status_code == 200
    text = html(page)
    assert "<html" in text and "Ann Archer" in text and "Carla Cole" in text and 'id="user-q"' in text
    partial = admin_client.get("/admin/users?q=be", htmx=True, target="user-results")
    assert partial.status_code == 200
    body = html(partial)
    assert "<html" not in body and 'id="user-results"' in body
    assert "Bert Baker" in body and "Ann Archer" not in body
    assert "HX-Request" in partial.headers.get("Vary", "")


@pytest.mark.parametrize("query, expected", [
    ("AN", {"ann"}),                 # username prefix, any case
    ("carla@", {"carla"}),           # email prefix
    ("bert b", {"bert"}),            # display name prefix
    ("rcher", set()),                # not a prefix: no match
    ("%", set()), ("_", set()),      # LIKE wildcards are literal
])
def test_search_matches_prefixes_ignoring_case(admin_client, people, query, expected):
    body = html(admin_client.get("/admin/users", query_string={"q": query}, htmx=True, target="user-results"))
    shown = {name for name in ("ann", "bert", "carla") if f">{name}<" in body or f"{name}</span>" in body}
    assert shown == expected, body


def test_filters_by_role_status_and_source(app, admin_client, people, acme):
    with app.app_context():
        Account.update(status="inactive").where(Account.username == "bert").execute()
        Account.create(organisation=acme, username="dora", source="directory", email="dora@acme.test")
    body = html(admin_client.get("/admin/users?status=inactive", htmx=True, target="user-results"))
    assert "Bert Baker" in body and "Ann Archer" not in body
    body = html(admin_client.get("/admin/users?role=owner", htmx=True, target="user-results"))
    assert "olga" in body and "Ann Archer" not in body
    body = html(admin_client.get("/admin/users?source=directory", htmx=True, target="user-results"))
    assert "dora" in body and "Ann Archer" not in body
    body = html(admin_client.get("/admin/users?source=local", htmx=True, target="user-results"))
    assert "dora" not in body and "Ann Archer" in body


def test_pages_of_fifty_with_infinite_scroll(app, admin_client, acme):
    with app.app_context():
        Account.insert_many([{"organisation": acme.id, "username": f"u{n:03d}", "email": f"u{n}@acme.test",
                              "display_name": f"U {n}", "permissions": "[]"} for n in range(120)]).execute()
    first = html(admin_client.get("/admin/users?q=u"))
    assert first.count('href="/admin/users/') - first.count("/admin/users/new") - first.count("/admin/users/import") >= 50
    assert "u000" in first and "u049" in first and "u050" not in first
    more = re.search(r'id="user-more"[^>]*hx-get="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = html(admin_client.get(more, htmx=True, target="user-more"))
    assert "<html" not in second and "<table" not in second
    assert "u050" in second and "u099" in second and "u049" not in second
    third_url = re.search(r'hx-get="([^"]+)"', second).group(1).replace("&amp;", "&")
    third = html(admin_client.get(third_url, htmx=True, target="user-more"))
    assert "u119" in third and 'id="user-more"' not in third  # the last page has no "more"
    # Without JavaScript the same cursor is a link to a full page.
    plain = admin_client.get(more)
    assert plain.status_code == 200 and "<html" in html(plain) and "Back to the first page" in html(plain)


def test_garbage_arguments_are_harmless(admin_client, people):
    for query in ({"q": "x" * 5000}, {"after": "nonsense"}, {"after": "12:"}, {"source": "evil", "role": "god"},
                  {"q": "\x00)(uid=*"}):
        response = admin_client.get("/admin/users", query_string=query)
        assert response.status_code == 200, query


def test_empty_states(admin_client):
    assert "No users match" in html(admin_client.get("/admin/users?q=nobody"))


# -- scope -------------------------------------------------------------------


def test_parent_admin_sees_children_users_with_organisation_column(app, admin_client, acme, create_organisation,
                                                                   create_account):
    child = create_organisation("kids", "Kids Ltd", parent=acme)
    kid = create_account(child, "kim")
    body = html(admin_client.get("/admin/users"))
    assert "<th>Organisation</th>" in body and "Kids Ltd" in body and "kim" in body
    assert admin_client.get(f"/admin/users/{kid.id}").status_code == 200


def test_child_admin_never_sees_parent_users(app, client, acme, owner, create_organisation, create_account):
    child = create_organisation("kids", "Kids Ltd", parent=acme)
    create_account(child, "kate", role="owner")
    sign_in_org(client, "kate", "kids")
    body = html(client.get("/admin/users"))
    assert "kate" in body and "olga" not in body and "<th>Organisation</th>" not in body
    assert client.get(f"/admin/users/{owner.id}").status_code == 404
    assert client.get(f"/admin/users/{owner.id}/reset-2fa").status_code == 404
    assert client.get("/admin/users?q=olga").status_code == 200
    assert "No users match" in html(client.get("/admin/users?q=olga", htmx=True, target="user-results"))


def sign_in_org(client, username, slug):
    client.get("/login/password")
    from tests.support.factories import PASSWORD
    response = client.post("/login/password", {"identifier": username, "password": PASSWORD, "account_id": slug})
    assert response.status_code == 303, html(response)


# -- permissions -------------------------------------------------------------


def test_plain_user_gets_403(client, acme, create_account):
    create_account(acme, "una")
    sign_in(client, "una")
    assert client.get("/admin/users").status_code == 403


def test_signed_out_goes_to_login(client):
    response = client.get("/admin/users")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_team_user_creates_users_only_and_leaves_owners_alone(app, client, acme, owner, create_account):
    create_account(acme, "tess", role="team")
    sign_in(client, "tess")
    form = html(client.get("/admin/users/new"))
    assert 'value="user"' in form and 'value="owner"' not in form and 'value="technician"' not in form
    refused = client.post("/admin/users/new", {"username": "boss", "email": "boss@acme.test", "role": "owner",
                                               "organisation": str(acme.id)})
    assert refused.status_code == 422 and account(app, "boss") is None
    created = client.post("/admin/users/new", {"username": "newbie", "email": "newbie@acme.test", "role": "user",
                                               "organisation": str(acme.id)})
    assert created.status_code == 303 and account(app, "newbie").role == "user"
    assert client.get(f"/admin/users/{owner.id}/deactivate").status_code == 403
    assert client.post(f"/admin/users/{owner.id}/delete").status_code == 403
    assert account(app, "olga") is not None
    assert "Your role does not let you act" in html(client.get(f"/admin/users/{owner.id}"))


# -- create and edit -----------------------------------------------------------


def test_create_a_local_user(app, admin_client, acme):
    admin_client.get("/admin/users/new")
    response = admin_client.post("/admin/users/new", {
        "username": "nina", "email": "nina@acme.test", "display_name": "Nina N", "sponsor_email": "boss@acme.test",
        "role": "user", "organisation": str(acme.id)})
    assert response.status_code == 303
    nina = account(app, "nina")
    assert response.headers["Location"].endswith(f"/admin/users/{nina.id}")
    assert (nina.source, nina.status, nina.sponsor_email, nina.password_hash) == ("local", "active", "boss@acme.test", None)
    created = events(app, "account.created")
    assert created[-1].target == "nina" and created[-1].actor == "olga"


@pytest.mark.parametrize("values, field, message", [
    ({"username": "has space"}, "username", "no spaces"),
    ({"username": "olga"}, "username", "already taken"),
    ({"email": "not-an-address"}, "email", "is not an email address"),
    ({"email": "ann@acme.test"}, "email", "already has the email"),
    ({"sponsor_email": "nope"}, "sponsor_email", "is not an email address"),
])
def test_create_refuses_bad_input_and_keeps_it(app, admin_client, acme, people, values, field, message):
    admin_client.get("/admin/users/new")
    data = {"username": "zed", "email": "zed@acme.test", "role": "user", "organisation": str(acme.id), **values}
    response = admin_client.post("/admin/users/new", data)
    assert response.status_code == 422
    body = html(response)
    assert message in body and f'id="{field}-error"' in body
    assert f'value="{data["email"]}"' in body  # nothing typed is lost
    assert account(app, "zed") is None


def test_edit_a_local_user(app, admin_client, people):
    ann = people[0]
    assert "Ann Archer" in html(admin_client.get(f"/admin/users/{ann.id}/edit"))
    response = admin_client.post(f"/admin/users/{ann.id}/edit", {
        "email": "ann.new@acme.test", "display_name": "Ann A", "sponsor_email": "lead@acme.test"})
    assert response.status_code == 303
    ann = account(app, "ann")
    assert (ann.email, ann.display_name, ann.sponsor_email) == ("ann.new@acme.test", "Ann A", "lead@acme.test")
    assert events(app, "account.updated")[-1].details == {"changed": ["display_name", "email", "sponsor_email"]}
    bad = admin_client.post(f"/admin/users/{ann.id}/edit", {"email": "bert@acme.test", "display_name": "x"})
    assert bad.status_code == 422 and "already has the email" in html(bad)


# -- detail and actions --------------------------------------------------------


def test_detail_page_shows_attributes_policy_2fa_and_events(app, admin_client, people):
    ann = people[0]
    with app.app_context():
        Account.update(sponsor_email="lead@acme.test", totp_enabled_at=utcnow()).where(Account.id == ann.id).execute()
        from models import ApprovalProfile

        ApprovalProfile.create(organisation=acme_of(ann), name="Front desk", kind="user", server_url="http://g.test",
                               subject="s", message="{link}", is_default=True)
    page = admin_client.get(f"/admin/users/{ann.id}")
    body = html(page)
    assert page.status_code == 200
    assert "Ann Archer" in body and "lead@acme.test" in body          # sponsor = manager of a local user
    assert "Sign-in policy" in body and "Two-factor authentication" in body and ">on<" in body
    assert "Front desk" in body and "No policy matched" in body   # the profile sign-in would use
    assert "account.created" in body                                  # recent audit events
    assert "Reset password" in body and "Reset 2FA" in body and "Deactivate" in body and "Delete" in body


def test_reset_password_emails_a_link_after_confirmation(app, admin_client, people):
    ann = people[0]
    ask = admin_client.get(f"/admin/users/{ann.id}/reset-password")
    assert ask.status_code == 200 and "Email the reset link" in html(ask) and "never see" in html(ask)
    with app.app_context():
        before = OutboxMessage.select().count()
    done = admin_client.post(f"/admin/users/{ann.id}/reset-password")
    assert done.status_code == 303
    with app.app_context():
        assert OutboxMessage.select().count() == before + 1
        message = OutboxMessage.select().order_by(OutboxMessage.id.desc()).first()
        assert "ann@acme.test" in str(message.to_addresses)
    assert events(app, "password.reset_sent_by_admin")[-1].target == "ann"
    assert account(app, "ann").password_hash is not None  # the password itself is untouched


def test_reset_two_factor_after_confirmation(app, admin_client, people):
    ann = people[0]
    with app.app_context():
        Account.update(totp_enabled_at=utcnow(), totp_secret_encrypted=crypto.encrypt("JBSWY3DPEHPK3PXP")).where(
            Account.id == ann.id).execute()
    assert "They are told by email" in html(admin_client.get(f"/admin/users/{ann.id}/reset-2fa"))
    assert admin_client.post(f"/admin/users/{ann.id}/reset-2fa").status_code == 303
    ann = account(app, "ann")
    assert ann.totp_enabled_at is None and ann.totp_secret_encrypted is None and ann.must_enrol_totp
    assert events(app, "mfa.reset_by_admin")[-1].actor == "olga"


def test_deactivate_reactivate_delete(app, admin_client, people):
    bert = people[1]
    assert "Deactivate Bert Baker (bert)?" in html(admin_client.get(f"/admin/users/{bert.id}/deactivate"))
    assert admin_client.post(f"/admin/users/{bert.id}/deactivate").status_code == 303
    assert account(app, "bert").status == "inactive"
    assert "Reactivate" in html(admin_client.get(f"/admin/users/{bert.id}"))
    assert admin_client.post(f"/admin/users/{bert.id}/reactivate").status_code == 303
    assert account(app, "bert").status == "active"
    assert "This cannot be undone" in html(admin_client.get(f"/admin/users/{bert.id}/delete"))
    assert admin_client.post(f"/admin/users/{bert.id}/delete").status_code == 303
    assert account(app, "bert") is None
    assert admin_client.get(f"/admin/users/{bert.id}").status_code == 404


def test_an_admin_cannot_delete_or_deactivate_themselves(app, admin_client, owner):
    admin_client.get(f"/admin/users/{owner.id}/delete")
    response = admin_client.post(f"/admin/users/{owner.id}/delete")
    assert response.status_code == 303 and account(app, "olga") is not None
    refused = admin_client.post(f"/admin/users/{owner.id}/deactivate")
    assert refused.status_code == 422 and "your own account" in html(refused)
    assert account(app, "olga").status == "active"


def test_actions_need_csrf(app, admin_client, people):
    response = admin_client.post(f"/admin/users/{people[0].id}/delete", csrf=False)
    assert response.status_code == 400 and account(app, "ann") is not None


def test_unknown_user_is_404(admin_client):
    assert admin_client.get("/admin/users/999999").status_code == 404
    assert admin_client.get("/admin/users/directory/999?username=x").status_code == 404


# -- CSV import ----------------------------------------------------------------


def upload(client, text, name="users.csv"):
    client.get("/admin/users/import")
    data = text.encode("utf-8") if isinstance(text, str) else text
    return client.post("/admin/users/import", {"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


GOOD_CSV = "username,email,display_name,sponsor_email\nivy,ivy@acme.test,Ivy Irons,boss@acme.test\njon,jon@acme.test,,\n"


def test_import_previews_then_creates_everyone(app, admin_client, acme):
    preview = upload(admin_client, GOOD_CSV)
    body = html(preview)
    assert preview.status_code == 200 and "2 users will be created" in body and "Ivy Irons" in body
    assert account(app, "ivy") is None  # a preview writes nothing
    content = re.search(r'name="content"[^>]*value="([^"]*)"|value="([^"]*)"[^>]*name="content"', body)
    assert content
    done = admin_client.post("/admin/users/import", {"content": GOOD_CSV, "confirm": "1"})
    assert done.status_code == 303
    assert account(app, "ivy").sponsor_email == "boss@acme.test" and account(app, "jon").display_name == "jon"
    assert events(app, "users.imported")[-1].details["count"] == 2


@pytest.mark.parametrize("text, reason", [
    ("name,mail\nivy,ivy@acme.test\n", "Wrong header"),
    ("username,email,shoe_size\nivy,ivy@acme.test,44\n", "shoe_size"),
    ("", "The file is empty"),
    ("username,email\n", "no users"),
    (b"\xff\xfeu\x00s\x00", "not a CSV text file"),
    (b"username,email\nj\xe9r\xf4me,j@acme.test\n", "not UTF-8"),
])
def test_import_refuses_bad_files_with_a_reason(app, admin_client, people, text, reason):
    response = upload(admin_client, text)
    assert response.status_code == 422 and reason in html(response)
    with app.app_context():
        assert Account.select().count() == 4  # olga + three people: nothing imported


def test_import_reports_each_bad_row_and_creates_nothing(app, admin_client, people):
    text = ("username,email\nivy,ivy@acme.test\njon,IVY@acme.test\nkit,not-an-address\nann,ann2@acme.test\n"
            "lou,carla@acme.test\nmo,mo@acme.test,extra\n")
    response = upload(admin_client, text)
    body = html(response)
    assert response.status_code == 422
    assert "5 of 6 rows have problems" in body
    assert "is also on line 2" in body                     # duplicate email in the file
    assert "&#39;not-an-address&#39; is not an email address" in body
    assert "ann is already taken" in body
    assert "already belongs to a local user" in body
    assert "has 3 values where the header has 2 columns" in body
    assert 'name="confirm"' not in body  # no import button while any row is wrong
    # Posting the content anyway changes nothing: the import checks again, all or nothing.
    forced = admin_client.post("/admin/users/import", {"content": text, "confirm": "1"})
    assert forced.status_code == 422 and "nothing was imported" in html(forced)
    assert account(app, "ivy") is None


def test_import_is_all_or_nothing_when_someone_else_got_there_first(app, admin_client, acme, create_account):
    assert upload(admin_client, GOOD_CSV).status_code == 200
    create_account(acme, "jon")  # between the preview and the confirmation
    response = admin_client.post("/admin/users/import", {"content": GOOD_CSV, "confirm": "1"})
    assert response.status_code == 422 and "nothing was imported" in html(response)
    assert account(app, "ivy") is None


def test_import_refuses_a_50_mb_file_clearly(app, admin_client):
    admin_client.get("/admin/users/import")
    # A browser announces the size first; Gatehouse answers before reading 50 MB.
    body = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.csv\"\r\n\r\nusername,email\r\n--x--\r\n"
    response = admin_client.client.post(
        "/admin/users/import", data=body, content_type="multipart/form-data; boundary=x",
        environ_overrides={"CONTENT_LENGTH": str(50 * 1024 * 1024)})
    assert response.status_code == 413
    text = html(response)
    assert "The file is 50 MB" in text and "at most 512 KB" in text and 'type="file"' in text
    with app.app_context():
        assert Account.select().count() == 1


def test_import_refuses_a_file_over_the_import_limit(admin_client):
    response = upload(admin_client, "username,email\n" + "x" * (600 * 1024))
    assert response.status_code == 422 and "an import file may be at most 512 KB" in html(response)


def test_team_user_imports_users_only(app, client, acme, create_account):
    create_account(acme, "tess", role="team")
    sign_in(client, "tess")
    response = upload(client, "username,email,role\nivy,ivy@acme.test,technician\n")
    assert response.status_code == 422 and "does not let you give the role technician" in html(response)


# -- export --------------------------------------------------------------------


def test_export_follows_the_filters_and_defuses_formulas(app, admin_client, people, acme):
    with app.app_context():
        Account.update(display_name="=HYPERLINK(\"http://evil\")").where(Account.username == "carla").execute()
    response = admin_client.get("/admin/users/export.csv?q=c")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(html(response))))
    assert [r["username"] for r in rows] == ["carla"]
    assert rows[0]["display_name"].startswith("'=")
    everyone = list(csv.DictReader(io.StringIO(html(admin_client.get("/admin/users/export.csv")))))
    assert {r["username"] for r in everyone} == {"olga", "ann", "bert", "carla"}
    assert events(app, "users.exported")


# -- directories ---------------------------------------------------------------


def test_unreachable_directory_is_a_note_and_the_page_still_works(app, admin_client, people, acme):
    with app.app_context():
        Directory.create(organisation=acme, name="Dead LDAP", servers=[f"ldap://127.0.0.1:{free_port()}"],
                         base_dn="dc=example,dc=org", connect_timeout=1, receive_timeout=1)
    response = admin_client.get("/admin/users?q=an", htmx=True, target="user-results")
    body = html(response)
    assert response.status_code == 200
    assert "A directory could not be searched" in body and "Dead LDAP" in body
    assert "Ann Archer" in body
    # With source "local" the directory is not asked at all.
    assert "Dead LDAP" not in html(admin_client.get("/admin/users?q=an&source=local"))


def test_reset_two_factor_only_for_active_users_who_have_it(app, admin_client, people):
    ann = people[0]
    page = html(admin_client.get(f"/admin/users/{ann.id}"))
    assert "Reset 2FA" not in page  # not set up: nothing to reset
    admin_client.get(f"/admin/users/{ann.id}/reset-2fa")
    refused = admin_client.post(f"/admin/users/{ann.id}/reset-2fa")
    assert refused.status_code == 422 and "nothing to reset" in html(refused)
    assert events(app, "mfa.reset_by_admin") == []


def test_detail_page_says_which_password_and_two_factor_rules_apply(app, admin_client, people, acme):
    from models import PasswordPolicy
    from services import mfa_policy

    ann = people[0]
    assert "does not expire" in html(admin_client.get(f"/admin/users/{ann.id}"))
    with app.app_context():
        PasswordPolicy.create(organisation=acme, expiry_days=30, history_count=0, strength="nist",
                              lockout_threshold=10, lockout_minutes=15, updated_at=utcnow())
        mfa_policy.save(acme, "all", [], actor="olga")
        changed = Account.get_by_id(ann.id).password_changed_at
    body = html(admin_client.get(f"/admin/users/{ann.id}"))
    assert f"expires {(changed + dt.timedelta(days=30)):%Y-%m-%d}" in body
    assert "two-factor enforcement applies" in body
