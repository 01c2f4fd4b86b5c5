"""The hash-chained audit log: records, secret scrubbing, tamper detection, concurrency."""

import threading

import pytest

from models import AuditEvent, db
from services import audit


def test_events_are_chained_and_verify(database):
    first = audit.record("sign_in.requested", actor="ann", target="ann", ip="192.0.2.1", organisation="acme")
    second = audit.record("sign_in.completed", actor="ann", target="ann", ip="192.0.2.1", organisation="acme")
    assert first.prev_hash == audit.GENESIS
    assert second.prev_hash == first.row_hash
    result = audit.verify()
    assert result.ok and result.checked == 2


def test_secrets_never_reach_the_log(database):
    event = audit.record("link.sent", details={"token": "abc", "new_password": "pw", "recipient": "a@b.test", "nested": {"api_key": "k"}})
    stored = AuditEvent.get_by_id(event.id).details
    assert stored == {"token": "[redacted]", "new_password": "[redacted]", "recipient": "a@b.test", "nested": {"api_key": "[redacted]"}}


def test_unknown_outcome_is_refused(database):
    with pytest.raises(ValueError, match="outcome must be one of"):
        audit.record("x", outcome="maybe")


def test_an_edited_row_is_named(database):
    events = [audit.record("event", actor=f"user{i}") for i in range(5)]
    AuditEvent.update(actor="mallory").where(AuditEvent.id == events[2].id).execute()
    result = audit.verify()
    assert not result.ok
    assert result.broken_id == events[2].id
    assert "edited" in result.reason
    assert result.checked == 2


def test_a_deleted_row_is_detected_at_the_next_one(database):
    events = [audit.record("event", actor=f"user{i}") for i in range(5)]
    AuditEvent.delete().where(AuditEvent.id == events[1].id).execute()
    result = audit.verify()
    assert not result.ok
    assert result.broken_id == events[2].id
    assert "deleted" in result.reason


def test_verify_walks_more_than_one_batch(database):
    for i in range(7):
        audit.record("event", actor=f"user{i}")
    assert audit.verify(batch=3).checked == 7


def test_concurrent_writers_keep_one_chain(database):
    errors = []

    def write(n):
        try:
            db.connect(reuse_if_open=True)
            for i in range(5):
                audit.record("concurrent", actor=f"worker{n}", details={"i": i})
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = audit.verify()
    assert result.ok and result.checked == 20
