"""Staff answer a reschedule request by moving the appointment to a time asked for."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from journey.errors import ApplicationError
from journey.models import Appointment, RescheduleRequest, RescheduleState
from journey.services import appointment_request_reschedule, reschedule_request_answer
from notifications.models import Notification

pytestmark = pytest.mark.django_db

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
FIRST = datetime(2026, 12, 21, 10, 0, tzinfo=MADRID)
SECOND = datetime(2026, 12, 22, 16, 0, tzinfo=MADRID)


@pytest.fixture
def asked(journey, customer):
    start = datetime(2026, 12, 20, 14, 0, tzinfo=MADRID)
    appointment = Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=start,
        arrive_at=start - timedelta(minutes=15),
        place_name="Showroom",
        time_zone="Europe/Madrid",
    )
    with time_machine.travel(NOW, tick=False):
        return appointment_request_reschedule(
            appointment=appointment, user=customer, first_choice=FIRST, second_choice=SECOND
        )


@pytest.mark.parametrize(("choice", "arrive"), [("first", FIRST), ("second", SECOND)])
def test_moving_to_a_choice_answers_the_request_and_tells_the_customer(asked, choice, arrive):
    """The time asked for is the arrival, the only time the customer sees: asked for
    10:00, they are told to arrive at 10:00, not a quarter of an hour before it (a user's
    walk-through); the start keeps its lead after the arrival."""
    with time_machine.travel(NOW, tick=False):
        appointment = reschedule_request_answer(request=asked, choice=choice)
    assert (appointment.arrive_at, appointment.starts_at) == (
        arrive,
        arrive + timedelta(minutes=15),
    )
    asked.refresh_from_db()
    assert asked.state == RescheduleState.HANDLED
    told = Notification.objects.get(kind="appointment_changed", channel="email")
    assert datetime.fromisoformat(told.context["arrive_at"]) == arrive


def test_an_answered_request_or_a_past_time_changes_nothing(asked):
    with time_machine.travel(NOW, tick=False):
        reschedule_request_answer(request=asked, choice="first")
        with pytest.raises(ApplicationError, match="answered already"):
            reschedule_request_answer(request=asked, choice="second")
    RescheduleRequest.objects.filter(pk=asked.pk).update(state=RescheduleState.OPEN)
    before = Appointment.objects.values_list("starts_at", flat=True).get()
    with (
        time_machine.travel(SECOND + timedelta(days=1), tick=False),
        pytest.raises(ApplicationError, match="cannot be used"),
    ):
        reschedule_request_answer(request=asked, choice="second")
    assert Appointment.objects.values_list("starts_at", flat=True).get() == before


def test_a_time_asked_for_that_has_passed_is_refused_though_its_start_has_not(asked):
    """The start comes the lead (15 minutes) after the arrival asked for: between the
    two, the start is still ahead, but the customer would be told to arrive in the past."""
    with (
        time_machine.travel(FIRST + timedelta(minutes=5), tick=False),
        pytest.raises(ApplicationError, match="The time asked for has passed"),
    ):
        reschedule_request_answer(request=asked, choice="first")
    assert Appointment.objects.get().arrive_at != FIRST


def test_staff_move_it_from_the_admin_seeing_the_times_on_the_places_clock(admin_client, asked):
    listing = admin_client.get(reverse("admin:journey_reschedulerequest_changelist"))
    page = listing.content.decode()
    assert "Mon 21 Dec 2026, 10:00 (Europe/Madrid)" in page  # the first choice
    assert "Sun 20 Dec 2026, 13:45 (Europe/Madrid)" in page  # the arrival booked now
    with time_machine.travel(NOW, tick=True):
        response = admin_client.post(
            reverse("admin:journey_reschedulerequest_changelist"),
            {"action": "move_to_second", "_selected_action": [asked.pk]},
            follow=True,
        )
    assert "1 appointment(s) moved; the customer is told." in [
        str(m) for m in response.context["messages"]
    ]
    assert Appointment.objects.get().arrive_at == SECOND


def test_moving_the_appointment_on_the_journeys_page_answers_its_request(admin_client, asked):
    from tests.admin_pages import page_data

    journey = asked.appointment.journey
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(admin_client.get(url))
    data["appointments-0-starts_at_0"] = "2026-12-23"
    with time_machine.travel(NOW, tick=True):
        assert admin_client.post(url, data).status_code == 302
    asked.refresh_from_db()
    assert asked.state == RescheduleState.HANDLED


def test_moving_a_booked_stages_appointment_moves_the_journeys_eta(journey, asked):
    """Answering a request moves the booking, and with it the day the ETA puts the stage
    at the earliest (journey.services._booking_moved), as staff moving it does."""
    handover = journey.milestones.get(stage__key="stage-4")
    Appointment.objects.filter(pk=asked.appointment_id).update(milestone=handover)
    with time_machine.travel(NOW, tick=False):
        reschedule_request_answer(request=asked, choice="second")
    journey.refresh_from_db()
    assert journey.eta == SECOND.date()  # 22 December in Madrid
    handover.refresh_from_db()
    assert handover.expected_date == SECOND.date()
