"""Claiming an event_id whose holder vanishes between the claim and the read of the
holder: its journey deleted by another transaction (staff, a sandbox purge), or its
claim withdrawn when its event was refused. The id is free again; the event claims it
instead of failing with a 500 (an empty read where a row was expected)."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone

from integrations import services
from integrations.models import InboundEvent
from integrations.services import (
    StatusEventIn,
    _record,
    partner_queue_status_event,
    partner_status_events_finish,
    partner_status_events_prepare,
)
from journey.errors import ApplicationError
from journey.models import MilestoneState
from tests.factories import MappingFactory, make_journey

pytestmark = pytest.mark.django_db


@pytest.fixture
def holder_vanishes(partner, journey):
    """At the first claim of ``e1``: another journey's event holds the id, and is gone
    (its journey deleted) before the holder is read. Yields the claims made."""
    other = make_journey(owner=journey.owner)
    partner.journeys.add(other)
    real = services.create_unless_taken
    claims: list[bool] = []

    def create_unless_taken(row):
        if not claims:
            holder = InboundEvent.new(
                partner=partner,
                journey=other,
                event_id=row.event_id,
                code="S2",
                occurred_at=timezone.now() - timedelta(hours=1),
                payload={},
            )
            holder.save()
            claims.append(real(row))
            other.delete()  # with its inbound rows, as another transaction's commit
            return claims[-1]
        claims.append(real(row))
        return claims[-1]

    with mock.patch.object(services, "create_unless_taken", create_unless_taken):
        yield claims


def test_a_queued_event_claims_an_id_whose_holder_vanished(partner, journey, holder_vanishes):
    occurred_at = timezone.now() - timedelta(minutes=1)
    with transaction.atomic():
        result = partner_queue_status_event(
            partner=partner, journey=journey, event_id="e1", code="S2", occurred_at=occurred_at
        )
    assert holder_vanishes == [False, True]
    assert not result.duplicate
    inbound = InboundEvent.objects.get()
    assert (inbound.event_id, inbound.journey_id, inbound.state) == ("e1", journey.pk, "queued")


def test_a_batch_item_claims_an_id_whose_holder_vanished(partner, journey, holder_vanishes):
    MappingFactory(partner=partner, code="S9", stage_key="stage-9")
    """The batch's first item with ``e1`` is refused (its code is mapped to a stage the
    journey lacks), its claim withdrawn; the second claims the id again (``_record``), and its
    holder meanwhile vanishes."""
    occurred_at = timezone.now() - timedelta(minutes=1)
    events = [
        StatusEventIn(journey=journey, event_id="e1", code=code, occurred_at=occurred_at)
        for code in ("S9", "S2")
    ]
    with transaction.atomic():
        prepared = partner_status_events_prepare(partner=partner, events=events)
        with pytest.raises(ApplicationError):
            _record(prepared, events[0])
        result = _record(prepared, events[1])
        partner_status_events_finish(prepared=prepared)
    assert holder_vanishes == [False, True]
    assert result.applied and not result.duplicate
    assert InboundEvent.objects.get().journey_event is not None
    assert journey.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT


def test_a_batch_locks_the_journeys_of_items_that_may_claim_an_id_later(partner, journey):
    """Two items with one id for two journeys: the first claims it, the second claims it
    only if the first is refused. Its journey is locked while preparing, with the rest
    in primary-key order, not later by itself, out of order (two batches could then
    deadlock)."""
    other = make_journey(owner=journey.owner)
    partner.journeys.add(other)
    occurred_at = timezone.now() - timedelta(minutes=1)
    events = [
        StatusEventIn(journey=read, event_id="e1", code="S2", occurred_at=occurred_at)
        for read in (other, journey)
    ]
    with transaction.atomic():
        prepared = partner_status_events_prepare(partner=partner, events=events)
        assert set(prepared.locked) == {journey.pk, other.pk}
        assert _record(prepared, events[0]).applied
        with pytest.raises(ApplicationError) as conflict:
            _record(prepared, events[1])
        assert conflict.value.code == "event_id_conflict"
        partner_status_events_finish(prepared=prepared)
