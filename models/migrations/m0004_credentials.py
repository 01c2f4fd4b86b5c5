"""Credentials: lockout, TOTP and forced-change columns on accounts; recovery codes,
password history, account tokens, password and two-factor policies."""

import peewee
from playhouse.migrate import migrate


def upgrade(database, migrator):
    """Add the account columns and create the credential tables."""

    class Base(peewee.Model):
        class Meta:
            database = None
            legacy_table_names = False

    class Organisation(Base):
        class Meta:
            table_name = "organisation"

    class Account(Base):
        class Meta:
            table_name = "account"

    class RecoveryCode(Base):
        account = peewee.ForeignKeyField(Account, on_delete="CASCADE")
        code_hash = peewee.CharField(max_length=64, unique=True)
        created_at = peewee.DateTimeField()
        used_at = peewee.DateTimeField(null=True)

    class PasswordHistory(Base):
        account = peewee.ForeignKeyField(Account, on_delete="CASCADE")
        password_hash = peewee.CharField(max_length=255)
        created_at = peewee.DateTimeField()

    class AccountToken(Base):
        account = peewee.ForeignKeyField(Account, on_delete="CASCADE")
        purpose = peewee.CharField(max_length=32)
        token_hash = peewee.CharField(max_length=64, unique=True)
        created_at = peewee.DateTimeField()
        expires_at = peewee.DateTimeField()
        used_at = peewee.DateTimeField(null=True)

    class PasswordPolicy(Base):
        organisation = peewee.ForeignKeyField(Organisation, on_delete="CASCADE", unique=True)
        expiry_days = peewee.IntegerField(null=True)
        history_count = peewee.IntegerField()
        strength = peewee.CharField(max_length=16)
        lockout_threshold = peewee.IntegerField()
        lockout_minutes = peewee.IntegerField()
        updated_at = peewee.DateTimeField()

    class MfaPolicy(Base):
        organisation = peewee.ForeignKeyField(Organisation, on_delete="CASCADE", unique=True)
        mode = peewee.CharField(max_length=16)
        updated_at = peewee.DateTimeField()

    class MfaPolicyAccount(Base):
        policy = peewee.ForeignKeyField(MfaPolicy, on_delete="CASCADE")
        account = peewee.ForeignKeyField(Account, on_delete="CASCADE")

        class Meta:
            indexes = ((("policy", "account"), True),)

    tables = [RecoveryCode, PasswordHistory, AccountToken, PasswordPolicy, MfaPolicy, MfaPolicyAccount]
    with database.bind_ctx(tables):
        database.create_tables(tables)
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
