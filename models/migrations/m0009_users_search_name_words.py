"""Users page search by a later word of the display name ("Smith" finds "John Smith"):
two expression indexes on (organisation, the display name from its second word) and
(organisation, from its third word), lower-cased, NULL when the name has no such word.
On PostgreSQL in code-point order (``COLLATE "C"``) like the other search indexes (m0008).

The expressions are written out here and in ``models.account.NAME_WORD_EXPRESSIONS``
character for character: a database uses an expression index only for the same
expression, with literals, not parameters."""

import peewee

# {find} is INSTR (SQLite) or STRPOS (PostgreSQL); the same text as models.account.
_REST = "LTRIM(SUBSTR(\"display_name\", {find}(\"display_name\", ' ') + 1))"  # from the 2nd word
SECOND = f"CASE WHEN {{find}}(\"display_name\", ' ') > 0 THEN LOWER({_REST}) END"
THIRD = (f"CASE WHEN {{find}}(\"display_name\", ' ') > 0 AND {{find}}({_REST}, ' ') > 0 "
         f"THEN LOWER(LTRIM(SUBSTR({_REST}, {{find}}({_REST}, ' ') + 1))) END")
INDEXES = (("account_search_name_word2", SECOND), ("account_search_name_word3", THIRD))


def upgrade(database, migrator):
    """Create the two expression indexes."""
    postgres = isinstance(database, peewee.PostgresqlDatabase)
    for name, template in INDEXES:
        expression = template.format(find="STRPOS" if postgres else "INSTR")
        if postgres:
            database.execute_sql(f'CREATE INDEX "{name}" ON "account" ("organisation_id", ({expression}) COLLATE "C")')
        else:
            database.execute_sql(f'CREATE INDEX "{name}" ON "account" ("organisation_id", ({expression}))')
