"""Writes to the outbox, and delivery of its rows.

At-least-once by design: a row is claimed with a conditional UPDATE before it is
sent, so two workers (a task and the sweep, or a redelivered task) never both send
it; a worker that dies mid-send leaves the row claimed until its lease runs out.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import User
from notifications.channels import send_email
from notifications.models import Channel, Notification, NotificationState

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


def notification_enqueue(
    *,
    recipient: User | None,
    kind: str,
    dedup_key: str,
    context: dict[str, Any],
    journey: Any = None,
    occurred_at: datetime | None = None,
    scheduled_at: datetime | None = None,
    to_email: str = "",
) -> list[Notification]:
    """Write the outbox rows for one cause, inside the caller's transaction.

    A cause already in the outbox (same dedup key) is not written again. Delivery is
    queued only after the transaction commits.
    """
    created = []
    for channel in (Channel.EMAIL,):
        try:
            with transaction.atomic():
                notification = Notification.objects.create(
                    recipient=recipient,
                    to_email=to_email,
                    journey=journey,
                    kind=kind,
                    channel=channel,
                    context=context,
                    dedup_key=dedup_key,
                    occurred_at=occurred_at,
                    scheduled_at=scheduled_at or timezone.now(),
                )
        except IntegrityError:
            continue  # already in the outbox: one message per cause
        created.append(notification)
        transaction.on_commit(lambda pk=notification.pk: _queue_delivery(pk))
    return created


def _queue_delivery(notification_id: int) -> None:
    from notifications.tasks import deliver_notification

    try:
        deliver_notification.delay(notification_id)
    except Exception:
        # The broker is down: the row stays pending and the sweep delivers it later.
        logger.warning(
            "Could not queue notification %s; the sweep will deliver it.", notification_id
        )


def _claim(notification_id: int, now: datetime) -> bool:
    lease_expired = now - settings.OUTBOX_CLAIM_LEASE
    claimed = Notification.objects.filter(
        Q(state=NotificationState.PENDING, scheduled_at__lte=now)
        | Q(state=NotificationState.SENDING, claimed_at__lt=lease_expired),
        pk=notification_id,
    ).update(state=NotificationState.SENDING, claimed_at=now, attempts=F("attempts") + 1)
    return claimed == 1


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at one hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def notification_deliver(*, notification_id: int) -> NotificationState | None:
    """Send one outbox row if it is due and nobody else has it. Returns its new state,
    or None when there was nothing to do."""
    now = timezone.now()
    if not _claim(notification_id, now):
        return None
    notification = Notification.objects.select_related(
        "recipient", "recipient__profile", "journey"
    ).get(pk=notification_id)
    try:
        send_email(notification)
    except Exception as error:
        logger.exception("Sending notification %s failed", notification_id)
        failed = notification.attempts >= MAX_ATTEMPTS
        Notification.objects.filter(pk=notification_id).update(
            state=NotificationState.FAILED if failed else NotificationState.PENDING,
            scheduled_at=now + backoff(notification.attempts),
            claimed_at=None,
            last_error=f"{type(error).__name__}: {error}"[:2000],
        )
        return NotificationState.FAILED if failed else NotificationState.PENDING
    Notification.objects.filter(pk=notification_id).update(
        state=NotificationState.SENT, sent_at=timezone.now(), claimed_at=None, last_error=""
    )
    return NotificationState.SENT


def outbox_due_ids(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Rows whose delivery task never ran (or whose worker died): what the sweep sends."""
    now = now or timezone.now()
    return list(
        Notification.objects.filter(
            Q(state=NotificationState.PENDING, scheduled_at__lte=now - settings.OUTBOX_SWEEP_GRACE)
            | Q(state=NotificationState.SENDING, claimed_at__lt=now - settings.OUTBOX_CLAIM_LEASE)
        )
        .order_by("scheduled_at")
        .values_list("pk", flat=True)[:limit]
    )


def outbox_sweep(*, now: datetime | None = None) -> int:
    """Deliver every overdue row; returns how many were sent."""
    sent = 0
    for pk in outbox_due_ids(now=now):
        if notification_deliver(notification_id=pk) == NotificationState.SENT:
            sent += 1
    return sent
