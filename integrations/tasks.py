from celery import shared_task

from integrations import idempotency, webhooks


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
