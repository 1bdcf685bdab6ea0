"""journey.db: inserts that let a unique constraint decide, and one-statement updates."""

import functools
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import DataError, IntegrityError, connection, models, transaction
from django.db.models.functions import Now
from django.utils import timezone

from integrations.models import IdempotencyRecord, InboundEvent
from journey.db import (
    Together,
    bulk_create_unless_taken,
    create_unless_taken,
    insert_rows,
    update_rows,
)
from journey.models import EventKind, EventSource, Journey, JourneyEvent, Milestone, MilestoneState
from tests.factories import PartnerFactory, make_journey
from tests.sql import unit_writes

pytestmark = pytest.mark.django_db


def record(partner, key: str) -> IdempotencyRecord:
    return IdempotencyRecord(
        partner=partner,
        key=key,
        method="POST",
        path="/x/",
        fingerprint="f",
        expires_at=timezone.now() + timedelta(hours=1),
    )


def test_create_unless_taken_inserts_once_and_sets_the_key(django_assert_num_queries):
    partner = PartnerFactory()
    first = record(partner, "k")
    with django_assert_num_queries(1):
        assert create_unless_taken(first) is True
    assert first.pk is not None
    assert first.created_at is not None  # auto_now_add ran
    second = record(partner, "k")
    assert create_unless_taken(second) is False
    assert second.pk is None
    assert IdempotencyRecord.objects.get().pk == first.pk


def test_bulk_create_unless_taken_returns_the_rows_it_wrote():
    partner = PartnerFactory()
    journey = make_journey()
    now = timezone.now()

    def inbound(event_id: str) -> InboundEvent:
        return InboundEvent(
            partner=partner, journey=journey, event_id=event_id, code="C", occurred_at=now
        )

    bulk_create_unless_taken([inbound("b")], key="event_id")
    written = bulk_create_unless_taken([inbound("a"), inbound("b"), inbound("c")], key="event_id")

    assert sorted(row.event_id for row in written) == ["a", "c"]
    assert all(row.pk is not None for row in written)
    assert {row.pk: row.event_id for row in written} == dict(
        InboundEvent.objects.filter(event_id__in=["a", "c"]).values_list("pk", "event_id")
    )
    with pytest.raises(ValueError, match="differ"):
        bulk_create_unless_taken([inbound("d"), inbound("d")], key="event_id")


def test_update_rows_sets_each_row_its_own_values_nulls_included(django_assert_num_queries):
    journey = make_journey()
    first, second, *rest = list(journey.milestones.order_by("position"))
    reached = timezone.now() - timedelta(hours=2)
    first.state, first.reached_at, first.expected_date = MilestoneState.DONE, reached, None
    second.state, second.reached_at = MilestoneState.CURRENT, None
    second.expected_date = date(2030, 1, 2)

    with django_assert_num_queries(1):
        assert update_rows([first, second], ["state", "reached_at", "expected_date"]) == 2

    assert list(
        Milestone.objects.filter(pk__in=[first.pk, second.pk])
        .order_by("position")
        .values_list("state", "reached_at", "expected_date")
    ) == [
        (MilestoneState.DONE, reached, None),
        (MilestoneState.CURRENT, None, date(2030, 1, 2)),
    ]
    assert {m.state for m in Milestone.objects.filter(pk__in=[m.pk for m in rest])} == {
        MilestoneState.UPCOMING
    }


def test_update_rows_splits_what_one_statement_cannot_carry(django_assert_num_queries):
    """SQLite joins at most 500 SELECTs in one UNION ALL: a batch whose events move more
    milestones than that is written in chunks, not refused."""
    journeys = [make_journey(stages=4) for _ in range(130)]
    milestones = list(Milestone.objects.filter(journey__in=journeys).order_by("pk"))
    assert len(milestones) == 520
    for n, milestone in enumerate(milestones):
        milestone.expected_date = date(2030, 1, 1) + timedelta(days=n % 7)

    assert update_rows(milestones, ["expected_date"]) == 520

    stored = dict(Milestone.objects.filter(journey__in=journeys).values_list("pk", "expected_date"))
    assert stored == {m.pk: m.expected_date for m in milestones}


