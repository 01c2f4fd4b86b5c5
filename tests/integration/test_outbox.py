"""The email outbox against real aiosmtpd servers: delivery, TLS and auth, failover,
retries while a server is down, giving up, and several workers never sending twice."""

import threading

import pytest

from models import AuditEvent, MailServer, Organisation, OutboxMessage, db, utcnow
from services import crypto, mailer
from tests.support.smtp import free_port


@pytest.fixture
def organisation(database):
    return Organisation.create(slug="acme", name="Acme")


def add_server(organisation, server, position=0, **overrides):
    values = dict(
        organisation=organisation, name=f"relay-{position}", host="127.0.0.1", port=server.port if server else free_port(),
        security="none", from_address="Gatehouse <no-reply@acme.test>", position=position, timeout=5,
    )
    values.update(overrides)
    return MailServer.create(**values)


def make_due(message_id):
    OutboxMessage.update(next_attempt_at=utcnow()).where(OutboxMessage.id == message_id).execute()


def test_queue_then_deliver_text_and_html(organisation, smtp_server):
    add_server(organisation, smtp_server)
    message = mailer.queue("ann@acme.test", "Your sign-in link", "Open http://x.test/l/1", "<p><a href='http://x.test/l/1'>Sign in</a></p>", organisation=organisation)
    assert OutboxMessage.get_by_id(message.id).status == "queued"
    assert smtp_server.messages == []  # queueing sends nothing

    report = mailer.deliver_due()
    assert report.sent == [message.id]
    [received] = smtp_server.wait_for(1)
    assert received["To"] == "ann@acme.test"
    assert received["Subject"] == "Your sign-in link"
    assert received.get_body(("plain",)).get_content().strip() == "Open http://x.test/l/1"
    assert "Sign in" in received.get_body(("html",)).get_content()
    stored = OutboxMessage.get_by_id(message.id)
    assert (stored.status, stored.attempts, stored.sent_via) == ("sent", 1, "relay-0")
    assert AuditEvent.get(AuditEvent.action == "email.sent").details["outbox_id"] == message.id
    assert mailer.deliver_due().sent == []  # nothing sent twice


def test_starttls_with_authentication_and_verified_certificate(organisation, smtp_tls_server):
    add_server(
        organisation, smtp_tls_server, security="starttls", username=smtp_tls_server.username,
        password_encrypted=crypto.encrypt(smtp_tls_server.password), ca_file=smtp_tls_server.ca_file,
    )
    mailer.queue("bob@acme.test", "Hello", "Body", organisation=organisation)
    assert len(mailer.deliver_due().sent) == 1
    assert smtp_tls_server.wait_for(1)[0]["To"] == "bob@acme.test"


def test_implicit_tls(organisation, smtp_ssl_server):
    add_server(
        organisation, smtp_ssl_server, security="ssl", username=smtp_ssl_server.username,
        password_encrypted=crypto.encrypt(smtp_ssl_server.password), ca_file=smtp_ssl_server.ca_file,
    )
    mailer.queue("bob@acme.test", "Hello", "Body", organisation=organisation)
    assert len(mailer.deliver_due().sent) == 1


def test_untrusted_certificate_is_refused_and_explained(organisation, smtp_tls_server):
    add_server(
        organisation, smtp_tls_server, security="starttls", username=smtp_tls_server.username,
        password_encrypted=crypto.encrypt(smtp_tls_server.password),
    )
    message = mailer.queue("bob@acme.test", "Hello", "Body", organisation=organisation)
    report = mailer.deliver_due()
    assert report.retrying == [message.id]
    assert "certificate not trusted" in OutboxMessage.get_by_id(message.id).last_error
    assert smtp_tls_server.messages == []


def test_wrong_password_is_explained_without_the_password(organisation, smtp_tls_server):
    add_server(
        organisation, smtp_tls_server, security="starttls", username="mailer",
        password_encrypted=crypto.encrypt("wrong-secret"), ca_file=smtp_tls_server.ca_file,
    )
    message = mailer.queue("bob@acme.test", "Hello", "Body", organisation=organisation)
    mailer.deliver_due()
    error = OutboxMessage.get_by_id(message.id).last_error
    assert "authentication failed" in error and "wrong-secret" not in error


def test_failover_to_the_next_server(organisation, smtp_server):
    add_server(organisation, None, position=0, name="down")
    add_server(organisation, smtp_server, position=1, name="backup")
    message = mailer.queue("ann@acme.test", "Hi", "Body", organisation=organisation)
    assert mailer.deliver_due().sent == [message.id]
    assert OutboxMessage.get_by_id(message.id).sent_via == "backup"
    assert len(smtp_server.wait_for(1)) == 1


