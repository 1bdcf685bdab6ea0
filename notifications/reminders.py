"""Messages caused by the passing of time, found by a periodic job (Celery beat).

Each query is on an index and bounded; each message has a dedup key that names its cause
and date, so running the job again (or twice at once) never sends anything twice, and a
date that moves gets a new reminder.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from journey.models import (
    Agreement,
    Appointment,
    CustomerTask,
    Health,
    PromisedItem,
    PromisedItemState,
)
from notifications.services import notification_enqueue

DUE_SOON_DAYS = 2
AGREEMENT_NOTICES = (30, 7)
BATCH = 1000
OPEN_JOURNEY = {"journey__health__in": [Health.ON_TRACK, Health.AT_RISK, Health.DELAYED]}


@dataclass
class ReminderCounts:
    task_due_soon: int = 0
    task_overdue: int = 0
    appointment_reminder: int = 0
    promised_item_overdue: int = 0
    agreement_ending: int = 0

    @property
    def total(self) -> int:
        return sum(vars(self).values())


def _enqueue(**kwargs: object) -> int:
    with transaction.atomic():
        return len(notification_enqueue(**kwargs))


def send_reminders(*, now: datetime | None = None) -> ReminderCounts:
    now = now or timezone.now()
    today = timezone.localdate(now)
    counts = ReminderCounts()

    tasks = CustomerTask.objects.filter(
        done_at__isnull=True, due_date__isnull=False, **OPEN_JOURNEY
    )
    for task in tasks.filter(
        due_date__gte=today, due_date__lte=today + timedelta(days=DUE_SOON_DAYS)
    ).select_related("journey__owner__profile", "journey__template")[:BATCH]:
        counts.task_due_soon += _task(task, "task_due_soon", now)
    for task in tasks.filter(due_date__lt=today).select_related(
        "journey__owner__profile", "journey__template"
    )[:BATCH]:
        counts.task_overdue += _task(task, "task_overdue", now)

    for appointment in Appointment.objects.filter(
        arrive_at__gte=now + timedelta(hours=12), arrive_at__lte=now + timedelta(hours=36)
    ).select_related("journey__owner__profile", "journey__template")[:BATCH]:
        counts.appointment_reminder += _enqueue(
            recipient=appointment.journey.owner,
            journey=appointment.journey,
            kind="appointment_reminder",
            dedup_key=f"appointment-reminder:{appointment.pk}:{appointment.arrive_at.isoformat()}",
            context=appointment_context(appointment),
            occurred_at=now,
        )

    for item in (
        PromisedItem.objects.filter(due_date__lt=today, **OPEN_JOURNEY)
        .exclude(state=PromisedItemState.DELIVERED)
        .select_related("journey__owner__profile", "journey__template")[:BATCH]
    ):
        counts.promised_item_overdue += _enqueue(
            recipient=item.journey.owner,
            journey=item.journey,
            kind="promised_item_overdue",
            dedup_key=f"promised-overdue:{item.pk}:{item.due_date}",
            context={"item": item.name, "due_date": item.due_date.isoformat(), "anchor": "todo"},
            occurred_at=now,
        )

    for agreement in Agreement.objects.filter(
        ends_on__gte=today, ends_on__lte=today + timedelta(days=max(AGREEMENT_NOTICES))
    ).select_related("journey__owner__profile", "journey__template")[:BATCH]:
        days_left = (agreement.ends_on - today).days
        notice = min(n for n in AGREEMENT_NOTICES if days_left <= n)
        counts.agreement_ending += _enqueue(
            recipient=agreement.journey.owner,
            journey=agreement.journey,
            kind="agreement_ending",
            dedup_key=f"agreement-ending:{agreement.pk}:{agreement.ends_on}:{notice}",
            context={
                "title": agreement.title,
                "agreement_kind": agreement.get_kind_display(),
                "ends_on": agreement.ends_on.isoformat(),
                "days_left": days_left,
                "next_steps": agreement.next_steps,
            },
            occurred_at=now,
        )
    return counts


def _task(task: CustomerTask, kind: str, now: datetime) -> int:
    return _enqueue(
        recipient=task.journey.owner,
        journey=task.journey,
        kind=kind,
        dedup_key=f"{kind}:{task.pk}:{task.due_date}",
        context=task_context(task),
        occurred_at=now,
    )


def task_context(task: CustomerTask) -> dict[str, object]:
    due: date | None = task.due_date
    return {
        "task": task.title,
        "description": task.description,
        "due_date": due.isoformat() if due else None,
        "anchor": "todo",
    }


def appointment_context(appointment: Appointment) -> dict[str, object]:
    return {
        "appointment_id": appointment.pk,
        "title": appointment.title,
        "arrive_at": appointment.arrive_at.isoformat(),
        "place_time_zone": appointment.time_zone,
        "place": appointment.place_name,
        "address": appointment.address,
        "what_to_bring": appointment.what_to_bring,
        "anchor": "appointments",
    }
