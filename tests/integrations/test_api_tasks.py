"""Customer tasks and appointments through the API."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from journey.models import Appointment, CustomerTask

pytestmark = pytest.mark.django_db


def url(name: str, journey) -> str:
    return reverse(f"api:journey-{name}", kwargs={"reference": journey.reference})


# A day ten days on: an appointment is set in the coming two years.
DAY = (timezone.now() + timedelta(days=10)).date().isoformat()


def appointment(**overrides: object) -> dict[str, object]:
    return {
        "title": "Handover",
        "starts_at": f"{DAY}T10:00:00Z",
        "arrive_at": f"{DAY}T09:45:00Z",
        "duration_minutes": 90,
        "place_name": "Showroom",
        "time_zone": "Europe/Madrid",
        **overrides,
    }


def test_a_task_is_created(api, journey):
    response = api.post(
        url("tasks", journey),
        {"title": "Send your insurance certificate", "due_date": DAY},
        format="json",
    )
    assert response.status_code == 201
    task = CustomerTask.objects.get()
    assert (task.journey, task.title, str(task.due_date)) == (
        journey,
        "Send your insurance certificate",
        DAY,
    )
    assert response.json()["id"] == task.pk


# Late anywhere: before today where it is earliest (UTC-12).
TWO_DAYS_AGO = (timezone.localdate() - timedelta(days=2)).isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "X", "due_date": "soon"}, "due_date"),
        ({"title": "X", "due_date": TWO_DAYS_AGO}, "due_date"),
        ({"title": "X", "due_date": "9999-12-31"}, "due_date"),
        ({"title": "X", "description": "x" * 2001}, "description"),
    ],
)
def test_a_bad_task_is_refused(api, journey, body, field):
    response = api.post(url("tasks", journey), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert CustomerTask.objects.count() == 0


def test_a_task_due_today_somewhere_is_taken(api, journey):
    """At 01:00 UTC it is still yesterday in New York: a task due "today" there is
    taken (a code review); two days back is late anywhere."""
    from datetime import UTC, datetime

    import time_machine

    with time_machine.travel(datetime(2026, 12, 6, 1, 0, tzinfo=UTC), tick=False):
        late_here = api.post(
            url("tasks", journey), {"title": "Sign", "due_date": "2026-12-05"}, format="json"
        )
        late_anywhere = api.post(
            url("tasks", journey), {"title": "Sign", "due_date": "2026-12-04"}, format="json"
        )
    assert late_here.status_code == 201
    assert late_anywhere.status_code == 400
    assert late_anywhere.json()["error"]["fields"] == {"due_date": ["Before today."]}


def test_an_appointment_is_created(api, journey):
    response = api.post(url("appointments", journey), appointment(), format="json")
    assert response.status_code == 201
    stored = Appointment.objects.get()
    assert stored.duration == timedelta(minutes=90)
    assert stored.time_zone == "Europe/Madrid"
    assert response.json()["duration_minutes"] == 90
    assert response.json()["arrive_at"] == f"{DAY}T09:45:00Z"


def test_arrive_at_defaults_to_the_start(api, journey):
    body = appointment()
    del body["arrive_at"]
    response = api.post(url("appointments", journey), body, format="json")
    assert response.status_code == 201
    stored = Appointment.objects.get()
    assert stored.arrive_at == stored.starts_at


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"arrive_at": f"{DAY}T10:15:00Z"}, "arrive_at"),
        ({"arrive_at": "2020-01-01T00:00:00Z"}, "arrive_at"),  # a mistyped date
        ({"arrive_at": f"{DAY}T00:00:00Z", "starts_at": f"{DAY}T23:00:00Z"}, "arrive_at"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"starts_at": f"{DAY}T10:00:00"}, "starts_at"),
        ({"starts_at": "9999-12-31T20:00:00Z", "arrive_at": "9999-12-31T20:00:00Z"}, "starts_at"),
        ({"starts_at": "2001-01-01T10:00:00Z", "arrive_at": "2001-01-01T10:00:00Z"}, "starts_at"),
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"place_name": ""}, "place_name"),
    ],
)
def test_a_bad_appointment_is_refused(api, journey, overrides, field):
    response = api.post(url("appointments", journey), appointment(**overrides), format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert Appointment.objects.count() == 0


def test_an_appointments_time_zone_defaults_to_the_customers(api, journey, customer):
    """Not to London whatever the customer's: a visit is where the customer lives."""
    customer.profile.time_zone = "Europe/Madrid"
    customer.profile.save()
    body = appointment()
    del body["time_zone"]
    response = api.post(url("appointments", journey), body, format="json")
    assert response.status_code == 201
    assert response.json()["time_zone"] == "Europe/Madrid"
    assert Appointment.objects.get().time_zone == "Europe/Madrid"


def test_partner_b_cannot_add_to_partner_a_journey(other_api, journey):
    task = other_api.post(url("tasks", journey), {"title": "X"}, format="json")
    appt = other_api.post(url("appointments", journey), appointment(), format="json")
    assert (task.status_code, appt.status_code) == (404, 404)
    assert CustomerTask.objects.count() == 0
    assert Appointment.objects.count() == 0
