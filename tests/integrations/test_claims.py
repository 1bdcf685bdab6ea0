"""Claiming an event_id whose holder vanishes between the claim and the read of the
holder: its journey deleted by another transaction (staff, a sandbox purge), or its
claim withdrawn when its event was refused. The id is free again; the event claims it
instead of failing with a 500 (an empty read where a row was expected). And the order
a batch takes claims and locks in when its items share an id."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone

from integrations import services
from integrations.models import InboundEvent
from integrations.services import (
    StatusEventIn,
    _claimed_or_holder,
    _record,
    partner_queue_status_event,
    partner_status_events_finish,
    partner_status_events_prepare,
)
from journey.errors import ApplicationError
from journey.models import MilestoneState
from tests.factories import MappingFactory, make_journey

pytestmark = pytest.mark.django_db


def _vanishing(partner, journey, real):
    """``real`` (a way to claim ids), whose first call finds the id held by another
    journey's event that is gone (its journey deleted, with its inbound rows, as by
    another transaction's commit) before the holder can be read. The calls' results go
    to ``calls``."""
    other = make_journey(owner=journey.owner)
    partner.journeys.add(other)
    calls: list = []

    def claim(rows, *args, **kwargs):
        if calls:
            calls.append(real(rows, *args, **kwargs))
            return calls[-1]
        event_id = rows[0].event_id if isinstance(rows, list) else rows.event_id
        InboundEvent.new(
            partner=partner,
            journey=other,
            event_id=event_id,
            code="S2",
            occurred_at=timezone.now() - timedelta(hours=1),
            payload={},
        ).save()
        calls.append(real(rows, *args, **kwargs))
        other.delete()
        return calls[-1]

    return claim, calls


@pytest.fixture
def holder_vanishes(partner, journey):
    """The first single claim (``create_unless_taken``) meets a vanishing holder."""
    claim, calls = _vanishing(partner, journey, services.create_unless_taken)
    with mock.patch.object(services, "create_unless_taken", claim):
        yield calls


def _at(journey, event_id: str, code: str = "S2") -> StatusEventIn:
    return StatusEventIn(
        journey=journey,
        event_id=event_id,
        code=code,
        occurred_at=timezone.now() - timedelta(minutes=1),
    )


def test_a_queued_event_claims_an_id_whose_holder_vanished(partner, journey, holder_vanishes):
    with transaction.atomic():
        event = _at(journey, "e1")
        result = partner_queue_status_event(
            partner=partner,
            journey=journey,
            event_id=event.event_id,
            code=event.code,
            occurred_at=event.occurred_at,
        )
    assert holder_vanishes == [False, True]
    assert not result.duplicate
    inbound = InboundEvent.objects.get()
    assert (inbound.event_id, inbound.journey_id, inbound.state) == ("e1", journey.pk, "queued")


def test_a_batch_item_claims_an_id_whose_holder_vanished(partner, journey, holder_vanishes):
    """The batch's first item with ``e1`` is refused (its code is mapped to a stage the
    journey lacks), its claim withdrawn; the second claims the id again (``_record``),
    and its holder meanwhile vanishes."""
    MappingFactory(partner=partner, code="S9", stage_key="stage-9")
    events = [_at(journey, "e1", "S9"), _at(journey, "e1")]
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


def test_a_batch_claims_an_id_whose_holder_vanished_before_locking(partner, journey):
    """The batch's claim of all its ids meets ``e1`` held, and the holder is gone by the
    time it is read: the id is claimed again while preparing, before the journeys are
    locked (claims first, then journeys, as every writer takes them)."""
    order: list[str] = []
    claim, calls = _vanishing(partner, journey, services.bulk_create_unless_taken)
    lock, claim_one = services.journeys_lock, services.create_unless_taken
    with (
        mock.patch.object(services, "bulk_create_unless_taken", claim),
        mock.patch.object(
            services, "create_unless_taken", lambda row: order.append("claim") or claim_one(row)
        ),
        mock.patch.object(
            services, "journeys_lock", lambda **kw: order.append("lock") or lock(**kw)
        ),
        transaction.atomic(),
    ):
        event = _at(journey, "e1")
        prepared = partner_status_events_prepare(partner=partner, events=[event])
        assert order == ["claim", "lock"]
        assert _record(prepared, event).applied
        partner_status_events_finish(prepared=prepared)
    assert calls == [[]]
    assert order == ["claim", "lock"]
    assert InboundEvent.objects.get().journey_id == journey.pk


def test_a_batch_locks_the_journeys_of_items_that_may_claim_an_id_later(partner, journey):
    """Two items with one id for two journeys: the first claims it, the second claims it
    only if the first is refused. Its journey is locked while preparing, with the rest
    in primary-key order, not later by itself, out of order (two batches could then
    deadlock)."""
    other = make_journey(owner=journey.owner)
    partner.journeys.add(other)
    MappingFactory(partner=partner, code="S9", stage_key="stage-9")
    events = [_at(other, "e1", "S9"), _at(journey, "e1")]
    locks: list[list[int]] = []
    lock = services.journeys_lock
    with (
        mock.patch.object(
            services, "journeys_lock", lambda **kw: locks.append(sorted(kw["pks"])) or lock(**kw)
        ),
        transaction.atomic(),
    ):
        prepared = partner_status_events_prepare(partner=partner, events=events)
        with pytest.raises(ApplicationError):
            _record(prepared, events[0])
        assert _record(prepared, events[1]).applied
        partner_status_events_finish(prepared=prepared)
    assert locks == [sorted([journey.pk, other.pk])]
    assert InboundEvent.objects.get().journey_id == journey.pk


def test_a_claim_that_keeps_failing_is_an_error_not_a_loop(partner, journey):
    """An insert skipped for another reason than a taken id, with no holder to read:
    a few turns, then an error."""
    row = InboundEvent.new(
        partner=partner,
        journey=journey,
        event_id="e1",
        code="S2",
        occurred_at=timezone.now() - timedelta(minutes=1),
        payload={},
    )
    with (
        mock.patch.object(services, "create_unless_taken", return_value=False) as claim,
        pytest.raises(RuntimeError, match="neither claimed nor found held"),
    ):
        _claimed_or_holder(row)
    assert claim.call_count == services._CLAIM_TURNS
