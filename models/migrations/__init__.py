"""Numbered schema migrations and the history table that records them.

Each module ``mNNNN_name.py`` in this package has ``upgrade(database, migrator)``; it runs
once, inside a transaction, in number order. Migrations describe the schema as it was
when they were written (frozen table definitions, ``playhouse.migrate`` operations), never
the current models, so an old database and a new one end up the same.
"""

from __future__ import annotations

import importlib
import pkgutil

import peewee
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator

from ..db import utcnow


class MigrationHistory(peewee.Model):
    """One applied migration."""

    name = peewee.CharField(max_length=128, primary_key=True)
    applied_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "migration_history"


def available() -> list[str]:
    """Names of the migration modules in this package, in the order they apply."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name[:1] == "m" and m.name[1:5].isdigit()]
    return sorted(names)


def applied(database: peewee.Database) -> list[str]:
    """Names of the migrations already applied to ``database``."""
    with MigrationHistory.bind_ctx(database):
        if not MigrationHistory.table_exists():
            return []
        return [row.name for row in MigrationHistory.select().order_by(MigrationHistory.name)]


def pending(database: peewee.Database) -> list[str]:
    """Migrations not yet applied, in order."""
    done = set(applied(database))
    return [name for name in available() if name not in done]


def upgrade(database: peewee.Database) -> list[str]:
    """Apply every pending migration, each in its own transaction; return their names."""
    if isinstance(database, peewee.PostgresqlDatabase):
        migrator = PostgresqlMigrator(database)
    else:
        migrator = SqliteMigrator(database)
    with MigrationHistory.bind_ctx(database):
        database.create_tables([MigrationHistory], safe=True)
        done = []
        for name in pending(database):
            module = importlib.import_module(f"{__name__}.{name}")
            with database.atomic():
                module.upgrade(database, migrator)
                MigrationHistory.create(name=name)
            done.append(name)
    return done