def test_bulk_create_unless_taken_inserts_in_chunks_the_backend_can_bind(monkeypatch):
    from django.db import connection

    partner = PartnerFactory()
    journey = make_journey()
    now = timezone.now()
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    rows = [
        InboundEvent(partner=partner, journey=journey, event_id=f"e{n}", code="C", occurred_at=now)
        for n in range(5)
    ]

    written = bulk_create_unless_taken(rows, key=("partner", "event_id"))

    assert sorted(row.event_id for row in written) == [f"e{n}" for n in range(5)]
    assert InboundEvent.objects.count() == 5


@pytest.mark.skipif(connection.vendor != "postgresql", reason="json_to_recordset is PostgreSQL's")
def test_update_rows_on_postgresql_is_one_statement_of_json_whatever_the_rows(
    django_assert_num_queries,
):
    journeys = [make_journey(stages=4) for _ in range(130)]
    milestones = list(Milestone.objects.filter(journey__in=journeys).order_by("pk"))
    for n, milestone in enumerate(milestones):
        milestone.expected_date = None if n % 5 == 0 else date(2030, 1, 1) + timedelta(days=n % 7)
        milestone.state = MilestoneState.DONE if n % 2 else MilestoneState.UPCOMING

    with django_assert_num_queries(1) as queries:
        assert update_rows(milestones, ["expected_date", "state"]) == 520

    assert "json_to_recordset(" in queries.captured_queries[0]["sql"]
    stored = dict(Milestone.objects.filter(journey__in=journeys).values_list("pk", "expected_date"))
    assert stored == {m.pk: m.expected_date for m in milestones}
    # The types go without their length: a value too long fails, it is not cut.
    milestones[0].state = "x" * 40
    with pytest.raises(DataError), transaction.atomic():
        update_rows(milestones[:1], ["state"])


def _scans(plan: dict) -> list[tuple[str, str | None]]:
    """Each node of a JSON plan: its type and the table it reads, if any."""
    found = [(plan["Node Type"], plan.get("Relation Name"))]
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def _journeys_in_bulk(count: int) -> list[Journey]:
    """``count`` journeys of four stages like one the factory makes, with their
    milestones, in two statements: tables of the size at which the planner weighs an
    index against reading them whole (some fifty pages of milestones)."""
    first = make_journey(stages=4)
    fields = [
        f.attname
        for f in Journey._meta.concrete_fields
        if not f.primary_key and f.attname != "reference"
    ]
    reference = Journey._meta.get_field("reference")
    journeys = Journey.objects.bulk_create(
        Journey(
            reference=reference.get_default(), **{name: getattr(first, name) for name in fields}
        )
        for _ in range(count - 1)
    )
    copied = [
        f.attname
        for f in Milestone._meta.concrete_fields
        if not f.primary_key and f.attname != "journey_id"
    ]
    milestones = list(first.milestones.all())
    Milestone.objects.bulk_create(
        Milestone(journey=journey, **{name: getattr(m, name) for name in copied})
        for journey in journeys
        for m in milestones
    )
    return [first, *journeys]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="json_to_recordset is PostgreSQL's")
def test_update_rows_on_postgresql_finds_its_rows_by_key_rather_than_reading_the_table(
    django_assert_num_queries,
):
    """json_to_recordset counts as 100 rows to the planner whatever it holds: without the
    keys beside it, a table of some thousands of rows is read whole and hash-joined. (On
    a few pages, reading them is what the planner does with or without the keys, and
    costs nothing.)"""
    journeys = _journeys_in_bulk(1000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE journey_milestone")
    milestone = Milestone.objects.filter(journey__in=journeys[-5:]).order_by("pk").last()
    milestone.expected_date = date(2030, 1, 1)
    with django_assert_num_queries(1) as queries:
        assert update_rows([milestone], ["expected_date"]) == 1

    with connection.cursor() as cursor:  # the statement as sent, with its values
        cursor.execute("EXPLAIN (FORMAT JSON) " + queries.captured_queries[0]["sql"])
        plan = cursor.fetchone()[0][0]["Plan"]
    scans = _scans(plan)
    assert ("Seq Scan", "journey_milestone") not in scans
    assert any(table == "journey_milestone" and "Index" in node for node, table in scans)
    assert Milestone.objects.get(pk=milestone.pk).expected_date == date(2030, 1, 1)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="json_to_recordset is PostgreSQL's")
