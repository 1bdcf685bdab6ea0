"""Appointment emails say the arrival time as the portal does: the time, then the day,
on the place's clock, with its time zone named, in the reader's language."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from journey.models import Appointment
from notifications.channels import render
from notifications.reminders import appointment_context
from notifications.services import notification_enqueue
from tests.factories import UserFactory, make_journey

pytestmark = pytest.mark.django_db

KINDS = ["appointment_set", "appointment_reminder", "appointment_changed"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("language", "time_zone", "sentence"),
    [
        (
            "en",
            "Europe/London",
            "Please arrive at 13:50 on Sunday 20 December (local time, Europe/Madrid)",
        ),
        (
            "es",
            "Europe/Madrid",
            "Llegue a las 13:50 el domingo 20 de diciembre (hora local, Europe/Madrid)",
        ),
    ],
)
def test_the_arrival_reads_time_then_day_with_the_places_time_zone(
    kind, language, time_zone, sentence
):
    customer = UserFactory(profile__language=language, profile__time_zone=time_zone)
    journey = make_journey(owner=customer)
    arrive = datetime(2026, 12, 20, 13, 50, tzinfo=ZoneInfo("Europe/Madrid"))
    appointment = Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=arrive + timedelta(minutes=10),
        arrive_at=arrive,
        place_name="Showroom",
        time_zone="Europe/Madrid",
    )
    with time_machine.travel(datetime(2026, 12, 1, 10, 0, tzinfo=UTC), tick=False):
        rows = notification_enqueue(
            recipient=customer,
            journey=journey,
            kind=kind,
            dedup_key=f"{kind}:test",
            context=appointment_context(appointment),
        )
    email = next(row for row in rows if row.channel == "email")
    rendered = render(email)
    assert sentence in rendered.text
    assert sentence in rendered.html


@pytest.mark.parametrize("kind", KINDS)
def test_plain_text_is_not_html_escaped_and_html_is(kind):
    """The subject read "New time: Engineer&#x27;s visit" (from a staff review)."""
    customer = UserFactory()
    journey = make_journey(owner=customer)
    starts = datetime(2026, 12, 20, 9, 0, tzinfo=UTC)
    title = 'Engineer\'s visit & "survey" <2h>'
    place = "Jo's home & garden"
    appointment = Appointment.objects.create(
        journey=journey, title=title, starts_at=starts, arrive_at=starts, place_name=place
    )
    with time_machine.travel(datetime(2026, 12, 1, 10, 0, tzinfo=UTC), tick=False):
        rows = notification_enqueue(
            recipient=customer,
            journey=journey,
            kind=kind,
            dedup_key=f"{kind}:escape",
            context=appointment_context(appointment),
        )
    rendered = render(next(row for row in rows if row.channel == "email"))
    assert title in rendered.subject
    assert place in rendered.text
    assert "&#x27;" not in rendered.subject + rendered.text
    assert "Jo&#x27;s home &amp; garden" in rendered.html
