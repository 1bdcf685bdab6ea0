"""Outbound webhooks, signed the Standard Webhooks way (https://www.standardwebhooks.com).

``webhook_emit`` writes one delivery row per subscribed endpoint inside the caller's
transaction; a task delivers it after commit, and a periodic sweep retries failures with
exponential backoff for more than 24 hours (no long Celery countdowns: on Redis, a
countdown longer than the visibility timeout runs the task again).

Endpoints are partners' URLs, so they may only point at public addresses: checked when
registered and again before every send, by ``integrations.egress`` (SSRF). A delivery to
a host that now resolves to a refused address is marked failed at once, with the reason.
"""

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations import egress
from integrations.models import (
    DeliveryState,
    Partner,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)
from journey.errors import ApplicationError
from journey.models import Journey

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's marker, not a secret)
# Standard Webhooks' suggested schedule after the first try: 5 s, 5 min, 30 min, 2 h,
# 5 h, 10 h, 10 h: the last try comes more than 27 hours after the event.
RETRY_SCHEDULE = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
]
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
# How long the old secret still signs after a rotation.
ROTATION_OVERLAP = timedelta(hours=24)
EXCERPT_CHARS = 500


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def webhook_sign(*, secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The ``v1,<base64>`` signature of ``id.timestamp.body`` with a ``whsec_`` secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _check_event_types(event_types: list[str]) -> None:
    unknown = sorted(set(event_types) - set(WebhookEventType.values))
    if not event_types or unknown:
        raise ApplicationError(
            f"Unknown event types: {', '.join(unknown)}." if unknown else "Choose event types.",
            fields={"event_types": [f"Choose from {', '.join(WebhookEventType.values)}."]},
        )


def webhook_endpoint_create(
    *, partner: Partner, url: str, event_types: list[str]
) -> WebhookEndpoint:
    _check_event_types(event_types)
    egress.check_url(url)
    return WebhookEndpoint.objects.create(
        partner=partner, url=url, event_types=sorted(set(event_types)), secret=new_secret()
    )


def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret; the old one keeps signing too for ROTATION_OVERLAP."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + ROTATION_OVERLAP
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    return endpoint


def _signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    result = [endpoint.secret]
    if endpoint.previous_secret and (
        endpoint.previous_secret_expires_at is None or endpoint.previous_secret_expires_at > now
    ):
        result.append(endpoint.previous_secret)
    return result


class _WebhookJSONEncoder(DjangoJSONEncoder):
    """Every time in a delivery as the docs promise: UTC, with milliseconds, "…02.511Z"
    (DjangoJSONEncoder keeps a time's own offset, "+01:00" for a Madrid choice, and drops
    the milliseconds when they are zero)."""

    def default(self, o: object) -> object:
        if isinstance(o, datetime) and o.tzinfo is not None:
            return o.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return super().default(o)


def webhook_emit(
    *, event_type: str, journey: Journey, data: dict[str, Any], partner: Partner | None = None
) -> list[WebhookDelivery]:
    """Write a delivery for every active endpoint subscribed to ``event_type`` of every
    partner serving ``journey`` (or of ``partner`` alone, if it serves it), in the
    caller's transaction; send them after commit."""
    if event_type not in WebhookEventType.values:
        raise ApplicationError(f"Unknown webhook event type {event_type!r}.")
    now = timezone.now()
    endpoints = WebhookEndpoint.objects.filter(is_active=True, partner__journeys=journey)
    if partner is not None:
        endpoints = endpoints.filter(partner=partner)
    payload = json.loads(
        json.dumps(
            {
                "type": event_type,
                "timestamp": now,  # as every time in it (_WebhookJSONEncoder)
                "data": {"journey": journey.reference, **data},
            },
            cls=_WebhookJSONEncoder,
        )
    )
    deliveries = [
        WebhookDelivery(
            endpoint=endpoint,
            journey=journey,
            message_id=f"msg_{uuid.uuid4().hex}",
            event_type=event_type,
            payload=payload,
            next_attempt_at=now,
        )
        # Filtered here: JSON "contains" on a list is not portable to SQLite.
        for endpoint in endpoints.distinct()
        if event_type in endpoint.event_types
    ]
    WebhookDelivery.objects.bulk_create(deliveries)
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: _queue(pk))
    return deliveries


