"""The landing page and the health report."""

from flask import Blueprint

bp = Blueprint("core", __name__)

from . import routes, setup  # noqa: E402,F401
