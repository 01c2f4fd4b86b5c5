"""PostgreSQL: the users-search indexes in code-point order (``COLLATE "C"``), so a
case-insensitive prefix is one index range under any database collation, including
those that ignore punctuation. SQLite's indexes (BINARY) are already in that order."""

import peewee

SEARCHED = (("account_search_username", "username"), ("account_search_email", "email"),
            ("account_search_display_name", "display_name"))


def upgrade(database, migrator):
    """Recreate the three expression indexes with the C collation on PostgreSQL."""
    if not isinstance(database, peewee.PostgresqlDatabase):
        return
    for name, column in SEARCHED:
        database.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
        database.execute_sql(f'CREATE INDEX "{name}" ON "account" ("organisation_id", (LOWER("{column}")) COLLATE "C")')
