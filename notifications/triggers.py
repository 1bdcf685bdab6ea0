"""What sends a message when something changes: one function per cause, called by the
service that makes the change, inside its transaction."""

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from journey.models import Appointment, CustomerTask, Message, Photo, RescheduleRequest
from notifications.models import Channel, Notification, NotificationState
from notifications.reminders import appointment_context, task_context
from notifications.services import notification_enqueue, notification_settle

PHOTO_BATCH_MINUTES = 60


def notify_task_assigned(task: CustomerTask) -> None:
    notification_enqueue(
        recipient=task.journey.owner,
        journey=task.journey,
        kind="task_assigned",
        dedup_key=f"task-assigned:{task.pk}",
        context=task_context(task),
        occurred_at=task.created_at,
    )


def _drop_waiting(recipient: object, rows: QuerySet[Notification]) -> None:
    """Settle each message of ``rows`` (by its key): what still waits to go out of it is
    dropped, as a settled proposal's is (``notification_settle``)."""
    for dedup_key in rows.order_by().values_list("dedup_key", flat=True).distinct():
        notification_settle(recipient=recipient, dedup_key=dedup_key)


TASK_REMINDER_KINDS = ("task_due_soon", "task_overdue")


def settle_task_messages(task: CustomerTask, *, assigned: bool) -> None:
    """A task changed its due date, or was withdrawn (``assigned``: its own message too):
    its reminders still waiting (held for quiet hours or a digest) would name the old
    date, or ask for what is no longer needed. The reminder job writes the new date's
    when it is due."""
    reminders = Q()
    for kind in TASK_REMINDER_KINDS:
        # Keyed "{kind}:{pk}:{due date}" (notifications.reminders).
        reminders |= Q(kind=kind, dedup_key__startswith=f"{kind}:{task.pk}:")
    if assigned:
        reminders |= Q(kind="task_assigned", dedup_key=f"task-assigned:{task.pk}")
    owner = task.journey.owner
    _drop_waiting(owner, Notification.objects.filter(reminders, recipient=owner))


APPOINTMENT_KINDS = ("appointment_set", "appointment_changed", "appointment_reminder")


def _about_appointment(appointment: Appointment) -> QuerySet[Notification]:
    return Notification.objects.filter(
        recipient=appointment.journey.owner,
        journey_id=appointment.journey_id,
        kind__in=APPOINTMENT_KINDS,
        context__appointment_id=appointment.pk,
    )


def notify_appointment(appointment: Appointment, *, changed: bool) -> None:
    """A new appointment (once per version of it: saving it again unchanged tells
    nothing), or a new time or place for one (once per change: its callers call it once
    for each change they make, and a change back to an earlier time or place is news
    too, which a key of the version would have swallowed).

    A change drops what still waits to go out about the appointment (a reminder held for
    quiet hours, the last change held for a digest): it says the old time or place. If
    that was the news of the appointment itself, the customer has not heard of it yet:
    they are told of a new appointment, at its new time, not of a change."""
    if changed:
        about = _about_appointment(appointment)
        unheard = (
            about.filter(kind="appointment_set", state=NotificationState.PENDING, attempts=0)
            .exclude(channel=Channel.INAPP)
            .exists()
        )
        _drop_waiting(appointment.journey.owner, about)
        changed = not unheard
    kind = "appointment_changed" if changed else "appointment_set"
    now = timezone.now()
    # The place cut short: the key is at most 200 characters, a place's name as long.
    place = appointment.place_name[:100]
    dedup_key = f"{kind}:{appointment.pk}:{appointment.arrive_at.isoformat()}:{place}"
    if changed:
        dedup_key += f":{now.isoformat()}"
    notification_enqueue(
        recipient=appointment.journey.owner,
        journey=appointment.journey,
        kind=kind,
        dedup_key=dedup_key,
        context=appointment_context(appointment),
        occurred_at=now,
    )


