"""Accounts: anyone who can sign in, local or from a directory."""

from __future__ import annotations

import peewee

from .connections import Directory
from .db import BaseModel, JSONField, utcnow
from .organisation import Organisation

ROLES = ("owner", "technician", "team", "user")
# Extra rights an owner can give a team user, beyond managing users.
PERMISSIONS = ("password_policy",)
STATUSES = ("pending", "active", "inactive")
SOURCES = ("local", "directory")


class Account(BaseModel):
    """A local account (email and optional sponsor stored here) or a directory user,
    keyed by the entry's stable id (entryUUID / objectGUID) with attributes read live."""

    organisation = peewee.ForeignKeyField(Organisation, backref="accounts", on_delete="CASCADE")
    username = peewee.CharField(max_length=256)
    email = peewee.CharField(max_length=320, null=True)
    display_name = peewee.CharField(max_length=200, default="")
    role = peewee.CharField(max_length=16, default="user")
    status = peewee.CharField(max_length=16, default="active")
    source = peewee.CharField(max_length=16, default="local")
    directory = peewee.ForeignKeyField(Directory, null=True, backref="accounts", on_delete="SET NULL")
    external_id = peewee.CharField(max_length=128, null=True)
    sponsor_email = peewee.CharField(max_length=320, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    last_sign_in_at = peewee.DateTimeField(null=True)
    password_hash = peewee.CharField(max_length=255, null=True)
    password_changed_at = peewee.DateTimeField(null=True)
    must_change_password = peewee.BooleanField(default=False)
    failed_attempts = peewee.IntegerField(default=0)
    locked_until = peewee.DateTimeField(null=True)
    totp_secret_encrypted = peewee.TextField(null=True)
    totp_enabled_at = peewee.DateTimeField(null=True)
    totp_last_counter = peewee.BigIntegerField(null=True)  # the last accepted time step: a code works once
    must_enrol_totp = peewee.BooleanField(default=False)
    may_elevate = peewee.BooleanField(default=False)
    permissions = JSONField(default=list)  # names from PERMISSIONS
    invited_at = peewee.DateTimeField(null=True)
    deactivated_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("organisation", "username"), True),)


# The display name from its second / third word, lower-cased; NULL when it has no such
# word. {find} is INSTR on SQLite, STRPOS on PostgreSQL. Written with literals, not
# parameters: a query uses an expression index only with the very same expression.
# Words may be separated by several spaces (LTRIM).
_REST = "LTRIM(SUBSTR(\"display_name\", {find}(\"display_name\", ' ') + 1))"  # from the 2nd word
NAME_WORD_EXPRESSIONS = {
    2: f"CASE WHEN {{find}}(\"display_name\", ' ') > 0 THEN LOWER({_REST}) END",
    3: (f"CASE WHEN {{find}}(\"display_name\", ' ') > 0 AND {{find}}({_REST}, ' ') > 0 "
        f"THEN LOWER(LTRIM(SUBSTR({_REST}, {{find}}({_REST}, ' ') + 1))) END"),
}


class NameFromWord(peewee.ColumnBase):
    """``NAME_WORD_EXPRESSIONS[word]`` for the database the query is built for. The column
    is unqualified: use it in queries that read the account table alone."""

    def __init__(self, word: int):
        super().__init__()
        self.word = word

    def __sql__(self, ctx):
        find = "STRPOS" if ctx.state.param == "%s" else "INSTR"  # PostgreSQL's placeholder is %s
        return ctx.literal("(" + NAME_WORD_EXPRESSIONS[self.word].format(find=find) + ")")


# The users page searches by case-insensitive prefix (services/users.py): one ordered
# index range per searched expression and organisation, the same on SQLite and PostgreSQL.
for _expression, _name in ((peewee.fn.LOWER(Account.username), "account_search_username"),
                           (peewee.fn.LOWER(Account.email), "account_search_email"),
                           (peewee.fn.LOWER(Account.display_name), "account_search_display_name"),
                           (NameFromWord(2), "account_search_name_word2"),
                           (NameFromWord(3), "account_search_name_word3")):
    Account.add_index(Account.index(Account.organisation, _expression, name=_name))
del _expression, _name
