"""Appointment emails say the arrival time as the portal does: the time, then the day,
on the place's clock, with its time zone named, in the reader's language."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from journey.calendar import appointment_ics
from journey.models import Appointment
from notifications.channels import LoggingSMSBackend, render
from notifications.reminders import appointment_context
from notifications.services import notification_deliver, notification_enqueue, outbox_sweep
from tests.factories import UserFactory, make_journey

pytestmark = pytest.mark.django_db

KINDS = ["appointment_set", "appointment_reminder", "appointment_changed"]
MADRID = ZoneInfo("Europe/Madrid")
# Arriving at 13:50 on Sunday 20 December, Madrid's clock, ten minutes before the start.
ARRIVE = datetime(2026, 12, 20, 13, 50, tzinfo=MADRID)
WRITTEN = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def handover(journey, **fields) -> Appointment:
    return Appointment.objects.create(
        **{
            "journey": journey,
            "title": "Handover",
            "starts_at": ARRIVE + timedelta(minutes=10),
            "arrive_at": ARRIVE,
            "place_name": "Showroom",
            "time_zone": "Europe/Madrid",
            **fields,
        }
    )


def email_about(customer, journey, appointment, kind):
    """The email of a message of ``kind`` about the appointment, as the customer reads it."""
    with time_machine.travel(WRITTEN, tick=False):
        rows = notification_enqueue(
            recipient=customer,
            journey=journey,
            kind=kind,
            dedup_key=f"{kind}:{appointment.pk}",
            context=appointment_context(appointment),
        )
    return render(next(row for row in rows if row.channel == "email"))


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
    rendered = email_about(customer, journey, handover(journey), kind)
    assert sentence in rendered.text
    assert sentence in rendered.html


CANCELLED = (
    "We have cancelled your appointment at 13:50 on Sunday 20 December "
    "(local time, Europe/Madrid). There is no need to come."
)


def test_a_cancellation_says_which_arrival_is_off_on_the_places_clock():
    customer = UserFactory(profile__time_zone="Europe/London")
    journey = make_journey(owner=customer)
    appointment = handover(journey, address="Calle Mayor 1\nMadrid")
    rendered = email_about(customer, journey, appointment, "appointment_cancelled")
    assert CANCELLED in rendered.text
    assert CANCELLED in rendered.html
    assert "Showroom, Calle Mayor 1\nMadrid" in rendered.text
    assert "The attached calendar file removes it from your calendar." in rendered.text
    assert '<h1 style="font-size:20px;margin:0 0 12px">Cancelled: Handover</h1>' in rendered.html


def test_a_cancellations_calendar_file_is_made_from_the_message_once_the_row_is_gone():
    """The row is deleted in the transaction that writes the message: the file that
    removes the entry is made from what the message kept, with the UID of the files
    sent before and a SEQUENCE above theirs."""
    customer = UserFactory()
    journey = make_journey(owner=customer)
    arrive = ARRIVE
    appointment = handover(journey, duration=timedelta(minutes=45))
    with time_machine.travel(WRITTEN, tick=False):
        earlier = icalendar.Calendar.from_ical(appointment_ics(appointment, company="M"))
        rows = notification_enqueue(
            recipient=customer,
            journey=journey,
            kind="appointment_cancelled",
            dedup_key="appointment_cancelled:file",
            context=appointment_context(appointment),
        )
        pk = appointment.pk
        appointment.delete()
        email = next(row for row in rows if row.channel == "email")
        notification_deliver(notification_id=email.pk)  # the same second
    (message,) = mail.outbox
    assert message.subject == "Cancelled: Handover, Sunday 20 December at 13:50"
    (name, content, mimetype) = message.attachments[0]
    assert (name, mimetype) == ("appointment.ics", "text/calendar; method=CANCEL")
    calendar = icalendar.Calendar.from_ical(content)
    (event,) = calendar.walk("VEVENT")
    (before,) = earlier.walk("VEVENT")
    assert str(calendar["method"]) == "CANCEL"
    assert str(event["status"]) == "CANCELLED"
    assert str(event["uid"]) == str(before["uid"]) == f"appointment-{pk}@milepost"
    assert int(event["sequence"]) == int(before["sequence"]) + 1
    assert str(event["organizer"]) == "mailto:updates@milepost.example"
    assert event.decoded("dtstart") == arrive
    assert event.decoded("dtend") == arrive + timedelta(minutes=55)
    assert [tz["tzid"] for tz in calendar.walk("VTIMEZONE")] == ["Europe/Madrid"]


def test_a_later_file_of_an_appointment_has_a_higher_sequence(journey):
    """A moved appointment's file replaces the entry an earlier one made (the same UID,
    a higher SEQUENCE), instead of adding a second."""
    start = datetime(2026, 12, 20, 10, 0, tzinfo=UTC)
    appointment = Appointment.objects.create(
        journey=journey, title="Visit", starts_at=start, arrive_at=start, place_name="Home"
    )
    files = []
    for day in (1, 2):
        with time_machine.travel(datetime(2026, 12, day, 10, 0, tzinfo=UTC), tick=False):
            files.append(appointment_ics(appointment, company="M"))
    first, second = (icalendar.Calendar.from_ical(f).walk("VEVENT")[0] for f in files)
    assert first["uid"] == second["uid"]
    assert int(second["sequence"]) - int(first["sequence"]) == 24 * 60 * 60
    assert 0 < int(second["sequence"]) < 2**31


@pytest.mark.parametrize("kind", [*KINDS, "appointment_cancelled"])
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
    rendered = email_about(customer, journey, appointment, kind)
    assert title in rendered.subject
    assert place in rendered.text
    assert "&#x27;" not in rendered.subject + rendered.text
    assert "Jo&#x27;s home &amp; garden" in rendered.html


@pytest.mark.parametrize(
    ("kind", "language", "subject"),
    [
        ("appointment_set", "en", "Appointment: Handover, Sunday 20 December at 13:50"),
        ("appointment_changed", "en", "Changed: Handover, Sunday 20 December at 13:50"),
        ("appointment_reminder", "en", "Tomorrow at 13:50: Handover"),
        ("appointment_cancelled", "en", "Cancelled: Handover, Sunday 20 December at 13:50"),
        ("appointment_set", "es", "Cita: Handover, domingo 20 de diciembre a las 13:50"),
        ("appointment_changed", "es", "Cambio: Handover, domingo 20 de diciembre a las 13:50"),
        ("appointment_reminder", "es", "Mañana a las 13:50: Handover"),
    ],
)
def test_the_subject_says_when_on_the_places_clock(kind, language, subject):
    """A digest lists its messages by subject and an SMS is its subject, so the time goes
    there too: "Appointment: Handover" told an SMS reader nothing (from a customer's
    review). The place's clock, as the body's, not the reader's (London here)."""
    customer = UserFactory(profile__language=language, profile__time_zone="Europe/London")
    journey = make_journey(owner=customer)
    assert email_about(customer, journey, handover(journey), kind).subject == subject


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
    assert "Changed: Engineer's visit, Sunday 20 December at 09:00" in digest.body
    assert "Changed: Engineer's visit, Sunday 20 December at 10:00" in digest.body