def notify_appointment_cancelled(appointment: Appointment) -> None:
    """The appointment is off. Written before its row is deleted; the message says
    everything from its context (the calendar file that removes it included), never from
    the row.

    What still waits to be sent about it (held for the customer's quiet hours, or for a
    digest) is dropped first, as a settled proposal's is (``notification_settle``): a
    reminder of an appointment that is off, sent after the news that it is, would tell
    them to come."""
    _drop_waiting(appointment.journey.owner, _about_appointment(appointment))
    notification_enqueue(
        recipient=appointment.journey.owner,
        journey=appointment.journey,
        kind="appointment_cancelled",
        dedup_key=f"appointment_cancelled:{appointment.pk}",
        context=appointment_context(appointment),
        occurred_at=timezone.now(),
    )


def notify_photos_added(photo: Photo) -> None:
    """Photos come in batches: one message per milestone per hour, however many arrive."""
    bucket = int(photo.created_at.timestamp() // (PHOTO_BATCH_MINUTES * 60))
    notification_enqueue(
        recipient=photo.journey.owner,
        journey=photo.journey,
        kind="photos_added",
        dedup_key=f"photos:{photo.journey_id}:{photo.milestone_id}:{bucket}",
        context={
            "milestone_id": photo.milestone_id,
            "stage_label": photo.milestone.stage.label if photo.milestone_id else "",
            "stage_translations": photo.milestone.stage.translations if photo.milestone_id else {},
            "since": photo.created_at.isoformat(),
            "anchor": f"m-{photo.milestone_id}" if photo.milestone_id else "timeline",
        },
        occurred_at=photo.created_at,
    )


def notify_staff_reply(message: Message) -> None:
    """The company wrote in the journey's conversation: an answer to the customer, or a
    message of its own (the words say which)."""
    notification_enqueue(
        recipient=message.journey.owner,
        journey=message.journey,
        kind="staff_reply",
        dedup_key=f"staff-reply:{message.pk}",
        context={
            "body": message.body,
            "anchor": "conversation",
            "answers_customer": _answers_customer(message),
        },
        occurred_at=message.created_at,
    )


def _answers_customer(message: Message) -> bool:
    """Whether a staff message answers the customer: the conversation's last message
    before it is theirs (they wrote since the company last did)."""
    earlier = Message.objects.filter(journey_id=message.journey_id).filter(
        Q(created_at__lt=message.created_at) | Q(created_at=message.created_at, pk__lt=message.pk)
    )
    last = earlier.order_by("-created_at", "-pk").values_list("from_staff", flat=True).first()
    return last is False


def notify_staff_of_customer_message(message: Message, *, via: str) -> None:
    """Staff hear at once when a customer writes (in the portal or by replying to an email)."""
    if not settings.STAFF_ALERT_EMAIL:
        return
    notification_enqueue(
        recipient=None,
        to_email=settings.STAFF_ALERT_EMAIL,
        journey=message.journey,
        kind="staff_customer_message",
        dedup_key=f"customer-message:{message.pk}",
        context={"body": message.body, "via": via, "author": str(message.author or "")},
        occurred_at=message.created_at,
    )


def notify_staff_of_reschedule_request(request: RescheduleRequest) -> None:
    """Staff hear at once when a customer asks to move an appointment, as when they write:
    which appointment, the times asked for and the note, with the admin's page of the
    request."""
    if not settings.STAFF_ALERT_EMAIL:
        return
    appointment = request.appointment
    customer = request.requested_by
    name = customer.get_full_name()
    notification_enqueue(
        recipient=None,
        to_email=settings.STAFF_ALERT_EMAIL,
        journey=appointment.journey,
        kind="staff_reschedule_request",
        dedup_key=f"reschedule-request:{request.pk}",
        context={
            **appointment_context(appointment),
            "request_id": request.pk,
            "author": name if name == customer.email else f"{name} ({customer.email})",
            "first_choice_at": request.first_choice.isoformat(),
            "second_choice_at": (
                request.second_choice.isoformat() if request.second_choice else None
            ),
            "note": request.note,
        },
        occurred_at=request.created_at,
    )
