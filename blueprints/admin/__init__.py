"""The admin console: organisation settings for owners and technicians.

Every view acts on the signed-in admin's organisation; objects of another organisation
answer 404, as if they did not exist.
"""

from flask import Blueprint, redirect, request, url_for
from flask_login import current_user

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _require_admin():
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if not current_user.is_admin:
        from models import Account

        from ..errors import render_error

        owners = [a.display_name or a.username for a in Account.select().where(
            (Account.organisation == current_user.account.organisation_id) & (Account.role == "owner")
            & (Account.status == "active")).order_by(Account.username).limit(5)]
        who = f"an owner of {current_user.account.organisation.name} ({', '.join(owners)})" if owners else "your organisation's owner"
        return render_error(403, message=f"These settings are for owners and technicians. Ask {who} to change them for you, "
                                         "or to give you access.")
    return None


def organisation():
    """The organisation the signed-in admin manages."""
    return current_user.account.organisation


def actor() -> str:
    """The name recorded in the audit log for the signed-in admin."""
    return current_user.account.username


from . import directories, home, mail_servers, mfa_policy, password_policy, policies, profiles  # noqa: E402,F401
