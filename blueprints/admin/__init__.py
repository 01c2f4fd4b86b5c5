"""The admin console: users, the admin team and the organisation's settings.

Every view declares the capability it needs with ``@requires`` (see services/access.py);
a view without one answers 403 to everyone, so a new page is closed until it says who
may use it. Views act on the signed-in admin's organisation (and, for users and the
team, the organisations below it); objects elsewhere answer 404, as if they did not exist.
"""

from flask import Blueprint, current_app, g, redirect, request, url_for
from flask_login import current_user

from services import access
from services import audit as audit_service

bp = Blueprint("admin", __name__, url_prefix="/admin")

# The console's navigation: endpoint, label, capability. Pages not built yet are skipped.
NAV = (
    ("admin.home", "Dashboard", "dashboard"),
    ("admin.user_list", "Users", "users"),
    ("admin.team_list", "Technicians & team", "team"),
    ("admin.directory_list", "Directories", "settings"),
    ("admin.mail_server_list", "Mail servers", "settings"),
    ("admin.profile_list", "Approval profiles", "settings"),
    ("admin.policy_list", "Policies", "settings"),
    ("admin.policy_tester", "Policy tester", "settings"),
    ("admin.password_policy_edit", "Password policy", "password_policy"),
    ("admin.mfa_policy_edit", "Two-factor enforcement", "settings"),
    ("admin.audit_list", "Audit log", "audit"),
)


def requires(capability: str):
    """Mark a view as needing ``capability`` (checked before the view runs)."""
    if capability not in access.CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}")

    def mark(view):
        view.capability = capability
        return view

    return mark


@bp.before_request
def _require_capability():
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return None  # no such page: the 404 handler answers
    capability = getattr(view, "capability", None)
    if capability is not None and current_user.can(capability):
        g.audit_acting_for = audit_service.acting_for(acting_for())
        return None
    from ..errors import render_error

    if not access.is_admin_role(current_user.role):
        message = f"This page is for your organisation's administrators. Ask {access.whom_to_ask(current_user.account)} if you need something changed."
    else:
        what = access.CAPABILITIES.get(capability, "open this page")
        message = f"Your role does not let you {what}. Ask {access.whom_to_ask(current_user.account)} to do it for you, or to give you access."
    return render_error(403, message=message)


def _nav_current(endpoint: str) -> str | None:
    """The navigation entry a page belongs to: its own, or the one whose endpoint shares
    the longest name prefix (``admin.policy_edit`` belongs to ``admin.policy_list``)."""
    targets = [target for target, _label, _capability in NAV]
    if endpoint in targets:
        return endpoint
    areas = [(target.rsplit("_", 1)[0] + "_", target) for target in targets if "_" in target]
    matching = [(len(area), target) for area, target in areas if endpoint.startswith(area)]
    return max(matching)[1] if matching else None


@bp.teardown_request
def _forget_acting_for(_exc=None):
    token = g.pop("audit_acting_for", None)
    if token is not None:
        audit_service.reset_acting_for(token)


@bp.app_context_processor
def _admin_navigation():
    if not (current_user and current_user.is_authenticated):
        return {"admin_nav": [], "admin_nav_current": None}
    return {"admin_nav": [(endpoint, label) for endpoint, label, capability in NAV
                          if endpoint in current_app.view_functions and current_user.can(capability)],
            "admin_nav_current": _nav_current(request.endpoint or ""), "owner_acted_for": owner_acted_for}


def organisation():
    """The organisation the signed-in admin manages."""
    return current_user.account.organisation


def actor() -> str:
    """The name recorded in the audit log for the signed-in admin."""
    return current_user.account.username


def acting_for() -> str | None:
    """Recorded next to the actor in the audit log: the owner a technician acts for, or
    the role an elevated team user acts with."""
    account = current_user.account
    if current_user.session.acting_role and current_user.session.acting_role != account.role:
        return f"elevated to {current_user.session.acting_role}"
    if account.role == "technician":
        owner = owner_acted_for()
        return f"{owner.username} (owner of {account.organisation.slug})" if owner else f"owner of {account.organisation.slug}"
    return None


def owner_acted_for():
    """The owner account a technician acts for: the organisation's first active owner.
    Looked up once per request (the audit context and the page both ask)."""
    from models import Account

    if "owner_acted_for" not in g:
        g.owner_acted_for = (Account.select().where((Account.organisation == current_user.account.organisation_id)
                                                    & (Account.role == "owner") & (Account.status == "active"))
                             .order_by(Account.id).first())
    return g.owner_acted_for


from . import (  # noqa: E402,F401
    audit, directories, home, mail_servers, mfa_policy, password_policy, policies, profiles, team, users,
)
