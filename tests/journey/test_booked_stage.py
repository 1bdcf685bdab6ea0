"""An appointment booked for a stage (a handover, an installation): the customer reads
that stage booked for the appointment's day, not a forecast of it (a user's walk-through:
the header said "expected 15 Dec" under a handover booked for the 20th)."""

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from journey.errors import ApplicationError
from journey.eta import eta_recompute_all, eta_recompute_many
from journey.forms import AppointmentAdminForm
from journey.models import (
    Appointment,
    EtaCause,
    Health,
    Journey,
    Milestone,
    StageDefinition,
)
from journey.services import (
    journey_appointment_cancel,
    journey_appointment_create,
    journey_appointment_update,
)
from notifications.channels import render
from notifications.models import Notification
from tests.factories import PASSWORD, make_journey
from tests.journey.test_views import detail_url, reach

pytestmark = pytest.mark.django_db


def book(journey, key: str, *, days: int = 20) -> Appointment:
    """Booked for the stage ``key``, at 10:00 in Madrid ``days`` from now."""
    day = timezone.localdate() + timedelta(days=days)
    starts = datetime.combine(day, time(10), tzinfo=ZoneInfo("Europe/Madrid"))
    return journey_appointment_create(
        journey=journey,
        title="Handover",
        starts_at=starts,
        place_name="Showroom",
        time_zone="Europe/Madrid",
        milestone=journey.milestones.get(stage__key=key),
    )


def test_the_last_stage_booked_is_told_by_its_day_everywhere_on_the_page(client, customer):
    journey = make_journey(owner=customer, stages=4)
    for key in ("stage-1", "stage-2", "stage-3"):
        reach(journey, key)
    appointment = book(journey, "stage-4")
    day = timezone.localtime(appointment.arrive_at, appointment.zone).date()
    Milestone.objects.filter(journey=journey, stage__key="stage-4").update(
        expected_date=day - timedelta(days=3)
    )
    client.login(email=customer.email, password=PASSWORD)
    html = client.get(detail_url(journey)).content.decode()
    weekday_day_month = f"{day:%A} {day.day} {day:%B}"
    # The header: the next stage, the journey's date and its words.
    assert f'<a href="#appointment-{appointment.pk}">booked for {weekday_day_month}</a>' in html
    assert f"<dt>Booked for</dt><dd>{day.day} {day:%B %Y}</dd>" in html
    assert f"Stage 4 is booked for {weekday_day_month}." in html
    assert "most likely between" not in html
    # The timeline's step.
    assert f">Booked for {day.day} {day:%b}</a>" in html
    assert "running late" not in html
    # The journeys list says the same.
    home = client.get(reverse("journey:home")).content.decode()
    assert f"<dt>Booked for</dt><dd>{day.day} {day:%b %Y}</dd>" in home
    assert f"Stage 4 is booked for {weekday_day_month}." in home
    # In Spanish too.
    customer.profile.language = "es"
    customer.profile.save()
    html = client.get(detail_url(journey)).content.decode()
    assert "<dt>Fecha de la cita</dt>" in html and "Con cita el " in html


def test_a_forecast_after_the_booked_day_is_said_with_it(client, customer):
    journey = make_journey(owner=customer, stages=4)
    appointment = book(journey, "stage-4", days=5)
    day = timezone.localtime(appointment.arrive_at, appointment.zone).date()
    Milestone.objects.filter(journey=journey, stage__key="stage-4").update(
        expected_date=day + timedelta(days=4)
    )
    client.login(email=customer.email, password=PASSWORD)
    html = client.get(detail_url(journey)).content.decode()
    later = day + timedelta(days=4)
    assert f"running late (now expected {later.day} {later:%b})" in html
    assert "if the booking has to move, we will tell you" in html


def test_a_stage_reached_is_told_as_reached_and_an_unbooked_one_as_expected(client, customer):
    journey = make_journey(owner=customer, stages=4)
    book(journey, "stage-1")
    reach(journey, "stage-1")
    client.login(email=customer.email, password=PASSWORD)
    html = client.get(detail_url(journey)).content.decode()
    assert "Booked for" not in html and "booked for" not in html
    assert "<dt>Expected</dt>" in html


def test_bookings_cost_the_page_no_query(client, customer, django_assert_num_queries):
    """As many queries rendered as without: the appointments are read for the page
    anyway, and their stages are its milestones. The journeys list reads the bookings
    of all its journeys in one."""
    journey = make_journey(owner=customer, stages=4)
    drive = timezone.now() + timedelta(days=2)
    Appointment.objects.create(  # not booked for a stage: the page reads appointments
        journey=journey, title="Test drive", starts_at=drive, arrive_at=drive, place_name="X"
    )
    client.login(email=customer.email, password=PASSWORD)
    client.get(reverse("journey:home"))  # warm the session
    with CaptureQueriesContext(connection) as unbooked:
        assert client.get(detail_url(journey)).status_code == 200
    with CaptureQueriesContext(connection) as home_unbooked:
        client.get(reverse("journey:home"))
    book(journey, "stage-4")
    book(journey, "stage-2", days=3)
    make_journey(owner=customer, stages=2)  # a second journey listed, with no booking
    with django_assert_num_queries(len(unbooked.captured_queries)):
        html = client.get(detail_url(journey)).content.decode()
    assert html.count("Booked for") == 3  # two steps and the journey's date
    with django_assert_num_queries(len(home_unbooked.captured_queries)):
        assert "Booked for" in client.get(reverse("journey:home")).content.decode()


def test_an_appointment_is_booked_for_a_stage_of_its_own_journey_only(customer):
    journey, other = make_journey(owner=customer), make_journey()
    with pytest.raises(ApplicationError) as refused:
        journey_appointment_create(
            journey=journey,
            title="Handover",
            starts_at=timezone.now() + timedelta(days=3),
            place_name="Showroom",
            milestone=other.milestones.get(stage__key="stage-1"),
        )
    assert "milestone" in refused.value.fields
    appointment = book(journey, "stage-2")
    with pytest.raises(ApplicationError):
        journey_appointment_update(
            appointment=appointment, milestone=other.milestones.get(stage__key="stage-2")
        )
    moved = journey_appointment_update(
        appointment=appointment, milestone=journey.milestones.get(stage__key="stage-3")
    )
    assert moved.milestone.stage.key == "stage-3"
    assert journey_appointment_update(appointment=moved, milestone=None).milestone is None


def test_the_admin_offers_the_journeys_own_stages_its_customer_sees(customer):
    journey = make_journey(owner=customer, stages=3)
    make_journey(stages=3)  # another journey's stages are not offered
    hidden = journey.milestones.get(stage__key="stage-2").stage
    hidden.customer_visible = False
    hidden.save()
    form = AppointmentAdminForm(instance=Appointment(journey=journey))
    field = form.fields["milestone"]
    assert [field.label_from_instance(m) for m in field.queryset] == ["Stage 1", "Stage 3"]
    # Whatever form saves it: another journey's stage is an error on the field.
    other = make_journey().milestones.first()
    appointment = Appointment(journey=journey, milestone=other, starts_at=timezone.now())
    with pytest.raises(ValidationError) as refused:
        appointment.clean()
    assert "milestone" in refused.value.message_dict


def test_a_stage_reached_already_is_not_booked_but_a_booking_made_before_stays(api, journey):
    """A booking says when a stage is to come: one reached already (done, or the
    journey's stage now) would show it nowhere (the API answered 201 for one before)."""
    kept = book(journey, "stage-2")
    reach(journey, "stage-2")
    reach(journey, "stage-3")  # stages 1 and 2 done, 3 reached: the journey's now
    path = reverse("api:journey-appointments", kwargs={"reference": journey.reference})
    starts = (timezone.now() + timedelta(days=9)).replace(microsecond=0).isoformat()
    body = {"title": "Visit", "starts_at": starts, "place_name": "Home"}
    for key in ("stage-1", "stage-3"):
        reached = api.post(path, body | {"milestone": key}, format="json")
        assert reached.status_code == 400
        assert reached.json()["error"]["code"] == "stage_reached"
        assert reached.json()["error"]["fields"] == {"milestone": ["Reached already."]}
    assert Appointment.objects.count() == 1
    assert api.post(path, body | {"milestone": "stage-4"}, format="json").status_code == 201
    # The booking made before its stage was reached keeps it through other changes...
    one = reverse("api:journey-appointment", kwargs={"reference": journey.reference, "pk": kept.pk})
    renamed = api.patch(one, {"title": "Second visit", "milestone": "stage-2"}, format="json")
    assert renamed.status_code == 200, renamed.json()
    assert renamed.json()["milestone"] == "stage-2"
    # ...but is not moved to another stage reached already.
    with pytest.raises(ApplicationError) as refused:
        journey_appointment_update(
            appointment=kept, milestone=journey.milestones.get(stage__key="stage-1")
        )
    assert refused.value.code == "stage_reached"
    # The admin offers the stages to come, and the one booked already.
    choices = AppointmentAdminForm(instance=kept).fields["milestone"].queryset
    assert [m.stage.key for m in choices] == ["stage-2", "stage-4"]
    new = AppointmentAdminForm(instance=Appointment(journey=journey)).fields["milestone"]
    assert [m.stage.key for m in new.queryset] == ["stage-4"]


