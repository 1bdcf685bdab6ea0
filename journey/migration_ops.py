"""Operations the project's migrations share (kept stable: migrations that ran import it).

``drop_covered_indexes``: a foreign key whose own index another index already covers (a
composite index or unique constraint starting with the same column) loses that index:
one less to write for every row inserted, and for every row updated off its page. Only
the index changes: Django's ``AlterField`` to ``db_index=False`` would also drop and add
the foreign key again, checking every row of million-row tables under lock (and rebuild
each table on SQLite), for a constraint that does not change. On PostgreSQL the index is
dropped (and, going back, built) ``CONCURRENTLY``, so writers are not locked out while
it happens; the migration using it must be ``atomic = False``.

``keep_version_triggers``: on SQLite, Django adds a column with a default, or alters
one, by making the table again, and the copy has none of the old table's triggers: the
journey version's (migration 0008) would be gone, and cached journey pages would outlive
changes to that table. A migration that does so to a table 0008 watches wraps it.
"""

import importlib
from types import ModuleType

from django.db import migrations
from django.db.migrations.operations.base import Operation


def drop_covered_indexes(
    indexes: list[tuple[str, str, str]],
    state_operations: list[Operation],
) -> migrations.SeparateDatabaseAndState:
    """``indexes``: (table, column, index name) of each foreign key's own index;
    ``state_operations``: the ``AlterField``s to ``db_index=False`` that match them."""

    def concurrently(schema_editor) -> str:
        return " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""

    def drop(apps, schema_editor) -> None:
        for _table, _column, name in indexes:
            schema_editor.execute(f'DROP INDEX{concurrently(schema_editor)} IF EXISTS "{name}"')

    def create(apps, schema_editor) -> None:
        for table, column, name in indexes:
            schema_editor.execute(
                f'CREATE INDEX{concurrently(schema_editor)} IF NOT EXISTS "{name}" '
                f'ON "{table}" ("{column}")'
            )

    return migrations.SeparateDatabaseAndState(
        state_operations=state_operations,
        database_operations=[migrations.RunPython(drop, create, elidable=False)],
    )


def keep_version_triggers(operation: Operation, *tables: str) -> list[Operation]:
    """``operation``, with the journey version's triggers on ``tables`` dropped before it
    and made again after it, both ways (on SQLite; elsewhere a table keeps its triggers
    through such changes). ``tables``: the table made again, and any whose triggers read
    it (a reschedule request's find their journey through its appointment): SQLite
    refuses to rename the copy into place while a trigger names a table that is, for that
    moment, missing."""

    def version() -> ModuleType:  # migration 0008, imported by its name
        return importlib.import_module("journey.migrations.0008_journey_version")

    def drop(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "sqlite":
            return
        for table in tables:
            for event in version().EVENTS:
                schema_editor.execute(f"DROP TRIGGER IF EXISTS mp_version_{table}_{event.lower()};")

    def restore(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "sqlite":
            return
        for table in tables:
            for statement in version()._sqlite(table):
                schema_editor.execute(statement)

    return [
        migrations.RunPython(drop, restore, elidable=False),
        operation,
        migrations.RunPython(restore, drop, elidable=False),
    ]
