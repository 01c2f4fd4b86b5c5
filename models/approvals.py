"""Email approval profiles and the ordered policies that choose between them."""

from __future__ import annotations

import peewee

from .connections import Directory, MailServer
from .db import BaseModel, JSONField, utcnow
from .organisation import Organisation

PROFILE_KINDS = ("user", "manager")
FIRST_FACTORS = ("password", "email_link", "none")


class ApprovalProfile(BaseModel):
    """How an email sign-in is approved: by the user (a link to themselves) or by their
    manager, with the message, link lifetime, mail servers and directories to use."""

    organisation = peewee.ForeignKeyField(Organisation, backref="approval_profiles", on_delete="CASCADE")
    name = peewee.CharField(max_length=100)
    kind = peewee.CharField(max_length=16, default="user")
    server_url = peewee.CharField(max_length=512)
    subject = peewee.CharField(max_length=200)
    message = peewee.TextField()
    link_lifetime_minutes = peewee.IntegerField(default=15)
    notify_manager_on_failure = peewee.BooleanField(default=False)
    first_factor = peewee.CharField(max_length=16, default="password")
    fallback_approver = peewee.CharField(max_length=320, null=True)
    is_default = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("organisation", "name"), True),)


class ProfileMailServer(BaseModel):
    """A mail server of a profile, tried in ``position`` order."""

    profile = peewee.ForeignKeyField(ApprovalProfile, backref="mail_server_links", on_delete="CASCADE")
    mail_server = peewee.ForeignKeyField(MailServer, backref="profile_links", on_delete="RESTRICT")
    position = peewee.IntegerField(default=0)

    class Meta:
        indexes = ((("profile", "mail_server"), True),)


class ProfileDirectory(BaseModel):
    """A fallback directory of a profile, searched in ``position`` order.
    ``directory`` NULL is the built-in local directory (local accounts)."""

    profile = peewee.ForeignKeyField(ApprovalProfile, backref="directory_links", on_delete="CASCADE")
    directory = peewee.ForeignKeyField(Directory, null=True, backref="profile_links", on_delete="RESTRICT")
    position = peewee.IntegerField(default=0)


class Policy(BaseModel):
    """One rule of the ordered policy list: users of ``directory`` whose ``attribute``
    matches one of ``values`` sign in with ``profile``. First match wins."""

    organisation = peewee.ForeignKeyField(Organisation, backref="policies", on_delete="CASCADE")
    position = peewee.IntegerField(default=0)
    name = peewee.CharField(max_length=100, default="")
    profile = peewee.ForeignKeyField(ApprovalProfile, backref="policies", on_delete="RESTRICT")
    directory = peewee.ForeignKeyField(Directory, null=True, backref="policies", on_delete="RESTRICT")
    attribute = peewee.CharField(max_length=64)
    values = JSONField(default=list)
    enabled = peewee.BooleanField(default=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("organisation", "position"), False),)
