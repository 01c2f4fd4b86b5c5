"""Integration tests: ldap3 against a real OpenLDAP slapd with the test directories.

Owns checking that ldap_fixtures/openldap.ldif and ldap_fixtures/ad.ldif (served
by the ``slapd`` fixture from tests/support/slapd.py) contain the edge cases the
rest of the suite relies on, and that the slapd harness itself (stop/start)
works.
"""

from __future__ import annotations

import ldap3
import pytest
from ldap3.core.exceptions import LDAPBindError, LDAPPasswordIsMandatoryError
from ldap3.utils.conv import escape_filter_chars

from tests.support.slapd import (
    CORP_SERVICE_DN,
    CORP_SERVICE_PASSWORD,
    CORP_SUFFIX,
    EXAMPLE_SERVICE_DN,
    EXAMPLE_SERVICE_PASSWORD,
    EXAMPLE_SUFFIX,
    raw_simple_bind,
    start_slapd,
)

INVALID_CREDENTIALS = 49
UNWILLING_TO_PERFORM = 53
NO_SUCH_OBJECT = 32


def _connect(url: str, user: str, password: str) -> ldap3.Connection:
    return ldap3.Connection(ldap3.Server(url, get_info=ldap3.NONE), user=user,
                            password=password, auto_bind=True)


@pytest.fixture()
def example(slapd):
    """Connection to dc=example,dc=org bound as the service account."""
    conn = _connect(slapd.url, EXAMPLE_SERVICE_DN, EXAMPLE_SERVICE_PASSWORD)
    yield conn
    conn.unbind()


@pytest.fixture()
def corp(slapd):
    """Connection bound as the AD-like service account."""
    conn = _connect(slapd.url, CORP_SERVICE_DN, CORP_SERVICE_PASSWORD)
    yield conn
    conn.unbind()


def _dns(conn, base, flt, attributes=None, scope=ldap3.SUBTREE):
    conn.search(base, flt, search_scope=scope, attributes=attributes or [])
    return sorted(e.entry_dn for e in conn.entries)


def _one(conn, base, flt, attributes):
    conn.search(base, flt, attributes=attributes)
    assert len(conn.entries) == 1, (flt, conn.entries)
    return conn.entries[0]


def _present(entry, name):
    """True if the server actually returned values for ``name``.

    (ldap3's entry_attributes also lists requested-but-absent attributes.)
    """
    return any(k.lower() == name.lower() and v for k, v in entry.entry_raw_attributes.items())


def _read(conn, dn, attributes):
    """Base-scope read of ``dn``; None if it does not exist."""
    ok = conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=attributes)
    if not ok:
        assert conn.result["result"] == NO_SUCH_OBJECT, conn.result
        return None
    return conn.entries[0]


# --- binding ---------------------------------------------------------------


def test_service_accounts_bind(slapd):
    for dn, pw in ((EXAMPLE_SERVICE_DN, EXAMPLE_SERVICE_PASSWORD),
                   (CORP_SERVICE_DN, CORP_SERVICE_PASSWORD)):
        conn = _connect(slapd.url, dn, pw)
        assert conn.bound
        assert conn.extend.standard.who_am_i().lower() == f"dn:{dn}".lower()
        conn.unbind()


@pytest.mark.parametrize("dn,password", [
    ("uid=alice,ou=people,dc=example,dc=org", "secret-alice"),
    ("cn=Smith\\, John,ou=people,dc=example,dc=org", "secret-jsmith"),
    ("uid=zoe,ou=people,dc=example,dc=org", "secret-zoe"),
    ("CN=Doe\\, Jane,OU=Staff,DC=corp,DC=example", "secret-jdoe"),
    ("CN=Ærø\\, Björn,OU=Staff,DC=corp,DC=example", "secret-bjoern"),
])
def test_users_bind_with_known_password(slapd, dn, password):
    conn = _connect(slapd.url, dn, password)
    assert conn.bound
    conn.unbind()


