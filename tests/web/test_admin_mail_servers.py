"""Admin: mail servers — list, add, edit (write-only password), test email, order, delete."""

import pytest

from models import ApprovalProfile, MailServer, Organisation, ProfileMailServer
from services import crypto


def form(**overrides):
    values = {
        "name": "Relay", "host": "127.0.0.1", "port": "2525", "security": "none", "username": "",
        "password": "", "from_address": "Gatehouse <no-reply@acme.test>", "verify_certificate": "y",
        "ca_file": "", "timeout": "10",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def test_empty_list_explains_what_to_do(admin_client):
    html = admin_client.get("/admin/mail-servers").get_data(as_text=True)
    assert "No mail servers yet." in html and "/admin/mail-servers/new" in html


def test_add_a_mail_server_with_an_encrypted_password(admin_client, app):
    admin_client.get("/admin/mail-servers/new")
    response = admin_client.post("/admin/mail-servers/new", form(username="mailer", password="s3cret", security="starttls"))
    assert response.status_code == 303 and response.headers["Location"] == "/admin/mail-servers"
    with app.app_context():
        server = MailServer.get(name="Relay")
        assert server.password_encrypted and "s3cret" not in server.password_encrypted
        assert crypto.decrypt(server.password_encrypted) == "s3cret"
    page = admin_client.get(f"/admin/mail-servers/{server.id}/edit").get_data(as_text=True)
    assert "s3cret" not in page and "A password is stored. Leave empty to keep it." in page


def test_editing_without_a_password_keeps_it_and_clearing_removes_it(admin_client, app, owner):
    with app.app_context():
        server = MailServer.create(organisation=owner.organisation, name="Relay", host="h", port=25, security="none",
                                   from_address="a@acme.test", password_encrypted=crypto.encrypt("keep-me"))
    url = f"/admin/mail-servers/{server.id}/edit"
    admin_client.get(url)
    assert admin_client.post(url, form(host="smtp.acme.test")).status_code == 303
    with app.app_context():
        stored = MailServer.get_by_id(server.id)
        assert stored.host == "smtp.acme.test" and crypto.decrypt(stored.password_encrypted) == "keep-me"
    admin_client.get(url)
    admin_client.post(url, form(clear_password="y"))
    with app.app_context():
        assert MailServer.get_by_id(server.id).password_encrypted is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"port": "99999"}, "Enter a port between 1 and 65535."),
        ({"port": "smtp"}, "Enter a port between 1 and 65535."),
        ({"host": ""}, "Enter the SMTP server&#39;s host name or address."),
        ({"from_address": "nobody"}, "enter an address like Gatehouse &lt;no-reply@example.com&gt;"),
        ({"security": "carrier-pigeon"}, "Not a valid choice"),
    ],
)
def test_bad_values_are_explained_next_to_the_field_and_nothing_is_saved(admin_client, app, overrides, message):
    admin_client.get("/admin/mail-servers/new")
    response = admin_client.post("/admin/mail-servers/new", form(**overrides), htmx=True, target="mail-server-form")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in html and "<html" not in html
    with app.app_context():
        assert MailServer.select().count() == 0


def test_duplicate_name_is_refused(admin_client, app, owner):
    with app.app_context():
        MailServer.create(organisation=owner.organisation, name="Relay", host="h", port=25, security="none", from_address="a@acme.test")
    admin_client.get("/admin/mail-servers/new")
    response = admin_client.post("/admin/mail-servers/new", form())
    assert response.status_code == 422
    assert "another mail server is already called &#39;Relay&#39;" in response.get_data(as_text=True)


def test_send_test_email_through_a_real_server(admin_client, app, owner, smtp_server):
    with app.app_context():
        server = MailServer.create(organisation=owner.organisation, name="Relay", host="127.0.0.1", port=smtp_server.port,
                                   security="none", from_address="no-reply@acme.test")
    admin_client.get(f"/admin/mail-servers/{server.id}/edit")
    response = admin_client.post(f"/admin/mail-servers/{server.id}/test", {"recipient": "olga@acme.test"}, htmx=True, target="mail-server-test")
    html = response.get_data(as_text=True)
    assert "Sent to olga@acme.test" in html and "<html" not in html
    assert smtp_server.wait_for(1)[0]["Subject"] == "Gatehouse test email"


def test_send_test_email_failure_is_explained(admin_client, app, owner):
    from tests.support.smtp import free_port

    with app.app_context():
        server = MailServer.create(organisation=owner.organisation, name="Relay", host="127.0.0.1", port=free_port(),
                                   security="none", from_address="no-reply@acme.test", timeout=2)
    admin_client.get(f"/admin/mail-servers/{server.id}/edit")
    response = admin_client.post(f"/admin/mail-servers/{server.id}/test", {"recipient": "olga@acme.test"})
    assert "Not sent: connection refused" in response.get_data(as_text=True)


def test_reorder_with_up_and_down(admin_client, app, owner):
    with app.app_context():
        first, second = (MailServer.create(organisation=owner.organisation, name=n, host="h", port=25, security="none",
                                           from_address="a@acme.test", position=i) for i, n in enumerate(["A", "B"]))
    admin_client.get("/admin/mail-servers")
    response = admin_client.post(f"/admin/mail-servers/{second.id}/move", {"direction": "up"}, htmx=True, target="mail-server-table")
    html = response.get_data(as_text=True)
    assert "<html" not in html and html.index(">B</a>") < html.index(">A</a>")
    with app.app_context():
        assert [s.name for s in MailServer.select().order_by(MailServer.position)] == ["B", "A"]


def test_delete_asks_then_deletes(admin_client, app, owner):
    with app.app_context():
        server = MailServer.create(organisation=owner.organisation, name="Old relay", host="h", port=25, security="none", from_address="a@acme.test")
    page = admin_client.get(f"/admin/mail-servers/{server.id}/delete").get_data(as_text=True)
    assert "Delete the mail server Old relay?" in page
    response = admin_client.post(f"/admin/mail-servers/{server.id}/delete")
    assert response.status_code == 303
    with app.app_context():
        assert MailServer.select().count() == 0


def test_delete_of_a_server_used_by_a_profile_says_so(admin_client, app, owner):
    with app.app_context():
        server = MailServer.create(organisation=owner.organisation, name="Relay", host="h", port=25, security="none", from_address="a@acme.test")
        profile = ApprovalProfile.create(organisation=owner.organisation, name="Staff", server_url="http://x", subject="s", message="m")
        ProfileMailServer.create(profile=profile, mail_server=server, position=0)
    page = admin_client.get(f"/admin/mail-servers/{server.id}/delete").get_data(as_text=True)
    assert "It cannot be deleted yet." in page and "Staff" in page
    admin_client.post(f"/admin/mail-servers/{server.id}/delete")
    with app.app_context():
        assert MailServer.select().count() == 1


def test_another_organisations_server_is_not_found(admin_client, app):
    with app.app_context():
        other = Organisation.create(slug="other", name="Other")
        server = MailServer.create(organisation=other, name="Theirs", host="h", port=25, security="none", from_address="a@other.test")
    assert admin_client.get(f"/admin/mail-servers/{server.id}/edit").status_code == 404
    admin_client.get("/admin/mail-servers")
    assert admin_client.post(f"/admin/mail-servers/{server.id}/delete").status_code == 404
    assert "Theirs" not in admin_client.get("/admin/mail-servers").get_data(as_text=True)
