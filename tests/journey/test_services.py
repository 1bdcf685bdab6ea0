from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from journey.errors import ApplicationError
from journey.models import EventSource, Health, JourneyEvent, MilestoneState
from journey.services import journey_record_milestone
from notifications.models import Notification
from tests.factories import make_journey

pytestmark = pytest.mark.django_db


def states(journey) -> list[str]:
    return list(journey.milestones.order_by("position").values_list("state", flat=True))


def test_create_plans_one_milestone_per_stage_in_order(journey):
    milestones = list(journey.milestones.order_by("position"))
    assert [m.stage.key for m in milestones] == ["stage-1", "stage-2", "stage-3", "stage-4"]
    assert states(journey) == ["upcoming"] * 4
    planned = [m.planned_date for m in milestones]
    assert planned == sorted(planned)
    assert planned[1] - planned[0] == timedelta(days=2)


def test_reaching_a_stage_marks_earlier_ones_done_and_notifies_once(journey, customer):
    occurred = timezone.now() - timedelta(hours=2)

    recorded = journey_record_milestone(
        journey=journey, stage_key="stage-2", occurred_at=occurred, source=EventSource.PARTNER
    )

    assert recorded.applied is True
    assert states(journey) == ["done", "current", "upcoming", "upcoming"]
    current = journey.milestones.get(stage__key="stage-2")
    assert current.reached_at == occurred
    assert recorded.event.milestone == current
    journey.refresh_from_db()
    assert journey.last_event_at == occurred
    notification = Notification.objects.get(channel="email")
    assert notification.recipient == customer
    assert notification.kind == "milestone_reached"
    assert notification.context["stage_label"] == "Stage 2"
    assert notification.dedup_key == f"milestone-reached:{current.pk}"


def test_an_older_event_is_logged_but_never_moves_the_journey_back(journey):
    now = timezone.now()
    journey_record_milestone(
        journey=journey, stage_key="stage-3", occurred_at=now, source=EventSource.PARTNER
    )

    late = journey_record_milestone(
        journey=journey,
        stage_key="stage-2",
        occurred_at=now - timedelta(hours=5),
        source=EventSource.PARTNER,
    )

    assert late.applied is False
    assert late.event.applied is False
    assert states(journey) == ["done", "done", "current", "upcoming"]
    # The passed-over stage learns its real time; nothing else changes.
    assert journey.milestones.get(stage__key="stage-2").reached_at == now - timedelta(hours=5)
    assert JourneyEvent.objects.filter(journey=journey).count() == 2
    assert Notification.objects.filter(channel="email").count() == 1


def test_the_same_stage_reached_twice_sends_one_message(journey):
    now = timezone.now()
    for _ in range(2):
        journey_record_milestone(
            journey=journey, stage_key="stage-1", occurred_at=now, source=EventSource.STAFF
        )
    assert Notification.objects.filter(channel="email").count() == 1
    assert JourneyEvent.objects.filter(applied=True).count() == 1


def test_reaching_the_last_stage_finishes_the_journey(journey):
    reached = timezone.now() - timedelta(minutes=1)
    journey_record_milestone(
        journey=journey, stage_key="stage-4", occurred_at=reached, source=EventSource.STAFF
    )
    journey.refresh_from_db()
    assert states(journey) == ["done"] * 4
    assert journey.health == Health.DONE
    assert journey.eta == timezone.localdate(reached)


@pytest.mark.parametrize(
    ("stage_key", "offset", "field"),
    [
        ("no-such-stage", timedelta(0), "stage"),
        ("stage-1", timedelta(hours=1), "occurred_at"),
        ("stage-1", -timedelta(days=30), "occurred_at"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(journey, stage_key, offset, field):
    with pytest.raises(ApplicationError) as error:
        journey_record_milestone(
            journey=journey,
            stage_key=stage_key,
            occurred_at=timezone.now() + offset,
            source=EventSource.PARTNER,
        )
    assert field in error.value.fields
    assert JourneyEvent.objects.count() == 0
    assert Notification.objects.count() == 0
    assert states(journey) == ["upcoming"] * 4


def test_notification_is_written_in_the_same_transaction_as_the_event(journey):
    with pytest.raises(RuntimeError), transaction.atomic():
        journey_record_milestone(
            journey=journey,
            stage_key="stage-1",
            occurred_at=timezone.now(),
            source=EventSource.PARTNER,
        )
        raise RuntimeError("the caller fails after the spine ran")
    assert JourneyEvent.objects.count() == 0
    assert Notification.objects.count() == 0
    assert states(journey) == ["upcoming"] * 4


@pytest.mark.parametrize(
    ("promised_in_days", "health"),
    [
        (20, Health.ON_TRACK),
        (9, Health.ON_TRACK),
        (8, Health.AT_RISK),
        (6, Health.AT_RISK),
        (5, Health.DELAYED),
    ],
)
def test_health_follows_the_expected_date_against_the_promise(customer, promised_in_days, health):
    with time_machine.travel("2026-11-02 09:00 +00:00", tick=False):
        today = timezone.now().date()
        journey = make_journey(
            owner=customer, promised_date=today + timedelta(days=promised_in_days)
        )
    # Four stages of two days each, none reached: the last is expected in six days.
    assert journey.eta == today + timedelta(days=6)
    assert journey.health == health


def test_expected_dates_follow_the_current_stage(journey):
    with time_machine.travel(timezone.now(), tick=False):
        now = timezone.now()
        journey_record_milestone(
            journey=journey, stage_key="stage-2", occurred_at=now, source=EventSource.PARTNER
        )
        expected = {
            m.stage.key: m.expected_date
            for m in journey.milestones.filter(state=MilestoneState.UPCOMING)
        }
    assert expected == {
        "stage-3": timezone.localdate(now + timedelta(days=2)),
        "stage-4": timezone.localdate(now + timedelta(days=4)),
    }
    journey.refresh_from_db()
    assert journey.eta == expected["stage-4"]
