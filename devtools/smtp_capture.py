"""Embedded SMTP capture server and maildir reader for local development.

This module owns:

* ``SMTPCapture`` - an aiosmtpd server on loopback that accepts every message
  (any sender, any recipient, no auth, no TLS) and stores it in a maildir-like
  directory as ``<UTC ns timestamp>-<random>.eml`` (the raw RFC 5322 bytes,
  untouched) plus a ``.json`` sidecar holding the SMTP envelope.
* ``list_messages`` / ``read_message`` / ``clear_messages`` - the reader used by
  the development inbox page.
* ``LoopbackController`` - an aiosmtpd ``Controller`` that fails fast on bind
  errors, supports port 0 and copes with implicit TLS; the test-suite SMTP
  fixtures reuse it.

Development only: never wire this into a production code path.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

__all__ = [
    "CapturedMessage",
    "LoopbackController",
    "SMTPCapture",
    "clear_messages",
    "list_messages",
    "read_message",
]

# Ids are file stems we generate ourselves; anything else (dots, slashes,
# backslashes, NUL...) is rejected before it gets near the filesystem.
_ID_RE = re.compile(r"^[0-9A-Za-z-]{1,128}$")
_TEXT_URL_RE = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
# Sentence punctuation that commonly trails a URL in plain-text mail.
_TRAILING_PUNCT = ".,;:!?)]}>'\""


class _ImplicitTLSSMTP(SMTP):
    """SMTP session that counts an implicit-TLS transport as encrypted.

    aiosmtpd only treats a session as encrypted after STARTTLS, so with
    implicit TLS it would never offer AUTH while ``auth_require_tls`` is on.
    Switching it off only for connections whose transport really is TLS keeps
    "no AUTH in clear text" without aiosmtpd's insecure-config warning.
    """

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if transport.get_extra_info("sslcontext") is not None:
            self._auth_require_tls = False
            self.session.ssl = transport.get_extra_info("ssl_object")


class LoopbackController(Controller):
    """aiosmtpd ``Controller`` with fast bind failures, port 0 and SMTPS support.

    Stock ``Controller.start`` waits the whole ``ready_timeout`` before
    reporting a bind error, cannot be told to use an ephemeral port (its ready
    check connects to port 0), its ready check has no handshake deadline of
    its own when ``ssl_context`` (implicit TLS) is set, and its SMTP sessions
    never offer AUTH over implicit TLS.
    """

    def factory(self) -> SMTP:
        """Create the per-connection SMTP protocol (TLS-aware for SMTPS)."""
        if self.ssl_context is not None:
            return _ImplicitTLSSMTP(self.handler, **self.SMTP_kwargs)
        return super().factory()

    def _run(self, ready_event: threading.Event) -> None:
        try:
            super()._run(ready_event)
        finally:
            # On a bind error the parent returns without setting the event;
            # setting it here lets start() surface the error immediately.
            ready_event.set()

    def _trigger_server(self) -> None:
        if self._thread_exception is not None:
            raise self._thread_exception
        if self.port == 0 and self.server is not None:
            self.port = self.server.sockets[0].getsockname()[1]
        deadline = max(1.0, self.ready_timeout)
        target = (self.hostname or self._localhost, self.port)
        with socket.create_connection(target, timeout=deadline) as raw:
            if self.ssl_context is None:
                raw.recv(1024)
                return
            # Only a liveness poke at our own listener, so no verification.
            client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client_ctx.check_hostname = False
            client_ctx.verify_mode = ssl.CERT_NONE
            with client_ctx.wrap_socket(raw) as tls:
                tls.recv(1024)

    def abort(self) -> None:
        """Release the thread and event loop after a failed ``start()``."""
        thread = self._thread
        if thread is not None:
            if self.loop.is_running():
                self.loop.call_soon_threadsafe(self.cancel_tasks)
            thread.join(timeout=5)
            self._thread = None
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()
        self._cleanup()


def _write_atomic(path: Path, data: bytes) -> None:
    # A dot-prefixed tmp name never matches the *.eml / *.json globs, so a
    # reader can never observe a half-written file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _CaptureHandler:
    """aiosmtpd handler that stores every DATA payload in the maildir."""

    def __init__(self, maildir: Path):
        self.maildir = maildir

    async def handle_DATA(self, server, session, envelope) -> str:
        """Persist the raw message and its envelope; always accept."""
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        now_ns = time.time_ns()
        stem = f"{now_ns:020d}-{secrets.token_hex(6)}"
        received_at = datetime.fromtimestamp(now_ns / 1e9, tz=timezone.utc)
        meta = {
            "mail_from": envelope.mail_from or "",
            "rcpt_tos": list(envelope.rcpt_tos),
            "received_at": received_at.isoformat(),
        }
        self.maildir.mkdir(parents=True, exist_ok=True)
        # Sidecar first: once the .eml is visible its envelope already exists.
        _write_atomic(self.maildir / f"{stem}.json", json.dumps(meta).encode())
        _write_atomic(self.maildir / f"{stem}.eml", bytes(raw))
        return "250 Message captured"


class SMTPCapture:
    """Loopback SMTP server that writes every received message to ``maildir``.

    ``port=0`` picks an ephemeral port; ``self.port`` holds the real one after
    ``start()``.
    """

    def __init__(self, maildir: Path, host: str = "127.0.0.1", port: int = 2525):
        self.maildir = Path(maildir)
        self.host = host
        self.port = port
        self._controller: LoopbackController | None = None

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``."""
        return self._controller is not None

    def start(self) -> None:
        """Start listening; returns once the server answers connections.

        Raises ``OSError`` with a readable message when the port is taken.
        """
        if self._controller is not None:
            return
        self.maildir.mkdir(parents=True, exist_ok=True)
        controller = LoopbackController(
            _CaptureHandler(self.maildir),
            hostname=self.host,
            port=self.port,
            # Avoids socket.getfqdn(), which can stall on broken DNS.
            server_hostname="localhost",
            ready_timeout=5.0,
        )
        try:
            controller.start()
        except OSError as exc:
            controller.abort()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(
                    exc.errno, f"port {self.port} on {self.host} is already in use: {exc}"
                ) from exc
            raise
        except BaseException:
            controller.abort()
            raise
        self.port = controller.port
        self._controller = controller

    def stop(self) -> None:
        """Stop the server and release the port; safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> "SMTPCapture":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@dataclass
class CapturedMessage:
    """One captured message, decoded for display in the dev inbox."""

    id: str
    received_at: datetime
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    sender: str
    to: str
    text: str
    html: str
    links: list[str] = field(default_factory=list)


class _HrefCollector(HTMLParser):
    """Collects ``href`` attribute values in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if name == "href" and value:
                self.hrefs.append(value.strip())


