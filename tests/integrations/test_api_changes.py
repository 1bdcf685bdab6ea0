"""Partners change, withdraw and cancel the tasks and appointments they set: one of them
read back, changed (PATCH) or taken back (DELETE), with what the customer is told."""

from datetime import timedelta

import icalendar
import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from integrations.models import IdempotencyRecord
from integrations.sandbox import sandbox_journey_create
from journey.calendar import appointment_ics, appointment_uid
from journey.models import (
    Appointment,
    CustomerTask,
    Journey,
    RescheduleRequest,
    RescheduleState,
)
from notifications.models import Notification
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
DAY = timezone.now().date() + timedelta(days=10)
# Ten days on, at 10:00 UTC (11:00 in Madrid, the place's clock), arriving 15 minutes early.
START = timezone.now().replace(hour=10, minute=0, second=0, microsecond=0) + timedelta(days=10)


def url(name: str, journey: Journey, pk: int) -> str:
    return reverse(f"api:journey-{name}", kwargs={"reference": journey.reference, "pk": pk})


def state() -> dict[str, object]:
    """Everything a refused change might have written."""
    return {
        "tasks": list(CustomerTask.objects.values_list("pk", "title", "description", "due_date")),
        "appointments": list(
            Appointment.objects.values_list(
                "pk", "title", "starts_at", "arrive_at", "duration", "place_name", "time_zone"
            )
        ),
        "requests": list(RescheduleRequest.objects.values_list("pk", "state")),
        "notifications": Notification.objects.count(),
        "versions": list(Journey.objects.values_list("pk", "version")),
    }


def told(kind: str) -> list[Notification]:
    return list(Notification.objects.filter(kind=kind, channel="email").order_by("id"))


@pytest.fixture
def task(journey) -> CustomerTask:
    return CustomerTask.objects.create(
        journey=journey, title="Send your insurance certificate", due_date=DAY
    )


@pytest.fixture
def booked(journey) -> Appointment:
    return Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=START,
        arrive_at=START - timedelta(minutes=15),
        duration=timedelta(minutes=60),
        place_name="Iberia Motors Madrid",
        address="Calle Mayor 1\nMadrid",
        time_zone="Europe/Madrid",
    )


# --- Tasks --------------------------------------------------------------------------------


def test_a_task_is_read_back_alone_as_the_list_has_it(api, journey, task):
    one = api.get(url("task", journey, task.pk))
    listed = api.get(reverse("api:journey-tasks", kwargs={"reference": journey.reference}))
    assert one.status_code == 200
    assert [one.json()] == listed.json()


def test_a_task_is_changed_without_a_message_to_the_customer(api, journey, task):
    due = (DAY + timedelta(days=7)).isoformat()
    response = api.patch(
        url("task", journey, task.pk),
        {"title": "Send the green card", "description": "Before the handover.", "due_date": due},
        format="json",
    )
    assert response.status_code == 200
    task.refresh_from_db()
    assert (task.title, task.description, task.due_date.isoformat()) == (
        "Send the green card",
        "Before the handover.",
        due,
    )
    assert response.json() == api.get(url("task", journey, task.pk)).json()
    assert response.json()["due_date"] == due
    # The reminders are keyed by the due date: the new date is reminded of when it nears.
    assert Notification.objects.count() == 0


def test_a_tasks_due_date_is_cleared_with_null(api, journey, task):
    response = api.patch(url("task", journey, task.pk), {"due_date": None}, format="json")
    assert (response.status_code, response.json()["due_date"]) == (200, None)
    assert CustomerTask.objects.get().due_date is None


def test_a_task_gone_overdue_can_still_be_retitled_and_sent_back_whole(api, journey):
    overdue = CustomerTask.objects.create(
        journey=journey, title="Sign", due_date=timezone.now().date() - timedelta(days=3)
    )
    body = api.get(url("task", journey, overdue.pk)).json()
    sent_back = {key: body[key] for key in ("title", "description", "due_date")}
    response = api.patch(
        url("task", journey, overdue.pk), {**sent_back, "title": "Sign the order"}, format="json"
    )
    assert response.status_code == 200
    assert CustomerTask.objects.get().title == "Sign the order"


