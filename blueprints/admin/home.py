"""URL map (under /admin):

    GET  /          home              the dashboard: today's sign-ins, what needs attention,
                                      and (with the settings capability) the configuration
    GET  /health    dashboard_health  LDAP and SMTP reachability (HTMX loads it into the
                                      dashboard after the page, so a slow server never holds it up)

Every number links to the list behind it: the audit log filtered, or the users page.
"""

from __future__ import annotations

from flask import current_app, url_for
from flask_login import current_user

from models import ApprovalProfile, Directory, MailServer, Policy
from services import dashboard

from ..rendering import render
from . import bp, organisation, requires


def _users_url(**filters) -> str | None:
    """The users page with ``filters``, when that page exists."""
    if "admin.user_list" not in current_app.view_functions or not current_user.can("users"):
        return None
    return url_for("admin.user_list", **filters)


def _audit_url(filters: dict) -> str | None:
    """The audit log with ``filters``, when the admin may read it."""
    return url_for("admin.audit_list", **filters) if current_user.can("audit") else None


@bp.get("/")
@requires("dashboard")
def home():
    """Today's sign-ins, what needs attention, connection health, configuration."""
    org = organisation()
    counts = None
    if current_user.can("settings"):
        counts = {
            "directories": Directory.select().where(Directory.organisation == org).count(),
            "mail_servers": MailServer.select().where(MailServer.organisation == org).count(),
            "profiles": ApprovalProfile.select().where(ApprovalProfile.organisation == org).count(),
            "policies": Policy.select().where(Policy.organisation == org).count(),
        }
    return render("admin/home.html", summary=dashboard.summary(org), counts=counts,
                  audit_url=_audit_url, locked_url=_users_url(status="locked"))


@bp.get("/health")
@requires("settings")  # server addresses and errors are the organisation's settings
def dashboard_health():
    """Whether the organisation's directories and mail servers answer (short timeouts)."""
    report = dashboard.connection_health(organisation())
    return render("admin/home.html", health=report, health_loaded=True, standalone=True)
