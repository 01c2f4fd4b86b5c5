"""Connections to the outside: LDAP directories and SMTP mail servers.

Secrets (bind and SMTP passwords) are stored encrypted by ``services.crypto``; the
``*_ref`` columns remember an ``env:NAME`` reference from configuration as code so that an
export writes the reference back instead of the secret.
"""

from __future__ import annotations

import peewee

from .db import BaseModel, JSONField, utcnow
from .organisation import Organisation

TLS_MODES = ("none", "starttls", "ldaps")
SMTP_SECURITY = ("none", "starttls", "ssl")


class Directory(BaseModel):
    """An LDAP / Active Directory connection (an "authentication profile")."""

    organisation = peewee.ForeignKeyField(Organisation, backref="directories", on_delete="CASCADE")
    name = peewee.CharField(max_length=100)
    servers = JSONField(default=list)  # ordered URLs, the first that answers is used
    tls_mode = peewee.CharField(max_length=16, default="none")
    ca_file = peewee.CharField(max_length=1024, null=True)
    verify_certificate = peewee.BooleanField(default=True)
    bind_dn = peewee.CharField(max_length=1024, default="")
    bind_password_encrypted = peewee.TextField(null=True)
    bind_password_ref = peewee.CharField(max_length=128, null=True)
    base_dn = peewee.CharField(max_length=1024)
    login_attributes = JSONField(default=lambda: ["uid"])
    mail_attribute = peewee.CharField(max_length=64, default="mail")
    manager_attribute = peewee.CharField(max_length=64, default="manager")
    group_attribute = peewee.CharField(max_length=64, default="memberOf")
    nested_groups = peewee.BooleanField(default=False)
    connect_timeout = peewee.IntegerField(default=5)
    receive_timeout = peewee.IntegerField(default=10)
    position = peewee.IntegerField(default=0)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("organisation", "name"), True),)


class MailServer(BaseModel):
    """An SMTP relay. An organisation's servers are tried in ``position`` order."""

    organisation = peewee.ForeignKeyField(Organisation, backref="mail_servers", on_delete="CASCADE")
    name = peewee.CharField(max_length=100)
    host = peewee.CharField(max_length=255)
    port = peewee.IntegerField(default=587)
    security = peewee.CharField(max_length=16, default="starttls")
    username = peewee.CharField(max_length=255, default="")
    password_encrypted = peewee.TextField(null=True)
    password_ref = peewee.CharField(max_length=128, null=True)
    from_address = peewee.CharField(max_length=320)
    verify_certificate = peewee.BooleanField(default=True)
    ca_file = peewee.CharField(max_length=1024, null=True)
    timeout = peewee.IntegerField(default=10)
    position = peewee.IntegerField(default=0)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("organisation", "name"), True),)
