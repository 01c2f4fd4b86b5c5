"""Admin: directories — list, add, edit (write-only bind password), Test connection and
Look up user against real LDAP servers, order, delete (refused while in use)."""

import pytest

from models import (
    ApprovalProfile,
    AuditEvent,
    Directory,
    Organisation,
    Policy,
    ProfileDirectory,
)
from services import crypto
from tests.support.slapd import (
    DEMO_SERVICE_DN,
    DEMO_SERVICE_PASSWORD,
    EXAMPLE_SERVICE_DN,
    EXAMPLE_SERVICE_PASSWORD,
    EXAMPLE_SUFFIX,
    free_port,
)


def text(response) -> str:
    """The response's HTML without the <wbr> break hints that DNs carry after their commas."""
    return response.get_data(as_text=True).replace("<wbr>", "")


def form(**overrides):
    values = {
        "name": "Acme LDAP", "servers": "ldap://127.0.0.1:3389", "tls_mode": "none", "ca_file": "",
        "verify_certificate": "y", "bind_dn": DEMO_SERVICE_DN, "bind_password": DEMO_SERVICE_PASSWORD,
        "base_dn": "dc=acme,dc=test", "login_attributes": "uid, mail", "mail_attribute": "mail",
        "manager_attribute": "manager", "group_attribute": "memberOf", "connect_timeout": "5", "receive_timeout": "10",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


@pytest.fixture
def make_directory(app, owner):
    """``make_directory(servers, name=..., password=..., **fields)`` in acme."""

    def make(servers, name="Acme LDAP", password=DEMO_SERVICE_PASSWORD, organisation=None, **fields):
        fields.setdefault("base_dn", "dc=acme,dc=test")
        fields.setdefault("bind_dn", DEMO_SERVICE_DN)
        with app.app_context():
            return Directory.create(
                organisation=organisation or owner.organisation, name=name, servers=servers,
                bind_password_encrypted=crypto.encrypt(password) if password else None, **fields)

    return make


@pytest.fixture
def demo(make_directory, embedded_ldap):
    """The Acme demo directory (embedded LDAP server) with the demo service account."""
    return make_directory([embedded_ldap.url], login_attributes=["uid", "mail"])


# ---- list --------------------------------------------------------------------


def test_empty_list_explains_what_a_directory_is_and_shows_local_accounts(admin_client):
    html = admin_client.get("/admin/directories").get_data(as_text=True)
    assert "No directories yet." in html and "LDAP or Active Directory" in html
    assert 'href="/admin/directories/new"' in html
    assert "Local accounts" in html and "cannot be edited or deleted" in html


def test_list_shows_servers_tls_base_dn_and_usage(admin_client, app, owner, make_directory):
    directory = make_directory(["ldap://dc1.acme.test", "ldap://dc2.acme.test"], tls_mode="starttls",
                               verify_certificate=False)
    with app.app_context():
        profile = ApprovalProfile.create(organisation=owner.organisation, name="Staff", server_url="http://x",
                                         subject="s", message="m")
        ProfileDirectory.create(profile=profile, directory=directory, position=0)
        Policy.create(organisation=owner.organisation, name="Engineers", profile=profile, directory=directory,
                      attribute="department", values=["Engineering"])
    html = text(admin_client.get("/admin/directories"))
    assert "ldap://dc1.acme.test" in html and "ldap://dc2.acme.test" in html
    assert "StartTLS" in html and "certificate not verified" in html and "dc=acme,dc=test" in html
    assert "1 profile, 1 policy" in html and "No directories yet." not in html


def test_list_partial(admin_client, make_directory):
    make_directory(["ldap://dc1.acme.test"])
    html = admin_client.get("/admin/directories", htmx=True, target="directory-table").get_data(as_text=True)
    assert "<html" not in html and 'id="directory-table"' in html and "Acme LDAP" in html


# ---- add and edit --------------------------------------------------------------


def test_add_a_directory_with_an_encrypted_write_only_password(admin_client, app):
    page = admin_client.get("/admin/directories/new").get_data(as_text=True)
    assert 'name="bind_password"' in page and "LDAPS" in page and "StartTLS" in page
    response = admin_client.post("/admin/directories/new", form(servers="ldap://a.acme.test\r\nldap://b.acme.test:1389\r\n"))
    assert response.status_code == 303
    with app.app_context():
        directory = Directory.get(name="Acme LDAP")
        assert response.headers["Location"] == f"/admin/directories/{directory.id}/edit"
        assert directory.servers == ["ldap://a.acme.test", "ldap://b.acme.test:1389"]
        assert directory.login_attributes == ["uid", "mail"]
        assert directory.bind_password_encrypted and DEMO_SERVICE_PASSWORD not in directory.bind_password_encrypted
        assert crypto.decrypt(directory.bind_password_encrypted) == DEMO_SERVICE_PASSWORD
        event = AuditEvent.select().where(AuditEvent.action == "directory.created").get()
        assert DEMO_SERVICE_PASSWORD not in str(event.details) and event.target == "Acme LDAP"
    page = admin_client.get(f"/admin/directories/{directory.id}/edit").get_data(as_text=True)
    assert DEMO_SERVICE_PASSWORD not in page and "A password is stored. Leave empty to keep it." in page
    assert "ldap://a.acme.test\nldap://b.acme.test:1389" in page and 'value="uid, mail"' in page


def test_editing_without_a_password_keeps_it_and_clearing_removes_it(admin_client, app, make_directory):
    directory = make_directory(["ldap://dc1.acme.test"], password="keep-me", bind_dn="")
    url = f"/admin/directories/{directory.id}/edit"
    admin_client.get(url)
    response = admin_client.post(url, form(bind_dn="", bind_password="", base_dn="ou=people,dc=acme,dc=test",
                                           tls_mode="ldaps", servers="ldaps://dc1.acme.test", nested_groups="y"))
    assert response.status_code == 303 and response.headers["Location"] == "/admin/directories"
    with app.app_context():
        stored = Directory.get_by_id(directory.id)
        assert stored.base_dn == "ou=people,dc=acme,dc=test" and stored.tls_mode == "ldaps" and stored.nested_groups
        assert crypto.decrypt(stored.bind_password_encrypted) == "keep-me"
        assert AuditEvent.select().where(AuditEvent.action == "directory.updated").count() == 1
    admin_client.get(url)
    assert admin_client.post(url, form(bind_dn="", bind_password="", clear_password="y")).status_code == 303
    with app.app_context():
        assert Directory.get_by_id(directory.id).bind_password_encrypted is None


def test_form_partial_for_htmx(admin_client, app):
    admin_client.get("/admin/directories/new")
    response = admin_client.post("/admin/directories/new", form(), htmx=True, target="directory-form")
    assert response.status_code == 204 and response.headers["HX-Redirect"].startswith("/admin/directories/")
    page = admin_client.get("/admin/directories/new", htmx=True, target="directory-form").get_data(as_text=True)
    assert "<html" not in page and 'id="directory-form"' in page


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"servers": "http://ldap.acme.test"}, "servers", "&#39;http://ldap.acme.test&#39; is not an ldap:// or ldaps:// URL"),
        ({"servers": ""}, "servers", "Enter at least one server URL"),
        ({"servers": "ldaps://ldap.acme.test:636"}, "servers", "is an ldaps:// URL but TLS mode is &#39;none&#39;"),
        ({"tls_mode": "ldaps"}, "servers", "TLS mode &#34;ldaps&#34; needs ldaps:// URLs"),
        ({"login_attributes": "uid, mail)(x"}, "login-attributes", "&#39;mail)(x&#39; is not an LDAP attribute name"),
        ({"mail_attribute": "mail)(x"}, "mail-attribute", "&#39;mail)(x&#39; is not an LDAP attribute name"),
        ({"connect_timeout": "0"}, "connect-timeout", "0 is out of range (1..60)"),
        ({"receive_timeout": "301"}, "receive-timeout", "301 is out of range (1..300)"),
        ({"connect_timeout": "soon"}, "connect-timeout", "Not a valid integer value"),
        ({"base_dn": ""}, "base-dn", "Enter the base DN"),
        ({"name": ""}, "name", "Give the directory a name."),
        ({"bind_password": ""}, "bind-password", "Enter the bind password for this bind DN"),
        ({"tls_mode": "carrier-pigeon"}, "tls-mode", "Not a valid choice"),
    ],
)
def test_bad_values_are_explained_next_to_the_field_and_nothing_is_saved(admin_client, app, overrides, field, message):
    admin_client.get("/admin/directories/new")
    response = admin_client.post("/admin/directories/new", form(**overrides), htmx=True, target="directory-form")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "<html" not in html
    start = html.index(f'id="field-{field}"')
    assert message in html[start:html.index("</div>", start)], html
    # What was typed is kept (except the password, which is never echoed back).
    assert 'value="Acme LDAP"' in html or overrides.get("name") == ""
    assert 'value="dc=acme,dc=test"' in html or overrides.get("base_dn") == ""
    assert DEMO_SERVICE_PASSWORD not in html
    with app.app_context():
        assert Directory.select().count() == 0