@pytest.mark.parametrize("dn", [
    "uid=alice,ou=people,dc=example,dc=org",
    "uid=nobody,ou=people,dc=example,dc=org",
    "CN=Doe\\, Jane,OU=Staff,DC=corp,DC=example",
])
def test_wrong_password_is_invalid_credentials(slapd, dn):
    conn = ldap3.Connection(ldap3.Server(slapd.url, get_info=ldap3.NONE), user=dn,
                            password="wrong-password")
    assert conn.bind() is False
    assert conn.result["result"] == INVALID_CREDENTIALS
    assert conn.result["description"] == "invalidCredentials"
    with pytest.raises(LDAPBindError, match="invalidCredentials"):
        _connect(slapd.url, dn, "wrong-password")


def test_empty_password_never_binds_as_the_user(slapd):
    dn = "uid=alice,ou=people,dc=example,dc=org"
    # ldap3 refuses to send a simple bind with an empty password at all ...
    with pytest.raises(LDAPPasswordIsMandatoryError):
        ldap3.Connection(ldap3.Server(slapd.url, get_info=ldap3.NONE), user=dn,
                         password="", auto_bind=True)
    # ... and if a client does send one (RFC 4513 unauthenticated bind),
    # slapd refuses it rather than treating it as success.
    assert raw_simple_bind(slapd.port, dn, "") == UNWILLING_TO_PERFORM
    assert raw_simple_bind(slapd.port, dn, "secret-alice") == 0
    assert raw_simple_bind(slapd.port, dn, "nope") == INVALID_CREDENTIALS


def test_user_password_is_not_readable(example):
    entry = _one(example, EXAMPLE_SUFFIX, "(uid=alice)", ["userPassword", "*"])
    assert _present(entry, "uid")
    assert not _present(entry, "userPassword")


# --- finding users ------------------------------------------------------------


def test_find_by_uid_and_mail(example):
    entry = _one(example, EXAMPLE_SUFFIX, "(&(objectClass=inetOrgPerson)(uid=alice))",
                 ["mail", "cn", "manager"])
    assert entry.entry_dn == "uid=alice,ou=people,dc=example,dc=org"
    assert entry.mail.value == "alice@example.org"
    by_mail = _one(example, EXAMPLE_SUFFIX, "(mail=ALICE@example.org)", ["uid"])
    assert by_mail.uid.value == "alice"


def test_find_by_sam_account_name_and_upn(corp):
    by_sam = _one(corp, CORP_SUFFIX, "(sAMAccountName=jroe)",
                  ["userPrincipalName", "department", "entryUUID", "mail"])
    assert by_sam.userPrincipalName.value == "jroe@corp.example"
    assert by_sam.department.value == "Engineering"
    by_upn = _one(corp, CORP_SUFFIX, "(userPrincipalName=JROE@corp.example)", ["entryUUID"])
    assert by_upn.entry_dn == by_sam.entry_dn
    assert by_upn.entryUUID.value == by_sam.entryUUID.value
    by_mail = _one(corp, CORP_SUFFIX, "(mail=john.roe@corp.example)", ["sAMAccountName"])
    assert by_mail.sAMAccountName.value == "jroe"


def test_entry_uuid_is_a_unique_stable_id(corp):
    corp.search(CORP_SUFFIX, "(objectClass=gatehouseADAccount)", attributes=["entryUUID"])
    uuids = [e.entryUUID.value for e in corp.entries]
    assert len(uuids) >= 6 and len(set(uuids)) == len(uuids) and all(uuids)


def test_users_without_mail(example, corp):
    assert _dns(example, f"ou=people,{EXAMPLE_SUFFIX}", "(&(objectClass=person)(!(mail=*)))") == [
        "uid=mallory,ou=people,dc=example,dc=org",
        "uid=nora,ou=people,dc=example,dc=org",
    ]
    entry = _one(corp, CORP_SUFFIX, "(&(sAMAccountName=knomail)(!(mail=*)))", ["cn"])
    assert entry.cn.value == "Nomail, Kim"


def test_non_ascii_names(example, corp):
    jose = _one(example, EXAMPLE_SUFFIX, f"(cn={escape_filter_chars('José Müller')})", ["sn", "uid"])
    assert (jose.uid.value, jose.sn.value) == ("jose", "Müller")
    zoe = _one(example, EXAMPLE_SUFFIX, f"(givenName={escape_filter_chars('Zoë')})", ["cn"])
    assert zoe.cn.value == "Zoë Ångström"
    bjoern = _one(corp, CORP_SUFFIX, "(sAMAccountName=bjoern)", ["cn", "displayName"])
    assert bjoern.cn.value == "Ærø, Björn"
    assert "Ærø" in bjoern.entry_dn


