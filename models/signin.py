"""Sign-in requests: one attempt to sign in through an emailed link or a manager's approval."""

from __future__ import annotations

import peewee

from .account import Account
from .approvals import ApprovalProfile
from .db import BaseModel, utcnow
from .organisation import Organisation

REQUEST_KINDS = ("user", "manager")
REQUEST_STATUSES = ("pending", "approved", "denied", "expired", "completed", "cancelled")


class SignInRequest(BaseModel):
    """The link token (emailed to the user or the approver) and the browser-binding
    secret (an HttpOnly cookie in the browser that asked) are stored only as hashes."""

    public_id = peewee.CharField(max_length=43, unique=True)
    organisation = peewee.ForeignKeyField(Organisation, backref="sign_in_requests", on_delete="CASCADE")
    # NULL for a decoy: an unknown identifier gets a request that looks the same and sends nothing.
    account = peewee.ForeignKeyField(Account, null=True, backref="sign_in_requests", on_delete="CASCADE")
    profile = peewee.ForeignKeyField(ApprovalProfile, null=True, backref="sign_in_requests", on_delete="SET NULL")
    kind = peewee.CharField(max_length=16)
    status = peewee.CharField(max_length=16, default="pending")
    token_hash = peewee.CharField(max_length=64, unique=True)
    binding_hash = peewee.CharField(max_length=64)
    approver_email = peewee.CharField(max_length=320, null=True)
    ip = peewee.CharField(max_length=64, default="")
    user_agent = peewee.CharField(max_length=512, default="")
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()
    decided_at = peewee.DateTimeField(null=True)
    completed_at = peewee.DateTimeField(null=True)
    # Manager approval whose first factor is the user's own email link: once the user
    # confirms, a manager request follows with the same browser binding.
    escalate = peewee.BooleanField(default=False)
    followed_by = peewee.ForeignKeyField("self", null=True, backref="+", on_delete="SET NULL")

    class Meta:
        indexes = ((("account", "status"), False),)
