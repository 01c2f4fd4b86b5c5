"""Sign-in requests (email link and manager approval)."""

import peewee

from .frozen import FrozenModel, create_tables, existing


def upgrade(database, migrator):
    """Create the sign_in_request table."""

    Organisation = existing("organisation")
    Account = existing("account")
    ApprovalProfile = existing("approval_profile")

    class SignInRequest(FrozenModel):
        public_id = peewee.CharField(max_length=43, unique=True)
        organisation = peewee.ForeignKeyField(Organisation, on_delete="CASCADE")
        account = peewee.ForeignKeyField(Account, null=True, on_delete="CASCADE")
        profile = peewee.ForeignKeyField(ApprovalProfile, null=True, on_delete="SET NULL")
        kind = peewee.CharField(max_length=16)
        status = peewee.CharField(max_length=16)
        token_hash = peewee.CharField(max_length=64, unique=True)
        binding_hash = peewee.CharField(max_length=64)
        approver_email = peewee.CharField(max_length=320, null=True)
        ip = peewee.CharField(max_length=64)
        user_agent = peewee.CharField(max_length=512)
        created_at = peewee.DateTimeField()
        expires_at = peewee.DateTimeField()
        decided_at = peewee.DateTimeField(null=True)
        completed_at = peewee.DateTimeField(null=True)
        escalate = peewee.BooleanField()
        followed_by = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL")

        class Meta:
            indexes = ((("account", "status"), False),)

    create_tables(database, [SignInRequest])
