"""Property tests of the spine: whatever order and times events arrive in, a journey never
moves backwards, and nothing but ApplicationError is ever raised."""

from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journey.errors import ApplicationError
from journey.models import EventSource, JourneyEvent, MilestoneState
from journey.services import journey_record_milestone
from tests.factories import make_journey

pytestmark = pytest.mark.django_db

# Known stages, an unknown one, and times from before the start to beyond the clock skew.
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["stage-1", "stage-2", "stage-3", "stage-4", "stage-9", ""]),
        st.integers(min_value=-20 * 24 * 60, max_value=60),  # minutes from now
        st.booleans(),  # naive (no offset) datetimes must be refused
    ),
    min_size=1,
    max_size=8,
)


def reached(journey) -> int:
    """The furthest stage reached: done or current."""
    positions = [
        m.position
        for m in journey.milestones.all()
        if m.state in (MilestoneState.CURRENT, MilestoneState.DONE)
    ]
    return max(positions, default=0)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=EVENTS)
def test_events_in_any_order_never_move_a_journey_backwards(events) -> None:
    journey = make_journey()
    furthest = reached(journey)
    for stage_key, minutes, naive in events:
        occurred_at = timezone.now() + timedelta(minutes=minutes)
        if naive:
            occurred_at = occurred_at.replace(tzinfo=None)
        count = JourneyEvent.objects.filter(journey=journey).count()
        try:
            journey_record_milestone(
                journey=journey,
                stage_key=stage_key,
                occurred_at=occurred_at,
                source=EventSource.PARTNER,
            )
        except ApplicationError:
            # Refused: nothing was written.
            assert JourneyEvent.objects.filter(journey=journey).count() == count
        now = reached(journey)
        assert now >= furthest
        furthest = now
        # Exactly one stage is current, or the last is done.
        states = [m.state for m in journey.milestones.order_by("position")]
        assert states.count(MilestoneState.CURRENT) <= 1
        if furthest:
            assert all(s == MilestoneState.DONE for s in states[: furthest - 1])
            assert all(s == MilestoneState.UPCOMING for s in states[furthest:])
