"""Admin console: account permissions, invitation and deactivation times; the role a
session acts with (elevation)."""

import peewee
from playhouse.migrate import migrate


def upgrade(database, migrator):
    """Add the account and session columns."""
    migrate(
        migrator.add_column("account", "permissions", peewee.TextField(default="[]")),
        migrator.add_column("account", "invited_at", peewee.DateTimeField(null=True)),
        migrator.add_column("account", "deactivated_at", peewee.DateTimeField(null=True)),
        migrator.add_column("user_session", "acting_role", peewee.CharField(max_length=16, null=True)),
    )
