"""The admin console: organisation settings for owners and technicians.

Every view acts on the signed-in admin's organisation; objects of another organisation
answer 404, as if they did not exist.
"""

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _require_admin():
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if not current_user.is_admin:
        abort(403)
    return None


def organisation():
    """The organisation the signed-in admin manages."""
    return current_user.account.organisation


def actor() -> str:
    """The name recorded in the audit log for the signed-in admin."""
    return current_user.account.username


from . import directories, home, mail_servers, mfa_policy, password_policy, policies, profiles  # noqa: E402,F401