def test_update_rows_on_postgresql_takes_keys_as_their_field_would():
    """A key set as text (as a form or a URL gives it) goes as the column's type, in the
    document and in the list of keys beside it alike."""
    first, second = make_journey().milestones.order_by("position")[:2]
    second.pk = str(second.pk)
    for milestone in (first, second):
        milestone.expected_date = date(2032, 2, 2)

    assert update_rows([first, second], ["expected_date"]) == 2

    assert Milestone.objects.filter(expected_date=date(2032, 2, 2)).count() == 2


def test_update_rows_falls_back_to_rows_of_values_for_a_column_json_cannot_carry(
    monkeypatch,
):
    from journey import db

    monkeypatch.setattr(db, "_json_types", lambda fields, connection: None)
    journey = make_journey()
    milestones = list(journey.milestones.order_by("position"))
    for n, milestone in enumerate(milestones):
        milestone.expected_date = date(2031, 1, 1) + timedelta(days=n)

    assert update_rows(milestones, ["expected_date"]) == 4

    stored = journey.milestones.order_by("position").values_list("expected_date", flat=True)
    assert list(stored) == [date(2031, 1, 1) + timedelta(days=n) for n in range(4)]


def timeline_event(journey, **fields) -> JourneyEvent:
    values = {
        "kind": EventKind.NOTE,
        "source": EventSource.PARTNER,
        "occurred_at": timezone.now() - timedelta(hours=1),
        "message": "Painted",
    }
    return JourneyEvent(journey=journey, **(values | fields))


def test_insert_rows_gives_each_object_its_key_in_one_statement(django_assert_num_queries):
    first, second = make_journey(), make_journey()
    payloads = [{"photo": [1, 2], "ok": True}, ["a", None], "a string", {}, {"n": 1.5}]
    events = [
        timeline_event(first if n % 2 else second, payload=payload, message=f"note {n}")
        for n, payload in enumerate(payloads)
    ]
    events[0].milestone = first.milestones.first()

    with django_assert_num_queries(1):
        insert_rows(events)

    assert all(event.pk is not None and not event._state.adding for event in events)
    stored = {row.pk: row for row in JourneyEvent.objects.filter(pk__in=[e.pk for e in events])}
    for event in events:
        row = stored[event.pk]  # each object has its own row's key
        assert (row.message, row.journey_id, row.payload) == (
            event.message,
            event.journey_id,
            event.payload,
        )
        assert row.occurred_at == event.occurred_at
        assert row.received_at == event.received_at is not None  # auto_now_add ran
    assert stored[events[0].pk].milestone_id == events[0].milestone.pk


def test_insert_rows_refuses_an_unsaved_related_object_before_writing_anything():
    journey = make_journey()
    unsaved = Milestone(journey=journey, position=99)
    events = [timeline_event(journey), timeline_event(journey, milestone=unsaved)]

    with pytest.raises(ValueError, match="milestone"):
        insert_rows(events)

    assert not JourneyEvent.objects.filter(message="Painted").exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="json_to_recordset is PostgreSQL's")
def test_a_value_too_long_fails_the_whole_insert_it_is_not_cut():
    journey = make_journey()
    events = [timeline_event(journey), timeline_event(journey, source_name="x" * 121)]

    with pytest.raises(DataError), transaction.atomic():
        insert_rows(events)

    assert not JourneyEvent.objects.filter(message="Painted").exists()


def test_values_are_written_as_django_would_prepare_them():
    """The JSON rows go through each field's own preparation where a value is not
    already what its column holds: a naive time is the default zone's, a date taken
    from an aware time is the default zone's day, text columns take str()."""
    journey = make_journey()
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    with timezone.override(tokyo), pytest.warns(RuntimeWarning, match="naive datetime"):
        event = timeline_event(journey, occurred_at=datetime(2026, 1, 1, 12, 0), message=True)
        insert_rows([event])
    stored = JourneyEvent.objects.get(pk=event.pk)
    assert stored.occurred_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # default zone: UTC
    assert stored.message == "True"

    milestone = journey.milestones.first()
    milestone.expected_date = datetime(2026, 1, 2, 8, 0, tzinfo=tokyo)  # 23:00 UTC the day before
    update_rows([milestone], ["expected_date"])
    assert Milestone.objects.get(pk=milestone.pk).expected_date == date(2026, 1, 1)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="json_to_recordset is PostgreSQL's")
