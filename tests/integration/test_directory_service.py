"""Directory lookups (services.directory) against real LDAP servers: slapd with the
OpenLDAP and AD-style fixtures, and the embedded demo server. No mocks.

Covers finding users (login attributes, case, non-ASCII, hostile input), managers
(escaped DNs, dangling, no mail, loops), groups (memberOf, full-DN comparison, nested
via the portable walk), attribute values, the admin lookup report, binding as a user,
the local directory, failover, reconnecting a dead cached connection and its reuse.
"""

from __future__ import annotations

import time

import pytest

from models import Account, Directory, Organisation
from services import crypto
from services.directory import (
    DirectoryError,
    DirectoryUser,
    attribute_values,
    bind_as_user,
    cached_connection,
    find_local_user,
    find_user,
    is_member,
    lookup,
    reset_connections,
    resolve_manager,
)
from tests.support.slapd import (
    CORP_SERVICE_DN,
    CORP_SERVICE_PASSWORD,
    CORP_SUFFIX,
    DEMO_SERVICE_DN,
    DEMO_SERVICE_PASSWORD,
    DEMO_USER_PASSWORD,
    EXAMPLE_SERVICE_DN,
    EXAMPLE_SERVICE_PASSWORD,
    EXAMPLE_SUFFIX,
    free_port,
    start_slapd,
)

PEOPLE = "ou=people,dc=example,dc=org"
GROUPS = "ou=groups,dc=example,dc=org"
CORP_GROUPS = "OU=Groups,DC=corp,DC=example"


def down_url() -> str:
    """An LDAP URL nothing listens on (connection refused at once)."""
    return f"ldap://127.0.0.1:{free_port()}"


@pytest.fixture(autouse=True)
def fresh_connections():
    """Every test starts and ends without cached connections (ids repeat across tests)."""
    reset_connections()
    yield
    reset_connections()


@pytest.fixture
def organisation(database):
    """The organisation owning the test directories."""
    return Organisation.create(slug="example", name="Example")


@pytest.fixture
def make_directory(organisation):
    """Factory: a saved Directory row; keyword arguments override the defaults."""
    counter = iter(range(1000))

    def make(servers, base_dn=EXAMPLE_SUFFIX, bind_dn=EXAMPLE_SERVICE_DN,
             password=EXAMPLE_SERVICE_PASSWORD, **fields):
        fields = {"login_attributes": ["uid", "mail"], "connect_timeout": 2, "receive_timeout": 5, **fields}
        return Directory.create(
            organisation=organisation, name=f"directory-{next(counter)}", servers=servers,
            base_dn=base_dn, bind_dn=bind_dn, bind_password_encrypted=crypto.encrypt(password), **fields,
        )

    return make


@pytest.fixture
def example(make_directory, slapd):
    """dc=example,dc=org on the session slapd, login by uid or mail."""
    return make_directory([slapd.url])


@pytest.fixture
def corp(make_directory, slapd):
    """The AD-style dc=corp,dc=example, login by sAMAccountName or userPrincipalName."""
    return make_directory(
        [slapd.url], base_dn=CORP_SUFFIX, bind_dn=CORP_SERVICE_DN, password=CORP_SERVICE_PASSWORD,
        login_attributes=["sAMAccountName", "userPrincipalName"], group_attribute="memberOf",
    )


@pytest.fixture
def demo(make_directory, embedded_ldap):
    """The Acme demo directory on the embedded LDAP server."""
    return make_directory(
        [embedded_ldap.url], base_dn="dc=acme,dc=test", bind_dn=DEMO_SERVICE_DN, password=DEMO_SERVICE_PASSWORD,
    )


# ---- finding users ---------------------------------------------------------


def test_find_by_uid_reads_mail_manager_groups_and_id(example):
    user = find_user(example, "alice")
    assert user.source == "ldap" and user.directory_id == example.id
    assert user.dn == f"uid=alice,{PEOPLE}"
    assert user.username == "alice"
    assert user.display_name == "Alice Adams"
    assert user.mail == "alice@example.org"
    assert user.manager_dn == f"uid=bob,{PEOPLE}"
    # memberOf is operational: it is only there because it was asked for by name.
    assert [g.lower() for g in user.groups] == [f"cn=staff,{GROUPS}"]
    assert user.unique_id and len(user.unique_id) == 36  # entryUUID
    assert user.attributes["cn"] == ["Alice Adams"]
    assert "userPassword" not in user.attributes


