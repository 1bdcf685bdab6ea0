"""Appointments as iCalendar files, on the place's clock.

Every file of one appointment carries the same UID (``appointment_uid``) and a SEQUENCE
that grows with time (``ics_sequence``: the seconds since ``SEQUENCE_EPOCH`` when the file
is made). A calendar that has an earlier file's event replaces it with a later file's (a
moved appointment: one entry, at the new time, not two), and a cancellation's file, whose
SEQUENCE is one higher than any file made in the same second, removes it.
"""

import zoneinfo
from datetime import UTC, datetime
from email.utils import parseaddr

from django.conf import settings
from django.utils import timezone
from icalendar import Calendar, Event, vCalAddress

from journey.models import Appointment

# Seconds from a recent epoch, not from 1970: calendars keep SEQUENCE in a signed 32-bit
# integer, which seconds since 1970 outgrow in 2038; these last 68 years.
SEQUENCE_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def appointment_uid(appointment_id: int) -> str:
    return f"appointment-{appointment_id}@milepost"


def ics_sequence(now: datetime) -> int:
    """The SEQUENCE of a file made at ``now``: later files replace earlier ones."""
    return max(0, int((now - SEQUENCE_EPOCH).total_seconds()))


def _calendar(company: str, *, method: str | None = None) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", f"-//{company}//Milepost//EN")
    calendar.add("version", "2.0")
    if method:
        calendar.add("method", method)
    return calendar


def _organizer(company: str) -> vCalAddress:
    """The company's sending address, on every file of an appointment: a calendar applies
    a cancellation only from the organizer the event already had (RFC 5546 needs one in
    a CANCEL)."""
    organizer = vCalAddress(f"mailto:{parseaddr(settings.DEFAULT_FROM_EMAIL)[1]}")
    organizer.params["cn"] = company
    return organizer


def _location(place_name: str, address: str) -> str:
    return ", ".join(part for part in [place_name, *address.splitlines()] if part)


def appointment_ics(
    appointment: Appointment, *, company: str, now: datetime | None = None
) -> bytes:
    """One VEVENT that starts at the arrival time (not the slot's internal start), in the
    place's time zone, and ends when the slot does."""
    now = now or timezone.now()
    zone = appointment.zone
    calendar = _calendar(company)
    event = Event()
    event.add("uid", appointment_uid(appointment.pk))
    event.add("dtstamp", now.astimezone(UTC))
    event.add("sequence", ics_sequence(now))
    event.add("organizer", _organizer(company))
    event.add("dtstart", appointment.arrive_at.astimezone(zone))
    event.add("dtend", (appointment.starts_at + appointment.duration).astimezone(zone))
    event.add("summary", appointment.title)
    event.add("location", _location(appointment.place_name, appointment.address))
    if appointment.what_to_bring:
        event.add("description", appointment.what_to_bring)
    calendar.add_component(event)
    # Calendars need the zone's definition to place a TZID-qualified time.
    calendar.add_missing_timezones()
    return calendar.to_ical()


def appointment_cancel_ics(
    *,
    appointment_id: int,
    title: str,
    arrive_at: datetime,
    ends_at: datetime | None,
    time_zone: str,
    place_name: str,
    address: str,
    company: str,
    now: datetime | None = None,
) -> bytes:
    """The cancellation of an appointment (iTIP's METHOD:CANCEL, STATUS:CANCELLED), with
    the UID its earlier files had, so a calendar removes the entry they made.

    Made from what the cancellation's message kept (its context), not from the row,
    which is deleted by the time the message goes. Its SEQUENCE is one higher than a
    file made in the same second, so it outranks every file sent before it; its
    ORGANIZER is the one every file of the appointment names."""
    now = now or timezone.now()
    try:
        zone = zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = UTC
    calendar = _calendar(company, method="CANCEL")
    event = Event()
    event.add("uid", appointment_uid(appointment_id))
    event.add("dtstamp", now.astimezone(UTC))
    event.add("sequence", ics_sequence(now) + 1)
    event.add("status", "CANCELLED")
    event.add("organizer", _organizer(company))
    event.add("dtstart", arrive_at.astimezone(zone))
    if ends_at is not None:
        event.add("dtend", ends_at.astimezone(zone))
    event.add("summary", title)
    event.add("location", _location(place_name, address))
    calendar.add_component(event)
    calendar.add_missing_timezones()
    return calendar.to_ical()