def test_a_dropped_password_is_announced(admin_client):
    admin_client.get("/admin/directories/new")
    html = admin_client.post("/admin/directories/new", form(base_dn="")).get_data(as_text=True)
    assert "The password you typed was not kept: type it again." in html and "<html" in html


def test_duplicate_name_is_refused(admin_client, app, make_directory):
    make_directory(["ldap://dc1.acme.test"])
    admin_client.get("/admin/directories/new")
    response = admin_client.post("/admin/directories/new", form())
    assert response.status_code == 422
    assert "Another directory is already called &#39;Acme LDAP&#39;." in response.get_data(as_text=True)
    with app.app_context():
        assert Directory.select().count() == 1


# ---- Test connection ---------------------------------------------------------------


def test_connection_against_the_embedded_server_binds(admin_client, app, demo, embedded_ldap):
    admin_client.get(f"/admin/directories/{demo.id}/edit")
    response = admin_client.post(f"/admin/directories/{demo.id}/test", htmx=True, target="directory-test")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html and 'id="directory-test"' in html
    assert "Connection works." in html and "bind succeeded" in html and embedded_ldap.url in html and " ms" in html
    with app.app_context():
        assert AuditEvent.get(AuditEvent.action == "directory.tested").outcome == "success"


def test_connection_with_a_wrong_password_says_bind_refused(admin_client, make_directory, slapd):
    directory = make_directory([slapd.url], base_dn=EXAMPLE_SUFFIX, bind_dn=EXAMPLE_SERVICE_DN, password="wrong")
    admin_client.get(f"/admin/directories/{directory.id}/edit")
    html = admin_client.post(f"/admin/directories/{directory.id}/test").get_data(as_text=True)
    assert "<html" in html and "Connection failed." in html
    assert "server reached but bind refused: invalidCredentials" in html and slapd.url in html