def test_find_by_mail_reports_the_matching_value(example):
    user = find_user(example, "Alice@Example.ORG")
    assert user.dn == f"uid=alice,{PEOPLE}"
    assert user.username == "alice@example.org"


def test_uid_match_is_case_insensitive_like_the_server(example):
    assert find_user(example, "ALICE").username == "alice"
    assert find_user(example, "  bob  ").username == "bob"


def test_find_by_sam_account_name_and_user_principal_name(corp):
    jane = find_user(corp, "JDOE")
    assert jane.username == "jdoe"
    assert jane.display_name == "Jane Doe"
    assert jane.department == "Engineering"
    assert find_user(corp, "jdoe@corp.example").username == "jdoe@corp.example"
    assert find_user(corp, "jdoe@corp.example").dn == jane.dn


def test_non_ascii_names_and_dn(corp):
    bjoern = find_user(corp, "bjoern")
    assert bjoern.display_name == "Björn Ærø"
    assert bjoern.attributes["cn"] == ["Ærø, Björn"]
    assert "Ærø" in bjoern.dn
    assert bjoern.mail == "bjoern.aero@corp.example"


def test_non_ascii_identifier(make_directory, slapd):
    by_cn = make_directory([slapd.url], login_attributes=["cn"])
    jose = find_user(by_cn, "José Müller")
    assert jose is not None and jose.username == "José Müller"
    assert jose.dn == f"uid=jose,{PEOPLE}"
    # slapd's caseIgnoreMatch folds non-ASCII letters too.
    assert find_user(by_cn, "JOSÉ MÜLLER").dn == jose.dn
    assert find_user(by_cn, "Zoë Ångström").mail == "zoe@example.org"
    assert find_user(by_cn, "Zoe Angstrom") is None


def test_filter_metacharacters_in_a_real_value_still_match(make_directory, slapd):
    by_cn = make_directory([slapd.url], login_attributes=["cn"])
    assert find_user(by_cn, "Robert (Bobby) Tables").username == "Robert (Bobby) Tables"
    assert find_user(by_cn, "Smith, John").dn.lower().startswith("cn=smith")


def test_unknown_user_is_none(example):
    assert find_user(example, "nobody") is None


@pytest.mark.parametrize("hostile", [
    "*", ")(uid=*", "*)(|(uid=*", "alice)(uid=*", "(uid=*)", "\\", "\\2a", "\\2a)(uid=\\2a",
    "alice*", "*alice", "al*ce", "alice\x00", "\x00", "ali\nce", "", "   ", "a" * 257,
    "ünïcødé☃", "\udcff\udcfe", "\u202ealice", "alice\u200b",
    # slapd's matching folds compatibility characters (NFKC): these reach alice's entry
    # on the server and must still not be accepted as alice.
    "𝔞𝔩𝔦𝔠𝔢", "ａｌｉｃｅ", "ＡＬＩＣＥ@ｅｘａｍｐｌｅ.ｏｒｇ",
])
def test_hostile_identifiers_find_nothing(example, hostile):
    assert find_user(example, hostile) is None


def test_hostile_identifiers_on_ad_style_and_cn_login(corp, make_directory, slapd):
    by_cn = make_directory([slapd.url], login_attributes=["cn", "uid"])
    for hostile in ("*", ")(cn=*", "*)(|(cn=*", "\\", "\\2a", "Smith\\, John", "Smith\\2C John"):
        assert find_user(corp, hostile) is None, hostile
        assert find_user(by_cn, hostile) is None, hostile


def test_identifier_of_exactly_256_characters_is_searched(example):
    assert find_user(example, "a" * 256) is None  # searched, simply absent


