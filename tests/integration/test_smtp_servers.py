"""Integration tests for the SMTP test-server fixtures in tests.support.smtp.

Proves the fixtures are real: TLS certificates actually verify (and fail
against the system CAs), AUTH really checks credentials, and a stopped
server really refuses connections until restarted on the same port.
"""

import smtplib
import ssl
from email.message import EmailMessage

import pytest

# Lets this module run under --noconftest; a no-op when the root conftest
# already registers the plugin.
pytest_plugins = ["tests.support.smtp"]


def _message(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Gatehouse <noreply@gatehouse.test>"
    msg["To"] = "alice@example.test"
    msg["Subject"] = subject
    msg.set_content("Hello from the test suite.\n")
    return msg


def test_plain_send_is_recorded(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        client.send_message(_message("plain hello"), to_addrs=["alice@example.test", "bob@example.test"])

    (received,) = smtp_server.wait_for(1)
    assert received["Subject"] == "plain hello"
    assert received.get_content() == "Hello from the test suite.\n"
    assert smtp_server.envelopes == [
        ("noreply@gatehouse.test", ["alice@example.test", "bob@example.test"])
    ]

    smtp_server.clear()
    assert smtp_server.messages == [] and smtp_server.envelopes == []


def test_wait_for_times_out_with_clear_error(smtp_server):
    with pytest.raises(AssertionError, match=r"expected 1 message\(s\).*got 0"):
        smtp_server.wait_for(1, timeout=0.2)


def test_starttls_auth_with_verified_certificate(smtp_tls_server):
    ctx = ssl.create_default_context(cafile=str(smtp_tls_server.ca_file))
    with smtplib.SMTP(smtp_tls_server.host, smtp_tls_server.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=ctx)
        client.ehlo()
        assert client.sock.version() is not None
        client.login(smtp_tls_server.username, smtp_tls_server.password)
        client.send_message(_message("over starttls"))

    (received,) = smtp_tls_server.wait_for(1)
    assert received["Subject"] == "over starttls"
    assert smtp_tls_server.username == "mailer"
    assert smtp_tls_server.password == "mail-secret"
    assert smtp_tls_server.cert_file.exists() and smtp_tls_server.key_file.exists()


def test_starttls_server_refuses_mail_before_starttls(smtp_tls_server):
    with smtplib.SMTP(smtp_tls_server.host, smtp_tls_server.port, timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("auth"), "AUTH must not be offered in clear text"
        with pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
            client.send_message(_message("in the clear"))
    assert excinfo.value.smtp_code == 530
    assert smtp_tls_server.messages == []


@pytest.mark.parametrize("mechanism", ["plain", "login"])
def test_wrong_password_is_refused(smtp_tls_server, mechanism):
    ctx = ssl.create_default_context(cafile=str(smtp_tls_server.ca_file))
    with smtplib.SMTP(smtp_tls_server.host, smtp_tls_server.port, timeout=10) as client:
        client.starttls(context=ctx)
        client.ehlo()
        client.user, client.password = smtp_tls_server.username, "wrong-secret"
        with pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
            client.auth(mechanism, getattr(client, f"auth_{mechanism}"))
        assert excinfo.value.smtp_code == 535
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("someone-else", smtp_tls_server.password)


def test_system_trust_store_rejects_the_test_certificate(smtp_tls_server):
    ctx = ssl.create_default_context()
    with smtplib.SMTP(smtp_tls_server.host, smtp_tls_server.port, timeout=10) as client:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=ctx)


def test_implicit_tls_send(smtp_ssl_server):
    ctx = ssl.create_default_context(cafile=str(smtp_ssl_server.ca_file))
    with smtplib.SMTP_SSL(smtp_ssl_server.host, smtp_ssl_server.port, context=ctx, timeout=10) as client:
        client.login(smtp_ssl_server.username, smtp_ssl_server.password)
        client.send_message(_message("over smtps"))

    (received,) = smtp_ssl_server.wait_for(1)
    assert received["Subject"] == "over smtps"


def test_implicit_tls_rejects_wrong_password(smtp_ssl_server):
    ctx = ssl.create_default_context(cafile=str(smtp_ssl_server.ca_file))
    with smtplib.SMTP_SSL(smtp_ssl_server.host, smtp_ssl_server.port, context=ctx, timeout=10) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(smtp_ssl_server.username, "nope")


def test_stop_then_start_on_same_port(smtp_server):
    port = smtp_server.port
    smtp_server.stop()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP(smtp_server.host, port, timeout=5)

    smtp_server.start()
    assert smtp_server.port == port
    with smtplib.SMTP(smtp_server.host, port, timeout=10) as client:
        client.send_message(_message("back again"))
    (received,) = smtp_server.wait_for(1)
    assert received["Subject"] == "back again"
