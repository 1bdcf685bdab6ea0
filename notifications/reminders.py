"""Messages caused by the passing of time, found by a periodic job (Celery beat).

Each query is on an index; each message has a dedup key that names its cause and date,
so running the job again (or twice at once) never sends anything twice, and a date that
moves gets a new reminder. A run writes at most BATCH reminders of each kind (one
transaction per kind); what is left goes out on the next run.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import batched
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from journey.models import (
    Agreement,
    Appointment,
    CustomerTask,
    Health,
    PromisedItem,
    PromisedItemState,
)
from notifications.models import Notification
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


def _unreminded(queryset: QuerySet, key_of: Callable[..., str], *fields: str) -> list[Any]:
    """The rows of ``queryset`` whose reminder is not in the outbox yet (at most BATCH),
    each with what its message needs.

    The candidates are read as bare values and their dedup keys looked up in bulk, so a
    row reminded before costs next to nothing, and never holds back the rest: a plain
    ``[:BATCH]`` would read the same reminded rows on every run, and the rows after them
    would never be reached.
    """
    keys = {pk: key_of(pk, *rest) for pk, *rest in queryset.values_list("pk", *fields)}
    written: set[str] = set()
    for chunk in batched(keys.values(), 1000):
        written.update(
            Notification.objects.filter(dedup_key__in=chunk).values_list("dedup_key", flat=True)
        )
    todo = [pk for pk, key in keys.items() if key not in written][:BATCH]
    return list(
        queryset.model.objects.filter(pk__in=todo)
        .select_related("journey__owner__profile", "journey__template")
        .order_by("pk")
    )


@dataclass(frozen=True)
class _Reminder:
    """One kind of reminder: which rows are due one, the dedup key of a row's reminder
    (from the row's id and ``field``), and the message's context."""

    kind: str
    rows: QuerySet
    field: str
    key: Callable[[int, Any], str]
    context: Callable[[Any], dict[str, object]]


def send_reminders(*, now: datetime | None = None) -> ReminderCounts:
    now = now or timezone.now()
    today = timezone.localdate(now)
    counts = ReminderCounts()

    def notice(ends_on: date) -> int:
        return min(n for n in AGREEMENT_NOTICES if (ends_on - today).days <= n)

    tasks = CustomerTask.objects.filter(
        done_at__isnull=True, due_date__isnull=False, **OPEN_JOURNEY
    )
    soon = Q(due_date__gte=today, due_date__lte=today + timedelta(days=DUE_SOON_DAYS))
    reminders = [
        _Reminder(
            kind,
            tasks.filter(due),
            "due_date",
            lambda pk, due_date, kind=kind: f"{kind}:{pk}:{due_date}",
            task_context,
        )
        for kind, due in (("task_due_soon", soon), ("task_overdue", Q(due_date__lt=today)))
    ]
    reminders.append(
        _Reminder(
            "appointment_reminder",
            Appointment.objects.filter(
                arrive_at__gte=now + timedelta(hours=12), arrive_at__lte=now + timedelta(hours=36)
            ),
            "arrive_at",
            lambda pk, arrive_at: f"appointment-reminder:{pk}:{arrive_at.isoformat()}",
            appointment_context,
        )
    )
    reminders.append(
        _Reminder(
            "promised_item_overdue",
            PromisedItem.objects.filter(due_date__lt=today, **OPEN_JOURNEY).exclude(
                state=PromisedItemState.DELIVERED
            ),
            "due_date",
            lambda pk, due_date: f"promised-overdue:{pk}:{due_date}",
            lambda item: {
                "item": item.name,
                "due_date": item.due_date.isoformat(),
                "anchor": "todo",
            },
        )
    )
    reminders.append(
        _Reminder(
            "agreement_ending",
            Agreement.objects.filter(
                ends_on__gte=today, ends_on__lte=today + timedelta(days=max(AGREEMENT_NOTICES))
            ),
            "ends_on",
            lambda pk, ends_on: f"agreement-ending:{pk}:{ends_on}:{notice(ends_on)}",
            lambda agreement: {
                "title": agreement.title,
                "agreement_kind": agreement.get_kind_display(),
                "ends_on": agreement.ends_on.isoformat(),
                "days_left": (agreement.ends_on - today).days,
                "next_steps": agreement.next_steps,
            },
        )
    )
    for reminder in reminders:
        found = _unreminded(reminder.rows, reminder.key, reminder.field)
        written = 0
        with transaction.atomic():
            for row in found:
                written += len(
                    notification_enqueue(
                        recipient=row.journey.owner,
                        journey=row.journey,
                        kind=reminder.kind,
                        dedup_key=reminder.key(row.pk, getattr(row, reminder.field)),
                        context=reminder.context(row),
                        occurred_at=now,
                    )
                )
        setattr(counts, reminder.kind, written)
    return counts


def task_context(task: CustomerTask) -> dict[str, object]:
    due: date | None = task.due_date
    return {
        "task": task.title,
        "description": task.description,
        "due_date": due.isoformat() if due else None,
        "anchor": "todo",
    }


def appointment_context(appointment: Appointment) -> dict[str, object]:
    """What an appointment's messages say; whole enough to make its calendar file from
    (a cancellation's, once the row is gone: ``journey.calendar.appointment_cancel_ics``)."""
    return {
        "appointment_id": appointment.pk,
        "title": appointment.title,
        "arrive_at": appointment.arrive_at.isoformat(),
        "ends_at": (appointment.starts_at + appointment.duration).isoformat(),
        "place_time_zone": appointment.time_zone,
        "place": appointment.place_name,
        "address": appointment.address,
        "what_to_bring": appointment.what_to_bring,
        "visit": appointment.visit,
        "anchor": "appointments",
    }
