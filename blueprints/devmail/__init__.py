"""The development inbox: mail captured by the embedded SMTP server. Registered only
in development mode."""

from flask import Blueprint

bp = Blueprint("devmail", __name__, url_prefix="/dev/mail")

from . import routes  # noqa: E402,F401