def test_a_partner_books_an_appointment_for_a_stage_by_its_key(api, journey):
    path = reverse("api:journey-appointments", kwargs={"reference": journey.reference})
    starts = (timezone.now() + timedelta(days=9)).replace(microsecond=0).isoformat()
    body = {"title": "Handover", "starts_at": starts, "place_name": "Showroom"}
    booked = api.post(path, body | {"milestone": "stage-4"}, format="json")
    assert booked.status_code == 201, booked.json()
    assert booked.json()["milestone"] == "stage-4"
    assert Appointment.objects.get().milestone.stage.key == "stage-4"
    unknown = api.post(path, body | {"milestone": "handover"}, format="json")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["fields"] == {"milestone": ["Unknown stage."]}
    # A stage the customer does not see: the booking would be shown nowhere.
    StageDefinition.objects.filter(template=journey.template, key="stage-2").update(
        customer_visible=False
    )
    hidden = api.post(path, body | {"milestone": "stage-2"}, format="json")
    assert hidden.status_code == 400
    assert hidden.json()["error"]["code"] == "hidden_stage"
    assert hidden.json()["error"]["fields"] == {"milestone": ["Hidden from the customer."]}
    assert Appointment.objects.count() == 1
    plain = api.post(path, body, format="json")
    assert plain.status_code == 201 and plain.json()["milestone"] is None
    one = reverse(
        "api:journey-appointment",
        kwargs={"reference": journey.reference, "pk": booked.json()["id"]},
    )
    cleared = api.patch(one, {"milestone": None}, format="json")
    assert cleared.status_code == 200 and cleared.json()["milestone"] is None
    moved = api.patch(one, {"milestone": "stage-3"}, format="json")
    assert moved.json()["milestone"] == "stage-3"
    listed = api.get(path).json()
    assert [a["milestone"] for a in listed] == ["stage-3", None]