def test_a_cancellation_drops_what_still_waits_to_be_sent_about_the_appointment():
    """A reminder held for the customer's quiet hours would tell them to come after they
    were told it is off: it is dropped; what was sent stays as the record, and the
    centre's notices of it are read."""
    from journey.services import journey_appointment_cancel
    from notifications.models import Notification, NotificationState

    customer = UserFactory()
    journey = make_journey(owner=customer)
    start = timezone.now() + timedelta(days=1)
    appointment = Appointment.objects.create(
        journey=journey, title="Handover", starts_at=start, arrive_at=start, place_name="X"
    )
    other = Appointment.objects.create(
        journey=journey, title="Fitting", starts_at=start, arrive_at=start, place_name="Y"
    )
    for booked, kind in (
        (appointment, "appointment_set"),
        (appointment, "appointment_reminder"),
        (other, "appointment_reminder"),
    ):
        notification_enqueue(
            recipient=customer,
            journey=journey,
            kind=kind,
            dedup_key=f"{kind}:{booked.pk}",
            context=appointment_context(booked),
        )
    Notification.objects.filter(kind="appointment_set", channel="email").update(
        state=NotificationState.SENT, sent_at=timezone.now()
    )

    journey_appointment_cancel(appointment=appointment)

    emails = Notification.objects.filter(channel="email").order_by("id")
    assert [(n.kind, n.context["title"]) for n in emails] == [
        ("appointment_set", "Handover"),  # sent: the record of what was
        ("appointment_reminder", "Fitting"),  # another appointment's
        ("appointment_cancelled", "Handover"),
    ]
    centre = Notification.objects.filter(channel="inapp").order_by("id")
    assert [(n.kind, n.context["title"], n.read_at is not None) for n in centre] == [
        ("appointment_set", "Handover", True),
        ("appointment_reminder", "Handover", True),
        ("appointment_reminder", "Fitting", False),
        ("appointment_cancelled", "Handover", False),
    ]
