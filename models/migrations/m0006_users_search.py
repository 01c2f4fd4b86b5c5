"""Users page search: an index per searched column on (organisation, LOWER(column)), so a
case-insensitive prefix search is one ordered index range on SQLite and PostgreSQL."""

SEARCHED = (("account_search_username", "username"), ("account_search_email", "email"),
            ("account_search_display_name", "display_name"))


def upgrade(database, migrator):
    """Create the three expression indexes."""
    for name, column in SEARCHED:
        database.execute_sql(f'CREATE INDEX "{name}" ON "account" ("organisation_id", LOWER("{column}"))')
