"""Reads whose SQL Django builds and compiles once per thread, not once per request.

A single partner event runs eight ORM reads, and building their querysets (``filter()``)
and compiling them to SQL cost Django about 2 ms of the request's 6.9 ms of Python: the
same work each time, for SQL that differs only in its parameters. ``CompiledRead`` does
that work on its first call in each thread (with a stand-in value for each parameter),
keeps the SQL, the compiler's map of the columns and the converters, and afterwards only
puts the call's values in the stand-ins' places and runs it through Django's own
iterables: the same objects (select_related, annotations, values_list rows) as the
queryset would make, the same statement.

What a read may take as parameters: integers, strings, aware datetimes compared with a
DateTimeField, and lists of any one of these (``pk__in``, ``code__in``), the values as
they go to the database (a primary key, not an object). A
list's length is part of the SQL: lists of up to ``MAX_LIST`` items each get their own
compiled statement (a single event's lists have one), and longer or empty ones take
Django's ordinary path. A list of integers or strings named in ``whole`` and looked up with
``__one_of`` (``OneOf``) goes as one parameter, whatever its length: one compiled
statement for a batch's hundred journeys as for one, which PostgreSQL then keeps prepared
(``prepare_threshold``) and psycopg does not parse again (it parses a statement of more
than 50 parameters at every run). ``build`` must depend on its parameters only: anything else it
reads (the clock, a setting that may change) would be frozen into the SQL. That every
parameter reaches the SQL as given is checked when it is compiled; a read that breaks it
(a lookup that changes the value, as ``startswith`` escapes it) is refused there, loudly.

The results are lists, never querysets: a queryset would let a caller filter it further,
and its cached SQL would silently ignore that. Django internals used (tested against
Django's own results in ``tests/journey/test_compiled.py``): the compiler's
``as_sql``, ``get_converters``, ``select``/``klass_info`` state, ``Query.get_compiler``,
and ``QuerySet._query`` (set without the ``query`` property, whose setter would reset a
``values_list`` read's row type); for rows read already (``read_side_by_side``), the
compiler's ``execute_sql``, which the iterables call for the rows in chunks (a list of
lists of rows). Each thread keeps its own plans, for its own
connection, and compiles again if that connection object is replaced.
"""

import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from inspect import signature
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.lookups import In
from django.db.transaction import TransactionManagementError

MAX_LIST = 4

_LOCKING = re.compile(r"\bFOR (?:NO KEY UPDATE|UPDATE|KEY SHARE|SHARE)\b")

# Stand-ins, far from any real key or code, each recognisable by value and type.
_INT_BASE = -(2**62)
_STR_MARK = "\x1fcompiled-read-parameter:"
_DATETIME_BASE = datetime(1901, 2, 3, 4, 5, 6, tzinfo=UTC)
_KINDS = (int, str, datetime)

# A list in ``whole`` has no length in its shape, and goes into the SQL as one value: an
# array (PostgreSQL) or the JSON text of one (elsewhere).
_WHOLE, _ARRAY, _JSON = -1, "array", "json"

type Shape = tuple[tuple[str, type, int | None], ...]


class OneOf(In):
    """``field__one_of=values``: ``IN``, with the values as one parameter whatever their
    number (two or more): ``= ANY(%s::type[])`` on PostgreSQL (the column's type without
    its length, an integer column's as bigint), ``IN (SELECT value FROM
    json_each(%s))`` elsewhere (SQLite); one value goes as ``= %s``. The same SQL for two
    values and for a batch's hundred, so a read of it is compiled once (``CompiledRead``'s
    ``whole``) and PostgreSQL's prepared statement serves every batch. For integers and
    strings (keys, codes); None never matches, as with ``IN``. Registered on every field
    and relation (``journey.apps``)."""

    lookup_name = "one_of"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        if not self.rhs_is_direct_value():
            raise ValueError("one_of takes a list of values, not a query.")
        lhs, lhs_params = self.process_lhs(compiler, connection)
        field = self.lhs.output_field
        # Plain ints and strs as they are, not wrapped for the column's size (Django wraps
        # an integer as psycopg's Int2 for a smallint column): the array is cast whole.
        values = [_plain(value) for value in self.rhs if value is not None]
        if len(values) == 1:
            # As ``IN`` of one: PostgreSQL keeps a generic plan of it, where it plans an
            # array's statement afresh each time rather than trust its guess of ten
            # values (0.1 ms a single event's outbox read).
            return f"{lhs} = %s", [*lhs_params, values[0]]
        if connection.vendor == "postgresql":
            # The column's type without its length: a cast to varchar(16)[] would cut a
            # longer value to one that matches. Integers as bigint: a value past a
            # smaller column's range matches nothing, as with IN, rather than fail.
            cast = field.cast_db_type(connection).split("(")[0]
            cast = "bigint" if cast in ("smallint", "integer") else cast
            return f"{lhs} = ANY(%s::{cast}[])", [*lhs_params, values]
        # The column as Django compiled it, the values as a parameter.
        sql = f"{lhs} IN (SELECT value FROM json_each(%s))"  # noqa: S608  # nosec B608
        return sql, [*lhs_params, json.dumps(values)]


