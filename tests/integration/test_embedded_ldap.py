"""Integration tests: ldap3 against devtools.ldap_server serving the Acme demo directory.

Owns checking that the embedded (ldaptor-based) LDAP server speaks enough real
LDAP for Gatehouse: binds, searches, filters with escaped hostile input,
computed memberOf, manager chains, read-only behaviour and start/stop.
"""

from __future__ import annotations

import errno
import socket

import ldap3
import pytest
from ldap3.core.exceptions import LDAPBindError, LDAPPasswordIsMandatoryError
from ldap3.utils.conv import escape_filter_chars

from devtools.ldap_server import EmbeddedLDAPServer, parse_ldif
from tests.support.slapd import (
    DEMO_SERVICE_DN,
    DEMO_SERVICE_PASSWORD,
    DEMO_USER_PASSWORD,
    FIXTURES,
    raw_simple_bind,
)

BASE = "dc=acme,dc=test"
PEOPLE = f"ou=people,{BASE}"
DEMO_LDIF = FIXTURES / "demo.ldif"


def _uid(name):
    return f"uid={name},{PEOPLE}"


def _present(entry, name):
    """True if the server returned values for ``name`` (not merely requested)."""
    return any(k.lower() == name.lower() and v for k, v in entry.entry_raw_attributes.items())


@pytest.fixture()
def conn(embedded_ldap):
    """ldap3 connection bound as the Gatehouse service account (default server info)."""
    c = ldap3.Connection(ldap3.Server(embedded_ldap.url), user=DEMO_SERVICE_DN,
                         password=DEMO_SERVICE_PASSWORD, auto_bind=True)
    yield c
    c.unbind()


def _dns(conn, flt, base=BASE, scope=ldap3.SUBTREE, attributes=None):
    assert conn.search(base, flt, search_scope=scope, attributes=attributes or []) or \
        conn.result["result"] == 0, conn.result
    return sorted(e.entry_dn for e in conn.entries)


def _one(conn, flt, attributes):
    conn.search(BASE, flt, attributes=attributes)
    assert len(conn.entries) == 1, (flt, conn.entries)
    return conn.entries[0]


def test_demo_ldif_shape():
    records = parse_ldif(DEMO_LDIF.read_bytes())
    people = [a for dn, a in records if dn.endswith("," + PEOPLE)]
    assert 12 <= len(people) <= 14
    assert all(a["userPassword"] == [DEMO_USER_PASSWORD.encode()] for a in people)
    assert sum(1 for a in people if "mail" not in a) == 1
    groups = {dn.split(",")[0] for dn, a in records if b"groupOfNames" in a["objectClass"]}
    assert groups == {"cn=finance-approvers", "cn=engineering", "cn=admins", "cn=sensitive"}


def test_root_dse_lists_suffix(embedded_ldap):
    server = ldap3.Server(embedded_ldap.url, get_info=ldap3.DSA)
    c = ldap3.Connection(server, auto_bind=True)
    assert server.info.naming_contexts == [BASE]
    c.unbind()


def test_service_account_and_users_bind(embedded_ldap, conn):
    assert conn.extend.standard.who_am_i() == f"dn:{DEMO_SERVICE_DN}"
    for name in ("olivia", "zoe", "tom"):
        c = ldap3.Connection(ldap3.Server(embedded_ldap.url), user=_uid(name),
                             password=DEMO_USER_PASSWORD, auto_bind=True)
        assert c.extend.standard.who_am_i() == f"dn:{_uid(name)}"
        c.unbind()


def test_anonymous_bind_is_allowed(embedded_ldap):
    c = ldap3.Connection(ldap3.Server(embedded_ldap.url), auto_bind=True)
    assert c.bound and c.result["result"] == 0
    assert not c.extend.standard.who_am_i()
    c.unbind()