def test_json_rows_keep_each_moment_and_a_json_value_as_json_would_write_it():
    """orjson writes the rows: a time in any zone keeps its instant, to the microsecond;
    inside a JSON column's value a time is its ISO text, a key that is not text its
    text, a decimal its digits, as json.dumps wrote them. NaN, which no JSON holds, is
    null there (the partner API refuses it at the door)."""
    journey = make_journey()
    moment = datetime(2026, 7, 1, 12, 0, 0, 123456, tzinfo=zoneinfo.ZoneInfo("Europe/Madrid"))
    event = timeline_event(journey, occurred_at=moment)
    event.payload = {"at": moment, 2: "two", "price": Decimal("1.50"), "nan": float("nan")}
    insert_rows([event])
    stored = JourneyEvent.objects.get(pk=event.pk)
    assert stored.occurred_at == moment
    # An offset with seconds (Paris's before 1911), which orjson writes to the minute.
    old = datetime(1900, 6, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    fixed = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.get_fixed_timezone(timedelta(seconds=3661)))
    events = [timeline_event(journey, occurred_at=old), timeline_event(journey, occurred_at=fixed)]
    insert_rows(events)
    assert [JourneyEvent.objects.get(pk=e.pk).occurred_at for e in events] == [old, fixed]
    assert stored.payload == {
        "at": "2026-07-01T12:00:00.123456+02:00",
        "2": "two",
        "price": "1.50",
        "nan": None,
    }


def test_expressions_take_djangos_own_path():
    journey = make_journey()
    event = timeline_event(journey, occurred_at=Now())
    insert_rows([event])
    assert JourneyEvent.objects.get(pk=event.pk).occurred_at <= timezone.now()

    record = IdempotencyRecord(
        partner=PartnerFactory(),
        key="k",
        method="POST",
        path="/x/",
        fingerprint="f",
        expires_at=Now() + timedelta(hours=1),
        response_body=models.Value(None, models.JSONField()),  # JSON null, not SQL NULL
    )
    assert create_unless_taken(record) is True
    assert IdempotencyRecord.objects.filter(pk=record.pk, response_body__isnull=False).exists()


