"""Integration tests for devtools.smtp_capture: real SMTP in, maildir out."""

import json
import smtplib
import socket
import time
from datetime import timezone
from email.message import EmailMessage

import pytest

from devtools.smtp_capture import (
    SMTPCapture,
    clear_messages,
    list_messages,
    read_message,
)


@pytest.fixture
def capture(tmp_path):
    server = SMTPCapture(tmp_path / "maildir", port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _send(server: SMTPCapture, msg: EmailMessage, to_addrs=None) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.send_message(msg, to_addrs=to_addrs)


def _base(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Gatehouse <noreply@gatehouse.test>"
    msg["To"] = "Alice <alice@example.test>"
    msg["Subject"] = subject
    return msg


def test_multipart_text_and_html_with_links(capture):
    msg = _base("Your sign-in link")
    msg.set_content(
        "Sign in: https://gatehouse.test/login/abc123?next=%2F.\n"
        "Help: http://help.gatehouse.test/faq\n"
    )
    msg.add_alternative(
        '<p><a href="https://gatehouse.test/login/abc123?next=%2F">Sign in</a>'
        ' <a href="https://gatehouse.test/unsubscribe?a=1&amp;b=2">Unsubscribe</a>'
        ' <a href="mailto:help@gatehouse.test">Mail us</a></p>',
        subtype="html",
    )
    _send(capture, msg, to_addrs=["alice@example.test", "audit@example.test"])

    (listed,) = list_messages(capture.maildir)
    got = read_message(capture.maildir, listed.id)
    assert got == listed
    assert got.subject == "Your sign-in link"
    assert got.sender == "Gatehouse <noreply@gatehouse.test>"
    assert got.to == "Alice <alice@example.test>"
    assert got.mail_from == "noreply@gatehouse.test"
    assert got.rcpt_tos == ["alice@example.test", "audit@example.test"]
    assert "Sign in: https://gatehouse.test/login/abc123" in got.text
    assert '<a href="https://gatehouse.test/login/abc123?next=%2F">' in got.html
    assert got.links == [
        "https://gatehouse.test/login/abc123?next=%2F",
        "http://help.gatehouse.test/faq",
        "https://gatehouse.test/unsubscribe?a=1&b=2",
    ]
    assert got.received_at.tzinfo is not None
    assert got.received_at.utcoffset() == timezone.utc.utcoffset(None)


def test_raw_bytes_kept_and_envelope_in_sidecar(capture):
    raw = (
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: raw\r\n"
        b"X-Custom: kept\r\n\r\nbody line\r\n.leading dot\r\n"
    )
    with smtplib.SMTP(capture.host, capture.port, timeout=10) as client:
        client.sendmail("bounce@example.test", ["b@example.test"], raw)

    (eml,) = capture.maildir.glob("*.eml")
    assert eml.read_bytes() == raw
    meta = json.loads(eml.with_suffix(".json").read_text())
    assert meta["mail_from"] == "bounce@example.test"
    assert meta["rcpt_tos"] == ["b@example.test"]
    assert meta["received_at"].endswith("+00:00")
    assert not list(capture.maildir.glob(".*")), "no temporary files left behind"


def test_quoted_printable_base64_and_non_ascii_subject(capture):
    qp = _base("Grüße aus Zürich — Zugang für Zoë ✓")
    long_line = "Bitte bestätigen Sie Ihre Adresse: https://gatehouse.test/verify/" + "x" * 80
    qp.set_content(f"Hallo Jürgen,\n{long_line}\n", cte="quoted-printable")
    _send(capture, qp)

    b64 = _base("base64 body")
    b64.set_content("Ce lien expire bientôt: https://gatehouse.test/reset/r-42\n", cte="base64")
    _send(capture, b64)

    raw_files = sorted(p.read_bytes() for p in capture.maildir.glob("*.eml"))
    assert any(b"=?utf-8?" in r for r in raw_files), "subject went over the wire RFC 2047-encoded"
    assert any(b"Content-Transfer-Encoding: quoted-printable" in r for r in raw_files)
    assert any(b"Content-Transfer-Encoding: base64" in r for r in raw_files)

    newest, oldest = list_messages(capture.maildir)
    assert oldest.subject == "Grüße aus Zürich — Zugang für Zoë ✓"
    assert oldest.text == f"Hallo Jürgen,\n{long_line}\n"
    assert oldest.html == ""
    assert oldest.links == ["https://gatehouse.test/verify/" + "x" * 80]

    assert newest.subject == "base64 body"
    assert newest.text == "Ce lien expire bientôt: https://gatehouse.test/reset/r-42\n"
    assert newest.links == ["https://gatehouse.test/reset/r-42"]


def test_newest_first_and_limit(capture):
    for n in range(3):
        msg = _base(f"message {n}")
        msg.set_content(f"number {n}\n")
        _send(capture, msg)
        time.sleep(0.002)

    assert [m.subject for m in list_messages(capture.maildir)] == [
        "message 2",
        "message 1",
        "message 0",
    ]
    assert [m.subject for m in list_messages(capture.maildir, limit=2)] == ["message 2", "message 1"]
    received = [m.received_at for m in list_messages(capture.maildir)]
    assert received == sorted(received, reverse=True)


@pytest.mark.parametrize(
    "bad_id", ["../x", "a/b", "", "..", "a\\b", "x.eml", "/etc/passwd", "a\x00b", "no-such-id", None]
)
def test_bad_or_unknown_ids_return_none(capture, bad_id):
    msg = _base("present")
    msg.set_content("hi\n")
    _send(capture, msg)
    # A file outside the maildir that a traversal would reach.
    (capture.maildir.parent / "x.eml").write_bytes(b"Subject: secret\r\n\r\nsecret\r\n")

    assert read_message(capture.maildir, bad_id) is None


def test_clear_messages(capture):
    for n in range(2):
        msg = _base(f"to clear {n}")
        msg.set_content("bye\n")
        _send(capture, msg)

    assert clear_messages(capture.maildir) == 2
    assert list_messages(capture.maildir) == []
    assert list(capture.maildir.iterdir()) == []
    assert clear_messages(capture.maildir) == 0


def test_missing_maildir_lists_nothing(tmp_path):
    assert list_messages(tmp_path / "nope") == []
    assert read_message(tmp_path / "nope", "123-abc") is None
    assert clear_messages(tmp_path / "nope") == 0


def test_port_in_use_raises_clear_oserror(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]

        server = SMTPCapture(tmp_path / "maildir", port=port)
        started = time.monotonic()
        with pytest.raises(OSError, match=rf"port {port} on 127\.0\.0\.1 is already in use: "):
            server.start()
        assert time.monotonic() - started < 3, "bind failure should be reported promptly"
        assert not server.running
        server.stop()  # harmless after a failed start


def test_stop_releases_port_and_restart_works(tmp_path):
    server = SMTPCapture(tmp_path / "maildir", port=0)
    server.start()
    port = server.port
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", port, timeout=5)

    with SMTPCapture(tmp_path / "maildir", port=port) as again:
        msg = _base("after restart")
        msg.set_content("ok\n")
        _send(again, msg)
    assert [m.subject for m in list_messages(tmp_path / "maildir")] == ["after restart"]
