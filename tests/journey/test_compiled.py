"""journey.compiled: reads compiled once give what Django's querysets give, or refuse."""

import threading
from datetime import datetime, timedelta
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections, transaction
from django.db.models import IntegerField, OuterRef, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.sql.compiler import SQLCompiler
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from journey.compiled import MAX_LIST, CompiledRead, read_side_by_side
from journey.models import Journey, JourneyTemplate, Milestone, MilestoneState
from journey.services import journeys_for_spine
from tests.factories import make_journey

pytestmark = pytest.mark.django_db


def _by_reference(reference: str):
    return journeys_for_spine().filter(reference=reference)


def _milestones(journeys: list[int]):
    return Milestone.objects.filter(journey__in=journeys).order_by("journey_id", "position")


def _positions(journeys: list[int], state: str):
    return (
        Milestone.objects.filter(journey__in=journeys, state=state)
        .order_by("journey_id", "position")
        .values_list("journey_id", "position", "stage__key")
    )


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_objects_are_the_querysets_with_their_related_objects(django_assert_num_queries):
    journey = make_journey()
    read = CompiledRead(_by_reference)
    expected = _by_reference(journey.reference).get()

    for _ in range(2):  # compiled, then from what was compiled
        with django_assert_num_queries(1):
            got = read.get(reference=journey.reference)
            # select_related: owner, profile and template came with it.
            assert got.owner.profile.pk == journey.owner.profile.pk
            assert got.template.key == journey.template.key
        assert _fields(got) == _fields(expected)
        assert _fields(got.owner) == _fields(expected.owner)
        assert got._state.adding is False
        assert got._state.db == "default"


def test_rows_and_parameters_of_each_call_are_its_own():
    first, second = make_journey(), make_journey()
    read = CompiledRead(_positions)
    for journeys in ([first.pk], [second.pk], [first.pk, second.pk], [second.pk, first.pk]):
        for state in ("upcoming", "current"):
            assert read.list(journeys=journeys, state=state) == list(_positions(journeys, state))
    assert read.list(journeys=[first.pk], state="upcoming")  # not trivially empty


def _reached_since(journey: int, since: datetime):
    return Milestone.objects.filter(journey=journey, reached_at__gte=since).order_by("pk")


def test_datetimes_go_as_the_database_takes_them():
    journey = make_journey()
    now = timezone.now()
    first, second, *_ = journey.milestones.order_by("position")
    Milestone.objects.filter(pk=first.pk).update(reached_at=now - timedelta(days=3))
    Milestone.objects.filter(pk=second.pk).update(reached_at=now - timedelta(days=1))
    read = CompiledRead(_reached_since)
    for since in (now - timedelta(days=5), now - timedelta(days=2), now):
        got = [m.pk for m in read.list(journey=journey.pk, since=since)]
        assert got == [m.pk for m in _reached_since(journey.pk, since)]
    assert [m.pk for m in read.list(journey=journey.pk, since=now - timedelta(days=2))] == [
        second.pk
    ]
    with pytest.raises(TypeError, match="aware"):
        read.list(journey=journey.pk, since=datetime(2026, 1, 1))


def test_a_second_call_neither_builds_nor_compiles():
    journey = make_journey()
    read = CompiledRead(_milestones)
    expected = [m.pk for m in _milestones([journey.pk])]
    assert [m.pk for m in read.list(journeys=[journey.pk])] == expected

    with (
        mock.patch.object(SQLCompiler, "as_sql", side_effect=AssertionError("compiled")),
        mock.patch.object(read, "_build", side_effect=AssertionError("built")),
    ):
        assert [m.pk for m in read.list(journeys=[journey.pk])] == expected


def test_long_and_empty_lists_take_djangos_path(django_assert_num_queries):
    journeys = [make_journey().pk for _ in range(MAX_LIST + 1)]
    read = CompiledRead(_milestones)
    assert [m.pk for m in read.list(journeys=journeys)] == [m.pk for m in _milestones(journeys)]
    with django_assert_num_queries(0):  # as Django: an empty IN reads nothing
        assert read.list(journeys=[]) == []
    assert not getattr(read._local, "plans", None)  # nothing compiled for either