def test_more_than_one_match_is_an_error_not_a_choice(make_directory, slapd):
    by_sn = make_directory([slapd.url], login_attributes=["sn"])
    with pytest.raises(DirectoryError, match="ambiguous") as caught:
        find_user(by_sn, "Nomail")  # mallory and nora
    assert "uid=mallory" in str(caught.value) and "uid=nora" in str(caught.value)


def test_demo_directory_on_the_embedded_server(demo):
    zoe = find_user(demo, "zoe")
    assert zoe.display_name == "Zoë Ångström"
    assert zoe.department == "Engineering"  # departmentNumber
    assert [g.lower() for g in zoe.groups] == ["cn=engineering,ou=groups,dc=acme,dc=test"]
    assert find_user(demo, "*") is None
    assert find_user(demo, "ZOE@ACME.TEST").username == "zoe@acme.test"


# ---- managers --------------------------------------------------------------


def test_manager_found_with_mail(example):
    result = resolve_manager(example, find_user(example, "alice"))
    assert result.status == "found"
    assert result.mail == "bob@example.org"
    assert result.display_name == "Bob Brown"
    assert result.dn == f"uid=bob,{PEOPLE}"


def test_manager_dn_with_escaped_comma(example, corp):
    result = resolve_manager(example, find_user(example, "ellen"))
    assert (result.status, result.mail) == ("found", "jsmith@example.org")
    for who in ("jroe", "bjoern", "adupont"):
        result = resolve_manager(corp, find_user(corp, who))
        assert (result.status, result.mail, result.display_name) == ("found", "jane.doe@corp.example", "Jane Doe")
    result = resolve_manager(corp, find_user(corp, "knomail"))
    assert (result.status, result.mail) == ("found", "john.roe@corp.example")


def test_manager_entry_missing(example):
    result = resolve_manager(example, find_user(example, "orphan"))
    assert result.status == "not_found"
    assert "uid=ghost" in result.message and result.mail is None


def test_manager_without_mail(example):
    result = resolve_manager(example, find_user(example, "dave"))
    assert result.status == "no_mail"
    assert result.display_name == "Mallory Nomail" and result.mail is None
    assert "mail" in result.message


def test_manager_loop(example):
    result = resolve_manager(example, find_user(example, "loopa"))
    assert result.status == "loop"
    assert "loopa" in result.message and "loopb" in result.message


def test_own_manager_is_a_loop(example):
    alice = find_user(example, "alice")
    alice.manager_dn = alice.dn.upper()
    assert resolve_manager(example, alice).status == "loop"


def test_no_manager_attribute(example, corp):
    assert resolve_manager(example, find_user(example, "carol")).status == "no_manager"
    assert resolve_manager(corp, find_user(corp, "jdoe")).status == "no_manager"


def test_manager_value_that_is_not_a_dn(example):
    user = find_user(example, "alice")
    user.manager_dn = "not a dn ==,,"
    assert resolve_manager(example, user).status == "not_found"


def test_manager_on_the_embedded_server(demo):
    result = resolve_manager(demo, find_user(demo, "tom"))
    assert (result.status, result.mail) == ("found", "fiona@acme.test")


def test_manager_lookup_with_every_server_down_is_an_answer(make_directory, example):
    alice = find_user(example, "alice")
    down = make_directory([down_url()])
    result = resolve_manager(down, alice)
    assert result.status == "error"
    assert "no LDAP server answered" in result.message


# ---- groups ----------------------------------------------------------------


def test_direct_membership_compares_full_dns(example):
    carol = find_user(example, "carol")
    assert is_member(example, carol, f"cn=admins,{GROUPS}")
    assert is_member(example, carol, "CN=Admins, OU=Groups, DC=Example, DC=Org")
    assert not is_member(example, carol, f"cn=admin,{GROUPS}")  # prefix of "admins"
    assert not is_member(example, carol, "cn=admins,ou=groups,dc=example")  # DN prefix
    assert not is_member(example, carol, "cn=admins")
    assert not is_member(example, carol, "admins")
    assert not is_member(example, find_user(example, "alice"), f"cn=admins,{GROUPS}")


def test_membership_of_a_user_with_an_escaped_dn(example):
    jsmith = find_user(example, "jsmith")
    assert jsmith.dn.lower().startswith("cn=smith")
    assert is_member(example, jsmith, f"cn=staff,{GROUPS}")


