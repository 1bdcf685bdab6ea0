"""The SQL of partner ingest, pinned: a single event and a batch of N events.

Each statement is a round trip from the server to PostgreSQL, under a journey's lock;
these counts keep them from creeping back (the figures per second are in
docs/performance.md, measured by ``make bench``). Inside the test's transaction a
transaction of the code's own shows as SAVEPOINT and RELEASE.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from integrations.models import InboundEvent
from journey.models import (
    EtaBasis,
    JourneyEvent,
    MilestoneState,
    StageDefinition,
)
from journey.services import journey_create
from notifications.models import Notification
from tests.factories import LegFactory, TemplateFactory
from tests.sql import unit_writes

pytestmark = pytest.mark.django_db

BATCH_URL = "/api/v1/events/batch/"


def when(minutes: int = 1) -> str:
    return (timezone.now() - timedelta(minutes=minutes)).isoformat()


def cars(partner, customer, count: int) -> list:
    """``count`` journeys of one template (of 4 stages), served by ``partner``."""
    template = TemplateFactory(stages=4)
    journeys = [
        journey_create(
            template=template,
            owner=customer,
            title="Car",
            started_at=timezone.now() - timedelta(days=10),
            promised_date=(timezone.now() + timedelta(days=30)).date(),
        )
        for _ in range(count)
    ]
    partner.journeys.add(*journeys)
    return journeys


@pytest.fixture
def warm(api):
    """One request first: a new key's last use is written once a minute, not each time."""
    assert api.get(reverse("api:journey-list")).status_code == 200
    return api


def post_event(api, journey, event_id: str, code: str, minutes: int = 1):
    return api.post(
        reverse("api:journey-events", kwargs={"reference": journey.reference}),
        {"event_id": event_id, "code": code, "occurred_at": when(minutes)},
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"key-{event_id}",
    )


def test_a_single_event_that_moves_the_journey(warm, journey, django_assert_num_queries):
    # On PostgreSQL: the key, and beside it in the same statement the journey with its
    # owner, profile and template, read once (404 otherwise); then the request's
    # transaction (2), in which the event has no
    # savepoint of its own (a refusal rolls the request back whole): the partner's
    # mappings (the first event's only: test_the_mappings_are_read_once_per_version), the
    # statement that inserts the inbound event (claiming its event_id), then locks the
    # journey and reads its milestones, its version and its open legs' ETAs (the journey
    # is read again only if it moved), the read of what
    # the outbox holds for the customer (the ETA statistics' identity is read at most
    # once a minute, tests/journey/test_eta.py; here when the journey was made); last,
    # one statement of all the writes: the timeline event, the milestones, the new ETA
    # row (the journey's fields are the last one's: it is not read), the journey, the
    # customer's message, the inbound event's link to the timeline event, and the
    # Idempotency-Key's record with the answer. (Transactions show as SAVEPOINT and
    # RELEASE here.)
    # Elsewhere the Idempotency-Key is claimed first, on its own, and its answer stored
    # last; the inbound event is claimed by a statement of its own, and each of those
    # seven writes is a statement, the record's an UPDATE of the claim.
    with django_assert_num_queries(7 if connection.vendor == "postgresql" else 15):
        response = post_event(warm, journey, "e1", "S2")
    assert response.status_code == 201
    assert response.json()["applied"] is True
    assert journey.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT
    assert Notification.objects.filter(channel="email").count() == 1


def test_a_single_event_older_than_the_journey_state(warm, journey, django_assert_num_queries):
    assert post_event(warm, journey, "e1", "S3").status_code == 201
    # No milestone moves: the timeline event and the inbound event are the only writes
    # (with the key's record, one statement on PostgreSQL; elsewhere the key's claim and
    # its answer are two more). The mappings were read for the first event.
    with django_assert_num_queries(5 if connection.vendor == "postgresql" else 9):
        response = post_event(warm, journey, "e2", "S3", minutes=2)
    assert response.status_code == 201
    assert response.json()["applied"] is False


def test_a_single_event_with_an_unmapped_code(warm, journey, django_assert_num_queries):
    assert post_event(warm, journey, "e1", "S2").status_code == 201
    # Nothing moves, and the code's event is kept for staff. Its claim names the journey,
    # which is locked so that it cannot be deleted before the claim commits: on
    # PostgreSQL by the claim's own statement, as a mapped code's (the journey is not
    # read again); elsewhere by a statement of its own.
    with django_assert_num_queries(5 if connection.vendor == "postgresql" else 7):
        response = post_event(warm, journey, "e2", "NOT-MAPPED")
    assert response.status_code == 202
    assert response.json()["state"] == "unmapped"


