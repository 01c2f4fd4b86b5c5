"""Unit tests for the pure helpers of services.directory: identifier validation,
attribute-name validation and DN normalisation (no server needed)."""

from __future__ import annotations

import pytest

from services.directory import (
    normalise_dn,
    same_dn,
    valid_attribute_name,
    valid_identifier,
)


@pytest.mark.parametrize("value", ["alice", "alice@example.org", "José Müller", "Smith, John", "a" * 256, "*", ")(uid=*"])
def test_identifiers_that_may_be_searched(value):
    # Metacharacters are allowed here: escaping, not refusing, keeps them harmless.
    assert valid_identifier(value) == value


@pytest.mark.parametrize("value", ["", "   ", "a" * 257, "a\x00", "\x00", "a\nb", "a\tb", "\x7f", "\udcff", None, 42, b"alice"])
def test_identifiers_refused_before_any_search(value):
    assert valid_identifier(value) is None


def test_identifier_is_trimmed():
    assert valid_identifier("  bob ") == "bob"


@pytest.mark.parametrize("name,ok", [
    ("uid", True), ("sAMAccountName", True), ("userPrincipalName", True), ("1.2.840.113556.1.4.221", True),
    ("cn;lang-de", True), ("", False), ("mail)(uid=*", False), ("ma il", False), ("*", False), ("-x", False),
    (None, False),
])
def test_attribute_names(name, ok):
    assert valid_attribute_name(name) is ok


@pytest.mark.parametrize("a,b", [
    ("CN=Doe\\, Jane,OU=Staff,DC=corp,DC=example", "cn=Doe\\2C Jane,ou=Staff,dc=corp,dc=example"),
    ("CN=Doe\\, Jane,OU=Staff,DC=corp,DC=example", "cn=doe\\2c jane, ou=staff, dc=corp, dc=example"),
    ("cn=Ærø\\2C Björn,ou=Staff,dc=corp,dc=example", "CN=ÆRØ\\, BJÖRN,OU=Staff,DC=corp,DC=example"),
    ("cn=Ærø\\2C Björn,ou=Staff", "cn=\\C3\\86r\\C3\\B8\\2C Bj\\C3\\B6rn,ou=Staff"),
    ("cn=a+uid=b,dc=x", "uid=b+cn=a,dc=x"),
])
def test_equal_dns(a, b):
    assert normalise_dn(a) is not None
    assert same_dn(a, b)


@pytest.mark.parametrize("a,b", [
    ("cn=admins,ou=groups,dc=example,dc=org", "cn=admin,ou=groups,dc=example,dc=org"),
    ("cn=admins,ou=groups,dc=example,dc=org", "cn=admins,ou=groups,dc=example"),
    ("cn=Doe\\, Jane,ou=Staff", "cn=Doe,cn=Jane,ou=Staff"),
    ("cn=a\\+b,dc=x", "cn=a+b=,dc=x"),
    ("", ""),
    (None, None),
])
def test_different_dns(a, b):
    assert not same_dn(a, b)


def test_unparseable_dn_has_no_key():
    assert normalise_dn("not a dn") is None
    assert normalise_dn("") is None
