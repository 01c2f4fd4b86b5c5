"""Approval profiles, policies, server-side sessions and local account passwords."""

import peewee
from playhouse.migrate import migrate

from ..db import JSONField


def upgrade(database, migrator):
    """Create the approval and session tables; add password columns to accounts."""

    class Base(peewee.Model):
        class Meta:
            database = None
            legacy_table_names = False

    class Organisation(Base):
        class Meta:
            table_name = "organisation"

    class Directory(Base):
        class Meta:
            table_name = "directory"

    class MailServer(Base):
        class Meta:
            table_name = "mail_server"

    class Account(Base):
        class Meta:
            table_name = "account"

    class ApprovalProfile(Base):
        organisation = peewee.ForeignKeyField(Organisation, on_delete="CASCADE")
        name = peewee.CharField(max_length=100)
        kind = peewee.CharField(max_length=16)
        server_url = peewee.CharField(max_length=512)
        subject = peewee.CharField(max_length=200)
        message = peewee.TextField()
        link_lifetime_minutes = peewee.IntegerField()
        notify_manager_on_failure = peewee.BooleanField()
        first_factor = peewee.CharField(max_length=16)
        fallback_approver = peewee.CharField(max_length=320, null=True)
        is_default = peewee.BooleanField()
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            indexes = ((("organisation", "name"), True),)

    class ProfileMailServer(Base):
        profile = peewee.ForeignKeyField(ApprovalProfile, on_delete="CASCADE")
        mail_server = peewee.ForeignKeyField(MailServer, on_delete="RESTRICT")
        position = peewee.IntegerField()

        class Meta:
            indexes = ((("profile", "mail_server"), True),)

    class ProfileDirectory(Base):
        profile = peewee.ForeignKeyField(ApprovalProfile, on_delete="CASCADE")
        directory = peewee.ForeignKeyField(Directory, null=True, on_delete="RESTRICT")
        position = peewee.IntegerField()

    class Policy(Base):
        organisation = peewee.ForeignKeyField(Organisation, on_delete="CASCADE")
        position = peewee.IntegerField()
        name = peewee.CharField(max_length=100)
        profile = peewee.ForeignKeyField(ApprovalProfile, on_delete="RESTRICT")
        directory = peewee.ForeignKeyField(Directory, null=True, on_delete="RESTRICT")
        attribute = peewee.CharField(max_length=64)
        values = JSONField()
        enabled = peewee.BooleanField()
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            indexes = ((("organisation", "position"), False),)

    class UserSession(Base):
        token_hash = peewee.CharField(max_length=64, unique=True)
        account = peewee.ForeignKeyField(Account, on_delete="CASCADE")
        method = peewee.CharField(max_length=32)
        ip = peewee.CharField(max_length=64)
        user_agent = peewee.CharField(max_length=512)
        created_at = peewee.DateTimeField()
        last_seen_at = peewee.DateTimeField()
        expires_at = peewee.DateTimeField()
        ended_at = peewee.DateTimeField(null=True)

    tables = [ApprovalProfile, ProfileMailServer, ProfileDirectory, Policy, UserSession]
    with database.bind_ctx(tables):
        database.create_tables(tables)
    migrate(
        migrator.add_column("account", "password_hash", peewee.CharField(max_length=255, null=True)),
        migrator.add_column("account", "password_changed_at", peewee.DateTimeField(null=True)),
    )
