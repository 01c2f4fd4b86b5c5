"""Admin console: audit (being built)."""

from . import bp  # noqa: F401