@pytest.mark.parametrize("dn", [_uid("erin"), _uid("nobody"), DEMO_SERVICE_DN])
def test_wrong_password_is_invalid_credentials(embedded_ldap, dn):
    c = ldap3.Connection(ldap3.Server(embedded_ldap.url), user=dn, password="wrong")
    assert c.bind() is False
    assert c.result["description"] == "invalidCredentials"
    with pytest.raises(LDAPBindError, match="invalidCredentials"):
        ldap3.Connection(ldap3.Server(embedded_ldap.url), user=dn, password="wrong",
                         auto_bind=True)


def test_empty_password_never_binds_as_the_user(embedded_ldap):
    with pytest.raises(LDAPPasswordIsMandatoryError):
        ldap3.Connection(ldap3.Server(embedded_ldap.url), user=_uid("erin"), password="",
                         auto_bind=True)
    # Sent anyway (RFC 4513 unauthenticated bind): refused like OpenLDAP does.
    assert raw_simple_bind(embedded_ldap.port, _uid("erin"), "") == 53
    assert raw_simple_bind(embedded_ldap.port, _uid("erin"), DEMO_USER_PASSWORD) == 0


def test_find_by_uid_and_mail(conn):
    erin = _one(conn, "(&(objectClass=inetOrgPerson)(uid=erin))",
                ["mail", "cn", "title", "departmentNumber", "manager"])
    assert erin.entry_dn == _uid("erin")
    assert erin.mail.value == "erin@acme.test"
    assert erin.departmentNumber.value == "Engineering"
    assert _one(conn, "(mail=ERIN@ACME.TEST)", ["uid"]).uid.value == "erin"
    assert _one(conn, "(|(uid=nope)(mail=erin@acme.test))", ["uid"]).uid.value == "erin"


def test_attribute_selection_and_hidden_password(conn):
    entry = _one(conn, "(uid=erin)", ["mail"])
    assert set(entry.entry_raw_attributes) == {"mail"}
    everything = _one(conn, "(uid=erin)", ["*", "userPassword"])
    assert _present(everything, "sn") and _present(everything, "manager")
    assert not _present(everything, "userPassword")
    assert not _present(everything, "memberOf")


def test_member_of_only_when_asked_by_name(conn):
    erin = _one(conn, "(uid=erin)", ["memberOf"])
    assert sorted(erin.memberOf.values) == [
        f"cn=admins,ou=groups,{BASE}", f"cn=engineering,ou=groups,{BASE}"]
    plus = _one(conn, "(uid=erin)", ["+"])
    assert _present(plus, "memberOf")
    assert _dns(conn, f"(memberOf=CN=Finance-Approvers,OU=Groups,{BASE})") == [
        _uid("fiona"), _uid("hannah")]


def test_scopes(conn):
    assert _dns(conn, "(objectClass=*)", base=PEOPLE, scope=ldap3.BASE) == [PEOPLE]
    people = _dns(conn, "(objectClass=*)", base=PEOPLE, scope=ldap3.LEVEL)
    assert len(people) == 13 and PEOPLE not in people
    assert len(_dns(conn, "(objectClass=*)", scope=ldap3.LEVEL)) == 3
    everything = _dns(conn, "(objectClass=*)")
    assert BASE in everything and len(everything) == 1 + 3 + 13 + 1 + 4
    assert not conn.search(f"ou=nowhere,{BASE}", "(objectClass=*)")
    assert conn.result["description"] == "noSuchObject"


def test_filters(conn):
    assert _dns(conn, "(&(objectClass=person)(!(mail=*)))") == [_uid("tom")]
    assert _dns(conn, "(&(departmentNumber=Sales)(title=*Exec*))") == [_uid("lucy")]
    assert _dns(conn, "(cn=Zo*str*m)") == [_uid("zoe")]
    assert _dns(conn, "(cn=*Lee)") == [_uid("marcus")]
    assert _dns(conn, "(cn=Ma*s Lee)") == [_uid("marcus")]
    assert _dns(conn, "(cn=Marcus*Leex)") == []
    assert _dns(conn, f"(manager={_uid('samuel')})") == [_uid("lucy"), _uid("raj")]