def test_insert_rows_keeps_a_key_it_is_given():
    journey = make_journey()
    free = (JourneyEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1000
    event = timeline_event(journey, id=free)
    insert_rows([event])
    assert event.pk == free
    assert JourneyEvent.objects.filter(pk=free).exists()


# --- QuickLoad: rows read whole become objects without Model.__init__ ----------------


def test_a_row_read_quickly_is_the_object_djangos_init_makes():
    milestone = make_journey(stages=2).milestones.first()
    names = [f.attname for f in Milestone._meta.concrete_fields]
    row = tuple(getattr(milestone, name) for name in names)

    quick = Milestone.from_db("default", names, row)
    django = models.Model.from_db.__func__(Milestone, "default", names, row)

    assert type(quick) is Milestone
    assert quick.__dict__.keys() == django.__dict__.keys()
    assert {k: v for k, v in quick.__dict__.items() if k != "_state"} == {
        k: v for k, v in django.__dict__.items() if k != "_state"
    }
    # (Django's fills the state's cache of related objects on first use: both empty.)
    assert quick._state.fields_cache == django._state.fields_cache == {}
    assert vars(quick._state) == vars(django._state)
    # It behaves as one: its relations load, it saves as an update.
    assert quick.journey == milestone.journey
    quick.state = MilestoneState.DONE
    quick.save(update_fields=["state"])
    assert Milestone.objects.get(pk=milestone.pk).state == MilestoneState.DONE


def test_deferred_fields_and_listeners_take_djangos_path():
    journey = make_journey(stages=2)
    seen = []

    def listener(sender, **kwargs):
        seen.append(sender)

    # Deferred: Django's path, which marks the field to be read on first use.
    milestone = Milestone.objects.only("state").filter(journey=journey).first()
    assert "position" not in milestone.__dict__
    assert milestone.position == 1
    models.signals.post_init.connect(listener, sender=Milestone)
    try:
        list(Milestone.objects.filter(journey=journey))
    finally:
        models.signals.post_init.disconnect(listener, sender=Milestone)
    assert seen == [Milestone, Milestone]
    list(Milestone.objects.filter(journey=journey))  # no listener: not made by __init__
    assert len(seen) == 2


def test_a_model_with_another_kind_of_descriptor_is_never_read_quickly():
    from journey.db import _plain_attnames
    from journey.models import Photo

    assert _plain_attnames(Photo) == ()  # its images' descriptors do more than store
    assert _plain_attnames(Milestone)[:3] == ("id", "journey_id", "stage_id")


def test_a_new_object_made_quickly_is_the_one_djangos_init_makes():
    from notifications.models import Notification

    journey = make_journey(stages=2)
    values = {
        "recipient": journey.owner,
        "journey": journey,
        "kind": "milestone_reached",
        "dedup_key": "k",
        "occurred_at": timezone.now(),
    }

    with time_machine.travel(timezone.now(), tick=False):  # scheduled_at's default
        quick, django = Notification.new(**values), Notification(**values)

    assert type(quick) is Notification
    assert {k: v for k, v in quick.__dict__.items() if k != "_state"} == {
        k: v for k, v in django.__dict__.items() if k != "_state"
    }
    assert vars(quick._state) == vars(django._state)  # adding, no database yet
    assert quick._state.fields_cache == {"recipient": journey.owner, "journey": journey}
    assert quick.recipient_id == journey.owner.pk and quick.journey_id == journey.pk
    # Callable defaults are called for each object: no two share a context.
    assert quick.context == {} and quick.context is not Notification.new(**values).context
    assert quick.scheduled_at is not None
    quick.save()
    assert Notification.objects.get(pk=quick.pk).recipient == journey.owner


def test_a_new_object_with_more_than_fields_takes_djangos_path():
    from notifications.models import Notification

    with pytest.raises(TypeError, match="unexpected keyword"):
        Notification.new(kind="milestone_reached", colour="red")
    seen = []

    def listener(sender, **kwargs):
        seen.append(sender)

    models.signals.post_init.connect(listener, sender=Notification)
    try:
        Notification.new(kind="milestone_reached")
    finally:
        models.signals.post_init.disconnect(listener, sender=Notification)
    assert seen == [Notification]
    assert Notification.new(recipient=None).recipient is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's prepared statements")
def test_a_statement_run_often_is_parsed_and_planned_once():
    journey = make_journey(stages=2)

    def prepared() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                ['%"journey_milestone"."position" = $2%'],
            )
            return cursor.fetchone()[0]

    for position in (1, 2, 1, 2):
        Milestone.objects.filter(journey=journey, position=position).first()
    assert prepared() == 0  # not yet: four runs
    for position in (1, 2):
        Milestone.objects.filter(journey=journey, position=position).first()
    assert prepared() == 1  # one statement for every position


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's prepared statements")
def test_writes_cost_the_same_in_either_plan_whatever_their_keys():
    """A prepared statement keeps PostgreSQL's generic plan (made once) unless custom
    plans (made with each run's values) are estimated cheaper, by more than their
    planning. The keys of an update went as an array both plans could read: one key in
    the custom plan, ten assumed in the generic one. On tables of thousands of rows
    that made the generic plan of a single event's writes dearer by far more than the
    planning, and PostgreSQL planned the statement at every run (0.4-0.5 ms of its CPU,
    docs/performance.md). Read through a subquery, the keys cost the same in both."""
    journeys = _journeys_in_bulk(1000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE journey_milestone")
        cursor.execute("ANALYZE journey_journey")
    journey = journeys[-1]
    milestone = journey.milestones.order_by("position").first()
    milestone.expected_date = date(2030, 1, 1)
    journey.title = "Painted"
    together = Together()
    together.insert([timeline_event(journey)])
    together.update([milestone], ["expected_date"])
    together.update([journey], ["title"])
    sent = []

    def grab(execute, sql, params, many, context):
        sent.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(grab):
        together.send()
    ((sql, params),) = sent
    custom, generic = (_plan_cost(sql, params, mode) for mode in ("custom", "generic"))
    # The same but for unnest()'s few rows, which the custom plan still counts.
    assert generic == pytest.approx(custom, abs=1)
    assert Milestone.objects.get(pk=milestone.pk).expected_date == date(2030, 1, 1)
    assert Journey.objects.get(pk=journey.pk).title == "Painted"


def _plan_cost(sql: str, params: list, mode: str) -> float:
    """The estimated cost of ``sql`` prepared, in PostgreSQL's custom or generic plan."""
    from psycopg import sql as literal

    raw = connection.connection
    prepared = sql % tuple(f"${n}" for n in range(1, len(params) + 1))
    values = ", ".join(literal.Literal(value).as_string(raw) for value in params)
    # Prepared outside the transaction that may fail, so that it is always let go.
    raw.execute(f"PREPARE cost_of AS {prepared}")
    try:
        with transaction.atomic():
            raw.execute(f"SET LOCAL plan_cache_mode = force_{mode}_plan")
            explained = raw.execute(f"EXPLAIN (FORMAT JSON) EXECUTE cost_of({values})")
            plan = explained.fetchone()[0]
            raw.execute("RESET plan_cache_mode")
    finally:
        raw.execute("DEALLOCATE cost_of")
    return plan[0]["Plan"]["Total Cost"]


def test_the_quick_paths_skip_init_and_call_no_default_for_a_value_given(monkeypatch):
    from notifications.models import Notification

    journey = make_journey(stages=2)
    inits, init = [], models.Model.__init__
    monkeypatch.setattr(
        models.Model,
        "__init__",
        lambda self, *a, **k: inits.append(type(self)) or init(self, *a, **k),
    )
    called = []
    field = Notification._meta.get_field("scheduled_at")
    monkeypatch.setattr(field, "get_default", lambda: called.append(1) or timezone.now())
    from journey import db

    # Planned again, with the spy as the default, in a cache of the test's own.
    monkeypatch.setattr(db, "_new_plan", functools.cache(db._new_plan.__wrapped__))

    milestones = list(Milestone.objects.filter(journey=journey))
    given = Notification.new(kind="milestone_reached", scheduled_at=timezone.now())
    defaulted = Notification.new(kind="milestone_reached")

    assert len(milestones) == 2 and inits == []  # neither read nor made by __init__
    assert called == [1]  # only for the object that was not given one
    assert given.scheduled_at is not None and defaulted.scheduled_at is not None


def test_writes_sent_together_are_one_statement_with_each_its_rows(django_assert_num_queries):
    first, second = make_journey(), make_journey()
    partner = PartnerFactory()
    now = timezone.now()
    events = [timeline_event(first, message="a"), timeline_event(second, message="b")]
    events += [timeline_event(first, message="c")]
    milestones = list(first.milestones.order_by("position")[:2])
    for milestone in milestones:
        milestone.state, milestone.reached_at = MilestoneState.DONE, now
    create_unless_taken(
        InboundEvent(partner=partner, journey=first, event_id="taken", code="C", occurred_at=now)
    )
    inbound = [
        InboundEvent(partner=partner, journey=first, event_id=event_id, code="C", occurred_at=now)
        for event_id in ("new-1", "taken", "new-2")
    ]
    written: list[list[InboundEvent]] = []

    together = Together()
    together.insert(events)
    together.update(milestones, ["state", "reached_at"])
    together.insert_unless_taken(inbound, key="event_id", then=written.append)
    together.update([], ["state"])  # nothing to write: nothing sent
    with django_assert_num_queries(unit_writes(3)) as queries:
        together.send()

    if connection.vendor == "postgresql":
        assert queries.captured_queries[0]["sql"].startswith("WITH w0 AS (INSERT")
    # Each event its own row's key, in order; the milestones saved; the inbound rows
    # written given to ``then``, the one already there left out.
    stored = dict(
        JourneyEvent.objects.filter(pk__in=[e.pk for e in events]).values_list("pk", "message")
    )
    assert [stored[event.pk] for event in events] == ["a", "b", "c"]
    assert all(not event._state.adding for event in events)
    assert {m.pk: m.state for m in Milestone.objects.filter(pk__in=[m.pk for m in milestones])} == {
        m.pk: MilestoneState.DONE for m in milestones
    }
    assert [sorted(row.event_id for row in rows) for rows in written] == [["new-1", "new-2"]]
    assert {row.pk for row in written[0]} == set(
        InboundEvent.objects.filter(event_id__startswith="new-").values_list("pk", flat=True)
    )
    assert inbound[1].pk is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="one statement on PostgreSQL")
