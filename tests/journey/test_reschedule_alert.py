"""A customer's request for another appointment time alerts staff, as a message does."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.urls import reverse

from journey.errors import ApplicationError
from journey.models import Appointment
from journey.services import appointment_request_reschedule
from notifications.models import Notification, NotificationState
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def appointment(journey):
    arrive = datetime(2026, 12, 20, 13, 50, tzinfo=MADRID)
    return Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=arrive + timedelta(minutes=10),
        arrive_at=arrive,
        place_name="Showroom",
        time_zone="Europe/Madrid",
    )


def ask(appointment, customer, **more: object):
    return appointment_request_reschedule(
        appointment=appointment,
        user=customer,
        first_choice=datetime(2026, 12, 21, 10, 0, tzinfo=MADRID),
        **more,
    )


def test_a_reschedule_request_alerts_staff_with_the_times_and_the_note(
    journey, customer, appointment, django_capture_on_commit_callbacks
):
    with (
        time_machine.travel(NOW, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        request = ask(
            appointment,
            customer,
            second_choice=datetime(2026, 12, 22, 16, 30, tzinfo=MADRID),
            note="Mornings are best.",
        )

    alert = Notification.objects.get(kind="staff_reschedule_request")
    assert (alert.to_email, alert.recipient, alert.journey) == (
        settings.STAFF_ALERT_EMAIL,
        None,
        journey,
    )
    assert alert.state == NotificationState.SENT
    email = mail.outbox[-1]
    assert email.to == [settings.STAFF_ALERT_EMAIL]
    assert email.subject == f"A customer asked to move “Handover” ({journey.reference})"
    assert "Auto-Submitted" not in email.extra_headers  # for people, as a message's alert
    request_url = settings.SITE_URL + reverse(
        "admin:journey_reschedulerequest_change", args=[request.pk]
    )
    journey_url = settings.SITE_URL + reverse("admin:journey_journey_change", args=[journey.pk])
    body = email.body
    for line in (
        f"{customer.get_full_name()} ({customer.email}) asked for another time for “Handover”.",
        # On the place's clock, as the customer chose them.
        "Currently booked: Sunday 20 December, 13:50",
        "First choice: Monday 21 December, 10:00",
        "Second choice: Tuesday 22 December, 16:30",
        "Times are local to the place (Europe/Madrid).",
        "Their note: Mornings are best.",
        f"Move the appointment on the journey's page in the admin: {journey_url}",
        f"Then mark the request answered: {request_url}",
    ):
        assert line in body, line
    html = email.alternatives[0].content
    assert f'href="{request_url}"' in html and f'href="{journey_url}"' in html
    assert "Second choice:" in html and "Mornings are best." in html


def test_without_a_second_choice_or_a_note_the_alert_says_nothing_of_them(
    customer, appointment, django_capture_on_commit_callbacks
):
    with (
        time_machine.travel(NOW, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        ask(appointment, customer)
    body = mail.outbox[-1].body
    assert "First choice: Monday 21 December, 10:00" in body
    assert "Second choice" not in body and "Their note" not in body


def test_the_same_request_sent_twice_alerts_staff_once(customer, appointment):
    with time_machine.travel(NOW, tick=False):
        first = ask(appointment, customer, note="Any morning")
        again = ask(appointment, customer, note="Any morning")
    assert again.pk == first.pk
    assert Notification.objects.filter(kind="staff_reschedule_request").count() == 1


def test_no_alert_address_no_alert_and_a_refused_request_alerts_no_one(
    settings, customer, appointment
):
    with time_machine.travel(NOW, tick=False):
        with pytest.raises(ApplicationError):
            ask(appointment, UserFactory())  # not the owner
        assert Notification.objects.filter(kind="staff_reschedule_request").count() == 0
        settings.STAFF_ALERT_EMAIL = ""
        ask(appointment, customer)
    assert Notification.objects.filter(kind="staff_reschedule_request").count() == 0
