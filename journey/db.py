"""Inserts that let a unique constraint decide, in one statement.

``Model.objects.create()`` inside ``try/except IntegrityError`` needs a savepoint around it
when it runs in a transaction (an error would abort the transaction), and a transaction of
its own when it does not: three statements where one will do. ``INSERT ... ON CONFLICT DO
NOTHING RETURNING`` (PostgreSQL, and SQLite 3.35+) inserts the rows no unique constraint
already holds, waits for a concurrent writer of the same key as an insert does, and raises
nothing: the rows it returns are the ones it wrote.
"""

from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router
from django.db.models.constants import OnConflict
from django.db.models.fields import AutoFieldMixin


def _insert[M: models.Model](objs: Sequence[M], returning: list[models.Field]) -> list[tuple]:
    model = type(objs[0])
    opts = model._meta
    fields = [
        f
        for f in opts.local_concrete_fields
        if not f.generated and not (f.primary_key and isinstance(f, AutoFieldMixin))
    ]
    connection = connections[router.db_for_write(model)]
    size = connection.ops.bulk_batch_size(fields, objs)
    rows: list[tuple] = []
    # Model.save()'s own low-level insert (pre_save runs: auto_now_add is set); in chunks
    # the backend can bind (SQLite's and PostgreSQL's caps on parameters), as bulk_create.
    for start in range(0, len(objs), size):
        rows += model._base_manager._insert(
            list(objs[start : start + size]),
            fields=fields,
            returning_fields=returning,
            on_conflict=OnConflict.IGNORE,
        )
    return rows


def mark_saved(obj: models.Model, pk: object) -> None:
    """What ``save()`` leaves on an object it inserted: its key, no longer adding, its
    database (for an insert written by hand)."""
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = type(obj)._base_manager.db


def create_unless_taken[M: models.Model](obj: M) -> bool:
    """Insert ``obj`` unless a unique constraint already holds its key; True if inserted
    (its primary key is then set)."""
    rows = _insert([obj], [type(obj)._meta.pk])
    if not rows:
        return False
    mark_saved(obj, rows[0][0])
    return True


def bulk_create_unless_taken[M: models.Model](
    objs: Sequence[M], *, key: str | tuple[str, ...]
) -> list[M]:
    """Insert the objects no unique constraint already holds; returns those inserted, with
    their primary keys. ``key`` names the field (or fields) whose values tell the objects
    apart (they come back unordered, without the skipped ones)."""
    if not objs:
        return []
    opts = type(objs[0])._meta
    names = (key,) if isinstance(key, str) else key
    fields = [opts.get_field(name) for name in names]
    rows = _insert(objs, [opts.pk, *fields])
    by_key = {tuple(getattr(obj, f.attname) for f in fields): obj for obj in objs}
    if len(by_key) != len(objs):
        raise ValueError(f"Objects must differ in {key!r}.")
    created = []
    for pk, *values in rows:
        obj = by_key[tuple(values)]
        mark_saved(obj, pk)
        created.append(obj)
    return created


# SQLite's default SQLITE_MAX_COMPOUND_SELECT: the most SELECTs one UNION ALL may join.
SQLITE_MAX_UNION = 500


def _update_chunk(connection: Any, columns: int, count: int) -> int:
    """How many rows one ``update_rows`` statement may carry on this backend."""
    size = count
    if connection.features.max_query_params:
        size = min(size, connection.features.max_query_params // columns)
    if connection.vendor == "sqlite":
        size = min(size, SQLITE_MAX_UNION)
    return max(size, 1)


def update_rows(objs: Sequence[models.Model], fields: list[str]) -> int:
    """Save ``fields`` of each object, in one UPDATE joined to a list of their values.

    What ``bulk_update()`` does, without its CASE WHEN per row and field, which costs far
    more to build and compile (milliseconds for a handful of rows) than the update. On
    PostgreSQL the values go as one array per column (``UNNEST``): a few parameters
    whatever the number of rows, as Django's own ``bulk_create`` does. Elsewhere many
    objects go in chunks the backend accepts (SQLite allows 500 terms in a UNION ALL)."""
    if not objs:
        return 0
    model = type(objs[0])
    opts = model._meta
    targets = [opts.get_field(name) for name in fields]
    connection = connections[router.db_for_write(model)]
    qn = connection.ops.quote_name
    names = ["pk", *(qn(f.column) for f in targets)]
    columns = [opts.pk, *targets]
    if connection.vendor == "postgresql" and all(_unnestable(f, connection) for f in columns):
        pairs, params = _unnest(objs, columns, names, connection)
    else:
        size = _update_chunk(connection, len(columns), len(objs))
        if len(objs) > size:
            return sum(
                update_rows(objs[start : start + size], fields)
                for start in range(0, len(objs), size)
            )
        pairs, params = _union(objs, columns, names, connection)
    table = qn(opts.db_table)
    assignments = ", ".join(f"{qn(f.column)} = pairs.{qn(f.column)}" for f in targets)
    sql = (
        f"UPDATE {table} SET {assignments} FROM {pairs} "  # noqa: S608  # nosec B608: names from the model, values as parameters
        f"WHERE {table}.{qn(opts.pk.column)} = pairs.pk"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _unnestable(field: models.Field, connection: Any) -> bool:
    """Whether a column's values can go as an array of its type (Django's own test for
    UNNEST in bulk_create: a standard type, no placeholder of its own)."""
    target = field.target_field if field.is_relation else field
    return target.get_internal_type() in connection.data_types and not hasattr(
        field, "get_placeholder_sql"
    )


def _value(obj: models.Model, field: models.Field, connection: Any) -> Any:
    if field.primary_key:
        return field.get_db_prep_value(obj.pk, connection)
    return field.get_db_prep_save(getattr(obj, field.attname), connection)


def _unnest(
    objs: Sequence[models.Model], columns: list[models.Field], names: list[str], connection: Any
) -> tuple[str, list[Any]]:
    """PostgreSQL: ``UNNEST(%s::type[], ...) AS pairs (pk, ...)``, one array per column.
    The types without their length (varchar, not varchar(16)), as Django does: nothing
    is cut, a value too long fails as it would in an UPDATE."""
    arrays = [[_value(obj, field, connection) for obj in objs] for field in columns]
    types = [field.db_type(connection).split("(")[0] for field in columns]
    unnest = ", ".join(f"%s::{db_type}[]" for db_type in types)
    return f"UNNEST({unnest}) AS pairs ({', '.join(names)})", arrays


def _union(
    objs: Sequence[models.Model], columns: list[models.Field], names: list[str], connection: Any
) -> tuple[str, list[Any]]:
    """A row of values per object: on PostgreSQL (for a column UNNEST cannot carry) a
    VALUES list, each value cast to its column's type (PostgreSQL would take a bare NULL
    or literal for text); elsewhere a UNION ALL of SELECTs, which names its columns (SQLite
    names a VALUES list's column1, column2...; no CAST: it would change the value's
    affinity)."""
    params = [_value(obj, field, connection) for obj in objs for field in columns]
    if connection.vendor == "postgresql":
        row = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in columns)
        values = ", ".join([f"({row})"] * len(objs))
        return f"(VALUES {values}) AS pairs ({', '.join(names)})", params
    selects = ", ".join(f"%s AS {name}" for name in names)
    return "(" + " UNION ALL ".join([f"SELECT {selects}"] * len(objs)) + ") AS pairs", params