def test_writes_that_cannot_go_as_json_are_sent_one_by_one(django_assert_num_queries):
    journey = make_journey()
    events = [timeline_event(journey, message="json"), timeline_event(journey, occurred_at=Now())]
    milestone = journey.milestones.first()
    milestone.state = MilestoneState.DONE

    together = Together()
    together.insert(events[:1])
    together.insert(events[1:])  # an expression: Django's path, so each goes on its own
    together.update([milestone], ["state"])
    with django_assert_num_queries(3):
        together.send()

    assert JourneyEvent.objects.filter(pk__in=[e.pk for e in events]).count() == 2
    assert Milestone.objects.get(pk=milestone.pk).state == MilestoneState.DONE


@pytest.mark.skipif(connection.vendor != "postgresql", reason="one statement on PostgreSQL")
def test_writes_sent_together_fail_together():
    journey = make_journey()
    event = timeline_event(journey, message="valid on its own")
    too_long = InboundEvent(
        partner=PartnerFactory(),
        journey=journey,
        event_id="x" * 300,
        code="C",
        occurred_at=timezone.now(),
    )
    together = Together()
    together.insert([event])
    together.insert_unless_taken([too_long], key="event_id", then=lambda rows: None)
    with pytest.raises(DataError), transaction.atomic():
        together.send()
    # One statement: the event was not written before the inbound row failed (sent on
    # its own, first, it would have been, and have its key).
    assert event.pk is None
    assert event._state.adding


