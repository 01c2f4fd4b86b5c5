"""Admin: policies (being built)."""

from . import bp  # noqa: F401
