"""Idempotency keys with Stripe's semantics, stored per partner.

The same key with the same request answers the first response again; the same key with
another request is a conflict (409); a duplicate that arrives while the first is still
running is a conflict too, so the work is never done twice. Records expire after 24 h.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.models import IdempotencyRecord, Partner
from journey.db import create_unless_taken
from journey.errors import ApplicationError

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: Any


def _ttl() -> timedelta:
    return getattr(settings, "API_IDEMPOTENCY_TTL", timedelta(hours=24))


def idempotency_begin(
    *, partner: Partner, key: str, method: str, path: str, fingerprint: str
) -> IdempotencyRecord | Replay:
    """Claim ``key`` for this request, or return the first response to replay."""
    if not key.strip() or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApplicationError(
            f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable characters.",
            fields={HEADER: ["1 to 255 printable characters."]},
        )
    now = timezone.now()
    path = path[:500]
    record = IdempotencyRecord(
        partner=partner,
        key=key,
        method=method,
        path=path,
        fingerprint=fingerprint,
        expires_at=now + _ttl(),
    )
    # One INSERT, committed at once (outside a transaction), so a concurrent duplicate
    # sees it; an expired record in the way is deleted only when it is met, then the
    # claim is tried once more.
    if _claim(record):
        return record
    first = IdempotencyRecord.objects.filter(partner=partner, key=key).first()
    if first is not None and first.expires_at <= now:
        IdempotencyRecord.objects.filter(pk=first.pk, expires_at__lte=now).delete()
        if _claim(record):
            return record
        first = IdempotencyRecord.objects.filter(partner=partner, key=key).first()
    if first is None or first.status_code is None:
        raise ApplicationError(
            "A request with this Idempotency-Key is still being processed; retry later.",
            code="idempotency_in_progress",
            fields={HEADER: ["In progress."]},
            status=409,
        )
    if (first.method, first.path, first.fingerprint) != (method, path, fingerprint):
        raise ApplicationError(
            "This Idempotency-Key was used for a different request.",
            code="idempotency_key_reused",
            fields={HEADER: ["Used for a different request."]},
            status=409,
        )
    return Replay(status_code=first.status_code, body=first.response_body)


def _claim(record: IdempotencyRecord) -> bool:
    connection = transaction.get_connection()
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return create_unless_taken(record)
    with transaction.atomic():
        # Visible to others at commit as usual, without waiting for the disk (a flush of
        # the WAL, a few milliseconds). Safe: the request's own work commits later and
        # synchronously, which flushes this too; a crash before that loses the claim and
        # the work alike, and the retry claims the key again.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        return create_unless_taken(record)


def idempotency_finish(*, record: IdempotencyRecord, status_code: int, body: Any) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status_code=status_code, response_body=body
    )


def idempotency_abandon(*, record: IdempotencyRecord) -> None:
    """Forget a request that failed before it had a response, so it may be sent again."""
    IdempotencyRecord.objects.filter(pk=record.pk, status_code__isnull=True).delete()


def idempotency_purge(*, now: datetime | None = None) -> int:
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
