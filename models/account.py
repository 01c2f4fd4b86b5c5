"""Accounts: anyone who can sign in, local or from a directory."""

from __future__ import annotations

import peewee

from .connections import Directory
from .db import BaseModel, JSONField, utcnow
from .organisation import Organisation

ROLES = ("owner", "technician", "team", "user")
# Extra rights an owner can give a team user, beyond managing users.
PERMISSIONS = ("password_policy",)
STATUSES = ("pending", "active", "inactive")
SOURCES = ("local", "directory")


class Account(BaseModel):
    """A local account (email and optional sponsor stored here) or a directory user,
    keyed by the entry's stable id (entryUUID / objectGUID) with attributes read live."""

    organisation = peewee.ForeignKeyField(Organisation, backref="accounts", on_delete="CASCADE")
    username = peewee.CharField(max_length=256)
    email = peewee.CharField(max_length=320, null=True)
    display_name = peewee.CharField(max_length=200, default="")
    role = peewee.CharField(max_length=16, default="user")
    status = peewee.CharField(max_length=16, default="active")
    source = peewee.CharField(max_length=16, default="local")
    directory = peewee.ForeignKeyField(Directory, null=True, backref="accounts", on_delete="SET NULL")
    external_id = peewee.CharField(max_length=128, null=True)
    sponsor_email = peewee.CharField(max_length=320, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    last_sign_in_at = peewee.DateTimeField(null=True)
    password_hash = peewee.CharField(max_length=255, null=True)
    password_changed_at = peewee.DateTimeField(null=True)
    must_change_password = peewee.BooleanField(default=False)
    failed_attempts = peewee.IntegerField(default=0)
    locked_until = peewee.DateTimeField(null=True)
    totp_secret_encrypted = peewee.TextField(null=True)
    totp_enabled_at = peewee.DateTimeField(null=True)
    totp_last_counter = peewee.BigIntegerField(null=True)  # the last accepted time step: a code works once
    must_enrol_totp = peewee.BooleanField(default=False)
    may_elevate = peewee.BooleanField(default=False)
    permissions = JSONField(default=list)  # names from PERMISSIONS
    invited_at = peewee.DateTimeField(null=True)
    deactivated_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("organisation", "username"), True),)


# The users page searches by case-insensitive prefix (services/users.py): one ordered
# index range per searched column and organisation, the same on SQLite and PostgreSQL.
for _column, _name in ((Account.username, "account_search_username"), (Account.email, "account_search_email"),
                       (Account.display_name, "account_search_display_name")):
    Account.add_index(Account.index(Account.organisation, peewee.fn.LOWER(_column), name=_name))
del _column, _name
