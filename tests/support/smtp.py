"""Pytest plugin: real aiosmtpd SMTP servers on loopback for the test suite.

Owns the ``smtp_server`` (plain), ``smtp_tls_server`` (STARTTLS required,
AUTH PLAIN/LOGIN) and ``smtp_ssl_server`` (implicit TLS / SMTPS, AUTH) fixtures,
the session-cached self-signed certificate behind them (``smtp_tls_material``),
the ``SMTPTestServer`` class and ``free_port()``.

Listed in the root conftest's ``pytest_plugins``; everything binds 127.0.0.1.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from devtools.smtp_capture import LoopbackController

__all__ = [
    "SMTPTestServer",
    "TLSMaterial",
    "free_port",
    "make_tls_material",
    "smtp_server",
    "smtp_ssl_server",
    "smtp_tls_material",
    "smtp_tls_server",
]

SMTP_USERNAME = "mailer"
SMTP_PASSWORD = "mail-secret"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago.

    Prefer letting a server bind port 0 itself; this is for code under test
    that must be told a port up front (a small race is unavoidable).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class TLSMaterial:
    """Paths of a self-signed server certificate valid for 127.0.0.1/localhost."""

    cert_file: Path
    key_file: Path
    ca_file: Path  # what clients should trust; the cert is its own anchor

    def server_context(self) -> ssl.SSLContext:
        """Build a server-side SSLContext loaded with this certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


def make_tls_material(directory: Path) -> TLSMaterial:
    """Generate a self-signed EC certificate + key for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gatehouse test SMTP")])
    now = _dt.datetime.now(_dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        # CA:TRUE lets the same certificate act as the trust anchor clients
        # load via cafile, without a separate CA hierarchy.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "smtp-cert.pem"
    key_file = directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TLSMaterial(cert_file=cert_file, key_file=key_file, ca_file=cert_file)


class _CredentialsAuthenticator:
    """aiosmtpd authenticator accepting exactly one username/password pair."""

    def __init__(self, username: str, password: str):
        self._username = username.encode()
        self._password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if mechanism not in ("PLAIN", "LOGIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = hmac.compare_digest(auth_data.login, self._username) & hmac.compare_digest(
            auth_data.password, self._password
        )
        if not ok:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data)


class _RecordingHandler:
    """aiosmtpd handler that hands every message to its SMTPTestServer."""

    def __init__(self, owner: "SMTPTestServer"):
        self._owner = owner

    async def handle_DATA(self, server, session, envelope) -> str:
        """Parse and record the message; always accept."""
        raw = envelope.original_content or b""
        # Without this, get_content() returns wire CRLFs and every assertion
        # on a body would have to spell them out.
        message = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
        self._owner._record(envelope.mail_from, list(envelope.rcpt_tos), message)
        return "250 OK"


class SMTPTestServer:
    """A real aiosmtpd server on loopback that records what it receives.

    ``port=0`` (default) binds an ephemeral port on first ``start()``; later
    ``start()`` calls reuse that same port so "server down, then back" tests
    can keep one client configuration.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mode: str = "plain",
        tls: TLSMaterial | None = None,
        username: str | None = None,
        password: str | None = None,
    ):
        if mode not in ("plain", "starttls", "ssl"):
            raise ValueError(f"unknown SMTP test server mode {mode!r}")
        if mode != "plain" and tls is None:
            raise ValueError(f"mode {mode!r} needs TLS material")
        self.host = host
        self.port = port
        self.mode = mode
        self.username = username
        self.password = password
        self.cert_file = tls.cert_file if tls else None
        self.key_file = tls.key_file if tls else None
        self.ca_file = tls.ca_file if tls else None
        self._tls = tls
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()
        self._controller: LoopbackController | None = None

    def _record(self, mail_from: str, rcpt_tos: list[str], message: EmailMessage) -> None:
        with self._lock:
            self.envelopes.append((mail_from, rcpt_tos))
            self.messages.append(message)

    def _build_controller(self) -> LoopbackController:
        kwargs: dict = {
            "hostname": self.host,
            "port": self.port,
            # Avoids socket.getfqdn(), which can stall on broken DNS.
            "server_hostname": "localhost",
            "ready_timeout": 5.0,
        }
        if self.username is not None:
            kwargs["authenticator"] = _CredentialsAuthenticator(self.username, self.password or "")
            kwargs["auth_required"] = True
        if self.mode == "starttls":
            kwargs["tls_context"] = self._tls.server_context()
            kwargs["require_starttls"] = True
        elif self.mode == "ssl":
            kwargs["ssl_context"] = self._tls.server_context()
            # LoopbackController.factory() lets AUTH through on TLS transports.
        return LoopbackController(_RecordingHandler(self), **kwargs)

    @property
    def running(self) -> bool:
        """True while the server is accepting connections."""
        return self._controller is not None

    def start(self) -> None:
        """Start (or restart) listening; returns once the server answers."""
        if self._controller is not None:
            return
        controller = self._build_controller()
        try:
            controller.start()
        except BaseException:
            controller.abort()
            raise
        self.port = controller.port
        self._controller = controller

    def stop(self) -> None:
        """Stop listening and release the port; safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def clear(self) -> None:
        """Forget every recorded message and envelope."""
        with self._lock:
            self.messages.clear()
            self.envelopes.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Wait until at least ``count`` messages arrived and return them all."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
                got = len(self.messages)
                subjects = [str(m.get("subject", "")) for m in self.messages]
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"expected {count} message(s) on SMTP {self.mode} server "
                    f"{self.host}:{self.port} within {timeout:.1f}s, got {got}: "
                    f"subjects={subjects!r}"
                )
            time.sleep(0.02)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SMTPTestServer {self.mode} {self.host}:{self.port} {state}>"


@pytest.fixture(scope="session")
def smtp_tls_material(tmp_path_factory) -> TLSMaterial:
    """Self-signed cert/key for 127.0.0.1 + localhost, generated once per session."""
    return make_tls_material(tmp_path_factory.mktemp("smtp-tls"))


def _running(server: SMTPTestServer):
    """Start ``server`` for one test and stop it afterwards, whatever happens."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server():
    """Plain SMTP server (no TLS, no auth) on an ephemeral loopback port."""
    yield from _running(SMTPTestServer())


@pytest.fixture
def smtp_tls_server(smtp_tls_material):
    """SMTP server requiring STARTTLS, then AUTH PLAIN/LOGIN as mailer/mail-secret."""
    yield from _running(
        SMTPTestServer(mode="starttls", tls=smtp_tls_material, username=SMTP_USERNAME, password=SMTP_PASSWORD)
    )


@pytest.fixture
def smtp_ssl_server(smtp_tls_material):
    """SMTPS (implicit TLS) server with AUTH PLAIN/LOGIN as mailer/mail-secret."""
    yield from _running(
        SMTPTestServer(mode="ssl", tls=smtp_tls_material, username=SMTP_USERNAME, password=SMTP_PASSWORD)
    )
