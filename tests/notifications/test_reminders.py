"""Messages caused by time, and by changes: each trigger, once."""

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from journey.models import Agreement, Appointment, CustomerTask, PromisedItem
from journey.photos import photo_add
from notifications.models import Notification
from notifications.reminders import send_reminders
from tests.journey.test_views import jpeg

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def emails(kind: str) -> list[Notification]:
    return list(Notification.objects.filter(kind=kind, channel="email").order_by("id"))


def test_each_reminder_is_sent_once_however_often_the_job_runs(journey):
    today = NOW.date()
    soon = CustomerTask.objects.create(
        journey=journey, title="Insure", due_date=today + timedelta(days=2)
    )
    late = CustomerTask.objects.create(
        journey=journey, title="Sign", due_date=today - timedelta(days=1)
    )
    CustomerTask.objects.create(journey=journey, title="Later", due_date=today + timedelta(days=9))
    CustomerTask.objects.create(
        journey=journey, title="Done", due_date=today - timedelta(days=3), done_at=NOW
    )
    Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=NOW + timedelta(hours=24, minutes=10),
        arrive_at=NOW + timedelta(hours=24),
        place_name="Bristol",
    )
    PromisedItem.objects.create(journey=journey, name="Mats", due_date=today - timedelta(days=1))
    Agreement.objects.create(
        journey=journey,
        kind="lease",
        title="Lease",
        ends_on=today + timedelta(days=25),
        next_steps="Return it",
    )
    with time_machine.travel(NOW, tick=False):
        first = send_reminders()
        again = send_reminders()
    assert (
        first.task_due_soon,
        first.task_overdue,
        first.appointment_reminder,
        first.promised_item_overdue,
        first.agreement_ending,
    ) == (2, 2, 2, 2, 2)  # centre + email
    assert again.total == 0
    assert [n.context["task"] for n in emails("task_due_soon")] == [soon.title]
    assert [n.context["task"] for n in emails("task_overdue")] == [late.title]
    assert emails("agreement_ending")[0].dedup_key.endswith(":30")
    with time_machine.travel(NOW + timedelta(days=20), tick=False):
        send_reminders()
    assert [n.dedup_key.rsplit(":", 1)[1] for n in emails("agreement_ending")] == ["30", "7"]


def test_the_day_before_reminder_carries_the_calendar_file(journey):
    Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=NOW + timedelta(hours=25),
        arrive_at=NOW + timedelta(hours=24, minutes=50),
        place_name="Bristol",
        time_zone="Europe/London",
        what_to_bring="Licence",
    )
    with time_machine.travel(NOW, tick=False):
        send_reminders()
        from notifications.services import notification_deliver

        notification_deliver(notification_id=emails("appointment_reminder")[0].pk)
    (message,) = mail.outbox
    assert message.subject == "Tomorrow at 09:50: Handover"  # the place's clock
    (name, content, mimetype) = message.attachments[0]
    assert (name, mimetype) == ("appointment.ics", "text/calendar")
    assert "DTSTART;TZID=Europe/London:20261121T095000" in content


def test_a_task_from_a_partner_tells_the_customer(api, journey, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            reverse("api:journey-tasks", kwargs={"reference": journey.reference}),
            {"title": "Arrange insurance", "due_date": str(date.today() + timedelta(days=5))},
            format="json",
        )
    assert response.status_code == 201, response.content
    assert mail.outbox[0].subject == "For you to do: Arrange insurance"


def test_an_appointment_set_then_moved_in_the_admin_tells_the_customer_each_time(journey):
    from notifications.triggers import notify_appointment

    appointment = Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=NOW + timedelta(days=5),
        arrive_at=NOW + timedelta(days=5),
        place_name="Bristol",
    )
    notify_appointment(appointment, changed=False)
    notify_appointment(appointment, changed=False)  # a second save of the same: nothing new
    Notification.objects.update(state="sent", sent_at=NOW)  # the customer has heard of it
    appointment.arrive_at = appointment.starts_at = NOW + timedelta(days=6)
    appointment.save()
    notify_appointment(appointment, changed=True)
    assert [n.kind for n in Notification.objects.filter(channel="email").order_by("id")] == [
        "appointment_set",
        "appointment_changed",
    ]


def test_photos_are_batched_into_one_message(journey):
    milestone = journey.milestones.get(position=1)
    for _ in range(3):
        photo_add(journey=journey, milestone=milestone, file=jpeg())
    assert len(emails("photos_added")) == 1


def test_a_staff_reply_saved_in_the_admin_tells_the_customer(
    journey, admin_user, django_capture_on_commit_callbacks
):
    from journey.admin import _notify_inline_changes
    from journey.models import Message

    class SavedInlines:  # what the admin's message inline reports after saving
        new_objects = [
            Message.objects.create(
                journey=journey, author=admin_user, from_staff=True, body="Your mats are fine."
            )
        ]
        changed_objects: list = []

    with django_capture_on_commit_callbacks(execute=True):
        _notify_inline_changes(None, SavedInlines(), journey)
    # The customer had not written: the company writes first, it answers nothing.
    assert mail.outbox[-1].subject.endswith("a message from us")
    assert "Your mats are fine." in mail.outbox[-1].body


def test_reminders_already_sent_do_not_hold_back_the_rest(journey, monkeypatch):
    monkeypatch.setattr("notifications.reminders.BATCH", 2)
    today = NOW.date()
    tasks = [
        CustomerTask.objects.create(
            journey=journey, title=f"Task {i}", due_date=today - timedelta(days=1)
        )
        for i in range(5)
    ]
    with time_machine.travel(NOW, tick=False):
        runs = [send_reminders().task_overdue for _ in range(4)]
    assert runs == [4, 4, 2, 0]  # two reminders a run (centre + email each), then none
    reminded = {n.dedup_key for n in emails("task_overdue")}
    assert reminded == {f"task_overdue:{t.pk}:{t.due_date}" for t in tasks}


def test_a_reminder_run_reads_the_same_number_of_rows_however_many_were_sent(
    journey, django_assert_max_num_queries
):
    today = NOW.date()
    for i in range(30):
        CustomerTask.objects.create(journey=journey, title=f"T{i}", due_date=today)
    with time_machine.travel(NOW, tick=False):
        send_reminders()
        # Nothing new: per kind, the candidates' keys, the keys already written, the rows.
        with django_assert_max_num_queries(5 * 3 + 5 * 2):
            assert send_reminders().total == 0
