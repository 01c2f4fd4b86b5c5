"""Credentials beyond the password hash: recovery codes, password history, single-use
account tokens (password reset, invitations), and the per-organisation password and
two-factor policies."""

from __future__ import annotations

import peewee

from .account import Account
from .db import BaseModel, utcnow
from .organisation import Organisation

STRENGTH_PRESETS = ("basic", "medium", "advanced", "nist")
MFA_MODES = ("off", "all", "selected", "all_except")
TOKEN_PURPOSES = ("password_reset", "invitation")


class RecoveryCode(BaseModel):
    """One single-use recovery code of an account, stored only as a hash."""

    account = peewee.ForeignKeyField(Account, backref="recovery_codes", on_delete="CASCADE")
    code_hash = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    used_at = peewee.DateTimeField(null=True)


class PasswordHistory(BaseModel):
    """A previous password hash, so a new password can be required to differ."""

    account = peewee.ForeignKeyField(Account, backref="password_history", on_delete="CASCADE")
    password_hash = peewee.CharField(max_length=255)
    created_at = peewee.DateTimeField(default=utcnow)


class AccountToken(BaseModel):
    """A single-use emailed link for an account (password reset, invitation)."""

    account = peewee.ForeignKeyField(Account, backref="tokens", on_delete="CASCADE")
    purpose = peewee.CharField(max_length=32)
    token_hash = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()
    used_at = peewee.DateTimeField(null=True)


class PasswordPolicy(BaseModel):
    """An organisation's password rules and lockout."""

    organisation = peewee.ForeignKeyField(Organisation, backref="password_policies", on_delete="CASCADE", unique=True)
    expiry_days = peewee.IntegerField(null=True)  # None: never expires
    history_count = peewee.IntegerField(default=0)
    strength = peewee.CharField(max_length=16, default="nist")
    lockout_threshold = peewee.IntegerField(default=10)
    lockout_minutes = peewee.IntegerField(default=15)
    updated_at = peewee.DateTimeField(default=utcnow)


class MfaPolicy(BaseModel):
    """An organisation's two-factor enforcement."""

    organisation = peewee.ForeignKeyField(Organisation, backref="mfa_policies", on_delete="CASCADE", unique=True)
    mode = peewee.CharField(max_length=16, default="off")
    updated_at = peewee.DateTimeField(default=utcnow)


class MfaPolicyAccount(BaseModel):
    """An account selected (mode "selected") or excluded (mode "all_except")."""

    policy = peewee.ForeignKeyField(MfaPolicy, backref="accounts", on_delete="CASCADE")
    account = peewee.ForeignKeyField(Account, backref="mfa_policy_entries", on_delete="CASCADE")

    class Meta:
        indexes = ((("policy", "account"), True),)
