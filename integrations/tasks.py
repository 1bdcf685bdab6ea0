from celery import shared_task

from integrations import idempotency, sandbox, services, webhooks


@shared_task(acks_late=True, ignore_result=True)
def deliver_webhook(delivery_id: int) -> None:
    """One try at one delivery. Safe to run twice: the row is claimed before sending."""
    webhooks.webhook_deliver(delivery_id=delivery_id)


@shared_task(ignore_result=True)
def sweep_webhooks() -> int:
    """Retries that are due, and deliveries whose task was lost."""
    return webhooks.webhook_sweep()


@shared_task(ignore_result=True)
def purge_idempotency_records() -> int:
    return idempotency.idempotency_purge()


@shared_task(ignore_result=True)
def purge_sandbox_journeys() -> int:
    return sandbox.sandbox_purge()


@shared_task(ignore_result=True)
def apply_queued_events(scheduled: bool = False) -> int:
    """Apply the partner events queued with ``Prefer: respond-async``; queued by the
    request that queued one (at most one task per look at the queue), by the applier for
    its next look under load (``scheduled``), and run every 30 seconds for events whose
    task was lost. Safe to run twice: one applier at a time."""
    return services.partner_queued_events_drain(scheduled=scheduled)
