"""Audit log page: an index per filter (organisation, actor, target, action, outcome),
each ending in id so that keyset paging newest first reads one index range."""

from playhouse.migrate import migrate


def upgrade(database, migrator):
    """Add the audit filter indexes."""
    migrate(
        migrator.add_index("audit_event", ("organisation", "id"), False),
        migrator.add_index("audit_event", ("actor", "id"), False),
        migrator.add_index("audit_event", ("target", "id"), False),
        migrator.add_index("audit_event", ("action", "id"), False),
        migrator.add_index("audit_event", ("outcome", "id"), False),
    )