def _plain(value: Any) -> int | str:
    """A key or code as the plain int or str it is (a choices enum's member is one)."""
    if type(value) in (int, str):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise ValueError("one_of takes integers or strings.")


@dataclass(frozen=True)
class _Plan:
    queryset: QuerySet
    compiler: Any  # the SQLCompiler that compiled it: its select, klass_info, converters
    sql: str
    params: tuple[Any, ...]
    # For each place in params: (parameter name, index in its list or None, or how a
    # whole list goes (_ARRAY, _JSON), whether it is a datetime, adapted for the
    # database as a DateTimeField adapts it).
    places: tuple[tuple[int, str, int | str | None, bool], ...]
    converters: dict
    connection: Any
    locks: bool  # SELECT ... FOR UPDATE: refused outside a transaction, as Django does


def _stand_in(kind: type, n: int) -> Any:
    if kind is datetime:
        return _DATETIME_BASE + timedelta(microseconds=n)
    return _INT_BASE - n if kind is int else f"{_STR_MARK}{n}"


class CompiledRead[M: Model]:
    """A read built by ``build(**params)``, compiled once per thread and shape."""

    def __init__(self, build: Callable[..., QuerySet[M]], *, whole: Sequence[str] = ()) -> None:
        self._build = build
        self._names = tuple(signature(build).parameters)
        # The lists that go as one value (``__one_of``), whatever their length.
        self._whole = frozenset(whole)
        if unknown := self._whole - set(self._names):
            raise TypeError(f"{build.__qualname__} has no parameter {sorted(unknown)}.")
        self._local = threading.local()
        self._model: type[M] | None = None  # known once built

    # --- what callers use ----------------------------------------------------------

    def list(self, **params: Any) -> list[Any]:
        """The rows, as the built queryset would give them."""
        shape = self._shape(params)
        if shape is None:
            queryset = self._build(**params)
            self._model = queryset.model
            return list(queryset)
        return self._rows(self._plan(shape), params)

    def list_with(
        self, name: str, statement: tuple[str, Sequence[Any]], **params: Any
    ) -> "list[Any]":
        """``list``, the read preceded in its statement by ``statement`` (its SQL and
        parameters) as the WITH query ``name``, which the built read refers to: a
        data-modifying one (``INSERT ... RETURNING``) runs once, whether or not the read
        gets to it. Compiled only: the read's SQL means nothing without the WITH query."""
        plan = self._compiled_plan(params)
        sql, values = statement
        name = plan.connection.ops.quote_name(name)
        if name not in plan.sql:
            raise ImproperlyConfigured(f"{self._build.__qualname__} does not read {name}.")
        return self._rows(plan, params, (f"WITH {name} AS ({sql}) ", list(values)))

    def _rows(
        self, plan: _Plan, params: dict[str, Any], before: tuple[str, "list[Any]"] | None = None
    ) -> "list[Any]":
        if plan.locks and plan.connection.get_autocommit():  # as Django's compiler checks
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        sql, values = plan.sql, _values(plan, params)
        if before is not None:
            sql, values = before[0] + sql, [*before[1], *values]
        return _run(plan, sql, values)

    def get(self, **params: Any) -> M:
        """The one row, or the model's DoesNotExist / MultipleObjectsReturned as
        ``QuerySet.get`` raises them (for a lookup by a unique key: no LIMIT)."""
        rows = self.list(**params)
        if len(rows) == 1:
            return rows[0]
        model = cast(type[M], self._model)  # known: list() built the queryset
        if not rows:
            raise model.DoesNotExist(f"{model._meta.object_name} matching query does not exist.")
        raise model.MultipleObjectsReturned(
            f"get() returned more than one {model._meta.object_name} -- it returned {len(rows)}!"
        )

    def first(self, **params: Any) -> Any:
        """The first row or None (order and slice it in ``build``)."""
        rows = self.list(**params)
        return rows[0] if rows else None

    # --- compiling ---------------------------------------------------------------------

    def _shape(self, params: dict[str, Any]) -> Shape | None:
        """The parameters' types and list lengths, or None for Django's own path."""
        if set(params) != set(self._names):
            raise TypeError(f"Expected the parameters {self._names}, got {tuple(params)}.")
        shape = []
        for name in self._names:
            value = params[name]
            if isinstance(value, list | tuple):
                whole = name in self._whole
                if not value or (len(value) > MAX_LIST and not whole):
                    return None
                kinds = {_kind(name, item) for item in value}
                if len(kinds) != 1:
                    raise TypeError(f"{name}: a list of one type.")
                kind = kinds.pop()
                if whole and kind is datetime:
                    raise TypeError(f"{name}: a whole list of integers or strings.")
                # A whole list of one goes as its one value (``OneOf``).
                shape.append((name, kind, _WHOLE if whole and len(value) > 1 else len(value)))
            else:
                shape.append((name, _kind(name, value), None))
        return tuple(shape)

    def _compiled_plan(self, params: dict[str, Any]) -> _Plan:
        """The plan for these parameters, for the ways that run compiled only (a read
        that ``list`` would run uncompiled is refused)."""
        shape = self._shape(params)
        if shape is None:
            raise ValueError(f"{self._build.__qualname__}: lists of 1 to {MAX_LIST} items only.")
        return self._plan(shape)

    def _plan(self, shape: Shape) -> _Plan:
        plans = getattr(self._local, "plans", None)
        if plans is None:
            plans = self._local.plans = {}
        plan = plans.get(shape)
        if plan is not None and connections[plan.queryset.db] is plan.connection:
            return plan
        plan = plans[shape] = self._compile(shape)
        return plan

    def _compile(self, shape: Shape) -> _Plan:
        params, given, wholes = _stand_ins(shape, whole=2)
        queryset = self._build(**params)
        self._model = queryset.model
        connection = connections[queryset.db]
        adapt = connection.ops.adapt_datetimefield_value
        # Each stand-in as it appears among the compiled parameters: a datetime adapted.
        stand_ins = {
            (adapt(value) if moment else value): (name, index, moment)
            for value, name, index, moment in given
        }
        compiler = queryset.query.get_compiler(using=queryset.db)
        sql, compiled = compiler.as_sql()
        places, found = [], set()
        for place, value in enumerate(compiled):
            key = tuple(value) if isinstance(value, list) else value
            if _hashable(key) and key in wholes:
                way, name = wholes[key]
                places.append((place, name, way, False))
                found.add(name)
            elif _hashable(value) and value in stand_ins:
                places.append((place, *stand_ins[value]))
                found.add(value)
            elif any(value in k for k in wholes if type(k) is tuple):
                raise ImproperlyConfigured(
                    f"{self._build.__qualname__}: an item of a list in whole= reaches the "
                    "SQL by itself; look the lists up with __one_of only."
                )
            elif isinstance(value, str) and _STR_MARK in value:
                raise ImproperlyConfigured(
                    f"{self._build.__qualname__}: a parameter reaches the SQL changed "
                    f"({value!r}); compile only plain lookups."
                )
        missing = [stand_ins[value][0] for value in stand_ins if value not in found]
        if whole := sorted({name for _way, name in wholes.values() if name not in found}):
            raise ImproperlyConfigured(
                f"{self._build.__qualname__}: the lists {whole} do not reach the SQL as one "
                "value; look them up with __one_of."
            )
        if missing:
            raise ImproperlyConfigured(
                f"{self._build.__qualname__}: the parameters {sorted(set(missing))} do not "
                "reach the SQL as given; compile only plain lookups."
            )
        if wholes:
            # The same SQL for three items a list as for two, or the lists' lengths are
            # in it (a slice by one, say), and a plan for one length would serve another.
            other = self._build(**_stand_ins(shape, whole=3)[0])
            if other.query.get_compiler(using=other.db).as_sql()[0] != sql:
                raise ImproperlyConfigured(
                    f"{self._build.__qualname__}: the SQL depends on the lengths of the "
                    "lists in whole=; look them up with __one_of only."
                )
        fields = [column[0] for column in compiler.select[: compiler.col_count]]
        return _Plan(
            queryset=queryset,
            compiler=compiler,
            sql=sql,
            params=tuple(compiled),
            places=tuple(places),
            converters=compiler.get_converters(fields),
            connection=connection,
            # A lock in a subquery too (``FOR UPDATE`` or its kin in the SQL: names are
            # quoted, so only Django's clause reads so).
            locks=bool(
                (queryset.query.select_for_update or _LOCKING.search(sql))
                and connection.features.has_select_for_update
                and connection.features.supports_transactions
            ),
        )


