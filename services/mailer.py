"""Email: the durable outbox, SMTP delivery with failover, and the delivery worker.

Requests call ``queue`` (one INSERT) and return at once. Workers call ``deliver_due``:
they claim due messages (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a conditional UPDATE
on SQLite, so several workers never send one message twice), try the mail servers in
order, and on failure put the message back with exponential backoff until it is sent or
``MAX_ATTEMPTS`` is reached. A claimed message whose worker died is claimed again once
its lease runs out.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from peewee import fn

from models import MailServer, Organisation, OutboxMessage, db, is_postgres, utcnow

from . import audit, crypto

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE = dt.timedelta(minutes=5)


class DeliveryFailed(Exception):
    """No mail server accepted the message; the text says why for each server."""


def backoff(attempts: int) -> dt.timedelta:
    """How long to wait before attempt number ``attempts + 1``: 15 s doubling, at most 1 h."""
    return dt.timedelta(seconds=min(15 * 2 ** max(attempts - 1, 0), 3600))


def queue(
    to: str | list[str],
    subject: str,
    text: str,
    html: str | None = None,
    *,
    organisation: Organisation | str | None = None,
    mail_servers: list[MailServer] | None = None,
) -> OutboxMessage:
    """Put an email in the outbox; a worker sends it. Returns the outbox row."""
    recipients = [to] if isinstance(to, str) else list(to)
    if not recipients or any("@" not in r or "\n" in r or "\r" in r for r in recipients):
        raise ValueError(f"not a valid recipient list: {recipients!r}")
    slug = organisation.slug if isinstance(organisation, Organisation) else organisation
    return OutboxMessage.create(
        organisation=slug,
        to_addresses=recipients,
        subject=" ".join(subject.split()),  # no header injection through the subject
        text_body=text,
        html_body=html,
        mail_server_ids=[s.id for s in mail_servers] if mail_servers else None,
    )


def servers_for(message: OutboxMessage) -> list[MailServer]:
    """The mail servers to try for ``message``, in order."""
    if message.mail_server_ids:
        by_id = {s.id: s for s in MailServer.select().where(MailServer.id.in_(message.mail_server_ids))}
        return [by_id[i] for i in message.mail_server_ids if i in by_id]
    if message.organisation:
        return list(
            MailServer.select()
            .join(Organisation)
            .where(Organisation.slug == message.organisation)
            .order_by(MailServer.position, MailServer.id)
        )
    return []


def build_email(message: OutboxMessage, from_address: str) -> EmailMessage:
    """The RFC 5322 message for an outbox row, text with an HTML alternative."""
    email = EmailMessage()
    email["From"] = from_address
    email["To"] = ", ".join(message.to_addresses)
    email["Subject"] = message.subject
    email["Date"] = formatdate(localtime=False)
    domain = from_address.rpartition("@")[2] or "gatehouse.invalid"
    email["Message-ID"] = make_msgid(idstring=f"outbox-{message.id}", domain=domain)
    email.set_content(message.text_body)
    if message.html_body:
        email.add_alternative(message.html_body, subtype="html")
    return email


def tls_context(server: MailServer) -> ssl.SSLContext:
    """A TLS context that verifies the server certificate unless the admin turned it off.

    smtplib (and so Flask-Mail) verifies nothing without an explicit context."""
    context = ssl.create_default_context(cafile=server.ca_file or None)
    if not server.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def open_smtp(server: MailServer) -> smtplib.SMTP:
    """Connect, secure and authenticate to ``server``; the caller closes the connection."""
    if server.security == "ssl":
        smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout, context=tls_context(server))
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
    try:
        smtp.ehlo()
        if server.security == "starttls":
            smtp.starttls(context=tls_context(server))
            smtp.ehlo()
        if server.username:
            password = crypto.decrypt(server.password_encrypted) if server.password_encrypted else ""
            smtp.login(server.username, password)
    except BaseException:
        smtp.close()
        raise
    return smtp


def describe_error(exc: BaseException) -> str:
    """A one-line, secret-free explanation of an SMTP failure for admins."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running and the port right?)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "authentication failed: check the username and password"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "the server does not support STARTTLS: choose another security mode"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the server answered {exc.smtp_code}: {exc.smtp_error.decode('utf-8', 'replace')[:200]}"
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"[:300]


def send_message(message: OutboxMessage, servers: list[MailServer]) -> MailServer:
    """Send through the first server that accepts it; DeliveryFailed when none does."""
    if not servers:
        raise DeliveryFailed("no mail server is configured for this message's organisation")
    errors = []
    for server in servers:
        try:
            smtp = open_smtp(server)
            try:
                smtp.send_message(build_email(message, server.from_address), to_addrs=message.to_addresses)
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
            return server
        except (smtplib.SMTPException, OSError, crypto.SecretUnreadable) as exc:
            errors.append(f"{server.name} ({server.host}:{server.port}): {describe_error(exc)}")
    raise DeliveryFailed("; ".join(errors))


