"""Admin console: users (being built)."""

from . import bp  # noqa: F401
