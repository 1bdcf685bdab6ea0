"""Calendar files for appointments: the event starts when the customer should arrive."""

from datetime import UTC

from django.conf import settings
from icalendar import Calendar, Event

from journey.models import Appointment


def appointment_ics(appointment: Appointment) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", f"-//{settings.COMPANY_NAME}//Milepost//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = Event()
    event.add("uid", f"appointment-{appointment.pk}@{settings.REPLY_DOMAIN}")
    event.add("summary", appointment.title)
    start = appointment.arrive_at.astimezone(appointment.zone)
    event.add("dtstart", start)
    event.add("dtend", appointment.starts_at.astimezone(appointment.zone) + appointment.duration)
    event.add("dtstamp", appointment.arrive_at.astimezone(UTC))
    location = ", ".join(
        p for p in [appointment.place_name, *appointment.address.splitlines()] if p
    )
    event.add("location", location)
    if appointment.what_to_bring:
        event.add("description", f"Bring: {appointment.what_to_bring}")
    calendar.add_component(event)
    return calendar.to_ical()