def test_nested_membership_needs_nested_groups_enabled(corp):
    jroe = find_user(corp, "jroe")
    assert is_member(corp, jroe, f"CN=Engineers,{CORP_GROUPS}")
    assert not is_member(corp, jroe, f"CN=All Staff,{CORP_GROUPS}")


def test_nested_membership_through_the_portable_walk(make_directory, slapd):
    corp = make_directory(
        [slapd.url], base_dn=CORP_SUFFIX, bind_dn=CORP_SERVICE_DN, password=CORP_SERVICE_PASSWORD,
        login_attributes=["sAMAccountName"], nested_groups=True,
    )
    jroe = find_user(corp, "jroe")
    names = sorted(g.split(",")[0].split("=")[1].lower() for g in jroe.groups)
    assert names == ["all engineering", "all staff", "engineers"]
    # A user object without the expanded list still resolves through the walk.
    jroe.groups = jroe.groups[:1]
    assert is_member(corp, jroe, "cn=all staff,ou=groups,dc=corp,dc=example")
    assert is_member(corp, jroe, f"CN=All Engineering,{CORP_GROUPS}")
    assert not is_member(corp, jroe, f"CN=Finance,{CORP_GROUPS}")
    assert not is_member(corp, jroe, f"CN=All,{CORP_GROUPS}")
    adupont = find_user(corp, "adupont")
    assert is_member(corp, adupont, f"CN=All Staff,{CORP_GROUPS}")
    assert not is_member(corp, adupont, f"CN=All Engineering,{CORP_GROUPS}")
    knomail = find_user(corp, "knomail")
    assert is_member(corp, knomail, f"CN=All Staff,{CORP_GROUPS}")
    assert not is_member(corp, knomail, f"CN=Engineers,{CORP_GROUPS}")


def test_nested_membership_on_openldap_fixture(make_directory, slapd):
    example = make_directory([slapd.url], nested_groups=True)
    assert is_member(example, find_user(example, "alice"), f"cn=everyone,{GROUPS}")
    assert is_member(example, find_user(example, "jsmith"), f"cn=everyone,{GROUPS}")
    assert not is_member(example, find_user(example, "nora"), f"cn=everyone,{GROUPS}")
    assert not is_member(example, find_user(example, "alice"), f"cn=approvers,{GROUPS}")


# ---- attribute values --------------------------------------------------------


def test_attribute_values_for_departments(corp, demo):
    assert attribute_values(corp, CORP_SUFFIX, "department") == ["Engineering", "Finance"]
    assert attribute_values(demo, None, "departmentNumber") == ["Engineering", "Finance", "People", "Sales"]
    assert attribute_values(demo, None, "departmentNumber", limit=2) == ["Engineering", "Finance"]


def test_attribute_values_across_several_pages(example, monkeypatch):
    from services import directory as directory_service

    # Small pages make the paged-results cookie go round on a small fixture.
    monkeypatch.setattr(directory_service, "PAGE_SIZE", 2)
    mails = attribute_values(example, None, "mail")
    assert len(mails) == 12 and mails == sorted(mails, key=str.casefold)  # 14 people, 2 without mail
    assert "alice@example.org" in mails and "zoe@example.org" in mails


def test_attribute_values_with_a_wrong_base_is_an_error(example):
    with pytest.raises(DirectoryError, match="noSuchObject"):
        attribute_values(example, "ou=nowhere,dc=example,dc=org", "mail")


def test_attribute_values_of_groups_and_a_bad_name(example):
    groups = [g.lower() for g in attribute_values(example, None, "memberOf")]
    assert groups == sorted(groups) and f"cn=staff,{GROUPS}" in groups and f"cn=admins,{GROUPS}" in groups
    with pytest.raises(DirectoryError):
        attribute_values(example, None, "mail)(uid=*")


# ---- the admin lookup report ---------------------------------------------------


def test_lookup_lists_missing_attributes(example):
    report = lookup(example, "nora")
    assert report.error is None and report.user.username == "nora"
    assert report.missing == ["mail", "memberOf"]  # nora is in no group either
    assert report.manager.status == "found" and report.manager.mail == "bob@example.org"
    assert report.milliseconds > 0


