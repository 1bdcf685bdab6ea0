"""Query counts that differ between the backends."""

from django.db import connection


def unit_writes(count: int) -> int:
    """The statements that ``count`` writes of a unit of work take: one on PostgreSQL,
    where ``journey.db.Together`` sends them as one; each its own elsewhere."""
    return 1 if connection.vendor == "postgresql" and count else count
