"""journey.db: inserts that let a unique constraint decide, and one-statement updates."""

from datetime import date, timedelta

import pytest
from django.db import DataError, connection, transaction
from django.utils import timezone

from integrations.models import IdempotencyRecord, InboundEvent
from journey.db import bulk_create_unless_taken, create_unless_taken, update_rows
from journey.models import Milestone, MilestoneState
from tests.factories import PartnerFactory, make_journey

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


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the arrays (UNNEST) are PostgreSQL's"
)
def test_update_rows_on_postgresql_is_one_statement_of_arrays_whatever_the_rows(
    django_assert_num_queries,
):
    journeys = [make_journey(stages=4) for _ in range(130)]
    milestones = list(Milestone.objects.filter(journey__in=journeys).order_by("pk"))
    for n, milestone in enumerate(milestones):
        milestone.expected_date = None if n % 5 == 0 else date(2030, 1, 1) + timedelta(days=n % 7)
        milestone.state = MilestoneState.DONE if n % 2 else MilestoneState.UPCOMING

    with django_assert_num_queries(1) as queries:
        assert update_rows(milestones, ["expected_date", "state"]) == 520

    assert "UNNEST(" in queries.captured_queries[0]["sql"]
    stored = dict(Milestone.objects.filter(journey__in=journeys).values_list("pk", "expected_date"))
    assert stored == {m.pk: m.expected_date for m in milestones}
    # The types go without their length: a value too long fails, it is not cut.
    milestones[0].state = "x" * 40
    with pytest.raises(DataError), transaction.atomic():
        update_rows(milestones[:1], ["state"])


def test_update_rows_falls_back_to_rows_of_values_for_a_column_arrays_cannot_carry(
    monkeypatch,
):
    from journey import db

    monkeypatch.setattr(db, "_unnestable", lambda field, connection: False)
    journey = make_journey()
    milestones = list(journey.milestones.order_by("position"))
    for n, milestone in enumerate(milestones):
        milestone.expected_date = date(2031, 1, 1) + timedelta(days=n)

    assert update_rows(milestones, ["expected_date"]) == 4

    stored = journey.milestones.order_by("position").values_list("expected_date", flat=True)
    assert list(stored) == [date(2031, 1, 1) + timedelta(days=n) for n in range(4)]