def claim(limit: int = 10) -> list[OutboxMessage]:
    """Claim up to ``limit`` due messages for this worker; no other worker gets them."""
    now = utcnow()
    due = (
        ((OutboxMessage.status == "queued") & (OutboxMessage.next_attempt_at <= now))
        | ((OutboxMessage.status == "sending") & (OutboxMessage.locked_until < now))
    )
    claimed_values = {
        OutboxMessage.status: "sending",
        OutboxMessage.locked_until: now + LEASE,
        OutboxMessage.attempts: OutboxMessage.attempts + 1,
    }
    if is_postgres():
        with db.atomic():
            ids = [
                m.id
                for m in OutboxMessage.select(OutboxMessage.id)
                .where(due)
                .order_by(OutboxMessage.id)
                .limit(limit)
                .for_update(skip_locked=True)
            ]
            if not ids:
                return []
            OutboxMessage.update(claimed_values).where(OutboxMessage.id.in_(ids)).execute()
    else:
        ids = []
        candidates = OutboxMessage.select(OutboxMessage.id).where(due).order_by(OutboxMessage.id).limit(limit)
        for candidate in list(candidates):
            # The same condition again: only one worker's UPDATE can match the row.
            won = OutboxMessage.update(claimed_values).where((OutboxMessage.id == candidate.id) & due).execute()
            if won:
                ids.append(candidate.id)
    return list(OutboxMessage.select().where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id))


@dataclass
class DeliveryReport:
    """What one ``deliver_due`` pass did."""

    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def deliver_due(limit: int = 10) -> DeliveryReport:
    """Claim due messages and try to send each one; return what happened."""
    report = DeliveryReport()
    for message in claim(limit):
        try:
            server = send_message(message, servers_for(message))
        except DeliveryFailed as exc:
            final = message.attempts >= MAX_ATTEMPTS
            OutboxMessage.update(
                status="failed" if final else "queued",
                next_attempt_at=utcnow() + backoff(message.attempts),
                locked_until=None,
                last_error=str(exc)[:2000],
            ).where(OutboxMessage.id == message.id).execute()
            (report.failed if final else report.retrying).append(message.id)
            log.warning("outbox message %s not sent (attempt %s): %s", message.id, message.attempts, exc)
            if final:
                audit.record(
                    "email.failed", actor="mail-worker", organisation=message.organisation,
                    target=", ".join(message.to_addresses), outcome="failure",
                    details={"outbox_id": message.id, "attempts": message.attempts, "error": str(exc)[:500]},
                )
            continue
        OutboxMessage.update(
            status="sent", sent_at=utcnow(), locked_until=None, last_error=None, sent_via=server.name
        ).where(OutboxMessage.id == message.id).execute()
        report.sent.append(message.id)
        audit.record(
            "email.sent", actor="mail-worker", organisation=message.organisation,
            target=", ".join(message.to_addresses),
            details={"outbox_id": message.id, "server": server.name, "attempts": message.attempts},
        )
    return report


def queue_depth() -> dict:
    """Counts of outbox messages by status (for the health report and the dashboard)."""
    counts = {status: 0 for status in ("queued", "sending", "sent", "failed")}
    query = OutboxMessage.select(OutboxMessage.status, fn.COUNT(OutboxMessage.id)).group_by(OutboxMessage.status)
    for status, count in query.tuples():
        counts[status] = count
    return counts


class Worker(threading.Thread):
    """Delivers the outbox in a loop until ``stop()``; one per process is enough,
    several (threads or processes) are safe together."""

    def __init__(self, database, interval: float = 1.0, batch: int = 10):
        super().__init__(name="gatehouse-mail-worker", daemon=True)
        self.database = database
        self.interval = interval
        self.batch = batch
        self._stop_event = threading.Event()

    def run_once(self) -> DeliveryReport:
        """One pass with its own connection (returned to the pool afterwards)."""
        self.database.connect(reuse_if_open=True)
        try:
            return deliver_due(self.batch)
        finally:
            self.database.close()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                report = self.run_once()
                busy = bool(report.sent or report.retrying or report.failed)
            except Exception:  # a bad pass must not kill the worker; it is logged and retried
                log.exception("mail worker pass failed")
                busy = False
            if not busy:
                self._stop_event.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to end and wait for it."""
        self._stop_event.set()
        self.join(timeout)
