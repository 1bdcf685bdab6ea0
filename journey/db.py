"""Inserts that let a unique constraint decide, and updates of many rows, in one statement.

``Model.objects.create()`` inside ``try/except IntegrityError`` needs a savepoint around it
when it runs in a transaction (an error would abort the transaction), and a transaction of
its own when it does not: three statements where one will do. ``INSERT ... ON CONFLICT DO
NOTHING RETURNING`` (PostgreSQL, and SQLite 3.35+) inserts the rows no unique constraint
already holds, waits for a concurrent writer of the same key as an insert does, and raises
nothing: the rows it returns are the ones it wrote.

On PostgreSQL the rows of a write go as one JSON document (``json_to_recordset``) rather
than a parameter, or an array element, per value: a partner's batch writes a few thousand
values at once, and Django's preparation of each one and psycopg's quoting of each one
cost more than the statement (a third of a batch's CPU). orjson writes them all in C,
dates and times included (a tenth of ``json.dumps``'s time for a batch's documents, and no
``isoformat()`` call per value: 3-4% of a batch's CPU); PostgreSQL reads each value with its
column type's own input, as it would a parameter.
Several such writes to different tables can go as one statement (``Together``).
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from operator import attrgetter
from typing import Any, cast
from uuid import UUID

import orjson
from django.db import connections, models, router
from django.db.models.base import ModelState
from django.db.models.constants import OnConflict
from django.db.models.expressions import RawSQL
from django.db.models.fields import NOT_PROVIDED, AutoFieldMixin
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init
from django.utils.functional import Promise

# The fields whose values go into JSON: Django's own classes (not subclasses, which may
# prepare their values otherwise), by how a value that is already what the column holds
# is recognised; any other value is prepared by the field itself (``get_prep_value``), as
# Django's insert would. Dates, times, UUIDs and decimals then go as the text their
# column reads. Other fields (files, custom types, a JSONField with its own encoder)
# take Django's own path.
_TEXT = (
    models.CharField,
    models.EmailField,
    models.SlugField,
    models.URLField,
    models.TextField,
)
_INTEGERS = (
    models.AutoField,
    models.BigAutoField,
    models.SmallAutoField,
    models.IntegerField,
    models.BigIntegerField,
    models.SmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveBigIntegerField,
    models.PositiveSmallIntegerField,
)
_PREPARED = (
    models.FloatField,
    models.DecimalField,
    models.UUIDField,
    models.TimeField,
)


class _NotJson(Exception):  # a signal to take Django's path, not an error
    """A value JSON cannot carry as Django would write it (an expression, an integer past
    64 bits)."""


def _json_value(value: Any) -> Any:
    """orjson's fallback for what it has no type for: values prepared by their field
    (decimals, a lazy translation); anything else (an expression) goes Django's way.
    orjson writes dates, times and UUIDs itself, as ``isoformat()`` and ``str()`` would
    (but for an offset's seconds: ``_moment``)."""
    if isinstance(value, date | time):  # datetime too
        return value.isoformat()
    if isinstance(value, UUID | Decimal | Promise):
        return str(value)
    raise _NotJson


def _moment(value: Any) -> Any:
    """An aware datetime for orjson to write, in UTC as Django keeps them; in another
    zone, as ``isoformat()`` writes it: orjson writes an offset to the minute, and drops
    the seconds of one such as Paris's before 1911 (+00:09:21). (A datetime inside a JSON
    column's value goes as orjson writes it: the project puts none there, only their
    text.)"""
    if type(value) is datetime and value.tzinfo is not UTC and value.tzinfo is not None:
        return value.isoformat()
    return value


def _converter(field: models.Field) -> Any:
    """How a value of this field goes into the JSON row: as it is when it is already
    what the column holds, else as ``get_prep_value`` makes it (a naive time made aware
    in the default zone, a date taken from a time in the default zone, a text column's
    str(), as Django does). None if the field takes Django's path."""
    target = field.target_field if field.is_relation else field
    kind = type(target)
    if field.is_relation and type(field) not in (models.ForeignKey, models.OneToOneField):
        return None
    prepare = field.get_prep_value

    def prepared(value: Any) -> Any:
        if hasattr(value, "resolve_expression"):
            raise _NotJson  # F(), Now(), Value(): the SQL compiler's to write
        return prepare(value)

    if kind in _TEXT:
        return lambda v: v if v is None or isinstance(v, str) else prepared(v)
    if kind in _INTEGERS:
        return lambda v: v if v is None or type(v) is int else prepared(v)
    if kind is models.BooleanField:
        return lambda v: v if v is None or type(v) is bool else prepared(v)
    # Dates and times as they are, for orjson to write (a batch writes some 3,200): a
    # naive time is made aware by the field, as Django's insert would.
    if kind is models.DateTimeField:
        return lambda v: (
            v
            if v is None or (type(v) is datetime and v.tzinfo is UTC)  # as Django keeps them
            else _moment(v if type(v) is datetime and v.tzinfo is not None else prepared(v))
        )
    if kind is models.DateField:
        return lambda v: v if v is None or type(v) is date else prepared(v)
    if kind is models.JSONField and target.encoder is None:
        # Nested as it is; an expression in it reaches _json_value. A float that is NaN or
        # infinite, which no JSON holds, is written null, where Django's own path would
        # fail in PostgreSQL: the partner API refuses such numbers at the door
        # (integrations/api/parsers.py) and the project's own values hold none.
        return lambda v: v
    if kind in _PREPARED:
        return lambda v: v if v is None else prepared(v)
    return None


def _json_types(fields: Sequence[models.Field], connection: Any) -> list[str] | None:
    """Each column's type for ``json_to_recordset`` (without its length: a value too
    long fails on assignment, it is not cut), or None if a field's values cannot go as
    JSON, or its column has a default of the database's. Worked out once per list of
    fields and database."""
    return _json_plan(fields, connection).types


@dataclass
class _Plan:
    """What a write with its values as JSON needs of its columns, worked out once per
    list of fields and database: ``types`` (None: not as JSON), each value's converter,
    the document's names (c0, c1...: short keys are less to write and to read), a
    getter of the values, and the statements made from them (``statements``, by what
    else each depends on)."""

    fields: tuple[models.Field, ...]  # kept alive: their ids are the plan's key
    types: list[str] | None
    converters: list
    keys: list[str]
    values: Callable[[models.Model], Any]
    statements: dict[Any, str] = dataclasses.field(default_factory=dict)


def _json_plan(fields: Sequence[models.Field], connection: Any) -> _Plan:
    # By the fields' ids, not the fields: a Field hashes three of its attributes, and a
    # single event looks up some twenty plans (300 hashes, 3% of its Python). The plan
    # holds the fields, so no id is reused while it is kept.
    key = (*map(id, fields), connection.alias)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _column_plan(tuple(fields), connection)
    return plan


_PLANS: dict[tuple[Any, ...], _Plan] = {}


def _column_plan(fields: tuple[models.Field, ...], connection: Any) -> _Plan:
    keys = [f"c{n}" for n in range(len(fields))]
    names = [field.attname for field in fields]
    values = attrgetter(*names) if names else lambda obj: ()
    plan = _Plan(fields, None, [], keys, values)
    if connection.vendor != "postgresql":
        return plan
    types, converters = [], []
    for field in fields:
        converter = _converter(field)
        if (
            converter is None
            or field.db_default is not NOT_PROVIDED
            or hasattr(field, "get_placeholder_sql")
        ):
            return plan
        types.append(field.db_type(connection).split("(")[0])
        converters.append(converter)
    plan.types, plan.converters = types, converters
    return plan


def _json_rows(
    objs: Sequence[models.Model],
    fields: Sequence[models.Field],
    connection: Any,
    extra: Sequence[int | None] | None = None,
) -> tuple[str, list[str]]:
    """The objects' values as one JSON document, and ``json_to_recordset``'s names for
    them. ``extra``, a number per object, goes as one more key, the last. Raises
    _NotJson for a value JSON cannot carry."""
    plan = _json_plan(fields, connection)
    converters, keys, values = plan.converters, plan.keys, plan.values
    if len(fields) == 1:
        key, convert = keys[0], converters[0]
        rows = [{key: convert(values(obj))} for obj in objs]
    else:
        pairs = list(zip(keys, converters, strict=True))
        rows = [
            {key: convert(value) for (key, convert), value in zip(pairs, values(obj), strict=True)}
            for obj in objs
        ]
    if extra is not None:
        keys = [*keys, f"c{len(fields)}"]
        for row, value in zip(rows, extra, strict=True):
            row[keys[-1]] = value
    try:
        # Keys that are not text are written as their text, as json.dumps does.
        document = orjson.dumps(rows, default=_json_value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as error:  # _NotJson, or an integer past 64 bits
        raise _NotJson from error
    return document.decode(), keys


def _insert_json_sql(
    objs: Sequence[models.Model],
    fields: Sequence[models.Field],
    types: list[str],
    returning: list[models.Field],
    ignore_conflicts: bool,
    connection: Any,
) -> tuple[str, list[Any]]:
    """PostgreSQL: ``INSERT ... SELECT ... FROM json_to_recordset(%s)``, one statement
    whatever the number of rows, which come back in the order given."""
    table = objs[0]._meta.db_table
    document, keys = _json_rows(objs, fields, connection)
    statements = _json_plan(fields, connection).statements
    shape = ("insert", table, *(field.column for field in returning), ignore_conflicts)
    sql = statements.get(shape)
    if sql is None:
        qn = connection.ops.quote_name
        columns = ", ".join(qn(field.column) for field in fields)
        definitions = ", ".join(
            f"{key} {db_type}" for key, db_type in zip(keys, types, strict=True)
        )
        sql = (
            f"INSERT INTO {qn(table)} ({columns}) SELECT {', '.join(keys)} "  # noqa: S608  # nosec B608: names from the model, values as a parameter
            f"FROM json_to_recordset(%s) AS r ({definitions})"
        )
        if ignore_conflicts:
            sql += " ON CONFLICT DO NOTHING"
        sql += " RETURNING " + ", ".join(qn(field.column) for field in returning)
        statements[shape] = sql
    return sql, [document]


def _prepare(objs: Sequence[models.Model]) -> None:
    """What Model.save() does to an object before its insert: the related objects saved
    since they were set give their keys; auto_now(_add) fields get their time."""
    relations, stamped = _save_plan(type(objs[0]))
    for obj in objs:
        for field in relations:
            if getattr(obj, field.attname) is None and field.is_cached(obj):
                related = field.get_cached_value(obj)
                if related is not None:
                    if related.pk is None:
                        raise ValueError(f"{field.name} is not saved yet: save it first.")
                    setattr(obj, field.attname, related.pk)
        for field in stamped:
            field.pre_save(obj, add=True)


@functools.cache  # per model, for the life of the process
def _save_plan(
    model: type[models.Model],
) -> tuple[tuple[models.Field, ...], tuple[models.Field, ...]]:
    """The inserted fields ``_prepare`` looks at: the relations, and those stamped with
    the time (auto_now, auto_now_add)."""
    fields = _insert_fields(model)
    relations = tuple(field for field in fields if field.is_relation)
    stamped = tuple(
        field
        for field in fields
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    )
    return relations, stamped


@functools.cache  # per model, for the life of the process
def _insert_fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    return tuple(
        f
        for f in model._meta.local_concrete_fields
        if not f.generated and not (f.primary_key and isinstance(f, AutoFieldMixin))
    )


def _insert_sql(
    objs: Sequence[models.Model], returning: list[models.Field], *, ignore_conflicts: bool
) -> tuple[str, list[Any]] | None:
    """``_insert``'s statement, when its rows go as JSON (PostgreSQL); else None."""
    model = type(objs[0])
    fields = _insert_fields(model)
    connection = connections[router.db_for_write(model)]
    types = _json_types(fields, connection)
    if types is None:
        return None
    _prepare(objs)
    try:
        return _insert_json_sql(objs, fields, types, returning, ignore_conflicts, connection)
    except _NotJson:
        return None


def _insert[M: models.Model](
    objs: Sequence[M], returning: list[models.Field], *, ignore_conflicts: bool = True
) -> list[tuple]:
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    statement = _insert_sql(objs, returning, ignore_conflicts=ignore_conflicts)
    if statement is not None:
        with connection.cursor() as cursor:
            cursor.execute(*statement)
            return cursor.fetchall()
    # Not PostgreSQL, or an expression, NaN: as Django writes them.
    fields = list(_insert_fields(model))
    _prepare(objs)
    size = connection.ops.bulk_batch_size(fields, objs)
    rows: list[tuple] = []
    # Model.save()'s own low-level insert; in chunks
    # the backend can bind (SQLite's and PostgreSQL's caps on parameters), as bulk_create.
    for start in range(0, len(objs), size):
        rows += model._base_manager._insert(
            list(objs[start : start + size]),
            fields=fields,
            returning_fields=returning,
            on_conflict=OnConflict.IGNORE if ignore_conflicts else None,
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
    fields = _key_fields(objs, key)
    return _created(objs, _insert(objs, [type(objs[0])._meta.pk, *fields]), fields, key)


def _key_fields(objs: Sequence[models.Model], key: str | tuple[str, ...]) -> list[models.Field]:
    opts = type(objs[0])._meta
    return [opts.get_field(name) for name in ((key,) if isinstance(key, str) else key)]


def _created[M: models.Model](
    objs: Sequence[M], rows: list[tuple], fields: list[models.Field], key: str | tuple[str, ...]
) -> list[M]:
    """The objects an insert's rows (primary key, then the key's values) say it wrote,
    each marked saved with its key."""
    by_key = {tuple(getattr(obj, f.attname) for f in fields): obj for obj in objs}
    if len(by_key) != len(objs):
        raise ValueError(f"Objects must differ in {key!r}.")
    created = []
    for pk, *values in rows:
        obj = by_key[tuple(values)]
        mark_saved(obj, pk)
        created.append(obj)
    return created


def insert_unless_taken_statement(obj: models.Model) -> tuple[str, list[Any]] | None:
    """The statement ``create_unless_taken(obj)`` runs, for another to run it as its WITH
    query (``journey.services.journey_lock_claiming``): its SQL and parameters, on
    PostgreSQL; None elsewhere, or for a value that cannot go as JSON. It returns the
    key inserted, or no row. Whoever runs it marks ``obj`` saved (``mark_saved``)."""
    return _insert_sql([obj], [type(obj)._meta.pk], ignore_conflicts=True)


def key_drawn(model: type[models.Model]) -> RawSQL:
    """An expression (PostgreSQL): the key this session last drew for a row of
    ``model``, as its primary key's default does (its sequence's ``currval``), whether or
    not the row was inserted: an ``INSERT ... ON CONFLICT DO NOTHING`` draws one before it
    finds the key taken. A row whose key equals it is the one this session inserted, as
    long as every key comes from the sequence (rows copied in with keys of their own
    need the sequence set past them, as ``manage.py sqlsequencereset`` does). Read it
    only after such an insert, in the same transaction."""
    pk = model._meta.pk
    return RawSQL(
        "currval(pg_get_serial_sequence(%s, %s))",
        (model._meta.db_table, pk.column),
        models.BigIntegerField(),
    )


def insert_rows[M: models.Model](objs: Sequence[M]) -> None:
    """Insert new objects, as ``bulk_create()`` does (no signals; each gets its primary
    key), in one statement on PostgreSQL whatever their number."""
    if not objs:
        return
    model = type(objs[0])
    if not _keys_to_return(objs):
        # Keys given, or columns the database fills in: as bulk_create writes them.
        model._base_manager.bulk_create(objs)
        return
    _saved_in_order(objs, _insert(objs, [model._meta.pk], ignore_conflicts=False))


def _keys_to_return(objs: Sequence[models.Model]) -> bool:
    """Whether ``insert_rows`` writes the objects itself, the database giving only their
    keys: none has a key yet, and no other column is filled in by the database."""
    model = type(objs[0])
    return all(obj.pk is None for obj in objs) and len(model._meta.db_returning_fields) <= 1


def _saved_in_order(objs: Sequence[models.Model], rows: list[tuple]) -> None:
    for obj, (key,) in zip(objs, rows, strict=True):
        mark_saved(obj, key)


# What a write sent with others may return: values JSON gives back as Python gives them.
_RETURNABLE = (*_INTEGERS, *_TEXT)


# Stands in a write's statement for the name of the write it reads (``Together.update``'s
# ``linked``), which is known once the statement is put together.
_SOURCE = "__together_source__"


@dataclass
class _Link:
    """A foreign key an update sets to the keys another write inserts: each object's
    position (from 1) among the rows inserted, or None."""

    field: models.ForeignKey
    positions: list[int | None]


@dataclass
class _Write:
    """One write of a ``Together``: its function's call, and its statement when it may go
    with the others (its values as JSON, on PostgreSQL)."""

    alone: Callable[[], None]
    statement: tuple[str, list[Any]] | None
    alias: str
    table: str
    objs: Sequence[models.Model]
    returning: list[str] = dataclasses.field(default_factory=list)
    then: Callable[[list[tuple]], None] | None = None
    # The write whose returned rows this one reads (its statement names it _SOURCE).
    source: "_Write | None" = None
    # Called once the statement has run (not when the writes go alone).
    after: Callable[[], None] | None = None
    # An insert of every row, whose keys come back in the rows' order (``insert``).
    in_order: bool = False


class Together:
    """Writes to different tables, sent as one statement on PostgreSQL.

    A unit of work (``journey.unit``) ends with four to six writes to as many tables: a
    round trip each, and some 0.2 ms of CPU between Django, psycopg and PostgreSQL
    whatever the write (docs/performance.md, twelfth pass). Queued here (``insert``,
    ``insert_unless_taken``, ``update``, as ``insert_rows``, ``bulk_create_unless_taken``
    and ``update_rows`` write), ``send()`` sends them as one statement, each a
    data-modifying ``WITH`` query, and gives each its rows. Such queries run with the
    same snapshot and do not see one another's rows: queue only writes that do not
    depend on one another (other tables, rows that already exist), except through the
    keys an insert returns (``update``'s ``linked``). Triggers fire as for separate
    statements, after the statement (the journey's version, migration 0008).
    An insert's keys come back in the order of its rows, as ``insert_rows`` relies on
    for its own statement (``json_agg`` ordered by the key, which its sequence gave the
    rows in their order). Two writes to the same table are sent one by one.

    Elsewhere than on PostgreSQL, or if a write's values cannot go as JSON (then it takes
    Django's path), each write is sent on its own, in the order queued."""

    def __init__(self) -> None:
        self._writes: list[_Write] = []

    def insert(self, objs: Sequence[models.Model]) -> None:
        """``insert_rows(objs)``, when sent."""
        if not objs:
            return
        model = type(objs[0])
        self._queue(
            objs,
            alone=lambda: insert_rows(objs),
            statement=_insert_sql(objs, [model._meta.pk], ignore_conflicts=False)
            if _keys_to_return(objs)
            else None,
            returning=[model._meta.pk],
            then=lambda rows: _saved_in_order(objs, rows),
            in_order=True,
        )

    def insert_unless_taken[M: models.Model](
        self,
        objs: Sequence[M],
        *,
        key: str | tuple[str, ...],
        then: Callable[[list[M]], None],
    ) -> None:
        """``bulk_create_unless_taken(objs, key=key)``, when sent; ``then`` is given the
        objects it inserted."""
        if not objs:
            then([])
            return
        fields = _key_fields(objs, key)
        returning = [type(objs[0])._meta.pk, *fields]
        self._queue(
            objs,
            alone=lambda: then(bulk_create_unless_taken(objs, key=key)),
            statement=_insert_sql(objs, returning, ignore_conflicts=True),
            returning=returning,
            then=lambda rows: then(_created(objs, rows, fields, key)),
        )

    def update(
        self, objs: Sequence[models.Model], fields: list[str], *, linked: str | None = None
    ) -> None:
        """``update_rows(objs, fields)``, when sent.

        ``linked``, one of ``fields``, is a foreign key whose related objects (as
        assigned) may be new ones, which this Together inserts (``insert``, queued
        before this): each object is saved with the key its related object gets (or
        has; None with none). Sent with the insert on PostgreSQL, the UPDATE reads the
        keys the INSERT returns, in the same statement; sent one by one, the insert
        goes first and gives them."""
        if not objs:
            return
        model = type(objs[0])
        connection = connections[router.db_for_write(model)]
        if linked is None:
            targets = [model._meta.get_field(name) for name in fields]
            self._queue(
                objs,
                alone=lambda: update_rows(objs, fields),
                statement=_update_json_sql(objs, targets, connection),
            )
            return
        if linked not in fields:
            raise ValueError(f"{linked!r} is linked but not among the fields saved.")
        field = cast(models.ForeignKey, model._meta.get_field(linked))
        related = [field.get_cached_value(obj, None) for obj in objs]

        def link() -> None:  # the keys of the related objects (their insert gave them)
            for obj, other in zip(objs, related, strict=True):
                if other is not None:
                    # Assigned again, to set its key and keep it cached (setting the key
                    # alone would drop it).
                    setattr(obj, field.name, other)

        new = [other for other in related if other is not None and other.pk is None]
        # The keys known now (an object saved since it was assigned), in its column.
        link()
        if not new:  # nothing to wait for
            self.update(objs, fields)
            return
        source = self._inserting(new, field)
        positions = {id(obj): n for n, obj in enumerate(source.objs, 1)}

        def alone() -> None:
            link()
            update_rows(objs, fields)

        targets = [model._meta.get_field(name) for name in fields]
        self._queue(
            objs,
            alone=alone,
            statement=None
            if source.statement is None
            else _update_json_sql(
                objs,
                targets,
                connection,
                _Link(field, [positions.get(id(other)) for other in related]),
            ),
            source=source,
            after=link,
        )

    def _inserting(self, new: list[models.Model], field: models.ForeignKey) -> _Write:
        """The queued insert (``insert``: every row written, in order) of these new
        objects, to whose primary keys ``field`` points."""
        wanted = {id(obj) for obj in new}
        if field.target_field.primary_key:
            for write in self._writes:
                if (
                    write.in_order
                    and write.table == field.related_model._meta.db_table
                    and wanted <= {id(obj) for obj in write.objs}
                ):
                    return write
        raise ValueError(
            f"{field.name}: its new objects are not inserted by this Together (insert), "
            "or it points at another column than their key."
        )

    def _queue(
        self,
        objs: Sequence[models.Model],
        *,
        alone: Callable[[], None],
        statement: tuple[str, list[Any]] | None,
        returning: list[models.Field] | None = None,
        then: Callable[[list[tuple]], None] | None = None,
        source: _Write | None = None,
        after: Callable[[], None] | None = None,
        in_order: bool = False,
    ) -> None:
        if returning and not all(
            type(f.target_field if f.is_relation else f) in _RETURNABLE for f in returning
        ):
            statement = None
        self._writes.append(
            _Write(
                alone=alone,
                statement=statement,
                alias=router.db_for_write(type(objs[0])),
                table=type(objs[0])._meta.db_table,
                objs=objs,
                returning=[f.column for f in returning or []],
                then=then,
                source=source,
                after=after,
                in_order=in_order,
            )
        )

    def send(self) -> None:
        writes, self._writes = self._writes, []
        if not writes:
            return
        if (
            len(writes) == 1
            or any(write.statement is None for write in writes)
            or len({write.alias for write in writes}) > 1
            # Two writes to one table in one statement would not see each other's rows
            # (an update of a row inserted, or updated twice: one of them lost).
            or len({write.table for write in writes}) < len(writes)
        ):
            for write in writes:
                write.alone()
            return
        connection = connections[writes[0].alias]
        qn = connection.ops.quote_name
        queries, params, results = [], [], []
        for n, write in enumerate(writes):
            sql, values = cast(tuple[str, list[Any]], write.statement)
            if write.source is not None:
                sql = sql.replace(
                    _SOURCE, next(f"w{k}" for k, w in enumerate(writes) if w is write.source)
                )
            queries.append(f"w{n} AS ({sql})")
            params += values
            if write.returning:
                # The primary key first: its order is the rows' (from one sequence).
                first, columns = qn(write.returning[0]), ", ".join(map(qn, write.returning))
                results.append(
                    f"(SELECT json_agg(json_build_array({columns}) ORDER BY {first}) FROM w{n})"  # noqa: S608  # nosec B608: names from the models
                )
        # The writes' own SQL (names from their models), values as parameters.
        sql = f"WITH {', '.join(queries)} SELECT {', '.join(results) or '1'}"  # nosec B608
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = iter(cursor.fetchone())
        for write in writes:
            if not write.returning:
                continue
            value = next(row)  # each write that returns rows has its column, in order
            rows = orjson.loads(value) if isinstance(value, str) else value or []
            if write.then is not None:
                write.then([tuple(values) for values in rows])
        for write in writes:
            if write.after is not None:
                write.after()


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
    PostgreSQL the values go as one JSON document (``json_to_recordset``): one parameter
    whatever the number of rows. Elsewhere many objects go in chunks the backend accepts
    (SQLite allows 500 terms in a UNION ALL)."""
    if not objs:
        return 0
    model = type(objs[0])
    opts = model._meta
    targets = [opts.get_field(name) for name in fields]
    connection = connections[router.db_for_write(model)]
    statement = _update_json_sql(objs, targets, connection)
    if statement is None:
        size = _update_chunk(connection, len(targets) + 1, len(objs))
        if len(objs) > size:
            return sum(
                update_rows(objs[start : start + size], fields)
                for start in range(0, len(objs), size)
            )
        qn = connection.ops.quote_name
        keys = ["pk", *(qn(f.column) for f in targets)]
        pairs, params = _union(objs, [opts.pk, *targets], keys, connection)
        statement = _update_sql(opts, targets, keys, pairs, params, "", connection)
    with connection.cursor() as cursor:
        cursor.execute(*statement)
        return cursor.rowcount


def _update_json_sql(
    objs: Sequence[models.Model],
    targets: list[models.Field],
    connection: Any,
    link: _Link | None = None,
) -> tuple[str, list[Any]] | None:
    """``update_rows``'s statement on PostgreSQL, with the values as one JSON document;
    None elsewhere, or for a value JSON cannot carry (NaN, say: then as a row of
    values). ``link``: one more foreign key to set, to the keys another write of the
    same statement inserts (``Together.update``)."""
    opts = objs[0]._meta
    columns = [opts.pk, *targets]
    types = _json_types(columns, connection)
    if types is None:
        return None
    try:
        document, keys = _json_rows(
            objs, columns, connection, None if link is None else link.positions
        )
    except _NotJson:
        return None
    plan = _json_plan(columns, connection)
    shape = ("update", opts.db_table, None if link is None else link.field.column)
    sql = plan.statements.get(shape)
    if sql is None:
        sql = plan.statements[shape] = _update_json_statement(
            opts, targets, types, keys, connection, link
        )
    # The keys as the document carries them (their converter), so that they are of one
    # type.
    convert = plan.converters[0]
    return sql, [document, [convert(obj.pk) for obj in objs]]


def _update_json_statement(
    opts: Any,
    targets: list[models.Field],
    types: list[str],
    keys: list[str],
    connection: Any,
    link: _Link | None,
) -> str:
    if link is not None:
        types = [*types, "bigint"]
    definitions = ", ".join(f"{key} {t}" for key, t in zip(keys, types, strict=True))
    # The keys again, as an array: the planner takes json_to_recordset for 100 rows
    # whatever it holds, and for a table of a few thousand rows then reads it whole to
    # hash-join them (1.4-1.8 ms for one row of 8,500, where the index takes 0.3). With
    # the keys beside it, it looks the rows up by the primary key.
    # The array is read through a subquery, which no plan looks into: a custom plan
    # (made with the values) would see an array of one key, the generic plan one of ten,
    # and, estimated three times dearer (all this statement's updates together), the
    # generic plan was never chosen: PostgreSQL planned a single event's writes afresh
    # each time, 0.4-0.5 ms of its CPU. Through the subquery both plans cost the same (to
    # within unnest()'s few rows), and a prepared statement keeps the generic one after
    # its fifth run. On a table of a few pages both now read it whole, as the generic plan
    # always did there: that costs nothing (docs/performance.md, twenty-sixth pass).
    qn = connection.ops.quote_name
    table, pk = qn(opts.db_table), qn(opts.pk.column)
    pairs = f"json_to_recordset(%s) AS pairs ({definitions})"
    values = [f"pairs.{key}" for key in keys[1 : len(targets) + 1]]
    if link is not None:
        # The inserted rows' keys in their order, which is the order the rows were given
        # in (one sequence): the nth is the nth object's. One array, made once (an
        # uncorrelated subquery), indexed by each object's position; an object with no
        # position keeps the key it holds. (A join on row_number() was planned as a
        # nested loop over every pair: 4 ms for a hundred rows.)
        inserted = qn(link.field.target_field.column)
        at = targets.index(link.field)
        values[at] = (
            f"COALESCE((SELECT array_agg({inserted} ORDER BY {inserted}) FROM {_SOURCE})"  # noqa: S608  # nosec B608: names from the models
            f"[pairs.{keys[-1]}], {values[at]})"
        )
    return _update_sql(
        opts,
        targets,
        keys,
        pairs,
        [],
        f" AND {table}.{pk} = ANY(ARRAY(SELECT unnest(CAST(%s AS {types[0]}[]))))",
        connection,
        values,
    )[0]


def _update_sql(
    opts: Any,
    targets: list[models.Field],
    keys: list[str],
    pairs: str,
    params: list[Any],
    only: str,
    connection: Any,
    values: list[str] | None = None,
) -> tuple[str, list[Any]]:
    """``keys``: the names in ``pairs`` of the primary key and of each target's value;
    ``values``, the targets' values as expressions instead (over ``pairs``)."""
    qn = connection.ops.quote_name
    table, pk = qn(opts.db_table), qn(opts.pk.column)
    if values is None:
        values = [f"pairs.{key}" for key in keys[1:]]
    assignments = ", ".join(
        f"{qn(f.column)} = {value}" for f, value in zip(targets, values, strict=True)
    )
    sql = (
        f"UPDATE {table} SET {assignments} FROM {pairs} "  # noqa: S608  # nosec B608: names from the model, values as parameters
        f"WHERE {table}.{pk} = pairs.{keys[0]}{only}"
    )
    return sql, params


def _value(obj: models.Model, field: models.Field, connection: Any) -> Any:
    if field.primary_key:
        return field.get_db_prep_value(obj.pk, connection)
    return field.get_db_prep_save(getattr(obj, field.attname), connection)


def _union(
    objs: Sequence[models.Model], columns: list[models.Field], names: list[str], connection: Any
) -> tuple[str, list[Any]]:
    """A row of values per object: on PostgreSQL (for a column JSON cannot carry) a
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


class QuickLoad(models.Model):
    """A model whose rows, read whole, become objects without ``Model.__init__``.

    A partner's batch reads about fourteen objects per event (a thousand milestones per
    hundred events), and Django's ``__init__`` spent 3.8 us on each milestone, setting
    its fields one ``setattr`` at a time through their descriptors. For a field whose
    descriptor only reads (``DeferredAttribute``) or, on a new object, only stores
    (``ForeignKeyDeferredAttribute``), that is the object's ``__dict__`` filled in, which
    ``from_db`` (Django's documented hook for loading) does here in one call. Anything
    else takes Django's path: a row read with deferred fields, a model with another
    kind of descriptor, and any model while a ``pre_init`` or ``post_init`` receiver
    listens to it. ``tests/journey/test_db.py`` checks that both paths make the same
    object.

    ``new(**values)`` is the same for a new object, as ``Model(**values)`` would make
    it (12-14 us each for the few hundred a batch writes): the fields' defaults, then
    the values given, a related object given by its field's name through Django's own
    descriptor (which checks it, sets the key and keeps the object). A value for
    anything but a field (a property) takes Django's path."""

    class Meta:
        abstract = True

    @classmethod
    def from_db(
        cls, db: str | None, field_names: Sequence[str], values: Sequence[Any], *, fetch_mode=None
    ) -> Any:
        attnames = _plain_attnames(cls)
        if not attnames or len(values) != len(attnames) or _listened(cls):
            return super().from_db(db, field_names, values, fetch_mode=fetch_mode)
        new = cls.__new__(cls)
        state = new._state = ModelState()
        state.adding = False
        state.db = db
        if fetch_mode is not None:
            state.fetch_mode = fetch_mode
        new.__dict__.update(zip(attnames, values))  # noqa: B905 - as long, checked above
        return new

    @classmethod
    def new(cls, **values: Any) -> Any:
        defaults, attnames, related = _new_plan(cls)
        if not defaults or _listened(cls):
            return cls(**values)
        new = cls.__new__(cls)
        new._state = ModelState()
        fields = new.__dict__
        for attname, name, default, call in defaults:
            if name not in values and attname not in values:  # as Django, only if not given
                fields[attname] = default() if call else default
        for name, value in values.items():
            if name in attnames:
                fields[name] = value
            elif name in related:
                setattr(new, name, value)  # Django's descriptor: checked, key set, kept
            else:  # a property, or a mistake: Django's to set, or to refuse
                return cls(**values)
        return new


def _listened(model: type[models.Model]) -> bool:
    """Whether a receiver of ``pre_init`` or ``post_init`` listens to the model (the
    lists of receivers first: empty, they answer in no time)."""
    return bool(
        (pre_init.receivers and pre_init.has_listeners(model))
        or (post_init.receivers and post_init.has_listeners(model))
    )


@functools.cache  # per model, for the life of the process
def _new_plan(model: type[models.Model]) -> tuple[tuple, frozenset[str], frozenset[str]]:
    """For ``QuickLoad.new``: each concrete field's attribute name, name and default
    (and whether it is called for each object, as Django's ``get_default`` does); the
    attribute names; the names of the relations. Nothing if a field is not plain or is
    generated by the database."""
    fields = model._meta.concrete_fields
    if not _plain_attnames(model) or any(field.generated for field in fields):
        return (), frozenset(), frozenset()
    defaults = []
    for field in fields:
        if field.has_default() and not callable(field.default):
            # The same object each time, as Django's (a related object's key for one).
            defaults.append((field.attname, field.name, field.get_default(), False))
        elif field.has_default() or field.has_db_default():
            defaults.append((field.attname, field.name, field.get_default, True))
        else:
            defaults.append((field.attname, field.name, field.get_default(), False))
    attnames = frozenset(field.attname for field in fields)
    related = frozenset(field.name for field in fields if field.is_relation)
    return tuple(defaults), attnames, related


@functools.cache  # per model, for the life of the process
def _plain_attnames(model: type[models.Model]) -> tuple[str, ...]:
    """The concrete fields' attribute names, in the order rows are read, if every one
    is plain (see ``QuickLoad``); else none."""
    plain = (DeferredAttribute, ForeignKeyDeferredAttribute)
    fields = model._meta.concrete_fields
    if any(type(model.__dict__.get(f.attname)) not in plain for f in fields):
        return ()
    return tuple(f.attname for f in fields)