def test_lookup_of_a_top_manager_without_groups(example, corp):
    report = lookup(example, "loopa")
    assert report.manager.status == "loop"
    assert lookup(example, "rtables").missing == ["memberOf"]
    assert lookup(corp, "jdoe").missing == ["manager"]


def test_lookup_turns_errors_into_text(make_directory, slapd, example):
    assert lookup(example, "nobody").user is None and lookup(example, "nobody").error is None
    report = lookup(make_directory([slapd.url], password="wrong"), "alice")
    assert report.user is None and report.error.startswith("bind refused: invalidCredentials")
    assert "not a valid" in lookup(example, "\x00").error


# ---- errors a person can read -------------------------------------------------


def test_wrong_bind_password_message(make_directory, slapd):
    directory = make_directory([slapd.url], password="wrong")
    with pytest.raises(DirectoryError) as caught:
        find_user(directory, "alice")
    message = str(caught.value)
    assert message.startswith("bind refused: invalidCredentials")
    assert slapd.url in message
    assert "Traceback" not in message and "Error(" not in message


def test_every_server_down_message(make_directory):
    first, second = down_url(), down_url()
    with pytest.raises(DirectoryError) as caught:
        find_user(make_directory([first, second]), "alice")
    message = str(caught.value)
    assert message == f"no LDAP server answered ({first}: connection refused; {second}: connection refused)"


def test_bind_dn_without_password_is_refused_before_binding(make_directory, slapd):
    directory = make_directory([slapd.url], password="")
    directory.bind_password_encrypted = None
    directory.save()
    with pytest.raises(DirectoryError, match="without a bind password"):
        find_user(directory, "alice")


# ---- failover, reconnect, reuse -------------------------------------------------


def test_unsaved_directory_is_looked_up_without_caching(organisation, slapd):
    draft = Directory(
        organisation=organisation, name="draft", servers=[slapd.url], base_dn=EXAMPLE_SUFFIX,
        bind_dn=EXAMPLE_SERVICE_DN, bind_password_encrypted=crypto.encrypt(EXAMPLE_SERVICE_PASSWORD),
        login_attributes=["uid"], connect_timeout=2, receive_timeout=5,
    )
    report = lookup(draft, "alice")
    assert report.error is None and report.manager.mail == "bob@example.org"
    assert cached_connection(draft) is None


def test_failover_to_the_second_server(make_directory, slapd):
    directory = make_directory([down_url(), slapd.url])
    assert find_user(directory, "alice").mail == "alice@example.org"
    assert cached_connection(directory).server.name == slapd.url


def test_dead_cached_connection_reconnects_after_restart(make_directory, tmp_path):
    private = start_slapd(tmp_path / "private-slapd")
    try:
        directory = make_directory([private.url])
        assert find_user(directory, "alice") is not None
        first = cached_connection(directory)
        private.stop()
        with pytest.raises(DirectoryError, match="no LDAP server answered"):
            find_user(directory, "alice")
        private.start()
        # The server restarted: the old socket is dead; one lookup must simply work.
        assert find_user(directory, "bob").mail == "bob@example.org"
        second = cached_connection(directory)
        assert second is not None and second is not first
        # And a restart while a connection is cached (not yet known to be dead).
        private.stop()
        private.start()
        assert find_user(directory, "carol").mail == "carol@example.org"
        assert cached_connection(directory) is not second
    finally:
        private.stop()


def test_lookups_reuse_one_connection(example):
    find_user(example, "alice")
    conn = cached_connection(example)
    assert conn is not None
    for name in ("bob", "carol", "dave", "nora", "jose", "zoe", "ellen") * 3:
        user = find_user(example, name)
        resolve_manager(example, user)
        is_member(example, user, f"cn=staff,{GROUPS}")
    attribute_values(example, None, "mail")
    assert cached_connection(example) is conn
    reset_connections()
    assert cached_connection(example) is None
    find_user(example, "alice")
    assert cached_connection(example) is not conn