def _extract_links(text: str, html: str) -> list[str]:
    found: list[str] = []
    for match in _TEXT_URL_RE.finditer(text):
        found.append(match.group(0).rstrip(_TRAILING_PUNCT))
    if html:
        parser = _HrefCollector()
        try:
            parser.feed(html)
            parser.close()
        except Exception:
            pass  # malformed HTML in dev mail should not hide the message
        found.extend(h for h in parser.hrefs if h.lower().startswith(("http://", "https://")))
    return list(dict.fromkeys(u for u in found if u))


def _part_text(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    if part is None:
        return ""
    try:
        return part.get_content()
    except (LookupError, UnicodeError, AssertionError, KeyError):
        # Unknown or lying charset: show something rather than nothing.
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")


def _received_at(stem: str, meta: dict, eml: Path) -> datetime:
    value = meta.get("received_at")
    if value:
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    prefix = stem.split("-", 1)[0]
    if prefix.isdigit():
        return datetime.fromtimestamp(int(prefix) / 1e9, tz=timezone.utc)
    return datetime.fromtimestamp(eml.stat().st_mtime, tz=timezone.utc)


def _load(eml: Path) -> CapturedMessage:
    stem = eml.stem
    raw = eml.read_bytes()
    try:
        meta = json.loads(eml.with_suffix(".json").read_text("utf-8"))
    except (OSError, ValueError):
        meta = {}
    # Bodies keep the wire's CRLF otherwise; the inbox wants plain \n text.
    msg = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
    text = _part_text(msg, "plain")
    html = _part_text(msg, "html")
    return CapturedMessage(
        id=stem,
        received_at=_received_at(stem, meta, eml),
        mail_from=str(meta.get("mail_from", "")),
        rcpt_tos=[str(r) for r in meta.get("rcpt_tos", [])],
        subject=str(msg.get("subject", "") or ""),
        sender=str(msg.get("from", "") or ""),
        to=str(msg.get("to", "") or ""),
        text=text,
        html=html,
        links=_extract_links(text, html),
    )


def _sort_key(path: Path) -> tuple[int, str]:
    prefix = path.stem.split("-", 1)[0]
    return (int(prefix) if prefix.isdigit() else 0, path.stem)


def list_messages(maildir: Path, limit: int = 100) -> list[CapturedMessage]:
    """Return up to ``limit`` captured messages, newest first ([] if no dir)."""
    maildir = Path(maildir)
    if not maildir.is_dir() or limit <= 0:
        return []
    files = sorted(
        (p for p in maildir.glob("*.eml") if _ID_RE.match(p.stem)),
        key=_sort_key,
        reverse=True,
    )
    messages: list[CapturedMessage] = []
    for path in files:
        if len(messages) >= limit:
            break
        try:
            messages.append(_load(path))
        except FileNotFoundError:
            continue  # cleared between glob and read
    return messages


def read_message(maildir: Path, message_id: str) -> CapturedMessage | None:
    """Return the message with ``message_id`` or None (also for invalid ids)."""
    if not isinstance(message_id, str) or not _ID_RE.fullmatch(message_id):
        return None
    path = Path(maildir) / f"{message_id}.eml"
    try:
        return _load(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def clear_messages(maildir: Path) -> int:
    """Delete every captured message and sidecar; return how many messages."""
    maildir = Path(maildir)
    if not maildir.is_dir():
        return 0
    removed = 0
    for path in maildir.glob("*.eml"):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        path.with_suffix(".json").unlink(missing_ok=True)
    # Orphaned sidecars (e.g. a crash between the two writes).
    for path in maildir.glob("*.json"):
        path.unlink(missing_ok=True)
    return removed