def test_two_writes_to_one_table_are_sent_one_by_one(django_assert_num_queries):
    """In one statement, an update would not see a row another write made or changed:
    writes to the same table go on their own, in order."""
    journey = make_journey()
    event = timeline_event(journey, message="first")
    together = Together()
    together.insert([event])
    together.insert([timeline_event(journey, message="second")])
    milestone = journey.milestones.first()
    milestone.state = MilestoneState.DONE
    together.update([milestone], ["state"])
    with django_assert_num_queries(3):
        together.send()
    assert list(
        JourneyEvent.objects.filter(journey=journey, kind=EventKind.NOTE)
        .order_by("pk")
        .values_list("message", flat=True)
    ) == ["first", "second"]
    assert Milestone.objects.get(pk=milestone.pk).state == MilestoneState.DONE


def inbound_rows(journey, count: int) -> list[InboundEvent]:
    partner = PartnerFactory()
    rows = [
        InboundEvent(
            partner=partner,
            journey=journey,
            event_id=f"in-{n}",
            code="C",
            occurred_at=timezone.now(),
        )
        for n in range(count)
    ]
    bulk_create_unless_taken(rows, key="event_id")
    return rows


def test_rows_linked_to_new_rows_get_their_keys_in_the_inserts_statement(
    django_assert_num_queries,
):
    journey = make_journey()
    earlier = timeline_event(journey, message="saved before")
    rows = inbound_rows(journey, 5)
    rows[3].journey_event = earlier  # assigned before it was saved: its key is still None
    insert_rows([earlier])
    events = [timeline_event(journey, message=m) for m in ("a", "b", "c")]
    # Linked out of order, one to an event saved already, one to none.
    for row, linked in zip(rows, [events[2], None, events[0], earlier, events[1]], strict=True):
        if linked is not earlier:
            row.journey_event = linked
        row.code = "changed"

    together = Together()
    together.insert(events)
    together.update(rows, ["code", "journey_event"], linked="journey_event")
    with django_assert_num_queries(unit_writes(2)):
        together.send()

    stored = dict(InboundEvent.objects.values_list("event_id", "journey_event_id"))
    assert stored == {
        "in-0": events[2].pk,
        "in-1": None,
        "in-2": events[0].pk,
        "in-3": earlier.pk,
        "in-4": events[1].pk,
    }
    assert set(InboundEvent.objects.values_list("code", flat=True)) == {"changed"}
    # The objects hold their keys too, their events still cached (not read again).
    with django_assert_num_queries(0):
        assert [row.journey_event_id for row in rows] == [stored[r.event_id] for r in rows]
        assert rows[0].journey_event.message == "c"


