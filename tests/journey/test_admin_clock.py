"""The appointment admin reads its date and time boxes on the place's clock only: a time
the staff member's own clock skips is taken if the place has it, and one the place's
clock skips or repeats is refused with a plain message (from a staff review)."""

from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.mfa import totp_activate
from journey.models import Appointment
from tests.admin_pages import page_data
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_in_new_york(client):
    user = UserFactory(is_staff=True, is_superuser=True, profile__time_zone="America/New_York")
    totp_activate(user=user)
    client.force_login(user)
    return user


@pytest.fixture
def appointment(journey) -> Appointment:
    starts = (timezone.now() + timedelta(days=5)).replace(second=0, microsecond=0)
    return Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=starts,
        arrive_at=starts,
        place_name="Showroom",
        time_zone="Europe/London",
    )


def move_to(client, journey, day: str, time: str):
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    data["appointments-0-starts_at_0"], data["appointments-0-starts_at_1"] = day, time
    data["appointments-0-arrive_at_0"], data["appointments-0-arrive_at_1"] = day, time
    return client.post(url, data)


def test_a_time_the_staff_members_clock_skips_is_taken_on_the_places(
    client, staff_in_new_york, journey, appointment
):
    # 02:30 on 14 March 2027 does not exist in New York (clocks go forward at 02:00);
    # in London, the appointment's place, it is an ordinary night.
    response = move_to(client, journey, "2027-03-14", "02:30:00")
    assert response.status_code == 302
    appointment.refresh_from_db()
    london = appointment.zone
    assert appointment.starts_at == datetime(2027, 3, 14, 2, 30, tzinfo=london)


@pytest.mark.parametrize(
    "day",
    [
        "2027-03-28",  # London's clocks go forward at 01:00: 01:30 does not exist there
        "2027-10-31",  # and go back at 02:00: 01:30 happens twice
    ],
)
def test_a_time_the_places_clock_skips_or_repeats_is_refused_and_nothing_changes(
    client, staff_in_new_york, journey, appointment, day
):
    before = (appointment.starts_at, appointment.arrive_at)
    response = move_to(client, journey, day, "01:30:00")
    assert response.status_code == 200
    formset = next(
        inline.formset
        for inline in response.context["inline_admin_formsets"]
        if inline.formset.model is Appointment
    )
    message = (
        "The clocks change at that time in Europe/London, so it does not exist or happens "
        "twice there: choose another time."
    )
    assert formset.forms[0].errors == {"starts_at": [message], "arrive_at": [message]}
    appointment.refresh_from_db()
    assert (appointment.starts_at, appointment.arrive_at) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [("address", "1 New Street\nLeeds"), ("visit", "on"), ("time_zone", "Europe/Madrid")],
)
def test_staff_changing_where_or_who_comes_tell_the_customer_as_a_partner_does(
    client,
    staff_in_new_york,
    journey,
    appointment,
    field,
    value,
    django_capture_on_commit_callbacks,
):
    """The admin had its own list of what is told (the times and the place's name): a new
    address or a visit told nobody, where the partner API's PATCH tells the customer."""
    from notifications.models import Notification

    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    data[f"appointments-0-{field}"] = value
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, data).status_code == 302
    assert Notification.objects.filter(kind="appointment_changed", channel="email").count() == 1


def test_internal_words_in_an_appointment_are_a_form_error(
    client, staff_in_new_york, journey, appointment, settings
):
    settings.JARGON_TERMS = ["WMS"]
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    data["appointments-0-what_to_bring"] = "Your WMS slip"
    response = client.post(url, data)
    assert response.status_code == 200
    formset = next(
        inline.formset
        for inline in response.context["inline_admin_formsets"]
        if inline.formset.model is Appointment
    )
    assert formset.forms[0].errors == {
        "what_to_bring": ["“WMS” is an internal term: customers would not understand it."]
    }
    appointment.refresh_from_db()
    assert appointment.what_to_bring == ""