TWO_DAYS_AGO = (timezone.now().date() - timedelta(days=2)).isoformat()
WRONG_DATE = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"title": ""}, {"title": ["This field may not be blank."]}),
        ({"title": "   "}, {"title": ["This field may not be blank."]}),
        ({"title": 5}, {"title": ["Must be a string."]}),
        ({"due_date": "soon"}, {"due_date": [WRONG_DATE]}),
        ({"due_date": TWO_DAYS_AGO}, {"due_date": ["Before today."]}),
        ({"due_date": "9999-12-31"}, {"due_date": ["More than two years ahead."]}),
        (
            {"description": "x" * 2001},
            {"description": ["Ensure this field has no more than 2000 characters."]},
        ),
        ({"done_at": "2026-12-01T10:00:00Z"}, {"done_at": ["Read back only: it cannot be set."]}),
        ({"id": 7}, {"id": ["Read back only: it cannot be set."]}),
        ({"due": "2027-01-10"}, {"due": ["Not a field of this request."]}),
    ],
)
def test_a_bad_task_change_is_refused_naming_the_field(api, journey, task, body, fields):
    before = state()
    response = api.patch(url("task", journey, task.pk), body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert response.json()["error"]["fields"] == fields
    assert state() == before


def test_internal_words_in_a_task_are_refused(api, journey, task, settings):
    settings.JARGON_TERMS = ["WMS"]
    before = state()
    response = api.patch(
        url("task", journey, task.pk), {"description": "Scan the WMS label"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "jargon",
        "message": "“WMS” is an internal term: customers would not understand it.",
        "fields": {
            "description": ["“WMS” is an internal term: customers would not understand it."]
        },
    }
    assert state() == before


def test_internal_words_in_an_appointment_are_refused_as_in_a_task(api, journey, booked, settings):
    settings.JARGON_TERMS = ["WMS"]
    words = "“WMS” is an internal term: customers would not understand it."
    before = state()
    changed = api.patch(
        url("appointment", journey, booked.pk),
        {"what_to_bring": "Your WMS slip"},
        format="json",
    )
    assert changed.status_code == 400
    assert changed.json()["error"]["fields"] == {"what_to_bring": [words]}
    listing = reverse("api:journey-appointments", kwargs={"reference": journey.reference})
    body = {"title": "WMS handover", "starts_at": START.isoformat(), "place_name": "Madrid"}
    booked_too = api.post(listing, body, format="json")
    assert booked_too.status_code == 400
    assert booked_too.json()["error"]["fields"] == {"title": [words]}
    assert state() == before


DONE = {
    "error": {
        "code": "conflict",
        "message": "The customer has done this task: it can no longer be changed or withdrawn.",
        "fields": {"done_at": ["Done already."]},
    }
}


def test_a_done_task_is_neither_changed_nor_withdrawn(api, journey, task):
    CustomerTask.objects.filter(pk=task.pk).update(done_at=timezone.now())
    before = state()
    changed = api.patch(url("task", journey, task.pk), {"title": "Again"}, format="json")
    withdrawn = api.delete(url("task", journey, task.pk))
    assert (changed.status_code, changed.json()) == (409, DONE)
    assert (withdrawn.status_code, withdrawn.json()) == (409, DONE)
    assert state() == before


def test_a_task_is_withdrawn_silently(api, journey, task):
    response = api.delete(url("task", journey, task.pk))
    assert (response.status_code, response.content) == (204, b"")
    assert CustomerTask.objects.count() == 0
    assert Notification.objects.count() == 0
    again = api.delete(url("task", journey, task.pk))
    assert (again.status_code, again.json()) == (404, NOT_FOUND)


# --- Appointments -------------------------------------------------------------------------


def test_an_appointment_is_read_back_alone_as_the_list_has_it(api, journey, booked):
    one = api.get(url("appointment", journey, booked.pk))
    path = reverse("api:journey-appointments", kwargs={"reference": journey.reference})
    assert one.status_code == 200
    assert [one.json()] == api.get(path).json()


def test_moving_an_appointment_tells_the_customer_once_and_answers_their_request(
    api, journey, booked, customer, django_capture_on_commit_callbacks
):
    asked = RescheduleRequest.objects.create(
        appointment=booked, requested_by=customer, first_choice=START + timedelta(days=1)
    )
    # The file the customer had, sent a minute before the move.
    earlier_file = appointment_ics(
        booked, company="Milepost Motors", now=timezone.now() - timedelta(minutes=1)
    )
    later = START + timedelta(days=1)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.patch(
            url("appointment", journey, booked.pk), {"starts_at": later.isoformat()}, format="json"
        )

    assert response.status_code == 200
    booked.refresh_from_db()
    # The arrival moves with the start: still a quarter of an hour before it.
    assert (booked.starts_at, booked.arrive_at) == (later, later - timedelta(minutes=15))
    assert response.json()["arrive_at"] == (later - timedelta(minutes=15)).isoformat().replace(
        "+00:00", "Z"
    )
    asked.refresh_from_db()
    assert asked.state == RescheduleState.HANDLED
    (notification,) = told("appointment_changed")
    assert notification.context["arrive_at"] == (later - timedelta(minutes=15)).isoformat()
    (message,) = mail.outbox
    assert message.subject.startswith("Changed: Handover, ")
    (name, content, mimetype) = message.attachments[0]
    assert (name, mimetype) == ("appointment.ics", "text/calendar")
    event = icalendar.Calendar.from_ical(content).walk("VEVENT")[0]
    before = icalendar.Calendar.from_ical(earlier_file).walk("VEVENT")[0]
    # The same entry, replaced: its UID, a higher SEQUENCE.
    assert str(event["uid"]) == str(before["uid"]) == appointment_uid(booked.pk)
    assert int(event["sequence"]) > int(before["sequence"])
    assert event["organizer"] == before["organizer"]
    assert event.decoded("dtstart") == later - timedelta(minutes=15)


def test_an_arrival_sent_with_a_new_start_is_kept(api, journey, booked):
    later = START + timedelta(hours=3)
    arrive = later - timedelta(minutes=40)
    response = api.patch(
        url("appointment", journey, booked.pk),
        {"starts_at": later.isoformat(), "arrive_at": arrive.isoformat()},
        format="json",
    )
    assert response.status_code == 200
    booked.refresh_from_db()
    assert (booked.starts_at, booked.arrive_at) == (later, arrive)
    assert len(told("appointment_changed")) == 1


def test_an_appointment_sent_back_as_it_is_changes_nothing_and_tells_nothing(api, journey, booked):
    body = api.get(url("appointment", journey, booked.pk)).json()
    del body["id"]
    before = state()
    whole = api.patch(url("appointment", journey, booked.pk), body, format="json")
    empty = api.patch(url("appointment", journey, booked.pk), {}, format="json")
    assert (whole.status_code, empty.status_code) == (200, 200)
    assert whole.json() == empty.json() == {**body, "id": booked.pk}
    assert state() == before  # not even the journey's version moved


@pytest.mark.parametrize(
    "change",
    [
        {"place_name": "Iberia Motors Toledo"},
        {"address": "Calle Ancha 2\nToledo"},
        {"time_zone": "Atlantic/Canary"},
        {"arrive_at": (START - timedelta(minutes=30)).isoformat()},
    ],
)
def test_a_new_place_zone_or_arrival_is_told(api, journey, booked, change):
    response = api.patch(url("appointment", journey, booked.pk), change, format="json")
    assert response.status_code == 200
    assert len(told("appointment_changed")) == 1


def test_what_does_not_say_when_or_where_is_changed_untold(api, journey, booked, customer):
    asked = RescheduleRequest.objects.create(
        appointment=booked, requested_by=customer, first_choice=START + timedelta(days=1)
    )
    response = api.patch(
        url("appointment", journey, booked.pk),
        {"title": "Your handover", "what_to_bring": "Your licence", "duration_minutes": 90},
        format="json",
    )
    assert response.status_code == 200
    booked.refresh_from_db()
    assert (booked.title, booked.what_to_bring, booked.duration) == (
        "Your handover",
        "Your licence",
        timedelta(minutes=90),
    )
    assert Notification.objects.count() == 0
    asked.refresh_from_db()
    assert asked.state == RescheduleState.OPEN  # the time did not move: still to answer


def test_moving_it_back_is_told_too(api, journey, booked):
    path = url("appointment", journey, booked.pk)
    for start in (START + timedelta(days=1), START, START + timedelta(days=1)):
        assert api.patch(path, {"starts_at": start.isoformat()}, format="json").status_code == 200
        # Each sent before the next change (one still waiting is replaced by it).
        Notification.objects.update(state="sent", sent_at=timezone.now())
    assert len(told("appointment_changed")) == 3


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {"starts_at": (timezone.now() - timedelta(days=1)).isoformat()},
            {"starts_at": ["An appointment cannot start in the past."]},
        ),
        (
            {"starts_at": "9999-12-31T20:00:00Z", "arrive_at": "9999-12-31T20:00:00Z"},
            {"starts_at": ["Set an appointment within two years from now."]},
        ),
        (
            {"starts_at": START.replace(tzinfo=None).isoformat()},
            {"starts_at": ["Give a UTC offset, e.g. 2026-11-26T09:30:00Z."]},
        ),
        (
            {"arrive_at": (START + timedelta(minutes=5)).isoformat()},
            {"arrive_at": ["After starts_at."]},
        ),
        (
            {"arrive_at": (START - timedelta(hours=13)).isoformat()},
            {"arrive_at": ["More than 12 hours before starts_at."]},
        ),
        ({"time_zone": "Mars/Olympus"}, {"time_zone": ["Unknown time zone 'Mars/Olympus'."]}),
        ({"time_zone": 1}, {"time_zone": ["Must be a string."]}),
        (
            {"duration_minutes": 0},
            {"duration_minutes": ["Ensure this value is greater than or equal to 1."]},
        ),
        ({"place_name": ""}, {"place_name": ["This field may not be blank."]}),
        ({"id": 3}, {"id": ["Read back only: it cannot be set."]}),
        ({"duration": 30}, {"duration": ["Not a field of this request."]}),
    ],
)
def test_a_bad_appointment_change_is_refused_naming_the_field(
    api, journey, booked, customer, body, fields
):
    RescheduleRequest.objects.create(
        appointment=booked, requested_by=customer, first_choice=START + timedelta(days=1)
    )
    before = state()
    response = api.patch(url("appointment", journey, booked.pk), body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields
    assert state() == before


def test_an_update_judges_what_it_changes_not_what_is_stored(api, journey, booked):
    """The stored start is not judged again when only the title changes, even once the
    appointment is under way (a no-show rebooked, say); a new start is judged as a new
    appointment's (above)."""
    Appointment.objects.filter(pk=booked.pk).update(
        starts_at=timezone.now() - timedelta(minutes=10),
        arrive_at=timezone.now() - timedelta(minutes=25),
    )
    path = url("appointment", journey, booked.pk)
    assert api.patch(path, {"title": "Handover (in progress)"}, format="json").status_code == 200
    soon = (timezone.now() + timedelta(hours=2)).isoformat()
    assert api.patch(path, {"starts_at": soon}, format="json").status_code == 200


CALENDAR_REMOVES = ("METHOD:CANCEL", "STATUS:CANCELLED")


def test_cancelling_tells_the_customer_with_a_calendar_file_that_removes_it(
    api, journey, booked, customer, django_capture_on_commit_callbacks
):
    RescheduleRequest.objects.create(
        appointment=booked, requested_by=customer, first_choice=START + timedelta(days=1)
    )
    set_file = icalendar.Calendar.from_ical(appointment_ics(booked, company="Milepost Motors"))
    version = Journey.objects.values_list("version", flat=True).get(pk=journey.pk)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(url("appointment", journey, booked.pk))

    assert (response.status_code, response.content) == (204, b"")
    assert Appointment.objects.count() == 0
    assert RescheduleRequest.objects.count() == 0
    assert Journey.objects.values_list("version", flat=True).get(pk=journey.pk) > version
    (notification,) = told("appointment_cancelled")
    assert notification.context["appointment_id"] == booked.pk
    (message,) = mail.outbox
    local = timezone.localtime(booked.arrive_at, booked.zone)
    assert message.subject == f"Cancelled: Handover, {local:%A} {local.day} {local:%B} at " + (
        f"{local:%H:%M}"
    )
    (name, content, mimetype) = message.attachments[0]
    assert (name, mimetype) == ("appointment.ics", "text/calendar; method=CANCEL")
    for line in CALENDAR_REMOVES:
        assert line in content
    calendar = icalendar.Calendar.from_ical(content)
    event = calendar.walk("VEVENT")[0]
    earlier = set_file.walk("VEVENT")[0]
    assert str(calendar["method"]) == "CANCEL"
    assert str(event["uid"]) == str(earlier["uid"]) == appointment_uid(booked.pk)
    assert int(event["sequence"]) > int(earlier["sequence"])
    assert event.decoded("dtstart") == booked.arrive_at
    assert event.decoded("dtend") == booked.starts_at + booked.duration


STARTED = {
    "error": {
        "code": "conflict",
        "message": "This appointment has started: it can no longer be cancelled.",
        "fields": {"starts_at": ["Started already."]},
    }
}


def test_an_appointment_that_has_started_is_not_cancelled(api, journey, booked):
    Appointment.objects.filter(pk=booked.pk).update(
        starts_at=timezone.now() - timedelta(minutes=1),
        arrive_at=timezone.now() - timedelta(minutes=16),
    )
    before = state()
    response = api.delete(url("appointment", journey, booked.pk))
    assert (response.status_code, response.json()) == (409, STARTED)
    assert state() == before


def test_a_sandbox_journeys_changes_tell_nobody(api, partner):
    sandbox = sandbox_journey_create(partner=partner, template=TemplateFactory().key)
    appointment = Appointment.objects.create(
        journey=sandbox, title="Visit", starts_at=START, arrive_at=START, place_name="X"
    )
    path = url("appointment", sandbox, appointment.pk)
    later = (START + timedelta(days=1)).isoformat()
    assert api.patch(path, {"starts_at": later}, format="json").status_code == 200
    assert api.delete(path).status_code == 204
    assert Appointment.objects.count() == 0
    assert Notification.objects.count() == 0


# --- Whose they are -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_another_partners_journey_answers_404_and_nothing_changes(
    api, other_api, journey, other_journey, task, booked, method
):
    theirs_task = CustomerTask.objects.create(journey=other_journey, title="Theirs")
    before = state()
    paths = [
        # Partner B at partner A's journey.
        (other_api, url("task", journey, task.pk)),
        (other_api, url("appointment", journey, booked.pk)),
        # Partner A at its own journey with B's task's id, and at B's journey.
        (api, url("task", journey, theirs_task.pk)),
        (api, url("task", other_journey, theirs_task.pk)),
        # A journey that does not exist.
        (api, reverse("api:journey-task", kwargs={"reference": "MP-NOPE99", "pk": task.pk})),
    ]
    for client, path in paths:
        response = getattr(client, method)(path, {"title": "Mine"}, format="json")
        assert (response.status_code, response.json()) == (404, NOT_FOUND), path
    assert state() == before


