"""Manager approval against the demo LDAP directory: the approver is the manager resolved
live from LDAP, the manager's page shows the department, the user's own email link can be
the first factor, and a fallback approver stands in when there is no manager."""

import pytest

from models import ApprovalProfile, Directory, MailServer, Policy, ProfileDirectory, ProfileMailServer, SignInRequest
from services import crypto, ratelimit
from services.directory import reset_connections
from tests.support.slapd import DEMO_SERVICE_DN, DEMO_SERVICE_PASSWORD
from tests.support.web import WebClient
from tests.web.test_email_signin import ask_link, deliver, link_in


@pytest.fixture(autouse=True)
def fresh_state():
    ratelimit.set_backend(ratelimit.MemoryBackend())
    reset_connections()
    yield
    reset_connections()


@pytest.fixture
def demo(app, create_organisation, embedded_ldap, smtp_server):
    """acme with the demo directory; members of cn=sensitive need their manager's approval."""
    organisation = create_organisation("acme", "Acme")
    with app.app_context():
        directory = Directory.create(
            organisation=organisation, name="Acme directory", servers=[embedded_ldap.url], base_dn="dc=acme,dc=test",
            bind_dn=DEMO_SERVICE_DN, bind_password_encrypted=crypto.encrypt(DEMO_SERVICE_PASSWORD),
            login_attributes=["uid", "mail"],
        )
        server = MailServer.create(organisation=organisation, name="relay", host="127.0.0.1", port=smtp_server.port,
                                   security="none", from_address="no-reply@acme.test")
        staff = ApprovalProfile.create(organisation=organisation, name="Staff", kind="user", server_url="http://gatehouse.test",
                                       subject="Sign in", message="Sign in: {link}", is_default=True)
        managers = ApprovalProfile.create(organisation=organisation, name="Managers", kind="manager", first_factor="none",
                                          server_url="http://gatehouse.test", subject="{user} asks to sign in",
                                          message="Approve or deny {user}: {link}")
        for profile in (staff, managers):
            ProfileMailServer.create(profile=profile, mail_server=server, position=0)
            ProfileDirectory.create(profile=profile, directory=directory, position=0)
        Policy.create(organisation=organisation, position=0, name="Sensitive", profile=managers, directory=directory,
                      attribute="memberOf", values=["cn=sensitive,ou=groups,dc=acme,dc=test"])
    return managers


def test_the_ldap_manager_approves_and_sees_the_department(app, client, demo, smtp_server):
    wait_url = ask_link(client, "fiona").headers["Location"]
    assert "o***@a***.test" in client.get(wait_url).get_data(as_text=True)
    [message] = deliver(app, smtp_server, 1)
    assert message["To"] == "olivia@acme.test"  # fiona's manager, resolved live from LDAP
    kind, token = link_in(message)
    assert kind == "a"
    olivia = WebClient(app.test_client())
    page = olivia.get(f"/a/{token}").get_data(as_text=True)
    assert "Fiona Okafor" in page and "Finance" in page
    olivia.post(f"/a/{token}", {"action": "approve"})
    assert client.post(f"{wait_url}/finish", {}).headers["Location"] == "/account"


def test_users_outside_the_policy_get_their_own_link(app, client, demo, smtp_server):
    ask_link(client, "zoe")
    [message] = deliver(app, smtp_server, 1)
    assert message["To"] == "zoe@acme.test" and link_in(message)[0] == "l"


def test_own_email_link_first_then_the_manager(app, client, demo, smtp_server):
    with app.app_context():
        ApprovalProfile.update(first_factor="email_link").where(ApprovalProfile.id == demo.id).execute()
    wait_url = ask_link(client, "fiona").headers["Location"]
    assert "Check your email" in client.get(wait_url).get_data(as_text=True)
    [own] = deliver(app, smtp_server, 1)
    assert own["To"] == "fiona@acme.test"
    _, token = link_in(own)
    client.get(f"/l/{token}")
    next_wait = client.post(f"/l/{token}", {"action": "approve"}).headers["Location"]
    assert next_wait.startswith("/login/wait/") and next_wait != wait_url
    assert client.get(wait_url).headers["Location"] == next_wait  # the old waiting page moves on
    assert "Waiting for manager approval" in client.get(next_wait).get_data(as_text=True)
    manager_mail = deliver(app, smtp_server, 2)[1]
    assert manager_mail["To"] == "olivia@acme.test"
    _, approval = link_in(manager_mail)
    olivia = WebClient(app.test_client())
    olivia.get(f"/a/{approval}")
    olivia.post(f"/a/{approval}", {"action": "approve"})
    assert client.post(f"{next_wait}/finish", {}).headers["Location"] == "/account"
    with app.app_context():
        statuses = sorted(r.status for r in SignInRequest.select())
    assert statuses == ["completed", "completed"]


def test_fallback_approver_when_the_manager_has_no_mail(app, client, demo, smtp_server, create_account):
    # hannah's manager fiona has mail; tom (no mail) is nobody's manager, so use a local
    # user without a sponsor in a manager profile that lists local accounts.
    with app.app_context():
        ProfileDirectory.create(profile=demo, directory=None, position=1)
        ApprovalProfile.update(fallback_approver="it@acme.test").where(ApprovalProfile.id == demo.id).execute()
        Policy.update(values=["*"], attribute="username", directory=None).execute()
    create_account(demo.organisation, "temp")
    ask_link(client, "temp")
    [message] = deliver(app, smtp_server, 1)
    assert message["To"] == "it@acme.test"


def test_no_manager_step_means_no_sign_in(app, client, demo, smtp_server):
    """The user's own link was confirmed but the manager cannot be asked: the sign-in ends."""
    with app.app_context():
        ApprovalProfile.update(first_factor="email_link").where(ApprovalProfile.id == demo.id).execute()
        from services.signin import APPROVALS_PER_APPROVER

        for _ in range(APPROVALS_PER_APPROVER.count):
            ratelimit.hit(APPROVALS_PER_APPROVER, "olivia@acme.test")
    wait_url = ask_link(client, "fiona").headers["Location"]
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    client.get(f"/l/{token}")
    page = client.post(f"/l/{token}", {"action": "approve"}).get_data(as_text=True)
    assert "Try again in" in page
    assert client.post(f"{wait_url}/finish", {}).headers["Location"] == "/login"
    assert client.get("/account").status_code == 302


def test_the_users_own_link_posted_to_the_manager_page_changes_nothing(app, client, demo, smtp_server):
    with app.app_context():
        ApprovalProfile.update(first_factor="email_link").where(ApprovalProfile.id == demo.id).execute()
    wait_url = ask_link(client, "fiona").headers["Location"]
    _, token = link_in(deliver(app, smtp_server, 1)[0])
    client.get(f"/l/{token}")
    assert client.post(f"/a/{token}", {"action": "approve"}).status_code == 404
    with app.app_context():
        assert SignInRequest.get().status == "pending"
    assert client.post(f"{wait_url}/finish", {}).headers["Location"] == "/login"
