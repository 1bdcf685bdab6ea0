"""Query counts that differ between the backends, and the triggers either has."""

from django.db import connection


def unit_writes(count: int) -> int:
    """The statements that ``count`` writes of a unit of work take: one on PostgreSQL,
    where ``journey.db.Together`` sends them as one; each its own elsewhere."""
    return 1 if connection.vendor == "postgresql" and count else count


def triggers(like: str) -> set[tuple[str, str]]:
    """(name, table) of each trigger whose name is LIKE ``like``, on either backend."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE tgname LIKE %s",
                [like],
            )
        else:
            cursor.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
                [like],
            )
        return set(cursor.fetchall())
