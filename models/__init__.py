"""Peewee models, the database proxy and the schema migrations.

Models import nothing from Flask; ``create_app`` binds ``db`` to a database.
"""

from .account import PERMISSIONS, ROLES, SOURCES, STATUSES, Account
from .approvals import FIRST_FACTORS, PROFILE_KINDS, ApprovalProfile, Policy, ProfileDirectory, ProfileMailServer
from .connections import SMTP_SECURITY, TLS_MODES, Directory, MailServer
from .credentials import (
    MFA_MODES, STRENGTH_PRESETS, TOKEN_PURPOSES, AccountToken, MfaPolicy, MfaPolicyAccount, PasswordHistory,
    PasswordPolicy, RecoveryCode,
)
from .db import DatabaseURLError, JSONField, db, is_postgres, open_database, utcnow
from .organisation import Organisation
from .records import OUTBOX_STATUSES, AuditEvent, OutboxMessage
from .sessions import UserSession
from .signin import REQUEST_KINDS, REQUEST_STATUSES, SignInRequest

# In dependency order: create_tables and the schema comparison test use this list.
ALL_MODELS = [
    Organisation, Directory, MailServer, Account, AuditEvent, OutboxMessage,
    ApprovalProfile, ProfileMailServer, ProfileDirectory, Policy, UserSession, SignInRequest,
    RecoveryCode, PasswordHistory, AccountToken, PasswordPolicy, MfaPolicy, MfaPolicyAccount,
]

__all__ = [
    "ALL_MODELS", "Account", "PERMISSIONS", "AccountToken", "MFA_MODES", "MfaPolicy", "MfaPolicyAccount", "PasswordHistory",
    "PasswordPolicy", "RecoveryCode", "STRENGTH_PRESETS", "TOKEN_PURPOSES", "ApprovalProfile", "FIRST_FACTORS", "PROFILE_KINDS", "Policy",
    "ProfileDirectory", "ProfileMailServer", "REQUEST_KINDS", "REQUEST_STATUSES", "SignInRequest", "UserSession", "AuditEvent", "DatabaseURLError", "Directory", "JSONField",
    "MailServer", "OUTBOX_STATUSES", "Organisation", "OutboxMessage", "ROLES",
    "SMTP_SECURITY", "SOURCES", "STATUSES", "TLS_MODES", "db", "is_postgres",
    "open_database", "utcnow",
]