def test_stages_after_a_booked_one_are_not_expected_before_its_day(client, customer):
    """A walk-through moved the fibre install to the 20th: the page still said
    "Connected, expected 12 Dec" and the journey "Expected 12 December". The ETA itself
    puts a booked stage on its booking's day at the earliest, and moves the stages after
    it, and the journey's range, later by as much (a walk-through read "Connected,
    expected 20 Jan", the install's own day, and a range of one day): the page, the
    admin, the dashboard and the delay message all read it."""
    today = timezone.localdate()
    journey = make_journey(owner=customer, stages=4, promised_date=today + timedelta(days=10))
    forecast = dict(journey.milestones.values_list("stage__key", "expected_date"))
    before = (journey.eta, journey.eta_low, journey.eta_high)
    assert journey.eta < today + timedelta(days=10)  # the forecast: well before
    appointment = book(journey, "stage-2", days=20)
    day = appointment.day
    shift = day - forecast["stage-2"]
    assert shift > timedelta(days=5)
    journey.refresh_from_db()
    expected = dict(journey.milestones.values_list("stage__key", "expected_date"))
    assert expected == forecast | {
        key: forecast[key] + shift for key in ("stage-2", "stage-3", "stage-4")
    }
    assert expected["stage-2"] == day < expected["stage-3"] < expected["stage-4"]
    assert (journey.eta, journey.eta_low, journey.eta_high) == tuple(d + shift for d in before)
    assert journey.health == Health.DELAYED
    assert journey.eta_estimates.latest("computed_at").cause == EtaCause.BOOKING
    # Booked past the promise: the customer is told of the delay, once, with the date.
    delayed = Notification.objects.get(kind="journey_delayed", channel="email")
    eta = journey.eta
    assert delayed.context["eta"] == eta.isoformat()
    assert delayed.context["booked"] is True
    text = render(delayed).text
    assert f"We now expect it on {eta.day} {eta:%B %Y}, given the day of its appointment." in text

    client.login(email=customer.email, password=PASSWORD)
    html = client.get(detail_url(journey)).content.decode()
    steps = re.findall(r'class="step__when">\s*(.*?)\s*</p>', html, re.S)
    assert steps[-2:] == [f"Expected {d.day} {d:%b}" for d in (expected["stage-3"], eta)]
    assert f"<dt>Expected</dt><dd>{eta.day} {eta:%B %Y}</dd>" in html
    assert "health--delayed" in html and "health--on_track" not in html

    # An event that moves the journey, and the nightly recompute, keep the booking.
    reach(journey, "stage-1")
    eta_recompute_all()
    journey.refresh_from_db()
    assert journey.health == Health.DELAYED
    assert journey.milestones.get(stage__key="stage-2").expected_date == day
    assert journey.milestones.get(stage__key="stage-3").expected_date > day
    assert Notification.objects.filter(kind="journey_delayed", channel="email").count() == 1

    # Moved five days sooner: so is the journey.
    later_eta = journey.eta
    sooner = journey_appointment_update(
        appointment=appointment, starts_at=appointment.starts_at - timedelta(days=5)
    )
    journey.refresh_from_db()
    assert journey.eta == later_eta - timedelta(days=5)
    assert journey.milestones.get(stage__key="stage-2").expected_date == sooner.day
    # Cancelled: the forecast alone again, back within the promise.
    journey_appointment_cancel(appointment=sooner)
    journey.refresh_from_db()
    assert journey.eta < today + timedelta(days=10)
    assert journey.health != Health.DELAYED
    # Told it was late: told it is back on time, with the date.
    [on_time] = Notification.objects.filter(kind="journey_on_time", channel="email")
    assert on_time.context["eta"] == journey.eta.isoformat()


def told(kind: str) -> list[str]:
    return list(
        Notification.objects.filter(kind=kind, channel="email")
        .order_by("created_at", "pk")
        .values_list("context__eta", flat=True)
    )


def test_a_booking_moved_there_and_back_twice_is_told_each_time(customer):
    """A reviewer's flap: late, back on time, late again on the same date. With a key
    per (promise, date) the second delay was taken for the first and dropped, and "back
    on time" stayed the last word on a journey that was late."""
    today = timezone.localdate()
    journey = make_journey(owner=customer, stages=4, promised_date=today + timedelta(days=10))
    for _ in range(2):
        appointment = book(journey, "stage-2", days=20)
        appointment.journey.refresh_from_db()
        assert appointment.journey.health == Health.DELAYED
        journey_appointment_cancel(appointment=appointment)
        journey.refresh_from_db()
        assert journey.health != Health.DELAYED
    late, on_time = told("journey_delayed"), told("journey_on_time")
    assert len(late) == len(on_time) == 2
    assert late[0] == late[1] and on_time[0] == on_time[1] == journey.eta.isoformat()
    kinds = Notification.objects.filter(channel="email", kind__startswith="journey_")
    assert list(kinds.order_by("created_at", "pk").values_list("kind", flat=True)) == [
        "journey_delayed",
        "journey_on_time",
        "journey_delayed",
        "journey_on_time",
    ]
    # The kind switched off since: a third delay goes untold, so its undoing too (the
    # latest delay message is the second's, not this one's).
    journey.template.disabled_notifications = ["journey_delayed"]
    journey.template.save()
    journey_appointment_cancel(appointment=book(journey, "stage-2", days=25))
    assert len(told("journey_delayed")) == len(told("journey_on_time")) == 2