def test_connection_to_a_server_that_is_down_is_explained(admin_client, make_directory):
    url = f"ldap://127.0.0.1:{free_port()}"
    directory = make_directory([url], connect_timeout=2)
    admin_client.get(f"/admin/directories/{directory.id}/edit")
    html = admin_client.post(f"/admin/directories/{directory.id}/test", htmx=True, target="directory-test").get_data(as_text=True)
    assert "Connection failed." in html and f"no server answered: {url}: connection refused" in html


def test_failover_reports_the_server_that_answered(admin_client, make_directory, slapd):
    directory = make_directory([f"ldap://127.0.0.1:{free_port()}", slapd.url], base_dn=EXAMPLE_SUFFIX,
                               bind_dn=EXAMPLE_SERVICE_DN, password=EXAMPLE_SERVICE_PASSWORD, connect_timeout=2)
    admin_client.get(f"/admin/directories/{directory.id}/edit")
    html = admin_client.post(f"/admin/directories/{directory.id}/test", htmx=True, target="directory-test").get_data(as_text=True)
    assert "Connection works." in html and f"<code>{slapd.url}</code>" in html


# ---- Look up user -----------------------------------------------------------------


def test_lookup_shows_attributes_manager_and_nothing_missing(admin_client, app, demo):
    admin_client.get(f"/admin/directories/{demo.id}/edit")
    response = admin_client.post(f"/admin/directories/{demo.id}/lookup", {"identifier": "zoe"}, htmx=True,
                                 target="directory-lookup")
    html = text(response)
    assert response.status_code == 200 and "<html" not in html and 'id="directory-lookup"' in html
    assert "Zoë Ångström" in html and "uid=zoe,ou=people,dc=acme,dc=test" in html and "zoe@acme.test" in html
    assert "Victor Chen &lt;victor@acme.test&gt;" in html and ">found<" in html
    assert "Engineering" in html and "cn=engineering,ou=groups,dc=acme,dc=test" in html
    assert "Nothing missing" in html and "departmentNumber" in html
    assert "userPassword" not in html and "demo-password" not in html
    with app.app_context():
        event = AuditEvent.get(AuditEvent.action == "directory.user_looked_up")
        assert event.details["identifier"] == "zoe" and event.details["found"] is True


def test_lookup_of_a_user_without_mail_lists_what_is_missing(admin_client, demo):
    admin_client.get(f"/admin/directories/{demo.id}/edit")
    html = admin_client.post(f"/admin/directories/{demo.id}/lookup", {"identifier": "tom"}).get_data(as_text=True)
    assert "<html" in html and "Tom Baker" in html
    missing = html[html.index("<strong>Missing:</strong>"):]
    assert missing.startswith("<strong>Missing:</strong> mail") and "no mail: sign-in links cannot reach" in html


