"""Signed-in sessions, kept server side so that signing out (or an admin) ends them."""

from __future__ import annotations

import peewee

from .account import Account
from .db import BaseModel, utcnow


class UserSession(BaseModel):
    """One signed-in browser. The cookie carries a random token; only its hash is here."""

    token_hash = peewee.CharField(max_length=64, unique=True)
    account = peewee.ForeignKeyField(Account, backref="sessions", on_delete="CASCADE")
    method = peewee.CharField(max_length=32)
    ip = peewee.CharField(max_length=64, default="")
    user_agent = peewee.CharField(max_length=512, default="")
    created_at = peewee.DateTimeField(default=utcnow)
    last_seen_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()
    ended_at = peewee.DateTimeField(null=True)
    acting_role = peewee.CharField(max_length=16, null=True)  # an elevated session: the role it acts with
