"""Admin: directories (being built)."""

from . import bp  # noqa: F401