@pytest.mark.parametrize("name", ["task", "appointment"])
@pytest.mark.parametrize("raw", ["[1, 2]", '"x"', "null", "7"])
def test_a_patch_body_that_is_not_an_object_is_a_400_naming_body(
    api, journey, task, booked, name, raw
):
    pk = task.pk if name == "task" else booked.pk
    before = state()
    response = api.generic("PATCH", url(name, journey, pk), raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"body": ["Expected a JSON object."]}
    assert state() == before


@pytest.mark.parametrize("name", ["task", "appointment"])
def test_one_is_read_back_in_three_statements(
    api, journey, task, booked, name, django_assert_num_queries
):
    assert api.get(reverse("api:journey-list")).status_code == 200  # the key's last use
    pk = task.pk if name == "task" else booked.pk
    # The key; the journey (404 otherwise); the task or appointment.
    with django_assert_num_queries(3):
        assert api.get(url(name, journey, pk)).status_code == 200


# --- Idempotency-Key ----------------------------------------------------------------------


def test_a_patch_sent_again_with_its_key_is_replayed_and_tells_once(api, journey, booked):
    path = url("appointment", journey, booked.pk)
    body = {"starts_at": (START + timedelta(days=2)).isoformat()}
    first = api.patch(path, body, format="json", HTTP_IDEMPOTENCY_KEY="move-1")
    # Meanwhile staff move it elsewhere: the replay answers as the first time, changes
    # nothing again, tells nothing again.
    Appointment.objects.filter(pk=booked.pk).update(title="Moved by staff")
    again = api.patch(path, body, format="json", HTTP_IDEMPOTENCY_KEY="move-1")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert len(told("appointment_changed")) == 1
    other = api.patch(path, {"title": "X"}, format="json", HTTP_IDEMPOTENCY_KEY="move-1")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert Appointment.objects.get().title == "Moved by staff"


