"""Directory connection checks against real LDAP servers: failover and bind results."""

from models import Directory, Organisation
from services import crypto
from services.directory import check_connection
from tests.support.slapd import EXAMPLE_SERVICE_DN, EXAMPLE_SERVICE_PASSWORD
from tests.support.smtp import free_port


def make_directory(servers, password=EXAMPLE_SERVICE_PASSWORD):
    organisation = Organisation.create(slug="example", name="Example")
    return Directory.create(
        organisation=organisation, name="example", servers=servers, base_dn="dc=example,dc=org",
        bind_dn=EXAMPLE_SERVICE_DN, bind_password_encrypted=crypto.encrypt(password), connect_timeout=2,
    )


def test_failover_to_the_second_server(database, slapd):
    down = f"ldap://127.0.0.1:{free_port()}"
    check = check_connection(make_directory([down, slapd.url]))
    assert check.ok and check.server == slapd.url
    assert check.message == "bind succeeded"


def test_every_server_down_names_each(database):
    first, second = (f"ldap://127.0.0.1:{free_port()}" for _ in range(2))
    check = check_connection(make_directory([first, second]))
    assert not check.ok
    assert first in check.message and second in check.message


def test_wrong_bind_password(database, slapd):
    check = check_connection(make_directory([slapd.url], password="wrong"))
    assert not check.ok and check.server == slapd.url
    assert "invalidCredentials" in check.message