def test_a_parameter_that_does_not_reach_the_sql_as_given_is_refused():
    def changed(reference: str):
        return Journey.objects.filter(reference__startswith=reference)  # escaped, then %

    def unused(reference: str, partner: int):
        return Journey.objects.filter(reference=reference)

    with pytest.raises(ImproperlyConfigured, match="changed"):
        CompiledRead(changed).list(reference="MP-")
    with pytest.raises(ImproperlyConfigured, match=r"\['partner'\]"):
        CompiledRead(unused).list(reference="MP-", partner=1)


def test_parameters_are_plain_values_named_as_build_names_them():
    journey = make_journey()
    read = CompiledRead(_milestones)
    with pytest.raises(TypeError, match="not Journey"):
        read.list(journeys=[journey])
    with pytest.raises(TypeError, match="not bool"):
        read.list(journeys=[True])
    with pytest.raises(TypeError, match="one type"):
        read.list(journeys=[1, "2"])
    with pytest.raises(TypeError, match="Expected the parameters"):
        read.list(journey=[journey.pk])


def test_get_raises_as_querysets_do():
    journey = make_journey()
    read = CompiledRead(_by_reference)
    with pytest.raises(Journey.DoesNotExist, match="Journey matching query does not exist"):
        read.get(reference="MP-NOPE00")
    two = CompiledRead(lambda journeys: Milestone.objects.filter(journey__in=journeys))
    with pytest.raises(Milestone.MultipleObjectsReturned, match="it returned 4"):
        two.get(journeys=[journey.pk])
    assert read.first(reference="MP-NOPE00") is None


@pytest.mark.skipif(
    not connections["default"].features.has_select_for_update, reason="no FOR UPDATE (SQLite)"
)
@pytest.mark.django_db(transaction=True)
def test_a_locking_read_needs_a_transaction_every_time():
    journey = make_journey()
    read = CompiledRead(
        lambda pks: Journey.objects.select_for_update().filter(pk__in=pks).values_list("pk")
    )
    with transaction.atomic():
        assert read.list(pks=[journey.pk]) == [(journey.pk,)]
    with pytest.raises(TransactionManagementError):
        read.list(pks=[journey.pk])  # compiled already: still refused


@pytest.mark.skipif(
    not connections["default"].features.has_select_for_update, reason="no FOR UPDATE (SQLite)"
)
@pytest.mark.django_db(transaction=True)
def test_a_read_that_locks_in_a_subquery_needs_a_transaction_every_time():
    journey = make_journey()
    locked = Journey.objects.filter(pk=OuterRef("journey_id")).select_for_update()
    read = CompiledRead(
        lambda journeys: (
            Milestone.objects.filter(journey__in=journeys)
            .annotate(version=Subquery(locked.values("version")))
            .values_list("version", flat=True)
        )
    )
    version = Journey.objects.values_list("version", flat=True).get(pk=journey.pk)
    with transaction.atomic():
        assert set(read.list(journeys=[journey.pk])) == {version}
    with pytest.raises(TransactionManagementError):
        read.list(journeys=[journey.pk])  # compiled already: still refused


@pytest.mark.django_db(transaction=True)
def test_each_thread_compiles_for_its_own_connection():
    journey = make_journey()
    read = CompiledRead(_milestones)
    here = [m.pk for m in read.list(journeys=[journey.pk])]
    there: dict = {}

    def other() -> None:
        try:
            there["rows"] = [m.pk for m in read.list(journeys=[journey.pk])]
            (plan,) = read._local.plans.values()
            there["own"] = plan.connection is connections["default"]
        finally:
            connections.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert there == {"rows": here, "own": True}
    (plan,) = read._local.plans.values()
    assert plan.connection is connections["default"]


def _milestones_numbered(journeys: list[int]):
    """Milestones, each with the number the WITH query "w" gives (``list_with``)."""
    number = RawSQL('SELECT "n" FROM "w"', (), IntegerField())
    return _milestones(journeys).annotate(number=number).filter(number__gt=0)


