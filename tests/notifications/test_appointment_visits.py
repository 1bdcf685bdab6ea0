"""A visit we make to the customer (an engineer, a delivery) is told as one: when we will
be with them and what to have ready, not when to arrive and what to bring (from a
customer's review of the broadband install)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from journey.models import Appointment
from notifications.channels import render
from tests.factories import UserFactory, make_journey
from tests.notifications.test_appointment_emails import email_about

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def engineer(journey, *, visit: bool = True) -> Appointment:
    starts = datetime(2026, 12, 10, 8, 0, tzinfo=LONDON)
    return Appointment.objects.create(
        journey=journey,
        title="Engineer's visit",
        starts_at=starts,
        arrive_at=starts,
        duration=timedelta(hours=5),
        place_name="Your home",
        address="4 Elm Grove\nLeeds",
        time_zone="Europe/London",
        what_to_bring="An adult at home for the whole morning.",
        visit=visit,
    )


rendered = email_about  # the email of a message about the appointment, as it reads


@pytest.mark.parametrize("kind", ["appointment_set", "appointment_changed", "appointment_reminder"])
@pytest.mark.parametrize(
    ("language", "when", "ready"),
    [
        ("en", "We will be with you at 08:00 on Thursday 10 December", "Before we come:"),
        (
            "es",
            "Estaremos con usted a las 08:00 el jueves 10 de diciembre",
            "Antes de que vayamos:",
        ),
    ],
)
def test_a_visit_says_when_we_come_and_what_to_have_ready(kind, language, when, ready):
    customer = UserFactory(profile__language=language, profile__time_zone="Europe/London")
    journey = make_journey(owner=customer)
    message = rendered(customer, journey, engineer(journey), kind)
    for part in (message.text, message.html):
        assert when in part
        assert ready in part
        assert "Please arrive" not in part and "Llegue" not in part
        assert "Bring:" not in part and "Traiga:" not in part


def test_an_appointment_the_customer_goes_to_still_asks_them_to_arrive_and_bring():
    customer = UserFactory(profile__time_zone="Europe/London")
    journey = make_journey(owner=customer)
    message = rendered(customer, journey, engineer(journey, visit=False), "appointment_set")
    assert "Please arrive at 08:00 on Thursday 10 December" in message.text
    assert "Bring: An adult at home" in message.text


def test_a_cancelled_visit_does_not_tell_the_customer_not_to_come():
    customer = UserFactory(profile__time_zone="Europe/London")
    journey = make_journey(owner=customer)
    message = rendered(customer, journey, engineer(journey), "appointment_cancelled")
    assert "We have cancelled our visit at 08:00 on Thursday 10 December" in message.text
    assert "no need to come" not in message.text + message.html


def test_the_journey_page_says_when_we_come_to_its_owner_and_a_viewer(client, customer):
    from accounts.models import JourneyShare

    journey = make_journey(owner=customer)
    engineer(journey)
    viewer = UserFactory()
    JourneyShare.objects.create(
        journey=journey, email=viewer.email, invited_by=customer, viewer=viewer, accepted_at=NOW
    )
    page = reverse("journey:detail", kwargs={"reference": journey.reference})
    with time_machine.travel(NOW, tick=False):
        client.force_login(customer)
        owner = " ".join(client.get(page).content.decode().split())
        client.force_login(viewer)
        seen = " ".join(client.get(page).content.decode().split())
    assert "We will be with you at 08:00 on" in owner
    assert "<strong>Before we come:</strong>" in owner
    assert "Visit at 08:00 on" in seen and "We will be with you" not in seen
    assert "<strong>Before the visit:</strong>" in seen


def test_a_partner_books_a_visit_and_turns_one_into_a_visit(api, journey):
    from django.utils import timezone

    from notifications.models import Notification

    listing = reverse("api:journey-appointments", kwargs={"reference": journey.reference})
    starts = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    body = {"title": "Delivery", "starts_at": starts.isoformat(), "place_name": "Your home"}
    # JSON's true or false only: "yes" is a client's mistake, not a yes.
    refused = api.post(listing, {**body, "visit": "yes"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {"visit": ["Must be true or false."]}
    assert not Appointment.objects.exists()

    booked = api.post(listing, body, format="json").json()
    assert booked["visit"] is False
    Notification.objects.update(state="sent", sent_at=timezone.now())  # heard of it
    one = reverse(
        "api:journey-appointment", kwargs={"reference": journey.reference, "pk": booked["id"]}
    )
    changed = api.patch(one, {"visit": True}, format="json")
    assert changed.status_code == 200 and changed.json()["visit"] is True
    # What the customer is asked to do changed: they are told, as of a new place.
    (told,) = Notification.objects.filter(kind="appointment_changed", channel="email")
    assert told.context["visit"] is True
    assert "We will be with you at" in render(told).text
