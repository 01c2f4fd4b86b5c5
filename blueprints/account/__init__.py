"""Two-factor authentication: the second-factor step of every sign-in (``/login/totp``)
and the account's own two-factor page (``/account/2fa``)."""

from flask import Blueprint

bp = Blueprint("account", __name__)

from . import elevate, routes  # noqa: E402,F401