def _queue(delivery_id: int) -> None:
    from integrations.tasks import deliver_webhook

    try:
        deliver_webhook.delay(delivery_id)
    except Exception:
        logger.warning("Could not queue webhook %s; the sweep will send it.", delivery_id)


def _claim(delivery_id: int, now: datetime) -> bool:
    lease_expired = now - settings.WEBHOOK_CLAIM_LEASE
    return (
        WebhookDelivery.objects.filter(
            Q(state=DeliveryState.PENDING, next_attempt_at__lte=now)
            | Q(state=DeliveryState.SENDING, claimed_at__lt=lease_expired),
            pk=delivery_id,
        ).update(state=DeliveryState.SENDING, claimed_at=now, attempts=F("attempts") + 1)
        == 1
    )


def webhook_deliver(*, delivery_id: int) -> DeliveryState | None:
    """Try one delivery if it is due and unclaimed; log the attempt. Returns the new
    state, or None when there was nothing to do."""
    now = timezone.now()
    if not _claim(delivery_id, now):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":"))
    timestamp = int(time.time())
    signatures = " ".join(
        webhook_sign(secret=s, message_id=delivery.message_id, timestamp=timestamp, body=body)
        for s in _signing_secrets(endpoint, now)
    )
    headers = {
        "content-type": "application/json",
        "user-agent": "Milepost-Webhooks/1",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }
    status_code: int | None = None
    excerpt = error = ""
    permanent = False
    started = time.monotonic()
    try:
        # Resolved and checked now, and sent to the address checked (DNS rebinding).
        destination = egress.destination(endpoint.url)
        status_code, excerpt = egress.post(
            destination,
            body=body.encode(),
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT,
        )
        excerpt = excerpt[:EXCERPT_CHARS]
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except egress.SendError as exc:
        error = str(exc)[:2000]
        permanent = exc.permanent
    except ApplicationError as exc:  # no longer an http(s) URL
        error, permanent = f"Refused: {exc.message}", True
    duration_ms = int((time.monotonic() - started) * 1000)
    WebhookAttempt.objects.create(
        delivery=delivery,
        status_code=status_code,
        response_excerpt=excerpt,
        duration_ms=duration_ms,
        error=error,
    )
    if not error:
        state = DeliveryState.DELIVERED
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            state=state, delivered_at=timezone.now(), claimed_at=None
        )
        return state
    # A refused address will not get better: failed at once, not retried for a day.
    failed = permanent or delivery.attempts >= MAX_ATTEMPTS
    state = DeliveryState.FAILED if failed else DeliveryState.PENDING
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        state=state,
        claimed_at=None,
        next_attempt_at=now + RETRY_SCHEDULE[min(delivery.attempts, MAX_ATTEMPTS - 1) - 1],
    )
    return state


def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now (staff's "send again"), whatever its state."""
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            state=DeliveryState.PENDING,
            next_attempt_at=timezone.now(),
            claimed_at=None,
            attempts=0,
        )
        transaction.on_commit(lambda: _queue(delivery.pk))
    delivery.refresh_from_db()
    return delivery


def webhook_due_ids(*, now: datetime | None = None, limit: int = 200) -> list[int]:
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(
            Q(state=DeliveryState.PENDING, next_attempt_at__lte=now)
            | Q(state=DeliveryState.SENDING, claimed_at__lt=now - settings.WEBHOOK_CLAIM_LEASE)
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def webhook_sweep(*, now: datetime | None = None) -> int:
    """Try every due delivery (retries, and those whose task was lost); returns how many
    were delivered."""
    delivered = 0
    for pk in webhook_due_ids(now=now):
        if webhook_deliver(delivery_id=pk) == DeliveryState.DELIVERED:
            delivered += 1
    return delivered