def test_rows_linked_only_to_saved_rows_are_a_plain_update(django_assert_num_queries):
    journey = make_journey()
    event = timeline_event(journey)
    insert_rows([event])
    (row,) = inbound_rows(journey, 1)
    row.journey_event = event

    together = Together()
    together.update([row], ["journey_event"], linked="journey_event")
    with django_assert_num_queries(1):
        together.send()
    assert InboundEvent.objects.get().journey_event_id == event.pk


def test_rows_linked_to_new_rows_no_insert_of_this_together_writes_are_refused():
    journey = make_journey()
    (row,) = inbound_rows(journey, 1)
    row.journey_event = timeline_event(journey)
    together = Together()
    together.insert([timeline_event(journey)])
    with pytest.raises(ValueError, match="journey_event: its new objects are not inserted"):
        together.update([row], ["journey_event"], linked="journey_event")
    with pytest.raises(ValueError, match="'journey_event' is linked but not among the fields"):
        together.update([row], ["code"], linked="journey_event")


def test_rows_are_linked_only_to_an_insert_of_every_row_in_order():
    """An insert that skips rows already there returns fewer keys than it was given:
    their order says nothing of which object each belongs to."""
    journey = make_journey()
    (row,) = inbound_rows(journey, 1)
    new = InboundEvent(
        partner=row.partner, journey=journey, event_id="new", code="C", occurred_at=row.occurred_at
    )
    row.journey_event = timeline_event(journey)
    together = Together()
    together.insert_unless_taken([new], key="event_id", then=lambda rows: None)
    with pytest.raises(ValueError, match="not inserted by this Together"):
        together.update([row], ["journey_event"], linked="journey_event")


def test_statements_kept_for_the_same_columns_stay_apart_by_what_else_they_say(monkeypatch):
    """Each list of columns keeps the statements made from it (journey.db._Plan): an
    insert that skips a taken key and one that fails on it, an update that reads
    another write's keys and one that does not, are each their own."""
    from journey import db

    monkeypatch.setattr(db, "_PLANS", {})  # made afresh, in this order
    journey = make_journey()
    partner = PartnerFactory()

    def inbound(event_id: str) -> InboundEvent:
        return InboundEvent(
            partner=partner,
            journey=journey,
            event_id=event_id,
            code="C",
            occurred_at=timezone.now(),
        )

    # Both return the key alone; one skips a taken key, the other fails on it.
    assert create_unless_taken(inbound("a"))
    assert not create_unless_taken(inbound("a"))
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows([inbound("a")])
    insert_rows([inbound("b")])
    assert not create_unless_taken(inbound("b"))
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows([inbound("b")])

    # The same column set, linked to a new row or not, in both orders.
    saved = timeline_event(journey, message="saved")
    insert_rows([saved])
    row = InboundEvent.objects.get(event_id="a")
    for linked_first in (True, False):
        for linked in (linked_first, not linked_first):
            new = timeline_event(journey, message="new")
            row.journey_event = new if linked else saved
            together = Together()
            together.insert([new])
            together.update([row], ["journey_event"], linked="journey_event" if linked else None)
            together.send()
            stored = InboundEvent.objects.get(event_id="a").journey_event_id
            assert stored == (new.pk if linked else saved.pk)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="one statement on PostgreSQL")
def test_linked_rows_go_one_by_one_after_their_insert_when_it_cannot_go_as_json(
    django_assert_num_queries,
):
    journey = make_journey()
    event = timeline_event(journey, occurred_at=Now())  # an expression: Django's path
    (row,) = inbound_rows(journey, 1)
    row.journey_event = event
    together = Together()
    together.insert([event])
    together.update([row], ["journey_event"], linked="journey_event")
    with django_assert_num_queries(2):
        together.send()
    assert InboundEvent.objects.get().journey_event_id == event.pk
