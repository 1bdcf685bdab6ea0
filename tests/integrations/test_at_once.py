"""``partner_record_status_event_at_once`` itself, not through the API: the view falls
back to the usual way on a refusal or a database error, which would hide this path's
own failures behind the same answer. What the docstrings say of the claim's statement
is PostgreSQL's (CI runs these there); elsewhere the claim is a statement of its own,
to the same end."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from integrations.idempotency import idempotency_record
from integrations.models import IdempotencyRecord, InboundEvent
from integrations.services import (
    StatusEventIn,
    _record,
    partner_record_status_event,
    partner_record_status_event_at_once,
    partner_status_events_finish,
    partner_status_events_prepare,
)
from journey.errors import ApplicationError
from journey.models import JourneyEvent, MilestoneState
from journey.services import journeys_for_spine
from tests.factories import make_journey

pytestmark = pytest.mark.django_db


def _answer(partner, key: str):
    def answer(result) -> IdempotencyRecord:
        return idempotency_record(
            partner=partner,
            key=key,
            method="POST",
            path="/api/v1/",
            fingerprint="f",
            status_code=200 if result.duplicate else 201,
            body={"duplicate": result.duplicate, "applied": result.applied},
        )

    return answer


def _at_once(partner, journey, event_id: str, key: str, occurred_at):
    """The event for ``journey``, read as the view reads it (``journeys_for_spine``)."""
    return partner_record_status_event_at_once(
        partner=partner,
        journey=journey,
        event_id=event_id,
        code="S2",
        occurred_at=occurred_at,
        payload={},
        answer=_answer(partner, key),
    )


def test_an_event_is_applied_with_its_claim_and_key_in_one_transaction(partner, journey):
    occurred_at = timezone.now() - timedelta(minutes=1)
    read = journeys_for_spine().get(pk=journey.pk)
    with transaction.atomic():
        record = _at_once(partner, read, "e1", "k1", occurred_at)
    assert record.status_code == 201
    inbound = InboundEvent.objects.get()
    assert inbound.journey_event == JourneyEvent.objects.get()
    assert journey.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT
    assert IdempotencyRecord.objects.get().key == "k1"


def test_an_id_received_before_is_answered_as_received(partner, journey, django_assert_num_queries):
    """On PostgreSQL the statement that claims the id and would lock the journey returns
    nothing, and the receipt, read with the key this claim drew, is not taken for this
    request's own."""
    occurred_at = timezone.now() - timedelta(minutes=1)
    partner_record_status_event(
        partner=partner, journey=journey, event_id="e1", code="S2", occurred_at=occurred_at
    )
    # The claim with the lock, the receipt; the key's record (SQLite: the claim, the
    # receipt, the record).
    read = journeys_for_spine().get(pk=journey.pk)
    with transaction.atomic(), django_assert_num_queries(3):
        record = _at_once(partner, read, "e1", "k2", occurred_at)
    assert record.response_body == {"duplicate": True, "applied": True}
    assert InboundEvent.objects.count() == JourneyEvent.objects.count() == 1


def test_an_event_for_a_journey_without_milestones_is_refused_its_claim_withdrawn(partner, journey):
    """Nothing back from the claim's statement, and the receipt read then is this
    request's own claim (the key it drew): the journey is locked the usual way and the
    spine refuses the stage it lacks; the claim is withdrawn in the transaction."""
    journey.milestones.all().delete()
    read = journeys_for_spine().get(pk=journey.pk)
    with transaction.atomic():
        with pytest.raises(ApplicationError) as refused:
            _at_once(partner, read, "e1", "k1", timezone.now() - timedelta(minutes=1))
        assert refused.value.code == "unknown_stage"
        assert not InboundEvent.objects.exists()
        assert not JourneyEvent.objects.exists()


def test_an_event_for_a_journey_deleted_after_it_was_read_is_not_found(partner, journey):
    """The journey was deleted (by staff, or a sandbox purge) between the request's read
    and its lock: 404,
    and the claim, which names the journey, withdrawn (left, it would break the foreign
    key at commit)."""
    read = journeys_for_spine().get(pk=journey.pk)
    journey.delete()
    with transaction.atomic():
        with pytest.raises(ApplicationError) as refused:
            _at_once(partner, read, "e1", "k1", timezone.now() - timedelta(minutes=1))
        assert (refused.value.code, refused.value.status) == ("not_found", 404)
        assert refused.value.message == f"The journey {journey.reference} no longer exists."
        assert not InboundEvent.objects.exists()
        assert not IdempotencyRecord.objects.exists()


def test_an_event_the_usual_way_for_a_journey_deleted_after_it_was_read_is_not_found(
    partner, journey
):
    read = journeys_for_spine().get(pk=journey.pk)
    journey.delete()
    with pytest.raises(ApplicationError) as refused:
        partner_record_status_event(
            partner=partner,
            journey=read,
            event_id="e1",
            code="S2",
            occurred_at=timezone.now() - timedelta(minutes=1),
        )
    assert (refused.value.code, refused.value.status) == ("not_found", 404)
    assert not InboundEvent.objects.exists()
    assert not JourneyEvent.objects.exists()


def test_a_batch_goes_on_past_a_journey_deleted_after_it_was_read(partner, journey):
    """Its items, mapped or not, are refused alone; the other journey's event is
    applied, and the transaction commits (the deferred foreign keys checked, as at a
    real commit)."""
    other = make_journey(owner=journey.owner)
    partner.journeys.add(other)
    gone, kept = journeys_for_spine().get(pk=journey.pk), journeys_for_spine().get(pk=other.pk)
    journey.delete()
    occurred_at = timezone.now() - timedelta(minutes=1)
    events = [
        StatusEventIn(journey=read, event_id=f"e{n}", code=code, occurred_at=occurred_at)
        for n, (read, code) in enumerate(((gone, "S2"), (gone, "NOT-MAPPED"), (kept, "S2")))
    ]
    with transaction.atomic():
        prepared = partner_status_events_prepare(partner=partner, events=events)
        for event in events[:2]:
            with pytest.raises(ApplicationError) as refused:
                _record(prepared, event)
            assert refused.value.status == 404
        assert _record(prepared, events[2]).applied
        partner_status_events_finish(prepared=prepared)
        connection.check_constraints()
    assert list(InboundEvent.objects.values_list("event_id", flat=True)) == ["e2"]
    assert other.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT
