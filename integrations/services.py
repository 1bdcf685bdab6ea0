"""Writes for partners: API keys and inbound status events."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.models import InboundEvent, Partner, PartnerAPIKey, StatusMapping
from journey.errors import ApplicationError
from journey.models import EventSource, Journey
from journey.services import journey_record_milestone

KEY_PREFIX = "mp_"
# Touch last_used_at at most this often, so that a busy key does not write on every call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(secret: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough (no stretching needed)
    # and keeps authentication cheap at hundreds of requests per second.
    return hashlib.sha256(secret.encode()).hexdigest()


def partner_key_create(
    *, partner: Partner, name: str = "", expires_at: datetime | None = None
) -> tuple[PartnerAPIKey, str]:
    """Create a key and return it with its plain text, which is never stored or shown again."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError(
            "The expiry must be in the future.", fields={"expires_at": ["In the past."]}
        )
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    key = PartnerAPIKey.objects.create(
        partner=partner,
        name=name,
        prefix=prefix,
        hashed_secret=_hash(secret),
        expires_at=expires_at,
    )
    return key, f"{KEY_PREFIX}{prefix}.{secret}"


def partner_key_authenticate(raw: str) -> PartnerAPIKey | None:
    """The usable key matching ``raw``, or None."""
    if not raw.startswith(KEY_PREFIX) or "." not in raw:
        return None
    prefix, _, secret = raw[len(KEY_PREFIX) :].partition(".")
    key = PartnerAPIKey.objects.select_related("partner").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.hashed_secret, _hash(secret)):
        return None
    now = timezone.now()
    if not key.is_usable(now):
        return None
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        PartnerAPIKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def partner_key_revoke(*, key: PartnerAPIKey) -> PartnerAPIKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


@dataclass(frozen=True)
class InboundResult:
    inbound: InboundEvent
    applied: bool
    duplicate: bool
    warnings: list[str]


def partner_record_status_event(
    *,
    partner: Partner,
    journey: Journey,
    event_id: str,
    code: str,
    occurred_at: datetime,
    message: str = "",
    payload: dict[str, Any] | None = None,
) -> InboundResult:
    """Record a partner's status event and apply it to the journey through the spine.

    The same ``event_id`` sent again returns the first result and changes nothing; an
    unmapped code is kept and flagged for staff, and moves nothing.
    """
    payload = payload or {}
    with transaction.atomic():
        try:
            with transaction.atomic():
                inbound = InboundEvent.objects.create(
                    partner=partner,
                    journey=journey,
                    event_id=event_id,
                    code=code,
                    occurred_at=occurred_at,
                    payload=payload,
                )
        except IntegrityError:
            return _replayed(
                partner=partner,
                journey=journey,
                event_id=event_id,
                code=code,
                occurred_at=occurred_at,
            )
        mapping = StatusMapping.objects.filter(partner=partner, code=code).first()
        if mapping is None:
            inbound.unmapped = True
            inbound.save(update_fields=["unmapped"])
            return InboundResult(
                inbound=inbound,
                applied=False,
                duplicate=False,
                warnings=[
                    f"Unmapped status code {code!r}: kept for staff, not shown to customers."
                ],
            )
        recorded = journey_record_milestone(
            journey=journey,
            stage_key=mapping.stage_key,
            occurred_at=occurred_at,
            source=EventSource.PARTNER,
            source_name=partner.name,
            message=mapping.customer_text,
            payload=payload,
        )
        inbound.journey_event = recorded.event
        inbound.save(update_fields=["journey_event"])
    warnings = [] if recorded.applied else ["Older than the journey's state: logged, not applied."]
    return InboundResult(
        inbound=inbound, applied=recorded.applied, duplicate=False, warnings=warnings
    )


def _replayed(
    *, partner: Partner, journey: Journey, event_id: str, code: str, occurred_at: datetime
) -> InboundResult:
    first = InboundEvent.objects.select_related("journey_event").get(
        partner=partner, event_id=event_id
    )
    if first.journey_id != journey.pk or first.code != code or first.occurred_at != occurred_at:
        raise ApplicationError(
            f"event_id {event_id!r} was already used for a different event.",
            code="event_id_conflict",
            fields={"event_id": ["Already used for a different event."]},
            status=409,
        )
    applied = bool(first.journey_event and first.journey_event.applied)
    return InboundResult(inbound=first, applied=applied, duplicate=True, warnings=[])
