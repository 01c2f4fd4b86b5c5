"""Database fixtures: every test that touches the database runs on SQLite (a file in
tmp_path) and again on PostgreSQL when it is reachable.

PostgreSQL: one throwaway database per test run, created on the server named by
``GATEHOUSE_TEST_DATABASE_URL`` (default: the local server, trust auth, database
``test``), migrated once, emptied before each test, dropped at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from urllib.parse import urlsplit, urlunsplit

import pytest

from models import db, open_database
from models.migrations import upgrade

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TABLES_KEPT = {"migration_history"}


def postgres_admin_url() -> str:
    """The server used for throwaway test databases."""
    return os.environ.get("GATEHOUSE_TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def throwaway_postgres(purpose: str, skipped: str):
    """The URL of a new, empty PostgreSQL database on the test server, dropped afterwards;
    the test is skipped (saying ``skipped``) when the server is not reachable."""
    import psycopg2

    admin_url = postgres_admin_url()
    try:
        admin = psycopg2.connect(admin_url, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL not reachable at {admin_url} ({reason}): {skipped}")
    admin.autocommit = True
    name = f"gatehouse_{purpose}_{os.getpid()}_{secrets.token_hex(3)}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(admin_url, name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a fresh PostgreSQL database for this test run; skips when unreachable."""
    with throwaway_postgres("test", "PostgreSQL variants skipped") as url:
        database = open_database(url)
        upgrade(database)
        database.close_all()
        yield url


def empty_postgres(database) -> None:
    """Remove every row (and reset ids) so each test starts from the migrated schema."""
    tables = [t for t in database.get_tables() if t not in TABLES_KEPT]
    if tables:
        quoted = ", ".join(f'"{t}"' for t in tables)
        database.execute_sql(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A migrated, empty database URL: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gatehouse.db'}"
        database = open_database(url)
        upgrade(database)
        database.close()
        return url
    url = request.getfixturevalue("postgres_url")
    database = open_database(url)
    empty_postgres(database)
    database.close_all()
    return url


@pytest.fixture
def database(database_url):
    """The bound and connected peewee database (no Flask app)."""
    from services import crypto

    instance = open_database(database_url)
    db.initialize(instance)
    crypto.configure("unit-test-secret-key-" * 2)
    instance.connect(reuse_if_open=True)
    yield instance
    if hasattr(instance, "close_all"):
        instance.close_all()
    elif not instance.is_closed():
        instance.close()
