"""Mail servers of an organisation: save (secrets encrypted), delete, send a test email."""

from __future__ import annotations

import smtplib
import time
from dataclasses import dataclass
from email.utils import parseaddr

from models import SMTP_SECURITY, MailServer, Organisation, OutboxMessage, ProfileMailServer, db, utcnow

from . import audit, crypto, mailer


class MailServerError(Exception):
    """Why a mail server cannot be saved or deleted; ``field`` names the form field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


FIELDS = ("name", "host", "port", "security", "username", "from_address", "verify_certificate", "ca_file", "timeout")


def save(
    organisation: Organisation, server: MailServer | None, values: dict, *, password: str | None = None,
    clear_password: bool = False, actor: str,
) -> MailServer:
    """Create (``server`` None) or update a mail server from validated form ``values``.

    ``password`` None keeps the stored password; ``clear_password`` removes it."""
    name = values["name"].strip()
    if values["security"] not in SMTP_SECURITY:
        raise MailServerError("choose none, STARTTLS or SSL/TLS", "security")
    if "@" not in parseaddr(values["from_address"])[1]:
        raise MailServerError("enter an address like Gatehouse <no-reply@example.com>", "from_address")
    with db.atomic():
        clash = MailServer.select().where((MailServer.organisation == organisation) & (MailServer.name == name))
        if server is not None:
            clash = clash.where(MailServer.id != server.id)
        if clash.exists():
            raise MailServerError(f"another mail server is already called {name!r}", "name")
        creating = server is None
        if creating:
            last = MailServer.select().where(MailServer.organisation == organisation).count()
            server = MailServer(organisation=organisation, position=last)
        for field in FIELDS:
            setattr(server, field, values[field])
        server.name = name
        server.ca_file = (values.get("ca_file") or "").strip() or None
        crypto.store_secret(server, "password", "" if clear_password else (password or None))
        server.updated_at = utcnow()
        server.save()
        audit.record(
            "mail_server.created" if creating else "mail_server.updated", actor=actor, organisation=organisation.slug,
            target=name, details={"host": server.host, "port": server.port, "security": server.security,
                                  "password_changed": bool(password) or clear_password},
        )
    return server


def profiles_using(server: MailServer) -> list[str]:
    """Names of the approval profiles that send through ``server``."""
    return [link.profile.name for link in ProfileMailServer.select().where(ProfileMailServer.mail_server == server)]


def delete(server: MailServer, *, actor: str) -> None:
    """Delete a mail server that no approval profile uses."""
    users = profiles_using(server)
    if users:
        raise MailServerError(
            f"{server.name} is used by the approval profile{'s' if len(users) > 1 else ''} {', '.join(users)}: "
            "remove it there first"
        )
    with db.atomic():
        server.delete_instance()
        audit.record("mail_server.deleted", actor=actor, organisation=server.organisation.slug, target=server.name)


@dataclass
class TestResult:
    """The outcome of sending a test email right now."""

    ok: bool
    message: str
    milliseconds: float


def send_test(server: MailServer, recipient: str, *, actor: str) -> TestResult:
    """Send a test email through ``server`` now (not through the outbox: the admin is
    waiting for the answer) and say what happened."""
    if "@" not in recipient or any(c in recipient for c in "\r\n ,;"):
        return TestResult(False, "Enter one email address to send the test to.", 0.0)
    test = OutboxMessage(
        id=0, to_addresses=[recipient], subject="Gatehouse test email",
        text_body=f"This is a test email from Gatehouse, sent through the mail server {server.name} "
        f"({server.host}:{server.port}). If you can read it, email from Gatehouse reaches this address.",
    )
    started = time.perf_counter()
    try:
        smtp = mailer.open_smtp(server)
        try:
            smtp.send_message(mailer.build_email(test, server.from_address), to_addrs=[recipient])
        finally:
            smtp.close()
        ok, message = True, f"Sent to {recipient}. Check that inbox."
    except (smtplib.SMTPException, OSError, crypto.SecretUnreadable) as exc:
        ok, message = False, f"Not sent: {mailer.describe_error(exc)}."
    elapsed = (time.perf_counter() - started) * 1000
    audit.record(
        "mail_server.tested", actor=actor, organisation=server.organisation.slug, target=server.name,
        outcome="success" if ok else "failure", details={"recipient": recipient, "result": message},
    )
    return TestResult(ok, message, elapsed)
