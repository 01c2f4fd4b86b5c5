"""Helpers for the frozen table definitions that migrations write down as they were then."""

from __future__ import annotations

import peewee


class FrozenModel(peewee.Model):
    """Base of a migration's table definitions: unbound, snake_case table names."""

    class Meta:
        database = None
        legacy_table_names = False


def existing(table_name: str) -> type[peewee.Model]:
    """A stand-in for a table an earlier migration created, to point foreign keys at."""
    meta = type("Meta", (), {"table_name": table_name})
    return type(f"Existing_{table_name}", (FrozenModel,), {"Meta": meta})


def create_tables(database, tables) -> None:
    """Create ``tables`` (frozen definitions) in ``database``."""
    with database.bind_ctx(tables):
        database.create_tables(tables)