def test_message_waits_while_the_server_is_down_and_is_sent_when_it_is_back(organisation, smtp_server):
    add_server(organisation, smtp_server)
    smtp_server.stop()
    message = mailer.queue("ann@acme.test", "Sign in", "Body", organisation=organisation)

    report = mailer.deliver_due()
    stored = OutboxMessage.get_by_id(message.id)
    assert report.retrying == [message.id]
    assert stored.status == "queued" and stored.attempts == 1
    assert "connection refused" in stored.last_error
    assert stored.next_attempt_at > utcnow()
    assert mailer.deliver_due().sent == []  # backoff: not retried before its time

    smtp_server.start()
    make_due(message.id)
    assert mailer.deliver_due().sent == [message.id]
    assert smtp_server.wait_for(1)[0]["Subject"] == "Sign in"


def test_gives_up_after_the_last_attempt(organisation):
    add_server(organisation, None)
    message = mailer.queue("ann@acme.test", "Sign in", "Body", organisation=organisation)
    for _ in range(mailer.MAX_ATTEMPTS):
        make_due(message.id)
        report = mailer.deliver_due()
    assert report.failed == [message.id]
    assert OutboxMessage.get_by_id(message.id).status == "failed"
    failure = AuditEvent.get(AuditEvent.action == "email.failed")
    assert failure.outcome == "failure" and failure.details["attempts"] == mailer.MAX_ATTEMPTS


def test_no_mail_server_configured_is_explained(organisation):
    message = mailer.queue("ann@acme.test", "Sign in", "Body", organisation=organisation)
    mailer.deliver_due()
    assert "no mail server is configured" in OutboxMessage.get_by_id(message.id).last_error


def test_backoff_grows_and_is_capped():
    assert [mailer.backoff(n).total_seconds() for n in (1, 2, 3)] == [15, 30, 60]
    assert mailer.backoff(30).total_seconds() == 3600


@pytest.mark.parametrize("recipient", ["", "not-an-address", "a@b.test\r\nBcc: x@y.test"])
def test_bad_recipients_are_refused(database, recipient):
    with pytest.raises(ValueError):
        mailer.queue(recipient, "s", "t")


def test_subject_cannot_inject_headers(organisation, smtp_server):
    add_server(organisation, smtp_server)
    mailer.queue("ann@acme.test", "Hi\r\nBcc: evil@x.test", "Body", organisation=organisation)
    mailer.deliver_due()
    [received] = smtp_server.wait_for(1)
    assert received["Bcc"] is None and smtp_server.envelopes[0][1] == ["ann@acme.test"]


def test_several_workers_never_send_a_message_twice(organisation, smtp_server):
    add_server(organisation, smtp_server)
    ids = [mailer.queue(f"user{i}@acme.test", f"m{i}", "Body", organisation=organisation).id for i in range(30)]
    sent, errors = [], []

    def work():
        try:
            db.connect(reuse_if_open=True)
            while True:
                report = mailer.deliver_due(limit=3)
                if not (report.sent or report.retrying):
                    break
                sent.extend(report.sent)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            db.close()

    workers = [threading.Thread(target=work) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert sorted(sent) == ids
    smtp_server.wait_for(30)
    assert sorted(m["Subject"] for m in smtp_server.messages) == sorted(f"m{i}" for i in range(30))


def test_a_claim_abandoned_by_a_dead_worker_is_taken_again(organisation, smtp_server):
    add_server(organisation, smtp_server)
    message = mailer.queue("ann@acme.test", "Hi", "Body", organisation=organisation)
    assert [m.id for m in mailer.claim()] == [message.id]
    assert mailer.claim() == []  # leased
    OutboxMessage.update(locked_until=utcnow()).where(OutboxMessage.id == message.id).execute()
    assert mailer.deliver_due().sent == [message.id]


def test_worker_thread_delivers_in_the_background(organisation, smtp_server):
    add_server(organisation, smtp_server)
    worker = mailer.Worker(db.obj, interval=0.05)
    worker.start()
    try:
        mailer.queue("ann@acme.test", "Background", "Body", organisation=organisation)
        assert smtp_server.wait_for(1)[0]["Subject"] == "Background"
    finally:
        worker.stop()
    assert not worker.is_alive()
