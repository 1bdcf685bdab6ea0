"""What sends a message when something changes: one function per cause, called by the
service that makes the change, inside its transaction."""

from django.conf import settings
from django.utils import timezone

from journey.models import Appointment, CustomerTask, Message, Photo
from notifications.reminders import appointment_context, task_context
from notifications.services import notification_enqueue

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


def notify_appointment(appointment: Appointment, *, changed: bool) -> None:
    """A new appointment, or a new time or place for one (once per version of it)."""
    kind = "appointment_changed" if changed else "appointment_set"
    notification_enqueue(
        recipient=appointment.journey.owner,
        journey=appointment.journey,
        kind=kind,
        dedup_key=f"{kind}:{appointment.pk}:{appointment.arrive_at.isoformat()}:"
        f"{appointment.place_name}",
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
    notification_enqueue(
        recipient=message.journey.owner,
        journey=message.journey,
        kind="staff_reply",
        dedup_key=f"staff-reply:{message.pk}",
        context={"body": message.body, "anchor": "conversation"},
        occurred_at=message.created_at,
    )


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