def test_a_repeated_event_id_is_answered_from_its_first_receipt(
    warm, journey, django_assert_num_queries
):
    assert post_event(warm, journey, "e1", "S2").status_code == 201
    first = InboundEvent.objects.get()
    # A retry with a new Idempotency-Key: the event_id's claim finds its receipt, which
    # answers; nothing is locked. On PostgreSQL the claim's statement returns nothing (its
    # condition on the claim, checked first, keeps it from locking the journey), and the
    # receipt is read with the key the claim drew, to tell it from this request's own;
    # the key's record is written with its answer at the end, where elsewhere it is
    # claimed first and its answer stored.
    with django_assert_num_queries(6 if connection.vendor == "postgresql" else 7):
        response = warm.post(
            reverse("api:journey-events", kwargs={"reference": journey.reference}),
            {"event_id": "e1", "code": "S2", "occurred_at": first.occurred_at.isoformat()},
            format="json",
            HTTP_IDEMPOTENCY_KEY="another-key",
        )
    assert response.status_code == 200
    assert response.json()["duplicate"] is True


def test_the_mappings_are_read_once_per_version(warm, partner, customer, django_assert_num_queries):
    """A process keeps a partner's mappings under the version triggers move at every
    change to them (``partner_mappings``): later events do not read them, and the first
    after a change reads it and goes by it."""
    first, second, third = cars(partner, customer, 3)
    moving = 7 if connection.vendor == "postgresql" else 15
    with django_assert_num_queries(moving):
        assert post_event(warm, first, "m-1", "S2").status_code == 201
    with django_assert_num_queries(moving - 1):
        assert post_event(warm, second, "m-2", "S2").status_code == 201
    mapping = partner.mappings.get(code="S2")
    mapping.stage_key = "stage-3"
    mapping.save()  # as the admin saves it

    with django_assert_num_queries(moving):
        response = post_event(warm, third, "m-3", "S2")

    assert response.status_code == 201
    assert third.milestones.get(stage__key="stage-3").state == MilestoneState.CURRENT
    assert second.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT


def test_a_single_event_reads_the_open_legs_with_the_milestones(
    warm, partner, customer, django_assert_num_queries
):
    """With a shipping stage ahead the ETA reads the carrier's ETA of the open legs: in
    the statement that locks the journey and reads its milestones, not one of its own,
    and to the same end as ``Writes.leg_end``: the latest ETA of a leg not arrived, none
    before the journey started."""
    (car,) = cars(partner, customer, 1)
    StageDefinition.objects.filter(template=car.template, key="stage-3").update(shipping=True)
    car.refresh_from_db()  # the template's change moved its version
    now = timezone.now()
    carrier_eta = now + timedelta(days=60)
    LegFactory(  # arrived
        journey=car,
        eta=now + timedelta(days=90),
        departed_at=now - timedelta(days=2),
        arrived_at=now,
    )
    LegFactory(journey=car, eta=car.started_at - timedelta(days=1))  # a typo: ignored
    LegFactory(journey=car, eta=carrier_eta)
    LegFactory(journey=car, eta=now + timedelta(days=40))
    LegFactory(journey=car, eta=None)

    with django_assert_num_queries(7 if connection.vendor == "postgresql" else 15):
        assert post_event(warm, car, "e1", "S2").status_code == 201

    car.refresh_from_db()
    assert car.eta_basis == EtaBasis.PLANNED_PARTNER
    # The stage after the shipping one is reached when the carrier expects its last open
    # leg to end.
    expected = car.milestones.get(stage__key="stage-4").expected_date
    assert expected == timezone.localdate(carrier_eta)


def test_a_single_event_ignores_an_open_leg_eta_before_the_journey_started(warm, partner, customer):
    (car,) = cars(partner, customer, 1)
    StageDefinition.objects.filter(template=car.template, key="stage-3").update(shipping=True)
    car.refresh_from_db()
    LegFactory(journey=car, eta=car.started_at - timedelta(days=1))  # a typo, saved raw

    assert post_event(warm, car, "e1", "S2").status_code == 201

    car.refresh_from_db()
    assert car.eta_basis == EtaBasis.PLANNED


def batch_of(journeys: list, prefix: str) -> dict:
    return {
        "events": [
            {
                "journey": j.reference,
                "event_id": f"{prefix}-{n}",
                "code": "S2",
                "occurred_at": when(),
            }
            for n, j in enumerate(journeys)
        ]
    }


