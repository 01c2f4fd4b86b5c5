"""Append-mostly records: the hash-chained audit log and the email outbox."""

from __future__ import annotations

import peewee

from .db import BaseModel, JSONField, utcnow

OUTBOX_STATUSES = ("queued", "sending", "sent", "failed")


class AuditEvent(BaseModel):
    """One audited event. ``row_hash`` covers the row and ``prev_hash``, chaining every
    row to the one before it, so an edited or deleted row is detectable.

    Organisation and actor are copied as text, not foreign keys: the log outlives what
    it talks about."""

    created_at = peewee.DateTimeField(default=utcnow)
    organisation = peewee.CharField(max_length=64, null=True)
    actor = peewee.CharField(max_length=320, default="")
    acting_for = peewee.CharField(max_length=320, null=True)
    action = peewee.CharField(max_length=64)
    target = peewee.CharField(max_length=320, default="")
    ip = peewee.CharField(max_length=64, default="")
    user_agent = peewee.CharField(max_length=512, default="")
    outcome = peewee.CharField(max_length=16, default="success")
    details = JSONField(default=dict)
    prev_hash = peewee.CharField(max_length=64)
    row_hash = peewee.CharField(max_length=64)

    class Meta:
        # Each filter of the audit page has an index ending in id, so "this value, newest
        # first, before this id" is one ordered index range (keyset paging, no sort).
        indexes = (
            (("created_at",), False),
            (("action", "created_at"), False),
            (("organisation", "id"), False),
            (("actor", "id"), False),
            (("target", "id"), False),
            (("action", "id"), False),
            (("outcome", "id"), False),
        )


class OutboxMessage(BaseModel):
    """An email waiting to be sent, being sent, sent, or given up on.

    Requests only insert rows; delivery workers claim and send them, so a slow or down
    SMTP server never holds up a page."""

    organisation = peewee.CharField(max_length=64, null=True)
    to_addresses = JSONField()
    subject = peewee.CharField(max_length=998)
    text_body = peewee.TextField()
    html_body = peewee.TextField(null=True)
    mail_server_ids = JSONField(null=True)  # ordered; None = the organisation's servers
    status = peewee.CharField(max_length=16, default="queued")
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DateTimeField(default=utcnow)
    locked_until = peewee.DateTimeField(null=True)
    last_error = peewee.TextField(null=True)
    sent_via = peewee.CharField(max_length=100, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    sent_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("status", "next_attempt_at"), False),)
