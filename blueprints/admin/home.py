"""URL map: ``/admin/`` overview of the organisation's sign-in configuration."""

from models import ApprovalProfile, Directory, MailServer, Policy

from ..rendering import render
from . import bp, organisation, requires


@bp.get("/")
@requires("dashboard")
def home():
    """What is configured, with a link to each part."""
    org = organisation()
    counts = {
        "directories": Directory.select().where(Directory.organisation == org).count(),
        "mail_servers": MailServer.select().where(MailServer.organisation == org).count(),
        "profiles": ApprovalProfile.select().where(ApprovalProfile.organisation == org).count(),
        "policies": Policy.select().where(Policy.organisation == org).count(),
    }
    return render("admin/home.html", counts=counts)