@pytest.mark.parametrize("size", [2, 4, 8])
def test_a_batch_costs_the_same_whatever_its_size(
    warm, partner, customer, size, django_assert_num_queries
):
    journeys = cars(partner, customer, size)
    # The key, the idempotency claim, the journeys with their owners, profiles and
    # templates (read once), the mappings, one insert claiming every event_id; their
    # milestones and stages (one object each, shared by the journeys of a template), read
    # before the lock; the lock, which reads their versions (only journeys changed
    # meanwhile are read again); then the unit of work's writes, one statement per table for all the
    # events (journey.unit): the timeline events, the milestones, the new ETA rows, the
    # journeys, the messages' one read (what the outbox holds) and insert, one update linking
    # the inbound events to the timeline; the stored response, and the request's and the
    # batch's transactions (4). The last ETA rows are not read: each journey's fields are
    # what its last row says. The unit's six writes are one statement on PostgreSQL.
    with django_assert_num_queries(14 + unit_writes(6)):
        response = warm.post(
            BATCH_URL, batch_of(journeys, "b"), format="json", HTTP_IDEMPOTENCY_KEY="batch-1"
        )
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == [201] * size
    assert JourneyEvent.objects.filter(applied=True).count() == size
    assert Notification.objects.filter(channel="email").count() == size
    assert all(
        j.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT for j in journeys
    )


@pytest.mark.parametrize("size", [1, 5])
def test_a_batch_of_events_that_do_not_move_the_journey(
    warm, journey, size, django_assert_num_queries
):
    assert post_event(warm, journey, "first", "S3").status_code == 201
    events = [
        {"journey": journey.reference, "event_id": f"old-{n}", "code": "S3", "occurred_at": when(2)}
        for n in range(size)
    ]
    # The timeline events are one insert, whatever their number, the inbound events
    # linked to them one update (one statement on PostgreSQL); nothing else is written.
    # The mappings were read for the first event.
    with django_assert_num_queries(10 + unit_writes(2)):
        response = warm.post(
            BATCH_URL, {"events": events}, format="json", HTTP_IDEMPOTENCY_KEY="batch-2"
        )
    assert response.status_code == 200
    assert [r["event"]["applied"] for r in response.json()["results"]] == [False] * size


def test_a_queued_event_is_accepted_in_a_few_statements(warm, journey, django_assert_num_queries):
    # The key; the journey's key and start (404 otherwise); the request's transaction
    # (2) with the inbound row (claiming its event_id, queued) and the Idempotency-Key's
    # record with its answer, one statement on PostgreSQL. Elsewhere the usual way: the
    # key claimed before the transaction, the row, the answer stored in it. Against a
    # moving event's 9: nothing of the spine, which the queue's applier does.
    with django_assert_num_queries(5 if connection.vendor == "postgresql" else 7):
        response = warm.post(
            reverse("api:journey-events", kwargs={"reference": journey.reference}),
            {"event_id": "q-1", "code": "S2", "occurred_at": when()},
            format="json",
            HTTP_IDEMPOTENCY_KEY="key-q-1",
            HTTP_PREFER="respond-async",
        )
    assert response.status_code == 202
    assert InboundEvent.objects.get().queued


@pytest.mark.parametrize("size", [2, 10])
def test_the_queue_applies_a_unit_of_events_in_the_same_statements_whatever_its_size(
    warm, partner, customer, size, django_assert_num_queries
):
    from integrations.services import partner_queued_events_apply

    journeys = cars(partner, customer, size)
    for n, journey in enumerate(journeys):
        response = warm.post(
            reverse("api:journey-events", kwargs={"reference": journey.reference}),
            {"event_id": f"q-{n}", "code": "S2", "occurred_at": when()},
            format="json",
            HTTP_PREFER="respond-async",
        )
        assert response.status_code == 202
    # Its transaction (2); on PostgreSQL the applier's lock (an advisory lock of the
    # transaction; a lock of the process elsewhere); the queued rows with their
    # partner, locked; the journeys with
    # owners, profiles and templates; the mappings; as a batch from there: the
    # milestones, their stages (a read of its own for several journeys), the lock, the
    # outbox's read, the unit's writes, with one update of
    # the inbound rows (taken off the queue, linked).
    lock = 1 if connection.vendor == "postgresql" else 0
    with django_assert_num_queries(9 + lock + unit_writes(6)):
        assert partner_queued_events_apply() == size
    assert JourneyEvent.objects.filter(applied=True).count() == size
    assert Notification.objects.filter(channel="email").count() == size
    assert not InboundEvent.objects.filter(queued=True).exists()


@pytest.mark.parametrize("size", [2, 10])
def test_a_page_of_journeys_costs_the_same_whatever_its_size(
    warm, partner, customer, size, django_assert_num_queries
):
    cars(partner, customer, 2 * size + 1)
    url = f"{reverse('api:journey-list')}?page_size={size}"
    # The key; the page's journeys with their templates (one more, to know there is a
    # next page); their milestones with their stages. No count: a cursor needs none.
    with django_assert_num_queries(3):
        first = warm.get(url)
    assert len(first.json()["results"]) == size
    with django_assert_num_queries(3):
        second = warm.get(first.json()["next"])
    assert len(second.json()["results"]) == size
    assert all(len(j["milestones"]) == 4 for j in second.json()["results"])
