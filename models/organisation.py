"""Organisations: the tenants everything else belongs to."""

from __future__ import annotations

import peewee

from .db import BaseModel, utcnow


class Organisation(BaseModel):
    """A tenant. ``slug`` is the Account ID typed on the SSO page; ``parent`` is the
    organisation whose admins also manage this one (never the reverse)."""

    slug = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=200)
    parent = peewee.ForeignKeyField("self", null=True, backref="children", on_delete="RESTRICT")
    created_at = peewee.DateTimeField(default=utcnow)
