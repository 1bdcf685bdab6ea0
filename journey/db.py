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
    # Model.save()'s own low-level insert (pre_save runs: auto_now_add is set).
    return model._base_manager._insert(
        list(objs), fields=fields, returning_fields=returning, on_conflict=OnConflict.IGNORE
    )


def _saved(obj: models.Model, pk: object) -> None:
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = type(obj)._base_manager.db


def create_unless_taken[M: models.Model](obj: M) -> bool:
    """Insert ``obj`` unless a unique constraint already holds its key; True if inserted
    (its primary key is then set)."""
    rows = _insert([obj], [type(obj)._meta.pk])
    if not rows:
        return False
    _saved(obj, rows[0][0])
    return True


def bulk_create_unless_taken[M: models.Model](objs: Sequence[M], *, key: str) -> list[M]:
    """Insert the objects no unique constraint already holds; returns those inserted, with
    their primary keys. ``key`` names a field whose value tells the objects apart (they
    come back unordered, without the skipped ones)."""
    if not objs:
        return []
    opts = type(objs[0])._meta
    rows = _insert(objs, [opts.pk, opts.get_field(key)])
    by_key = {getattr(obj, key): obj for obj in objs}
    if len(by_key) != len(objs):
        raise ValueError(f"Objects must differ in {key!r}.")
    created = []
    for pk, value in rows:
        obj = by_key[value]
        _saved(obj, pk)
        created.append(obj)
    return created


def update_each(model: type[models.Model], field: str, values: dict[Any, Any]) -> int:
    """Set ``field`` to a value of its own on each row (``{pk: value}``), in one UPDATE
    joined to the list of pairs. ``bulk_update()`` builds a CASE WHEN per row instead,
    whose compiling costs more than the update itself at a few hundred rows."""
    if not values:
        return 0
    opts = model._meta
    target = opts.get_field(field)
    connection = connections[router.db_for_write(model)]
    qn = connection.ops.quote_name
    rows = " UNION ALL ".join(["SELECT %s AS pk, %s AS value"] * len(values))
    params: list[Any] = []
    for pk, value in values.items():
        params += [
            opts.pk.get_db_prep_value(pk, connection),
            target.get_db_prep_save(value, connection),
        ]
    table, column, pk_column = qn(opts.db_table), qn(target.column), qn(opts.pk.column)
    sql = (
        f"UPDATE {table} SET {column} = pairs.value FROM ({rows}) AS pairs "  # noqa: S608
        f"WHERE {table}.{pk_column} = pairs.pk"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
