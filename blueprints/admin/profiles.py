"""Admin: profiles (being built)."""

from . import bp  # noqa: F401