def test_lookup_of_nobody_says_no_user_found(admin_client, demo):
    admin_client.get(f"/admin/directories/{demo.id}/edit")
    html = admin_client.post(f"/admin/directories/{demo.id}/lookup", {"identifier": "nobody"}, htmx=True,
                             target="directory-lookup").get_data(as_text=True)
    assert "No user found" in html and "nobody" in html


def test_lookup_with_an_empty_identifier_asks_for_one(admin_client, demo):
    admin_client.get(f"/admin/directories/{demo.id}/edit")
    response = admin_client.post(f"/admin/directories/{demo.id}/lookup", {"identifier": ""}, htmx=True,
                                 target="directory-lookup")
    assert response.status_code == 422 and "Enter a username or email to look up." in response.get_data(as_text=True)


def test_lookup_when_the_server_is_down_shows_the_directory_error(admin_client, make_directory):
    directory = make_directory([f"ldap://127.0.0.1:{free_port()}"], connect_timeout=2)
    admin_client.get(f"/admin/directories/{directory.id}/edit")
    html = admin_client.post(f"/admin/directories/{directory.id}/lookup", {"identifier": "zoe"}, htmx=True,
                             target="directory-lookup").get_data(as_text=True)
    assert "The directory could not answer." in html and "no LDAP server answered" in html and "connection refused" in html


# ---- order and delete ------------------------------------------------------------


def test_reorder_with_up_and_down(admin_client, app, make_directory):
    make_directory(["ldap://a.acme.test"], name="A", position=0)
    second = make_directory(["ldap://b.acme.test"], name="B", position=1)
    admin_client.get("/admin/directories")
    response = admin_client.post(f"/admin/directories/{second.id}/move", {"direction": "up"}, htmx=True,
                                 target="directory-table")
    html = response.get_data(as_text=True)
    assert "<html" not in html and html.index(">B</a>") < html.index(">A</a>")
    with app.app_context():
        assert [d.name for d in Directory.select().order_by(Directory.position)] == ["B", "A"]
    response = admin_client.post(f"/admin/directories/{second.id}/move", {"direction": "down"})
    assert response.status_code == 303
    with app.app_context():
        assert [d.name for d in Directory.select().order_by(Directory.position)] == ["A", "B"]


def test_delete_asks_then_deletes(admin_client, app, make_directory):
    directory = make_directory(["ldap://dc1.acme.test"], name="Old LDAP")
    page = admin_client.get(f"/admin/directories/{directory.id}/delete").get_data(as_text=True)
    assert "Delete the directory Old LDAP?" in page
    response = admin_client.post(f"/admin/directories/{directory.id}/delete")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/directories"
    with app.app_context():
        assert Directory.select().count() == 0
        assert AuditEvent.get(AuditEvent.action == "directory.deleted").target == "Old LDAP"


def test_delete_of_a_directory_used_by_a_profile_and_policy_is_refused(admin_client, app, owner, make_directory):
    directory = make_directory(["ldap://dc1.acme.test"])
    with app.app_context():
        profile = ApprovalProfile.create(organisation=owner.organisation, name="Staff", server_url="http://x",
                                         subject="s", message="m")
        ProfileDirectory.create(profile=profile, directory=directory, position=0)
        Policy.create(organisation=owner.organisation, name="Engineers", profile=profile, directory=directory,
                      attribute="department", values=["Engineering"])
    page = admin_client.get(f"/admin/directories/{directory.id}/delete").get_data(as_text=True)
    assert "It cannot be deleted yet." in page
    assert "the approval profile Staff" in page and "the policy Engineers" in page
    admin_client.get("/admin/directories")
    response = admin_client.post(f"/admin/directories/{directory.id}/delete")
    assert response.status_code == 303
    listing = admin_client.get("/admin/directories").get_data(as_text=True)
    assert "is used by the approval profile Staff, the policy Engineers" in listing
    with app.app_context():
        assert Directory.select().count() == 1


def test_another_organisations_directory_is_not_found(admin_client, app, make_directory):
    with app.app_context():
        other = Organisation.create(slug="other", name="Other")
    directory = make_directory(["ldap://dc1.other.test"], name="Theirs", organisation=other)
    assert admin_client.get(f"/admin/directories/{directory.id}/edit").status_code == 404
    admin_client.get("/admin/directories")
    for action, data in (("edit", form()), ("test", {}), ("lookup", {"identifier": "zoe"}),
                         ("move", {"direction": "up"}), ("delete", {})):
        assert admin_client.post(f"/admin/directories/{directory.id}/{action}", data).status_code == 404, action
    assert "Theirs" not in admin_client.get("/admin/directories").get_data(as_text=True)
    with app.app_context():
        assert Directory.get_by_id(directory.id).name == "Theirs"