def test_a_read_runs_after_the_with_query_it_names(django_assert_num_queries):
    journey = make_journey()
    read = CompiledRead(_milestones_numbered)
    expected = [m.pk for m in _milestones([journey.pk])]

    for number in (7, 8):  # compiled, then from what was compiled
        with django_assert_num_queries(1):
            rows = read.list_with("w", ("SELECT %s AS n", [number]), journeys=[journey.pk])
        assert [(m.pk, m.number) for m in rows] == [(pk, number) for pk in expected]
    # Its parameters go before the read's, and the read's condition on it holds.
    assert read.list_with("w", ("SELECT %s AS n", [0]), journeys=[journey.pk]) == []


def test_a_read_after_a_with_query_is_compiled_only():
    read = CompiledRead(_milestones_numbered)
    with pytest.raises(ValueError, match="lists of 1 to"):
        read.list_with("w", ("SELECT 1 AS n", []), journeys=list(range(1, MAX_LIST + 2)))
    with pytest.raises(ImproperlyConfigured, match="does not read"):
        read.list_with("v", ("SELECT 1 AS n", []), journeys=[1])


def _journey_by_reference(reference: str):
    return journeys_for_spine().filter(reference=reference)


def _template_by_key(key: str):
    return JourneyTemplate.objects.filter(key=key)


def test_two_reads_side_by_side_give_what_each_gives_in_one_statement(
    django_assert_num_queries,
):
    journey = make_journey()
    journeys, templates = CompiledRead(_journey_by_reference), CompiledRead(_template_by_key)
    for _ in range(2):  # compiled, then from what was compiled
        with django_assert_num_queries(1):
            (got,), (template,) = read_side_by_side(
                (journeys, {"reference": journey.reference}),
                (templates, {"key": journey.template.key}),
            )
            assert got.owner.profile.pk == journey.owner.profile.pk  # select_related
        assert _fields(got) == _fields(_journey_by_reference(journey.reference).get())
        assert _fields(template) == _fields(journey.template)
        assert template._state.adding is False


def test_the_second_read_comes_back_only_beside_a_row_of_the_first():
    journey = make_journey()
    journeys, templates = CompiledRead(_journey_by_reference), CompiledRead(_template_by_key)
    key = journey.template.key
    assert read_side_by_side(
        (journeys, {"reference": journey.reference}), (templates, {"key": "no-such-key"})
    ) == ([journey], [])
    assert read_side_by_side(
        (journeys, {"reference": "no-such-reference"}), (templates, {"key": key})
    ) == ([], [])


def _stalled_since(reference: str):
    return Journey.objects.filter(reference=reference).values_list("stalled_since")


def test_a_second_row_of_nulls_is_a_row():
    journey = make_journey()
    assert journey.stalled_since is None
    assert read_side_by_side(
        (CompiledRead(_template_by_key), {"key": journey.template.key}),
        (CompiledRead(_stalled_since), {"reference": journey.reference}),
    ) == ([journey.template], [(None,)])


def test_reads_side_by_side_give_one_row_at_most_each():
    journey = make_journey()
    with pytest.raises(ValueError, match="one row at most"):
        read_side_by_side(
            (CompiledRead(_template_by_key), {"key": journey.template.key}),
            (CompiledRead(_milestones), {"journeys": [journey.pk]}),  # four
        )


@pytest.mark.skipif(
    not connections["default"].features.has_select_for_update, reason="no FOR UPDATE (SQLite)"
)
def test_reads_side_by_side_may_not_lock():
    journey = make_journey()
    locking = CompiledRead(lambda pk: Journey.objects.select_for_update().filter(pk=pk))
    with transaction.atomic(), pytest.raises(ValueError, match="may not lock"):
        read_side_by_side(
            (CompiledRead(_template_by_key), {"key": "k"}), (locking, {"pk": journey.pk})
        )


def _milestones_among(journeys: list[int]):
    return Milestone.objects.filter(journey__one_of=journeys).order_by("journey_id", "position")


