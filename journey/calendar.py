"""Appointments as iCalendar files, on the place's clock."""

from datetime import UTC

from django.utils import timezone
from icalendar import Calendar, Event

from journey.models import Appointment


def appointment_ics(appointment: Appointment, *, company: str) -> bytes:
    """One VEVENT that starts at the arrival time (not the slot's internal start), in the
    place's time zone, and ends when the slot does."""
    zone = appointment.zone
    calendar = Calendar()
    calendar.add("prodid", f"-//{company}//Milepost//EN")
    calendar.add("version", "2.0")
    event = Event()
    event.add("uid", f"appointment-{appointment.pk}@milepost")
    event.add("dtstamp", timezone.now().astimezone(UTC))
    event.add("dtstart", appointment.arrive_at.astimezone(zone))
    event.add("dtend", (appointment.starts_at + appointment.duration).astimezone(zone))
    event.add("summary", appointment.title)
    location = ", ".join(
        part for part in [appointment.place_name, *appointment.address.splitlines()] if part
    )
    event.add("location", location)
    if appointment.what_to_bring:
        event.add("description", appointment.what_to_bring)
    calendar.add_component(event)
    # Calendars need the zone's definition to place a TZID-qualified time.
    calendar.add_missing_timezones()
    return calendar.to_ical()