def _stand_ins(
    shape: Shape, *, whole: int
) -> tuple[dict[str, Any], list[tuple[Any, str, int | None, bool]], dict[Any, tuple[str, str]]]:
    """The stand-ins for a shape's parameters, each its own number: the parameters to
    build with; each scalar or list item's (stand-in, name, index, a datetime); each whole
    list's (``whole`` items) as it reaches the SQL, (the way, its name)."""
    params: dict[str, Any] = {}
    given: list[tuple[Any, str, int | None, bool]] = []
    wholes: dict[Any, tuple[str, str]] = {}
    number = 0
    for name, kind, length in shape:
        count = whole if length == _WHOLE else length or 1
        values = [_stand_in(kind, number + n) for n in range(count)]
        number += count
        if length == _WHOLE:
            params[name] = values
            wholes[tuple(values)] = (_ARRAY, name)
            wholes[json.dumps(values)] = (_JSON, name)
            continue
        params[name] = values if length else values[0]
        given.extend(
            (value, name, index if length else None, kind is datetime)
            for index, value in enumerate(values)
        )
    return params, given, wholes


def _values(plan: _Plan, params: dict[str, Any]) -> "list[Any]":
    """The compiled parameters with the call's values in the stand-ins' places."""
    values = list(plan.params)
    adapt = plan.connection.ops.adapt_datetimefield_value
    for place, name, index, moment in plan.places:
        if index is None:
            value = params[name]
        elif index == _ARRAY:
            value = list(params[name])
        elif index == _JSON:
            value = json.dumps(list(params[name]))
        else:
            value = params[name][index]
        values[place] = adapt(value) if moment else value
    return values


