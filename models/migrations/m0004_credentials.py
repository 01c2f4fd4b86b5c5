"""Credentials: lockout, TOTP and forced-change columns on accounts; recovery codes,
password history, account tokens, password and two-factor policies."""

import peewee
from playhouse.migrate import migrate

from .frozen import FrozenModel, create_tables, existing


def upgrade(database, migrator):
    """Add the account columns and create the credential tables."""

    Organisation = existing("organisation")
    Account = existing("account")

    class RecoveryCode(FrozenModel):
        account = peewee.ForeignKeyField(Account, on_delete="CASCADE")
        code_hash = peewee.CharField(max_length=64, unique=True)
        created_at = peewee.DateTimeField()
        used_at = peewee.DateTimeField(null=True)

    class PasswordHistory(FrozenModel):
        account = peewee.ForeignKeyField(Account, on_delete="CASCADE")
        password_hash = peewee.CharField(max_length=255)
        created_at = peewee.DateTimeField()

    class AccountToken(FrozenModel):
        account = peewee.ForeignKeyField(Account, on_delete="CASCADE")
        purpose = peewee.CharField(max_length=32)
        token_hash = peewee.CharField(max_length=64, unique=True)
        created_at = peewee.DateTimeField()
        expires_at = peewee.DateTimeField()
        used_at = peewee.DateTimeField(null=True)

    class PasswordPolicy(FrozenModel):
        organisation = peewee.ForeignKeyField(Organisation, on_delete="CASCADE", unique=True)
        expiry_days = peewee.IntegerField(null=True)
        history_count = peewee.IntegerField()
        strength = peewee.CharField(max_length=16)
        lockout_threshold = peewee.IntegerField()
        lockout_minutes = peewee.IntegerField()
        updated_at = peewee.DateTimeField()

    class MfaPolicy(FrozenModel):
        organisation = peewee.ForeignKeyField(Organisation, on_delete="CASCADE", unique=True)
        mode = peewee.CharField(max_length=16)
        updated_at = peewee.DateTimeField()

    class MfaPolicyAccount(FrozenModel):
        policy = peewee.ForeignKeyField(MfaPolicy, on_delete="CASCADE")
        account = peewee.ForeignKeyField(Account, on_delete="CASCADE")

        class Meta:
            indexes = ((("policy", "account"), True),)

    tables = [RecoveryCode, PasswordHistory, AccountToken, PasswordPolicy, MfaPolicy, MfaPolicyAccount]
    create_tables(database, tables)
    migrate(
        migrator.add_column("account", "must_change_password", peewee.BooleanField(default=False)),
        migrator.add_column("account", "failed_attempts", peewee.IntegerField(default=0)),
        migrator.add_column("account", "locked_until", peewee.DateTimeField(null=True)),
        migrator.add_column("account", "totp_secret_encrypted", peewee.TextField(null=True)),
        migrator.add_column("account", "totp_enabled_at", peewee.DateTimeField(null=True)),
        migrator.add_column("account", "totp_last_counter", peewee.BigIntegerField(null=True)),
        migrator.add_column("account", "must_enrol_totp", peewee.BooleanField(default=False)),
        migrator.add_column("account", "may_elevate", peewee.BooleanField(default=False)),
    )