def test_no_back_on_time_for_a_delay_never_told_or_a_promise_moved_to_cover_it(customer):
    """Only a delay whose message was written is undone in words (a template may switch
    the kind off), and "as we promised" only within the promise the delay was told
    against, not one staff moved later to cover it."""
    today = timezone.localdate()
    journey = make_journey(owner=customer, stages=4, promised_date=today + timedelta(days=10))
    journey.template.disabled_notifications = ["journey_delayed"]
    journey.template.save()
    journey_appointment_cancel(appointment=book(journey, "stage-2", days=20))
    assert told("journey_delayed") == told("journey_on_time") == []

    journey.template.disabled_notifications = []
    journey.template.save()
    appointment = book(journey, "stage-2", days=20)
    journey.refresh_from_db()
    late = journey.eta
    assert told("journey_delayed") == [late.isoformat()]
    # Staff move the promise past the new date and the booking three days sooner (one
    # save): sooner than told, but later than the promise the customer was told of.
    Journey.objects.filter(pk=journey.pk).update(promised_date=late + timedelta(days=5))
    journey_appointment_update(
        appointment=appointment, starts_at=appointment.starts_at - timedelta(days=3)
    )
    journey.refresh_from_db()
    assert journey.health != Health.DELAYED and journey.eta == late - timedelta(days=3)
    assert told("journey_on_time") == []


def test_the_booking_is_the_latest_on_its_places_clock_until_its_stage_is_reached(customer):
    """A booking at 20:00 in Los Angeles is the next day in UTC and in London: the stage
    is reached on the day its customer was told, the place's. Of two bookings for one
    stage, the latest sets it; once that stage is reached, the forecast alone again."""
    journey = make_journey(owner=customer, stages=4)
    evening = datetime.combine(
        timezone.localdate() + timedelta(days=15), time(20), tzinfo=ZoneInfo("America/Los_Angeles")
    )
    booked = journey_appointment_create(
        journey=journey,
        title="Handover",
        starts_at=evening,
        place_name="Showroom",
        time_zone="America/Los_Angeles",
        milestone=journey.milestones.get(stage__key="stage-3"),
    )
    stage_3 = journey.milestones.get(stage__key="stage-3")
    assert booked.day == evening.date() != timezone.localtime(evening).date()
    assert stage_3.expected_date == evening.date()
    earlier = book(journey, "stage-3", days=10)
    stage_3.refresh_from_db()
    assert stage_3.expected_date == evening.date()  # the latest of the two
    journey_appointment_cancel(appointment=booked)
    stage_3.refresh_from_db()
    assert stage_3.expected_date == earlier.day
    reach(journey, "stage-3")
    journey.refresh_from_db()
    assert journey.eta < earlier.day


def test_a_batch_of_journeys_reads_each_ones_bookings(customer):
    """Journeys read together (the nightly recompute's, a batch's) bring each its own."""
    booked, free = make_journey(owner=customer), make_journey(owner=customer)
    appointment = book(booked, "stage-4", days=25)
    Journey.objects.filter(pk=booked.pk).update(eta=timezone.localdate())  # forgotten
    eta_recompute_many(pks=[booked.pk, free.pk], cause=EtaCause.NIGHTLY)
    booked.refresh_from_db()
    free.refresh_from_db()
    assert booked.eta == appointment.day
    assert free.eta < appointment.day


def test_a_viewer_reads_that_a_new_time_is_agreed_with_the_owner(client, customer):
    from accounts.models import JourneyShare
    from tests.factories import UserFactory

    journey = make_journey(owner=customer, stages=4)
    appointment = book(journey, "stage-4", days=5)
    day = timezone.localtime(appointment.arrive_at, appointment.zone).date()
    Milestone.objects.filter(journey=journey, stage__key="stage-4").update(
        expected_date=day + timedelta(days=2)
    )
    viewer = UserFactory()
    JourneyShare.objects.create(
        journey=journey,
        email=viewer.email,
        invited_by=customer,
        viewer=viewer,
        accepted_at=timezone.now(),
    )
    client.force_login(viewer)
    html = client.get(detail_url(journey)).content.decode()
    assert html.count("we will agree a new time with the owner") == 2
    assert "agree a new time with you" not in html