def test_edited_directory_gets_a_new_connection(example):
    find_user(example, "alice")
    conn = cached_connection(example)
    example.receive_timeout = 7
    example.save()
    assert cached_connection(example) is None
    find_user(example, "alice")
    assert cached_connection(example) not in (None, conn)
    assert conn.closed


def test_lookups_from_several_threads_share_the_connection(example):
    from concurrent.futures import ThreadPoolExecutor

    names = ["alice", "bob", "carol", "dave", "jose", "zoe", "ellen", "loopa"] * 5
    with ThreadPoolExecutor(max_workers=8) as pool:
        users = list(pool.map(lambda n: find_user(example, n), names))
    assert [u.username for u in users] == names
    assert cached_connection(example) is not None


# ---- binding as the user ----------------------------------------------------


def test_bind_as_user(example, corp):
    alice = find_user(example, "alice")
    assert bind_as_user(example, alice, "secret-alice") is True
    assert bind_as_user(example, alice, "wrong") is False
    assert bind_as_user(example, alice, "") is False
    assert bind_as_user(example, alice, None) is False
    assert bind_as_user(corp, find_user(corp, "bjoern"), "secret-bjoern") is True  # non-ASCII, escaped DN
    assert bind_as_user(example, find_user(example, "jsmith"), "secret-jsmith") is True


def test_bind_as_user_uses_a_fresh_connection(example):
    alice = find_user(example, "alice")
    conn = cached_connection(example)
    assert bind_as_user(example, alice, "secret-alice")
    assert cached_connection(example) is conn
    # The cached connection is still bound as the service account, not as alice.
    assert find_user(example, "bob") is not None


def test_empty_password_never_contacts_a_server(make_directory, example):
    alice = find_user(example, "alice")
    # A port that is not even valid: any attempt to connect would raise, not return.
    nowhere = make_directory(["ldap://127.0.0.1:1"], connect_timeout=30)
    started = time.perf_counter()
    assert bind_as_user(nowhere, alice, "") is False
    assert time.perf_counter() - started < 0.1
    with pytest.raises(DirectoryError, match="no LDAP server answered"):
        bind_as_user(nowhere, alice, "secret-alice")


def test_bind_as_user_on_the_embedded_server(demo):
    victor = find_user(demo, "victor")
    assert bind_as_user(demo, victor, DEMO_USER_PASSWORD)
    assert not bind_as_user(demo, victor, DEMO_USER_PASSWORD + "x")


# ---- the local directory ----------------------------------------------------


def test_find_local_user_with_sponsor(organisation):
    Account.create(organisation=organisation, username="pat", email="Pat@Example.com",
                   display_name="Pat Local", sponsor_email="boss@example.com")
    Account.create(organisation=organisation, username="solo", email="solo@example.com")
    by_name = find_local_user(organisation, "pat")
    by_mail = find_local_user(organisation, "pat@EXAMPLE.com")
    assert by_name == by_mail
    assert by_name.source == "local" and by_name.directory_id is None and by_name.dn is None
    assert by_name.mail == "Pat@Example.com" and by_name.display_name == "Pat Local"
    manager = resolve_manager(None, by_name)
    assert (manager.status, manager.mail) == ("found", "boss@example.com")
    assert resolve_manager(None, find_local_user(organisation, "solo")).status == "no_manager"


def test_find_local_user_stays_in_its_organisation_and_source(organisation, example):
    other = Organisation.create(slug="other", name="Other")
    Account.create(organisation=other, username="pat", email="pat@example.com")
    Account.create(organisation=organisation, username="dirk", email="dirk@example.com",
                   source="directory", directory=example, external_id="x")
    assert find_local_user(organisation, "pat") is None
    assert find_local_user(organisation, "dirk") is None
    assert find_local_user(other, "PAT@example.com").username == "pat"
    for hostile in ("", "%", "_", "*", "a" * 300, "pat\x00"):
        assert find_local_user(other, hostile) is None


def test_local_user_never_binds(example):
    local = DirectoryUser(None, "local", None, "pat", "1", "Pat", "pat@example.com", None, None)
    assert bind_as_user(example, local, "anything") is False
