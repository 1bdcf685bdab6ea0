"""A message still waiting to go out about an appointment or a task is dropped once what
it says is no longer true: a reminder held for quiet hours names the old time after a
move, a withdrawn task's reminder asks for what is not needed (from a code review)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from journey import services
from journey.errors import ApplicationError
from journey.models import Appointment, CustomerTask
from notifications.models import Notification
from notifications.reminders import appointment_context, task_context
from notifications.services import notification_enqueue

pytestmark = pytest.mark.django_db


def waiting(kind: str) -> list[Notification]:
    return list(Notification.objects.filter(kind=kind, channel="email", state="pending"))


@pytest.fixture
def appointment(journey) -> Appointment:
    starts = (timezone.now() + timedelta(days=1, hours=2)).replace(second=0, microsecond=0)
    return Appointment.objects.create(
        journey=journey, title="Handover", starts_at=starts, arrive_at=starts, place_name="Bristol"
    )


@pytest.fixture
def task(journey) -> CustomerTask:
    return CustomerTask.objects.create(
        journey=journey, title="Send your licence", due_date=timezone.now().date() + timedelta(2)
    )


def remind(customer, journey, kind, key, context) -> None:
    """A reminder written and not sent yet (held for quiet hours, or for a digest)."""
    notification_enqueue(
        recipient=customer, journey=journey, kind=kind, dedup_key=key, context=context
    )
    assert waiting(kind)


def move(api, journey, appointment, starts_at):
    """The partner moves the appointment (the API's PATCH)."""
    one = reverse(
        "api:journey-appointment", kwargs={"reference": journey.reference, "pk": appointment.pk}
    )
    return api.patch(one, {"starts_at": starts_at.isoformat()}, format="json")


def test_moving_an_appointment_drops_the_reminder_that_names_the_old_time(
    api, journey, customer, appointment
):
    remind(
        customer,
        journey,
        "appointment_reminder",
        f"appointment-reminder:{appointment.pk}:{appointment.arrive_at.isoformat()}",
        appointment_context(appointment),
    )
    later = appointment.starts_at + timedelta(days=7)
    assert move(api, journey, appointment, later).status_code == 200
    assert waiting("appointment_reminder") == []
    (changed,) = waiting("appointment_changed")
    assert changed.context["arrive_at"] == later.isoformat()


def test_a_withdrawn_task_drops_its_messages_still_waiting(customer, journey, task):
    remind(customer, journey, "task_assigned", f"task-assigned:{task.pk}", task_context(task))
    remind(
        customer,
        journey,
        "task_due_soon",
        f"task_due_soon:{task.pk}:{task.due_date}",
        task_context(task),
    )
    other = CustomerTask.objects.create(journey=journey, title="Choose a colour")
    remind(customer, journey, "task_assigned", f"task-assigned:{other.pk}", task_context(other))

    services.journey_task_withdraw(task=task)

    assert waiting("task_due_soon") == []
    assert [n.dedup_key for n in waiting("task_assigned")] == [f"task-assigned:{other.pk}"]


def test_a_new_due_date_drops_the_old_dates_reminder_not_the_task_itself(customer, journey, task):
    remind(customer, journey, "task_assigned", f"task-assigned:{task.pk}", task_context(task))
    remind(
        customer,
        journey,
        "task_due_soon",
        f"task_due_soon:{task.pk}:{task.due_date}",
        task_context(task),
    )
    services.journey_task_update(task=task, due_date=task.due_date + timedelta(days=10))
    assert waiting("task_due_soon") == []
    assert len(waiting("task_assigned")) == 1  # still news: the task stands


def test_a_request_for_another_time_of_an_appointment_cancelled_meanwhile_is_404(
    customer, appointment
):
    stale = Appointment.objects.get(pk=appointment.pk)  # the page's copy
    services.journey_appointment_cancel(appointment=appointment)
    with pytest.raises(ApplicationError) as refused:
        services.appointment_request_reschedule(
            appointment=stale,
            user=customer,
            first_choice=timezone.now() + timedelta(days=3),
        )
    assert refused.value.status == 404
    assert not Notification.objects.filter(kind="staff_reschedule_request").exists()


def test_ticking_off_a_task_withdrawn_meanwhile_is_404(customer, task):
    stale = CustomerTask.objects.select_related("journey").get(pk=task.pk)
    services.journey_task_withdraw(task=task)
    with pytest.raises(ApplicationError) as refused:
        services.task_complete(task=stale, user=customer)
    assert refused.value.status == 404


def test_an_appointment_moved_before_its_news_went_out_is_told_as_new(
    api, journey, customer, appointment
):
    """Held for quiet hours, "Appointment: Handover" had not gone out when it moved: the
    customer is told of it once, at its new time, not of a change to what they never
    heard."""
    from notifications.triggers import notify_appointment

    notify_appointment(appointment, changed=False)
    later = appointment.starts_at + timedelta(days=2)
    assert move(api, journey, appointment, later).status_code == 200
    assert waiting("appointment_changed") == []
    (news,) = waiting("appointment_set")
    assert news.context["arrive_at"] == later.isoformat()