def test_a_whole_list_is_one_parameter_and_one_statement_whatever_its_length():
    """``whole``: a batch's hundred keys go as one value (``__one_of``), so one compiled
    statement serves every length from two on; a list of one goes as its value, as
    ``IN`` of one did (PostgreSQL keeps a generic plan of it)."""
    journeys = [make_journey().pk for _ in range(MAX_LIST + 3)]
    read = CompiledRead(_milestones_among, whole=("journeys",))
    statements = []
    for some in (journeys[:1], journeys[:2], journeys, list(reversed(journeys[1:]))):
        expected = [m.pk for m in _milestones(some)]
        with CaptureQueriesContext(connections["default"]) as queries:
            assert [m.pk for m in read.list(journeys=some)] == expected
        (query,) = queries.captured_queries
        statements.append(query["sql"])
    assert len(read._local.plans) == 2  # one value; two or more
    one, *many = statements
    assert "ANY" not in one and "json_each" not in one
    # The statements of two, seven and six keys differ only in their values.
    many_values = [s.split("WHERE")[0] for s in many]
    assert many_values == [many_values[0]] * 3
    marker = "= ANY(" if connection.vendor == "postgresql" else "json_each("
    assert all(marker in s for s in many)


def test_one_of_reads_keys_codes_and_relations_as_in_does():
    first, second = make_journey(), make_journey()
    pks = [first.pk, second.pk]
    assert set(Journey.objects.filter(pk__one_of=pks)) == {first, second}
    assert set(Journey.objects.filter(pk__one_of=[first.pk, None])) == {first}  # None: no match
    assert list(Journey.objects.filter(pk__one_of=[])) == []
    assert set(
        Journey.objects.filter(reference__one_of=[first.reference, second.reference, "MP-NONE"])
    ) == {first, second}
    # A relation, by its key (``journey__one_of``) and by its column (``journey_id``).
    by_relation = set(Milestone.objects.filter(journey__one_of=pks))
    assert by_relation == set(Milestone.objects.filter(journey_id__one_of=pks))
    assert by_relation == set(Milestone.objects.filter(journey__in=pks))
    with pytest.raises(ValueError, match="integers or strings"):
        list(Journey.objects.filter(created_at__one_of=[timezone.now(), timezone.now()]))
    with pytest.raises(ValueError, match="not a query"):
        list(Journey.objects.filter(pk__one_of=Journey.objects.values("pk")))


def test_a_whole_list_looked_up_with_in_is_refused():
    with pytest.raises(ImproperlyConfigured, match="__one_of"):
        CompiledRead(_milestones, whole=("journeys",)).list(journeys=[1, 2])
    with pytest.raises(TypeError, match="no parameter"):
        CompiledRead(_milestones, whole=("pks",))
    with pytest.raises(TypeError, match="integers or strings"):
        CompiledRead(_reached_since, whole=("since",)).list(
            journey=1, since=[timezone.now(), timezone.now()]
        )


def test_one_of_matches_as_in_does_whatever_the_columns_length_or_range():
    """From a review: a cast to varchar(16)[] cut a longer value to one that matched; a
    value past a smallint column's range failed; a choices member was refused."""
    journey = make_journey()
    size = Journey._meta.get_field("reference").max_length
    Journey.objects.filter(pk=journey.pk).update(reference="R" * size)
    longer = "R" * size + "EXTRA"  # longer than the column holds, cut to match
    assert list(Journey.objects.filter(reference__one_of=[longer, "nope"])) == []
    assert list(Journey.objects.filter(reference__in=[longer, "nope"])) == []
    positions = [0, 1, 70000]
    assert set(Milestone.objects.filter(journey=journey, position__one_of=positions)) == set(
        Milestone.objects.filter(journey=journey, position__in=positions)
    )
    states = [MilestoneState.DONE, MilestoneState.CURRENT]
    assert set(Milestone.objects.filter(state__one_of=states)) == set(
        Milestone.objects.filter(state__in=states)
    )


def test_a_whole_list_that_reaches_the_sql_otherwise_is_refused():
    """From a review: a whole list also looked up with __in, or sliced by its length,
    was frozen into the compiled SQL with its stand-ins or its first length."""
    first, second = make_journey(), make_journey()

    def also_in(journeys: list[int]):
        return Milestone.objects.filter(journey__one_of=journeys).filter(journey__in=journeys)

    def sliced(journeys: list[int]):
        return Journey.objects.filter(pk__one_of=journeys).order_by("pk")[: len(journeys)]

    with pytest.raises(ImproperlyConfigured, match="by itself"):
        CompiledRead(also_in, whole=("journeys",)).list(journeys=[first.pk, second.pk])
    with pytest.raises(ImproperlyConfigured, match="lengths"):
        CompiledRead(sliced, whole=("journeys",)).list(journeys=[first.pk, second.pk])
