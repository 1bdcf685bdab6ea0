"""Appointment emails say the arrival time as the portal does: the time, then the day,
on the place's clock, with its time zone named, in the reader's language."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail

from journey.models import Appointment
from notifications.channels import LoggingSMSBackend, render
from notifications.reminders import appointment_context
from notifications.services import notification_deliver, notification_enqueue, outbox_sweep
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


@pytest.mark.parametrize(
    ("kind", "language", "subject"),
    [
        ("appointment_set", "en", "Appointment: Handover, Sunday 20 December at 13:50"),
        ("appointment_changed", "en", "New time: Handover, Sunday 20 December at 13:50"),
        ("appointment_reminder", "en", "Tomorrow at 13:50: Handover"),
        ("appointment_set", "es", "Cita: Handover, domingo 20 de diciembre a las 13:50"),
        ("appointment_changed", "es", "Nueva hora: Handover, domingo 20 de diciembre a las 13:50"),
        ("appointment_reminder", "es", "Mañana a las 13:50: Handover"),
    ],
)
def test_the_subject_says_when_on_the_places_clock(kind, language, subject):
    """A digest lists its messages by subject and an SMS is its subject, so the time goes
    there too: "Appointment: Handover" told an SMS reader nothing (from a customer's
    review). The place's clock, as the body's, not the reader's (London here)."""
    customer = UserFactory(profile__language=language, profile__time_zone="Europe/London")
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
            dedup_key=f"{kind}:subject",
            context=appointment_context(appointment),
        )
    assert render(next(row for row in rows if row.channel == "email")).subject == subject


def test_an_sms_and_a_digest_carry_the_appointments_time():
    LoggingSMSBackend.sent.clear()
    customer = UserFactory(
        profile__phone="+447911123456", profile__channel_sms=True, profile__time_zone="UTC"
    )
    journey = make_journey(owner=customer)
    arrive = datetime(2026, 12, 20, 8, 30, tzinfo=ZoneInfo("Europe/London"))
    appointment = Appointment.objects.create(
        journey=journey,
        title="Engineer's visit",
        starts_at=arrive,
        arrive_at=arrive,
        place_name="Home",
        time_zone="Europe/London",
    )
    start = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        rows = notification_enqueue(
            recipient=customer,
            journey=journey,
            kind="appointment_set",
            dedup_key="set:sms",
            context=appointment_context(appointment),
        )
        sms = next(row for row in rows if row.channel == "sms")
        notification_deliver(notification_id=sms.pk)
        outbox_sweep(now=start + timedelta(hours=1))  # the email, at once
    text = LoggingSMSBackend.sent[-1]["text"]
    assert "Appointment: Engineer's visit, Sunday 20 December at 08:30" in text
    # Moved twice within a digest's window: the second and third emails go together.
    for minutes, hour in ((1, 9), (2, 10)):
        appointment.arrive_at = appointment.starts_at = arrive.replace(hour=hour, minute=0)
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            notification_enqueue(
                recipient=customer,
                journey=journey,
                kind="appointment_changed",
                dedup_key=f"changed:{hour}",
                context=appointment_context(appointment),
            )
    mail.outbox.clear()
    with time_machine.travel(start + timedelta(minutes=10), tick=False):
        outbox_sweep()
    (digest,) = (m for m in mail.outbox if m.to == [customer.email])
    assert "New time: Engineer's visit, Sunday 20 December at 09:00" in digest.body
    assert "New time: Engineer's visit, Sunday 20 December at 10:00" in digest.body
