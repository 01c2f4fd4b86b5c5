"""Admin console: team (being built)."""

from . import bp  # noqa: F401