def test_non_ascii_name(conn):
    zoe = _one(conn, f"(cn={escape_filter_chars('Zoë Ångström')})", ["cn", "sn", "givenName"])
    assert (zoe.cn.value, zoe.sn.value, zoe.givenName.value) == ("Zoë Ångström", "Ångström", "Zoë")
    assert _dns(conn, f"(sn={escape_filter_chars('ångström')})") == [_uid("zoe")]


@pytest.mark.parametrize("value", ["*", ")(uid=*", "*)(|(uid=*", "erin)(uid=*", "\\", "\\2a",
                                   "\x00", "erin\x00", "(", ")", "Zoë*", "Ångström\\"])
@pytest.mark.parametrize("attribute", ["uid", "mail", "cn"])
def test_escaped_hostile_input_finds_nothing(conn, attribute, value):
    flt = f"(&(objectClass=inetOrgPerson)({attribute}={escape_filter_chars(value)}))"
    assert _dns(conn, flt) == []


def test_unescaped_wildcard_would_have_matched(conn):
    assert len(_dns(conn, "(uid=*)")) == 13


def test_manager_chain_reaches_the_ceo(conn):
    dn, chain = _uid("hannah"), []
    while dn:
        conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["uid", "manager"])
        entry = conn.entries[0]
        chain.append(entry.uid.value)
        dn = entry.manager.value if _present(entry, "manager") else None
    assert chain == ["hannah", "fiona", "olivia"]


def test_directory_is_read_only(conn):
    assert not conn.add(f"uid=mallory,{PEOPLE}", ["inetOrgPerson"], {"sn": "x", "cn": "x"})
    assert conn.result["description"] == "unwillingToPerform"
    assert not conn.modify(_uid("erin"), {"title": [(ldap3.MODIFY_REPLACE, ["CEO"])]})
    assert conn.result["description"] == "unwillingToPerform"


# --- start / stop -------------------------------------------------------------------


def test_start_stop_and_restart_on_same_port():
    server = EmbeddedLDAPServer([DEMO_LDIF])
    server.start()
    try:
        port = server.port
        assert server.url == f"ldap://127.0.0.1:{port}"
        assert raw_simple_bind(port, DEMO_SERVICE_DN, DEMO_SERVICE_PASSWORD) == 0
    finally:
        server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    again = EmbeddedLDAPServer(DEMO_LDIF, port=port)
    again.start()
    try:
        assert again.port == port
        assert raw_simple_bind(port, DEMO_SERVICE_DN, DEMO_SERVICE_PASSWORD) == 0
    finally:
        again.stop()
        again.stop()  # idempotent


def test_port_in_use_raises_clear_oserror(embedded_ldap):
    other = EmbeddedLDAPServer([DEMO_LDIF], port=embedded_ldap.port)
    with pytest.raises(OSError, match="cannot listen on 127.0.0.1") as info:
        other.start()
    assert info.value.errno == errno.EADDRINUSE
    # the failed start left nothing behind, the original still serves
    assert raw_simple_bind(embedded_ldap.port, DEMO_SERVICE_DN, DEMO_SERVICE_PASSWORD) == 0


def test_port_in_use_by_foreign_socket():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        server = EmbeddedLDAPServer([DEMO_LDIF], port=blocker.getsockname()[1])
        with pytest.raises(OSError) as info:
            server.start()
        assert info.value.errno == errno.EADDRINUSE


def test_two_servers_at_once_with_separate_reactors(embedded_ldap):
    with EmbeddedLDAPServer([DEMO_LDIF]) as second:
        assert second.port != embedded_ldap.port
        assert raw_simple_bind(second.port, _uid("raj"), DEMO_USER_PASSWORD) == 0
    assert raw_simple_bind(embedded_ldap.port, _uid("raj"), DEMO_USER_PASSWORD) == 0