# --- hostile input --------------------------------------------------------------

HOSTILE = ["*", ")(uid=*", "*)(|(uid=*", "alice)(uid=*", "\\", "\\2a", "\x00",
           "alice\x00", "(", ")", "Zoë*", "ø*"]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("attribute", ["uid", "mail", "cn"])
def test_escaped_hostile_input_finds_nothing(example, attribute, value):
    flt = f"(&(objectClass=inetOrgPerson)({attribute}={escape_filter_chars(value)}))"
    assert _dns(example, EXAMPLE_SUFFIX, flt) == []


@pytest.mark.parametrize("value", HOSTILE)
def test_escaped_hostile_sam_account_name_finds_nothing(corp, value):
    assert _dns(corp, CORP_SUFFIX, f"(sAMAccountName={escape_filter_chars(value)})") == []


def test_unescaped_wildcard_would_have_matched(example):
    """Guards the test above: without escaping, '*' does match every user."""
    assert len(_dns(example, f"ou=people,{EXAMPLE_SUFFIX}", "(uid=*)")) >= 10


def test_escaped_metacharacters_match_literally(example):
    cn = "Robert (Bobby) Tables"
    entry = _one(example, EXAMPLE_SUFFIX, f"(cn={escape_filter_chars(cn)})", ["uid", "description"])
    assert entry.uid.value == "rtables"
    desc = entry.description.value
    assert _one(example, EXAMPLE_SUFFIX, f"(description={escape_filter_chars(desc)})",
                ["uid"]).uid.value == "rtables"
    smith = _one(example, EXAMPLE_SUFFIX, f"(cn={escape_filter_chars('Smith, John')})", ["uid"])
    assert smith.uid.value == "jsmith"


# --- managers -------------------------------------------------------------------


def test_manager_dn_with_escaped_comma_resolves(example, corp):
    ellen = _one(example, EXAMPLE_SUFFIX, "(uid=ellen)", ["manager"])
    manager = _read(example, ellen.manager.value, ["uid", "mail"])
    assert manager.uid.value == "jsmith"

    jroe = _one(corp, CORP_SUFFIX, "(sAMAccountName=jroe)", ["manager"])
    assert jroe.manager.value == "CN=Doe\\, Jane,OU=Staff,DC=corp,DC=example"
    jane = _read(corp, jroe.manager.value, ["sAMAccountName", "mail", "cn"])
    assert jane.sAMAccountName.value == "jdoe"
    assert jane.cn.value == "Doe, Jane"
    # and the manager can be found by that DN in a filter too
    reports = _dns(corp, CORP_SUFFIX, f"(manager={escape_filter_chars(jroe.manager.value)})")
    assert len(reports) == 3


def _manager_chain(conn, dn, limit=10):
    chain, seen = [], set()
    while dn and dn.lower() not in seen and len(chain) < limit:
        seen.add(dn.lower())
        entry = _read(conn, dn, ["uid", "manager"])
        if entry is None:
            chain.append(("missing", dn))
            break
        chain.append(("entry", entry.uid.value))
        dn = entry.manager.value if _present(entry, "manager") else None
    return chain


def test_manager_chains(example):
    assert _manager_chain(example, "uid=alice,ou=people,dc=example,dc=org") == [
        ("entry", "alice"), ("entry", "bob"), ("entry", "carol")]
    # loop: loopa -> loopb -> loopa is cut by the visited set
    assert _manager_chain(example, "uid=loopa,ou=people,dc=example,dc=org") == [
        ("entry", "loopa"), ("entry", "loopb")]
    # dangling manager
    assert _manager_chain(example, "uid=orphan,ou=people,dc=example,dc=org") == [
        ("entry", "orphan"), ("missing", "uid=ghost,ou=people,dc=example,dc=org")]
    # manager without mail
    dave = _one(example, EXAMPLE_SUFFIX, "(uid=dave)", ["manager"])
    mallory = _read(example, dave.manager.value, ["mail", "uid"])
    assert mallory.uid.value == "mallory" and not _present(mallory, "mail")