def test_a_delete_sent_again_with_its_key_is_replayed_not_a_404(api, journey, booked, task):
    cancel = url("appointment", journey, booked.pk)
    first = api.delete(cancel, HTTP_IDEMPOTENCY_KEY="cancel-1")
    again = api.delete(cancel, HTTP_IDEMPOTENCY_KEY="cancel-1")
    assert (first.status_code, again.status_code) == (204, 204)
    assert (first.content, again.content) == (b"", b"")
    assert again["Idempotent-Replayed"] == "true"
    assert len(told("appointment_cancelled")) == 1
    # Another request under that key (the task's DELETE) is a conflict, and keeps the task.
    reused = api.delete(url("task", journey, task.pk), HTTP_IDEMPOTENCY_KEY="cancel-1")
    assert reused.status_code == 409
    assert CustomerTask.objects.count() == 1
    # Without a key, the appointment is gone.
    assert api.delete(cancel).status_code == 404


def test_a_refused_delete_keeps_no_record_of_its_key(api, journey, booked):
    started = timezone.now() - timedelta(minutes=1)
    Appointment.objects.filter(pk=booked.pk).update(starts_at=started, arrive_at=started)
    response = api.delete(url("appointment", journey, booked.pk), HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 409
    assert IdempotencyRecord.objects.count() == 0
    assert Appointment.objects.count() == 1
