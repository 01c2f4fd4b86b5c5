"""The users page against a real slapd: the paged prefix search of directory entries
(escaping, paging, limits), merging them with accounts (an entry with an account is
listed once), an unreachable directory as a note, and the detail page of a directory
user (attributes, manager, groups, the policy that applies)."""

from __future__ import annotations

import pytest

from models import Account, ApprovalProfile, Directory, Organisation, ProfileDirectory
from services import crypto, users
from services import directory as directory_service
from tests.support.slapd import EXAMPLE_SERVICE_DN, EXAMPLE_SERVICE_PASSWORD, EXAMPLE_SUFFIX, free_port


@pytest.fixture(autouse=True)
def fresh_connections():
    directory_service.reset_connections()
    yield
    directory_service.reset_connections()


def make_directory(organisation, url, name="Example LDAP"):
    return Directory.create(organisation=organisation, name=name, servers=[url], base_dn=EXAMPLE_SUFFIX,
                            bind_dn=EXAMPLE_SERVICE_DN, bind_password_encrypted=crypto.encrypt(EXAMPLE_SERVICE_PASSWORD),
                            login_attributes=["uid", "mail"], connect_timeout=2, receive_timeout=5)


@pytest.fixture
def example(database, slapd):
    organisation = Organisation.create(slug="example", name="Example")
    return organisation, make_directory(organisation, slapd.url)


def test_search_users_matches_prefixes_of_login_mail_and_names(example):
    _org, directory = example
    assert [u.username for u in directory_service.search_users(directory, "ali")] == ["alice"]
    assert [u.username for u in directory_service.search_users(directory, "Alice Ad")] == ["alice"]   # cn / displayName
    assert [u.username for u in directory_service.search_users(directory, "adams")] == ["alice"]      # surname (sn)
    assert [u.username for u in directory_service.search_users(directory, "carol@")] == ["carol"]     # mail
    alice = directory_service.search_users(directory, "alice")[0]
    assert alice.mail == "alice@example.org" and alice.unique_id and alice.dn.startswith("uid=alice,")


@pytest.mark.parametrize("hostile", ["*", ")(uid=*", "\\", "a\x00", "*)(|(uid=*", "\x01"])
def test_search_users_escapes_hostile_input(example, hostile):
    _org, directory = example
    assert directory_service.search_users(directory, hostile) == []


def test_search_users_reads_pages_and_stops_at_the_limit(example):
    _org, directory = example
    everyone = directory_service.search_users(directory, "l", page_size=100)   # loopa, loopb
    paged = directory_service.search_users(directory, "l", page_size=1)
    assert [u.username for u in paged] == [u.username for u in everyone] and len(everyone) >= 2
    people = directory_service.search_users(directory, "", limit=5)
    assert people == []  # an empty query searches nothing
    few = directory_service.search_users(directory, "r", page_size=1, limit=1)
    assert len(few) == 1
    # The abandoned paged search leaves the cached connection usable.
    assert directory_service.find_user(directory, "alice").username == "alice"


def test_users_page_merges_directory_entries_without_accounts(example):
    organisation, directory = example
    Account.create(organisation=organisation, username="bob", source="directory", directory=directory,
                   email="bob@example.org", display_name="Bob Brown")
    page = users.search(organisation, users.Filters(query="b"))
    assert [a.username for a in page.accounts] == ["bob"]
    assert "bob" not in [h.username for h in page.directory_hits]      # listed once, as an account
    page = users.search(organisation, users.Filters(query="a"))
    assert "alice" in [h.username for h in page.directory_hits] and page.directory_errors == []
    assert users.search(organisation, users.Filters(query="a", source="local")).directory_hits == []
    assert users.search(organisation, users.Filters(query="a", role="owner")).directory_hits == []


def test_unreachable_directory_is_reported_and_the_rest_still_works(example):
    organisation, directory = example
    make_directory(organisation, f"ldap://127.0.0.1:{free_port()}", name="Down LDAP")
    page = users.search(organisation, users.Filters(query="alice"))
    assert [h.username for h in page.directory_hits] == ["alice"]
    assert len(page.directory_errors) == 1 and page.directory_errors[0].startswith("Down LDAP:")


@pytest.fixture
def ldap_app(app, slapd, owner):
    """The acme organisation with the example directory as its profile's directory."""
    with app.app_context():
        acme = Organisation.get(Organisation.slug == "acme")
        directory = make_directory(acme, slapd.url)
        profile = ApprovalProfile.create(organisation=acme, name="Everyone", kind="user", server_url="http://x",
                                         subject="Sign in", message="{link}", is_default=True)
        ProfileDirectory.create(profile=profile, directory=None, position=0)
        ProfileDirectory.create(profile=profile, directory=directory, position=1)
    return directory


def test_list_and_detail_of_a_directory_user(ldap_app, admin_client):
    listing = admin_client.get("/admin/users?q=ali", htmx=True, target="user-results").get_data(as_text=True)
    assert "In directories, not signed in yet" in listing and "Alice Adams" in listing
    detail = admin_client.get(f"/admin/users/directory/{ldap_app.id}?username=alice")
    body = detail.get_data(as_text=True)
    assert detail.status_code == 200
    assert "alice@example.org" in body and "Bob Brown" in body                     # manager resolved live
    assert "cn=staff,ou=groups,dc=example,dc=org" in body                           # groups
    assert "Everyone" in body and "default profile" in body                         # policy and profile
    assert "userPassword" not in body and "secret-alice" not in body
    assert admin_client.get(f"/admin/users/directory/{ldap_app.id}?username=nobody").status_code == 404


def test_detail_of_a_directory_account(app, ldap_app, admin_client):
    with app.app_context():
        acme = Organisation.get(Organisation.slug == "acme")
        account = Account.create(organisation=acme, username="bob", source="directory", directory=ldap_app,
                                 email="bob@example.org", display_name="Bob Brown")
    body = admin_client.get(f"/admin/users/{account.id}").get_data(as_text=True)
    assert "Carol Chen" in body and "cn=approvers,ou=groups,dc=example,dc=org" in body
    assert "Reset password" not in body and "change their password in the directory" in body
