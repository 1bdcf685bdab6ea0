"""Writes for partners: API keys and inbound status events."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from integrations.models import InboundEvent, Partner, PartnerAPIKey, StatusMapping
from journey.db import create_unless_taken
from journey.errors import ApplicationError
from journey.models import EventSource, Journey
from journey.services import LockedJourney, journey_record_milestone, journeys_lock

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


@dataclass
class StatusEventsPrepared:
    """What recording a partner's events reads once, for one event or a whole batch:
    the partner's mappings for the codes, the events already received with these ids, and
    the journeys to move, locked (``journeys_lock``) in the caller's transaction."""

    partner: Partner
    mappings: dict[str, StatusMapping]
    received: dict[str, InboundEvent]
    locked: dict[int, LockedJourney] = field(default_factory=dict)

    def forget(self, journey: Journey) -> None:
        """Drop a journey's loaded state (an item failed midway): reloaded when next used."""
        self.locked.pop(journey.pk, None)


def partner_status_events_prepare(
    *, partner: Partner, events: list[tuple[Journey, str, str]]
) -> StatusEventsPrepared:
    """Read what recording ``events`` (journey, event_id, code) needs, in three to four
    queries whatever their number, and lock the journeys the mapped ones may move.

    Call it in the transaction that records them: the locks are held until it ends. The
    journeys are locked in one statement, in primary-key order, so two batches that share
    journeys queue behind each other instead of deadlocking (see ``journeys_lock``).
    """
    if not events:
        return StatusEventsPrepared(partner=partner, mappings={}, received={})
    codes = {code for _journey, _event_id, code in events}
    mappings = {m.code: m for m in StatusMapping.objects.filter(partner=partner, code__in=codes)}
    received = {
        inbound.event_id: inbound
        for inbound in InboundEvent.objects.filter(
            partner=partner, event_id__in={event_id for _j, event_id, _c in events}
        ).select_related("journey", "journey_event")
    }
    to_move = {
        journey.pk
        for journey, event_id, code in events
        if code in mappings and event_id not in received
    }
    locked = journeys_lock(pks=to_move) if to_move else {}
    return StatusEventsPrepared(
        partner=partner, mappings=mappings, received=received, locked=locked
    )


class _TakenMeanwhile(Exception):
    """The event_id was recorded by a concurrent request after it was looked up."""


def partner_record_status_event(
    *,
    partner: Partner,
    journey: Journey,
    event_id: str,
    code: str,
    occurred_at: datetime,
    message: str = "",
    payload: dict[str, Any] | None = None,
    prepared: StatusEventsPrepared | None = None,
) -> InboundResult:
    """Record a partner's status event and apply it to the journey through the spine.

    The same ``event_id`` sent again returns the first result and changes nothing; an
    unmapped code is kept and flagged for staff, and moves nothing. ``prepared`` is what
    ``partner_status_events_prepare`` read for a batch in the caller's transaction;
    without it, it is read here for this one event.
    """
    payload = payload or {}
    if prepared is not None and event_id in prepared.received:
        return _replayed(
            prepared.received[event_id], journey=journey, code=code, occurred_at=occurred_at
        )
    try:
        # A transaction of its own, or a savepoint in a batch's: an item that fails
        # leaves nothing behind.
        with transaction.atomic():
            if prepared is None:
                prepared = partner_status_events_prepare(
                    partner=partner, events=[(journey, event_id, code)]
                )
                if event_id in prepared.received:
                    first = prepared.received[event_id]
                    return _replayed(first, journey=journey, code=code, occurred_at=occurred_at)
            result = _record(
                prepared,
                journey=journey,
                event_id=event_id,
                code=code,
                occurred_at=occurred_at,
                message=message,
                payload=payload,
            )
    except _TakenMeanwhile:
        # Rolled back: the journey's loaded state may be ahead of the database.
        prepared.forget(journey)
        first = InboundEvent.objects.select_related("journey", "journey_event").get(
            partner=partner, event_id=event_id
        )
        prepared.received[event_id] = first
        return _replayed(first, journey=journey, code=code, occurred_at=occurred_at)
    except BaseException:
        if prepared is not None:
            prepared.forget(journey)
        raise
    prepared.received[event_id] = result.inbound
    return result


def _record(
    prepared: StatusEventsPrepared,
    *,
    journey: Journey,
    event_id: str,
    code: str,
    occurred_at: datetime,
    message: str,
    payload: dict[str, Any],
) -> InboundResult:
    partner = prepared.partner
    mapping = prepared.mappings.get(code)
    inbound = InboundEvent(
        partner=partner,
        journey=journey,
        event_id=event_id,
        code=code,
        occurred_at=occurred_at,
        payload=payload,
        unmapped=mapping is None,
    )
    if mapping is None:
        if not create_unless_taken(inbound):
            raise _TakenMeanwhile
        return InboundResult(
            inbound=inbound,
            applied=False,
            duplicate=False,
            warnings=[f"Unmapped status code {code!r}: kept for staff, not shown to customers."],
        )
    locked = prepared.locked.get(journey.pk)
    if locked is None:  # forgotten after a failed item, or not prepared for this code
        locked = prepared.locked[journey.pk] = journeys_lock(pks=[journey.pk])[journey.pk]
    recorded = journey_record_milestone(
        journey=journey,
        stage_key=mapping.stage_key,
        occurred_at=occurred_at,
        source=EventSource.PARTNER,
        source_name=partner.name,
        message=mapping.customer_text,
        payload=payload,
        locked=locked,
    )
    # The timeline event first, so the inbound row is written once, with its link. The
    # event_id was free when prepared; if a concurrent request took it since (it can only
    # be for another journey, or unmapped: these locks are held), all this rolls back.
    inbound.journey_event = recorded.event
    if not create_unless_taken(inbound):
        raise _TakenMeanwhile
    warnings = [] if recorded.applied else ["Older than the journey's state: logged, not applied."]
    return InboundResult(
        inbound=inbound, applied=recorded.applied, duplicate=False, warnings=warnings
    )


def _replayed(
    first: InboundEvent, *, journey: Journey, code: str, occurred_at: datetime
) -> InboundResult:
    if first.journey_id != journey.pk or first.code != code or first.occurred_at != occurred_at:
        raise ApplicationError(
            f"event_id {first.event_id!r} was already used for a different event.",
            code="event_id_conflict",
            fields={"event_id": ["Already used for a different event."]},
            status=409,
        )
    applied = bool(first.journey_event and first.journey_event.applied)
    return InboundResult(inbound=first, applied=applied, duplicate=True, warnings=[])
