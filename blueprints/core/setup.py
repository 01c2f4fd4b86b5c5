"""The one-time setup page that creates the first owner (being built)."""

from . import bp  # noqa: F401
