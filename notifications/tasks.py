import logging

from celery import shared_task
from django.db import close_old_connections, connection

from notifications import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def deliver_notification(notification_id: int) -> None:
    """Deliver one outbox row. Safe to run twice: the row is claimed before sending."""
    services.notification_deliver(notification_id=notification_id)


@shared_task(acks_late=True, ignore_result=True)
def deliver_notifications(notification_ids: list[int]) -> None:
    """Deliver the outbox rows one transaction made due (a partner's batch), each as
    ``deliver_notification`` would: read together, each message claimed as it is sent.
    A message that fails is left to its retry and the sweep; the others are still
    delivered."""
    try:
        services.notifications_deliver(notification_ids=notification_ids)
    except Exception:
        # Reading them failed (the database went away): nothing was claimed, and the
        # sweep delivers them.
        _left_to_the_sweep("Delivering notifications %s failed", notification_ids)


@shared_task(acks_late=True, ignore_result=True)
def deliver_due(due: str, wake: str) -> None:
    """Deliver a chunk of the rows waiting in the Redis list ``due``, woken by ``wake``
    (``services._queue_delivery``). Not retried: a failure leaves the rows pending, and
    the sweep delivers them."""
    try:
        services.notifications_deliver_due(due=due, wake=wake)
    except Exception:
        _left_to_the_sweep("Delivering the rows due from %s failed", due)


def _left_to_the_sweep(what: str, *args: object) -> None:
    """A delivery task that failed as a whole: logged, and its connection let go if it
    broke (the worker process keeps it for the next task); the rows stay pending."""
    logger.exception(what + "; the sweep retries them.", *args)
    if not connection.in_atomic_block:
        close_old_connections()


@shared_task(ignore_result=True)
def sweep_outbox() -> int:
    """Deliver rows whose task was lost (broker down) or whose worker died; and retries."""
    return services.outbox_sweep()


@shared_task(ignore_result=True)
def send_reminders() -> int:
    """Tasks due soon or overdue, tomorrow's appointments, late promised items, agreements
    ending in 30 and 7 days. Idempotent: each reminder has a dedup key."""
    from notifications.reminders import send_reminders as run

    return run().total
