"""Email sign-in pages: the waiting page, the emailed link (/l/<token>) and the
manager's approval page (/a/<token>)."""

from flask import Blueprint

bp = Blueprint("approvals", __name__)

from . import routes  # noqa: E402,F401
