"""Signing in and out."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import invitation, routes  # noqa: E402,F401
