"""Property tests of the status mapping: any code, any id, any time, sent once or again,
gives a result or an ApplicationError; a replay changes nothing; unmapped codes move
nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.models import InboundEvent
from integrations.services import partner_record_status_event
from journey.errors import ApplicationError
from journey.models import JourneyEvent
from tests.factories import MappingFactory, PartnerFactory, make_journey

pytestmark = pytest.mark.django_db

TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(["S1", "S2", "S3", "S4"]), TEXT),
            st.sampled_from(["e1", "e2", "e3"]),  # ids repeat: replays
            st.integers(min_value=-15 * 24 * 60, max_value=30),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_status_event_is_applied_kept_or_refused_cleanly(events) -> None:
    journey = make_journey()
    partner = PartnerFactory()
    partner.journeys.add(journey)
    for position in range(1, 5):
        MappingFactory(partner=partner, code=f"S{position}", stage_key=f"stage-{position}")
    seen: dict[str, int] = {}
    for code, event_id, minutes in events:
        before = JourneyEvent.objects.filter(journey=journey).count()
        try:
            result = partner_record_status_event(
                partner=partner,
                journey=journey,
                event_id=event_id,
                code=code,
                occurred_at=timezone.now() + timedelta(minutes=minutes),
            )
        except ApplicationError:
            assert JourneyEvent.objects.filter(journey=journey).count() == before
            continue
        if event_id in seen:
            # The same id again: the first result, nothing new on the timeline.
            assert result.inbound.pk == seen[event_id]
            assert JourneyEvent.objects.filter(journey=journey).count() == before
        else:
            seen[event_id] = result.inbound.pk
        if result.inbound.unmapped:
            assert result.applied is False
            assert JourneyEvent.objects.filter(journey=journey).count() == before
    assert InboundEvent.objects.filter(journey=journey).count() <= len(seen)