# --- groups -----------------------------------------------------------------------


def test_member_of_only_when_asked_by_name(example, corp):
    plain = _one(example, EXAMPLE_SUFFIX, "(uid=bob)", ["*"])
    assert _present(plain, "uid") and not _present(plain, "memberOf")
    named = _one(example, EXAMPLE_SUFFIX, "(uid=bob)", ["memberOf"])
    assert sorted(v.lower() for v in named.memberOf.values) == [
        "cn=approvers,ou=groups,dc=example,dc=org",
        "cn=staff,ou=groups,dc=example,dc=org",
    ]
    smith = _one(example, EXAMPLE_SUFFIX, "(uid=jsmith)", ["memberOf"])
    assert [v.lower() for v in smith.memberOf.values] == ["cn=staff,ou=groups,dc=example,dc=org"]
    bjoern = _one(corp, CORP_SUFFIX, "(sAMAccountName=bjoern)", ["memberOf"])
    assert [v.lower() for v in bjoern.memberOf.values] == ["cn=engineers,ou=groups,dc=corp,dc=example"]
    # filtering on memberOf works as well
    assert _dns(example, EXAMPLE_SUFFIX, "(memberOf=cn=admins,ou=groups,dc=example,dc=org)") == [
        "uid=carol,ou=people,dc=example,dc=org"]


def _expand(conn, group_dn, seen=None):
    """Users reachable from ``group_dn`` through ``member`` (groups recursed)."""
    seen = set() if seen is None else seen
    if group_dn.lower() in seen:
        return set()
    seen.add(group_dn.lower())
    entry = _read(conn, group_dn, ["member", "objectClass"])
    if entry is None:
        return set()
    if "groupOfNames" not in entry.objectClass.values:
        return {entry.entry_dn.lower()}
    users = set()
    for member in entry.member.values:
        users |= _expand(conn, member, seen)
    return users


def test_nested_groups_via_member_chain(example, corp):
    everyone = _expand(example, "cn=everyone,ou=groups,dc=example,dc=org")
    assert "uid=alice,ou=people,dc=example,dc=org" in everyone
    assert "uid=loopa,ou=people,dc=example,dc=org" in everyone
    assert len(everyone) == 8

    all_staff = _expand(corp, "CN=All Staff,OU=Groups,DC=corp,DC=example")
    corp.search(CORP_SUFFIX, "(objectClass=inetOrgPerson)", attributes=["sAMAccountName"])
    by_dn = {e.entry_dn.lower(): e.sAMAccountName.value for e in corp.entries}
    assert sorted(by_dn[dn] for dn in all_staff) == ["adupont", "bjoern", "jdoe", "jroe", "knomail"]
    # a nested group itself carries memberOf of its parent group
    group = _read(corp, "CN=All Engineering,OU=Groups,DC=corp,DC=example", ["memberOf"])
    assert [v.lower() for v in group.memberOf.values] == ["cn=all staff,ou=groups,dc=corp,dc=example"]


# --- harness ------------------------------------------------------------------------


def test_slapd_stop_then_start_serves_again_on_same_port(tmp_path):
    server = start_slapd(tmp_path / "failover")
    try:
        port, first_pid = server.port, server.pid
        assert raw_simple_bind(port, EXAMPLE_SERVICE_DN, EXAMPLE_SERVICE_PASSWORD) == 0
        server.stop()
        assert not server.running
        with pytest.raises(OSError):
            raw_simple_bind(port, EXAMPLE_SERVICE_DN, EXAMPLE_SERVICE_PASSWORD)
        server.start()
        assert server.port == port and server.pid != first_pid
        conn = _connect(server.url, EXAMPLE_SERVICE_DN, EXAMPLE_SERVICE_PASSWORD)
        entry = _one(conn, EXAMPLE_SUFFIX, "(uid=alice)", ["memberOf"])
        assert entry.memberOf.values  # data and overlay state survived the restart
        conn.unbind()
    finally:
        server.stop()
