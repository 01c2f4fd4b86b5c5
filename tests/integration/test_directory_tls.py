"""LDAPS and StartTLS against a real slapd: the certificate is verified against the
configured CA, an untrusted certificate is refused, and turning verification off is explicit."""

import pytest

from models import Directory, Organisation
from services import crypto
from services.directory import check_connection, find_user, reset_connections
from tests.support.slapd import EXAMPLE_SERVICE_DN, EXAMPLE_SERVICE_PASSWORD


@pytest.fixture(autouse=True)
def fresh_connections():
    reset_connections()
    yield
    reset_connections()


def directory(url, tls_mode, ca_file=None, verify=True):
    organisation = Organisation.get_or_create(slug="example", defaults={"name": "Example"})[0]
    return Directory.create(
        organisation=organisation, name=f"{tls_mode}-{ca_file is not None}-{verify}", servers=[url], tls_mode=tls_mode,
        ca_file=str(ca_file) if ca_file else None, verify_certificate=verify, base_dn="dc=example,dc=org",
        bind_dn=EXAMPLE_SERVICE_DN, bind_password_encrypted=crypto.encrypt(EXAMPLE_SERVICE_PASSWORD), connect_timeout=3,
    )


def test_ldaps_with_the_company_ca(database, slapd):
    check = check_connection(directory(slapd.ldaps_url, "ldaps", slapd.ca_file))
    assert check.ok, check.message
    assert check.server == slapd.ldaps_url


def test_starttls_with_the_company_ca(database, slapd):
    target = directory(slapd.url, "starttls", slapd.ca_file)
    assert check_connection(target).ok
    user = find_user(target, "alice")
    assert user is not None and user.mail


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_untrusted_certificate_is_refused(database, slapd, mode):
    url = slapd.ldaps_url if mode == "ldaps" else slapd.url
    check = check_connection(directory(url, mode))  # system CAs do not know the test CA
    assert not check.ok
    assert "certificate" in check.message.lower(), check.message


def test_verification_can_be_turned_off_explicitly(database, slapd):
    assert check_connection(directory(slapd.ldaps_url, "ldaps", verify=False)).ok
