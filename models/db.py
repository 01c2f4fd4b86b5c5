"""The database proxy, the base model and opening a database from a URL.

The proxy is bound by ``create_app`` (or a CLI command) to SQLite or PostgreSQL; models
never know which. Times are stored as naive UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlsplit

import peewee
from playhouse import db_url
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

db = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "synchronous": "normal",
}


class DatabaseURLError(ValueError):
    """The database URL is not one Gatehouse can use."""


def utcnow() -> dt.datetime:
    """The current time as a naive UTC datetime, the form every model stores."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def open_database(url: str) -> peewee.Database:
    """Return an (unconnected) peewee database for a ``sqlite:///`` or ``postgresql://`` URL."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path or path == ":memory:":
            raise DatabaseURLError(
                f"{url!r}: use sqlite:///path/to/file.db (an in-memory database loses data between requests)"
            )
        # Pooled: closing the last connection of a WAL database checkpoints it (an fsync,
        # ~15 ms), which a connection per request would pay on every request.
        return PooledSqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=10, max_connections=32,
                                    stale_timeout=300, check_same_thread=False)
    if scheme in ("postgres", "postgresql"):
        params = db_url.parse(url)
        params.setdefault("connect_timeout", 5)
        return PooledPostgresqlDatabase(
            params.pop("database"), max_connections=32, stale_timeout=300, timeout=10, **params
        )
    raise DatabaseURLError(f"{url!r}: the database URL must start with sqlite:/// or postgresql://")


def is_postgres(database: peewee.Database | None = None) -> bool:
    """True when the bound database is PostgreSQL (row locking and SKIP LOCKED exist)."""
    target = database if database is not None else db.obj
    return isinstance(target, peewee.PostgresqlDatabase)


class JSONField(peewee.TextField):
    """JSON stored as text, the same on SQLite and PostgreSQL."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))

    def python_value(self, value):
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    """Base of every Gatehouse model: bound to the proxy."""

    class Meta:
        database = db
        legacy_table_names = False
