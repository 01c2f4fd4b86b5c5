"""Initial schema: organisations, directories, mail servers, accounts, audit, outbox.

The table definitions below are frozen as of this migration on purpose: later changes
to the models go in new migrations.
"""

import peewee

from ..db import JSONField
from .frozen import FrozenModel, create_tables


def upgrade(database, migrator):
    """Create the first tables."""

    class Organisation(FrozenModel):
        slug = peewee.CharField(max_length=64, unique=True)
        name = peewee.CharField(max_length=200)
        parent = peewee.ForeignKeyField("self", null=True, on_delete="RESTRICT")
        created_at = peewee.DateTimeField()

    class Directory(FrozenModel):
        organisation = peewee.ForeignKeyField(Organisation, on_delete="CASCADE")
        name = peewee.CharField(max_length=100)
        servers = JSONField()
        tls_mode = peewee.CharField(max_length=16)
        ca_file = peewee.CharField(max_length=1024, null=True)
        verify_certificate = peewee.BooleanField()
        bind_dn = peewee.CharField(max_length=1024)
        bind_password_encrypted = peewee.TextField(null=True)
        bind_password_ref = peewee.CharField(max_length=128, null=True)
        base_dn = peewee.CharField(max_length=1024)
        login_attributes = JSONField()
        mail_attribute = peewee.CharField(max_length=64)
        manager_attribute = peewee.CharField(max_length=64)
        group_attribute = peewee.CharField(max_length=64)
        nested_groups = peewee.BooleanField()
        connect_timeout = peewee.IntegerField()
        receive_timeout = peewee.IntegerField()
        position = peewee.IntegerField()
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            indexes = ((("organisation", "name"), True),)

    class MailServer(FrozenModel):
        organisation = peewee.ForeignKeyField(Organisation, on_delete="CASCADE")
        name = peewee.CharField(max_length=100)
        host = peewee.CharField(max_length=255)
        port = peewee.IntegerField()
        security = peewee.CharField(max_length=16)
        username = peewee.CharField(max_length=255)
        password_encrypted = peewee.TextField(null=True)
        password_ref = peewee.CharField(max_length=128, null=True)
        from_address = peewee.CharField(max_length=320)
        verify_certificate = peewee.BooleanField()
        ca_file = peewee.CharField(max_length=1024, null=True)
        timeout = peewee.IntegerField()
        position = peewee.IntegerField()
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            indexes = ((("organisation", "name"), True),)

    class Account(FrozenModel):
        organisation = peewee.ForeignKeyField(Organisation, on_delete="CASCADE")
        username = peewee.CharField(max_length=256)
        email = peewee.CharField(max_length=320, null=True)
        display_name = peewee.CharField(max_length=200)
        role = peewee.CharField(max_length=16)
        status = peewee.CharField(max_length=16)
        source = peewee.CharField(max_length=16)
        directory = peewee.ForeignKeyField(Directory, null=True, on_delete="SET NULL")
        external_id = peewee.CharField(max_length=128, null=True)
        sponsor_email = peewee.CharField(max_length=320, null=True)
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()
        last_sign_in_at = peewee.DateTimeField(null=True)

        class Meta:
            indexes = ((("organisation", "username"), True),)

    class AuditEvent(FrozenModel):
        created_at = peewee.DateTimeField()
        organisation = peewee.CharField(max_length=64, null=True)
        actor = peewee.CharField(max_length=320)
        acting_for = peewee.CharField(max_length=320, null=True)
        action = peewee.CharField(max_length=64)
        target = peewee.CharField(max_length=320)
        ip = peewee.CharField(max_length=64)
        user_agent = peewee.CharField(max_length=512)
        outcome = peewee.CharField(max_length=16)
        details = JSONField()
        prev_hash = peewee.CharField(max_length=64)
        row_hash = peewee.CharField(max_length=64)

        class Meta:
            indexes = ((("created_at",), False), (("action", "created_at"), False))

    class OutboxMessage(FrozenModel):
        organisation = peewee.CharField(max_length=64, null=True)
        to_addresses = JSONField()
        subject = peewee.CharField(max_length=998)
        text_body = peewee.TextField()
        html_body = peewee.TextField(null=True)
        mail_server_ids = JSONField(null=True)
        status = peewee.CharField(max_length=16)
        attempts = peewee.IntegerField()
        next_attempt_at = peewee.DateTimeField()
        locked_until = peewee.DateTimeField(null=True)
        last_error = peewee.TextField(null=True)
        sent_via = peewee.CharField(max_length=100, null=True)
        created_at = peewee.DateTimeField()
        sent_at = peewee.DateTimeField(null=True)

        class Meta:
            indexes = ((("status", "next_attempt_at"), False),)

    tables = [Organisation, Directory, MailServer, Account, AuditEvent, OutboxMessage]
    create_tables(database, tables)
