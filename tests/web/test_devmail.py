"""The development inbox: captured mail listed newest first, shown with clickable links,
cleared only after confirmation."""

import smtplib
from email.message import EmailMessage

import pytest

from devtools.smtp_capture import SMTPCapture


@pytest.fixture
def capture(dev_app):
    server = SMTPCapture(dev_app.config["DEV_MAILDIR"], port=0)
    server.start()
    yield server
    server.stop()


def send(capture, subject, text, html=None):
    message = EmailMessage()
    message["From"] = "Gatehouse <no-reply@acme.test>"
    message["To"] = "zoe@acme.test"
    message["Subject"] = subject
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    with smtplib.SMTP(capture.host, capture.port) as smtp:
        smtp.send_message(message)


def test_empty_inbox_explains_itself(dev_client):
    html = dev_client.get("/dev/mail").get_data(as_text=True)
    assert "No messages yet." in html


def test_list_is_newest_first_and_refreshes_as_a_partial(dev_client, capture):
    send(capture, "First message", "one")
    send(capture, "Second message", "two")
    page = dev_client.get("/dev/mail").get_data(as_text=True)
    assert page.index("Second message") < page.index("First message")
    assert 'hx-trigger="every 3s"' in page

    partial = dev_client.get("/dev/mail", htmx=True, target="dev-mail-list")
    body = partial.get_data(as_text=True)
    assert "<html" not in body and body.lstrip().startswith('<div id="dev-mail-list"')
    assert "Second message" in body


def test_message_shows_its_links_clickable_and_escapes_content(dev_client, capture):
    send(capture, "Sign in", "Open http://127.0.0.1:5000/l/abc123 now <script>alert(1)</script>",
         "<p><a href='http://127.0.0.1:5000/a/xyz'>Approve</a></p>")
    page = dev_client.get("/dev/mail").get_data(as_text=True)
    message_url = page.split('class="mail-item" href="')[1].split('"')[0]
    html = dev_client.get(message_url).get_data(as_text=True)
    assert '<a href="http://127.0.0.1:5000/l/abc123">http://127.0.0.1:5000/l/abc123</a>' in html
    assert '<a href="http://127.0.0.1:5000/a/xyz">' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html

    part = dev_client.get(f"{message_url}/html")
    assert "Approve" in part.get_data(as_text=True)
    assert "sandbox" in part.headers["Content-Security-Policy"]
    assert "script-src" not in part.headers["Content-Security-Policy"]  # default-src 'none' forbids scripts


@pytest.mark.parametrize("message_id", ["nope", "..%2F..%2Fsecret_key", "a.b"])
def test_unknown_or_hostile_ids_are_not_found(dev_client, message_id):
    response = dev_client.get(f"/dev/mail/{message_id}")
    assert response.status_code == 404


def test_clearing_asks_first_and_then_deletes(dev_client, capture):
    send(capture, "To be deleted", "x")
    confirm = dev_client.get("/dev/mail/clear")
    assert "Clear the dev inbox?" in confirm.get_data(as_text=True)
    assert "This deletes 1 captured message." in confirm.get_data(as_text=True)
    assert "To be deleted" in dev_client.get("/dev/mail").get_data(as_text=True)  # GET deleted nothing

    response = dev_client.post("/dev/mail/clear")
    assert response.status_code == 303 and response.headers["Location"] == "/dev/mail"
    page = dev_client.get("/dev/mail").get_data(as_text=True)
    assert "Deleted 1 captured message." in page and "No messages yet." in page


def test_clearing_from_htmx_navigates_with_hx_redirect(dev_client, capture):
    send(capture, "To be deleted", "x")
    dev_client.get("/dev/mail")
    response = dev_client.post("/dev/mail/clear", htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/dev/mail"


def test_clearing_needs_the_csrf_token(dev_client, capture):
    send(capture, "Kept", "x")
    assert dev_client.post("/dev/mail/clear", csrf=False).status_code == 400
    assert "Kept" in dev_client.get("/dev/mail").get_data(as_text=True)
