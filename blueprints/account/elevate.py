"""Elevation: a team user allowed to elevate becomes an owner for 15 minutes (being built)."""

from . import bp  # noqa: F401
