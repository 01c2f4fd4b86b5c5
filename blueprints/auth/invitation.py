"""Accepting an invitation: set a password and activate the account (being built)."""

from . import bp  # noqa: F401
