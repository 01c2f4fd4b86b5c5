"""Approval profiles, policies, server-side sessions and local account passwords."""

import peewee
from playhouse.migrate import migrate

from ..db import JSONField
from .frozen import FrozenModel, create_tables, existing


def upgrade(database, migrator):
    """Create the approval and session tables; add password columns to accounts."""

    Organisation = existing("organisation")
    Directory = existing("directory")
    MailServer = existing("mail_server")
    Account = existing("account")

    class ApprovalProfile(FrozenModel):
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

    class ProfileMailServer(FrozenModel):
        profile = peewee.ForeignKeyField(ApprovalProfile, on_delete="CASCADE")
        mail_server = peewee.ForeignKeyField(MailServer, on_delete="RESTRICT")
        position = peewee.IntegerField()

        class Meta:
            indexes = ((("profile", "mail_server"), True),)

    class ProfileDirectory(FrozenModel):
        profile = peewee.ForeignKeyField(ApprovalProfile, on_delete="CASCADE")
        directory = peewee.ForeignKeyField(Directory, null=True, on_delete="RESTRICT")
        position = peewee.IntegerField()

    class Policy(FrozenModel):
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

    class UserSession(FrozenModel):
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
    create_tables(database, tables)
    migrate(
        migrator.add_column("account", "password_hash", peewee.CharField(max_length=255, null=True)),
        migrator.add_column("account", "password_changed_at", peewee.DateTimeField(null=True)),
    )