def _run(
    plan: _Plan, sql: str, values: "list[Any]", rows: "list[tuple] | None" = None
) -> "list[Any]":
    """The plan's queryset run with this SQL, through Django's own iterables; or, given
    ``rows`` (read already), the objects Django makes of them."""
    compiler = _copy(plan.compiler)
    compiler.as_sql = lambda *args, **kwargs: (sql, values)
    compiler.get_converters = lambda expressions: plan.converters
    if rows is not None:
        # The iterables take the rows in chunks, from here instead of a cursor.
        compiler.execute_sql = lambda *args, **kwargs: [rows]
    query = _copy(plan.queryset.query)
    query.get_compiler = lambda *args, **kwargs: compiler
    queryset = _copy(plan.queryset)
    queryset._query = query  # not the property's setter: it resets the row type
    return list(queryset)


def read_side_by_side(
    first: "tuple[CompiledRead, dict[str, Any]]", second: "tuple[CompiledRead, dict[str, Any]]"
) -> "tuple[list[Any], list[Any]]":
    """Two reads of one row at most each (lookups by unique keys), as ``list`` gives
    them, in one statement: the second's row beside the first's (``LEFT JOIN ... ON
    true``), so the second comes back only with a row of the first. Each read (a read,
    its parameters) is compiled as ``list`` compiles it; neither may lock."""
    plans = []
    for read, params in (first, second):
        plan = read._compiled_plan(params)
        if plan.locks:
            raise ValueError(f"{read._build.__qualname__}: a read side by side may not lock.")
        plans.append((plan, params))
    (one, one_params), (two, two_params) = plans
    if one.connection is not two.connection:
        raise ValueError("Reads side by side read one database.")
    # The second read's row begins with a mark: NULL when the join found none.
    sql = (
        f"SELECT * FROM ({one.sql}) AS r0 "  # noqa: S608  # nosec B608: compiled SQL, values as parameters
        f"LEFT JOIN (SELECT 1 AS found, r.* FROM ({two.sql}) AS r) AS r1 ON true"
    )
    with one.connection.cursor() as cursor:
        cursor.execute(sql, [*_values(one, one_params), *_values(two, two_params)])
        rows = cursor.fetchall()
    width = len(one.compiler.select)
    if len(rows) > 1 or any(len(row) != width + 1 + len(two.compiler.select) for row in rows):
        raise ValueError("Reads side by side give one row at most each, as compiled.")
    firsts = [row[:width] for row in rows]
    seconds = [row[width + 1 :] for row in rows if row[width] is not None]
    return _run(one, one.sql, [], firsts), _run(two, two.sql, [], seconds)


def _kind(name: str, value: Any) -> type:
    if type(value) not in _KINDS:  # not bool, not a model: the value as stored
        raise TypeError(f"{name}: an integer, a string or a datetime, not {type(value).__name__}.")
    if type(value) is datetime and value.utcoffset() is None:
        raise TypeError(f"{name}: an aware datetime.")
    return type(value)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _copy[T](obj: T) -> T:
    """A shallow copy by its ``__dict__`` (``copy.copy`` of a QuerySet would evaluate it:
    its pickling hook fetches the rows)."""
    new = obj.__class__.__new__(obj.__class__)
    new.__dict__.update(obj.__dict__)
    return new
