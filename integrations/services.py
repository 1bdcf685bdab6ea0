"""Writes for partners: API keys and inbound status events."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from integrations.models import InboundEvent, Partner, PartnerAPIKey, StatusMapping
from journey.compiled import CompiledRead
from journey.db import bulk_create_unless_taken, create_unless_taken, update_rows
from journey.errors import ApplicationError
from journey.models import EventSource, Journey
from journey.services import LockedJourney, journey_record_milestone, journeys_lock
from journey.unit import Writes

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


def _key_by_prefix(prefix: str) -> QuerySet[PartnerAPIKey]:
    return PartnerAPIKey.objects.select_related("partner").filter(prefix=prefix)


# Read on every API request: compiled once (journey.compiled).
_KEY_BY_PREFIX = CompiledRead(_key_by_prefix)


def partner_key_authenticate(raw: str) -> PartnerAPIKey | None:
    """The usable key matching ``raw``, or None."""
    if not raw.startswith(KEY_PREFIX) or "." not in raw:
        return None
    prefix, _, secret = raw[len(KEY_PREFIX) :].partition(".")
    try:
        key = _KEY_BY_PREFIX.get(prefix=prefix)  # the prefix is unique
    except PartnerAPIKey.DoesNotExist:
        return None
    if not hmac.compare_digest(key.hashed_secret, _hash(secret)):
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


@dataclass(frozen=True)
class StatusEventIn:
    """One status event as a partner sent it (validated)."""

    journey: Journey
    event_id: str
    code: str
    occurred_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class StatusEventsPrepared:
    """What recording a partner's events reads and claims once, for one event or a batch,
    in the caller's transaction: the mappings of their codes, the events already received
    with their ids, the inbound rows claimed for the new ones, and the journeys to move,
    locked (``journeys_lock``)."""

    partner: Partner
    mappings: dict[str, StatusMapping]
    received: dict[str, InboundEvent]
    claimed: dict[str, InboundEvent]
    locked: dict[int, LockedJourney]
    # The writes of all the events, flushed together by partner_status_events_finish.
    unit: Writes
    linked: list[InboundEvent] = field(default_factory=list)


def _mappings(partner: int, codes: list[str]) -> QuerySet[StatusMapping]:
    return StatusMapping.objects.filter(partner=partner, code__in=codes)


_MAPPINGS = CompiledRead(_mappings)


def _received(partner: int, ids: list[str]) -> QuerySet[InboundEvent]:
    return InboundEvent.objects.filter(partner=partner, event_id__in=ids).select_related(
        "journey", "journey_event"
    )


# Read for every event sent again (a partner's retry): compiled once (journey.compiled).
_RECEIVED = CompiledRead(_received)


def partner_status_events_prepare(
    *, partner: Partner, events: list[StatusEventIn]
) -> StatusEventsPrepared:
    """Claim the new events' ids and lock the journeys they may move, in the caller's
    transaction (the claims and locks are held until it ends), in four to six statements
    whatever the number of events:

    * the partner's mappings for their codes;
    * one INSERT ... ON CONFLICT DO NOTHING of an inbound row per new event_id, in
      event_id order: the unique (partner, event_id) makes a concurrent sender of the same
      id wait for this transaction, and then find it received;
    * the rows of the ids that were already there (only if any), to answer as duplicates;
    * the journeys the mapped new events may move, locked in one statement in primary-key
      order, their milestones and (for several journeys) their stages.

    Everyone takes these in that order (claims, then journeys, each sorted), so two
    batches that share event ids or journeys queue behind each other instead of
    deadlocking. Finish with ``partner_status_events_finish`` before the transaction ends.
    """
    codes = sorted({event.code for event in events})
    mappings = {m.code: m for m in _MAPPINGS.list(partner=partner.pk, codes=codes)} if codes else {}
    rows: dict[str, InboundEvent] = {}
    for event in sorted(events, key=lambda e: e.event_id):
        # An id sent twice in one batch: the first item claims it.
        rows.setdefault(event.event_id, _inbound(partner, event, mappings))
    claimed = {
        row.event_id: row for row in bulk_create_unless_taken(list(rows.values()), key="event_id")
    }
    taken = [event_id for event_id in rows if event_id not in claimed]
    received = (
        {inbound.event_id: inbound for inbound in _RECEIVED.list(partner=partner.pk, ids=taken)}
        if taken
        else {}
    )
    to_move = {row.journey.pk for row in claimed.values() if not row.unmapped}
    unit = Writes()
    return StatusEventsPrepared(
        partner=partner,
        mappings=mappings,
        received=received,
        claimed=claimed,
        locked=(
            journeys_lock(
                pks=to_move,
                unit=unit,
                journeys={row.journey.pk: row.journey for row in claimed.values()},
            )
            if to_move
            else {}
        ),
        unit=unit,
    )


def _inbound(
    partner: Partner, event: StatusEventIn, mappings: dict[str, StatusMapping]
) -> InboundEvent:
    return InboundEvent.new(
        partner=partner,
        journey=event.journey,
        event_id=event.event_id,
        code=event.code,
        occurred_at=event.occurred_at,
        payload=event.payload,
        unmapped=event.code not in mappings,
    )


def partner_status_events_finish(*, prepared: StatusEventsPrepared) -> None:
    """Write what the events changed (one write per table, ``journey.unit``), then
    link the inbound rows to the timeline events they made: one UPDATE for them all."""
    prepared.unit.flush()
    for inbound in prepared.linked:
        # Assigned again now that the flush gave it a key: sets journey_event_id.
        inbound.journey_event = inbound.journey_event
    update_rows(prepared.linked, ["journey_event"])
    prepared.linked.clear()


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
    savepoint: bool = True,
) -> InboundResult:
    """Record a partner's status event and apply it to the journey through the spine.

    The same ``event_id`` sent again returns the first result and changes nothing; an
    unmapped code is kept and flagged for staff, and moves nothing.

    ``prepared`` is what ``partner_status_events_prepare`` claimed and locked for a batch
    in the caller's transaction: an event refused then (an ApplicationError) has written
    nothing, and the others go on without a savepoint each. Without it the event is
    prepared, recorded and finished here, in a transaction of its own: a savepoint inside
    the caller's, so a caller may catch a refusal and go on. ``savepoint=False`` is for a
    caller whose transaction a refusal ends anyway (the API's request, rolled back whole
    on any error): two statements fewer.

    ``journey`` read with ``journeys_for_spine`` (owner, profile, template) is not read
    again: it is locked and checked against its version.
    """
    event = StatusEventIn(
        journey=journey,
        event_id=event_id,
        code=code,
        occurred_at=occurred_at,
        payload=payload or {},
    )
    if prepared is not None:
        return _record(prepared, event)
    with transaction.atomic(savepoint=savepoint):
        prepared = partner_status_events_prepare(partner=partner, events=[event])
        result = _record(prepared, event)
        partner_status_events_finish(prepared=prepared)
    return result


def _record(prepared: StatusEventsPrepared, event: StatusEventIn) -> InboundResult:
    partner, event_id = prepared.partner, event.event_id
    if event_id in prepared.received:
        return _replayed(prepared.received[event_id], event)
    inbound = prepared.claimed.pop(event_id, None)
    if inbound is None:
        # The batch's earlier item with this id was refused (its claim withdrawn): claim
        # it for this one.
        inbound = _inbound(partner, event, prepared.mappings)
        if not create_unless_taken(inbound):
            first = InboundEvent.objects.select_related("journey", "journey_event").get(
                partner=partner, event_id=event_id
            )
            return _replayed(first, event)
    mapping = prepared.mappings.get(event.code)
    if mapping is None:
        prepared.received[event_id] = inbound
        return InboundResult(
            inbound=inbound,
            applied=False,
            duplicate=False,
            warnings=[
                f"Unmapped status code {event.code!r}: kept for staff, not shown to customers."
            ],
        )
    locked = prepared.locked.get(event.journey.pk)
    if locked is None:  # claimed after preparing (above)
        locked = prepared.locked[event.journey.pk] = journeys_lock(
            pks=[event.journey.pk],
            unit=prepared.unit,
            journeys={event.journey.pk: event.journey},
        )[event.journey.pk]
    writes = locked.writes
    try:
        recorded = journey_record_milestone(
            journey=event.journey,
            stage_key=mapping.stage_key,
            occurred_at=event.occurred_at,
            source=EventSource.PARTNER,
            source_name=partner.name,
            message=mapping.customer_text,
            payload=event.payload,
            locked=locked,
        )
    except ApplicationError as error:
        if locked.writes != writes:
            # Refused after writing: only a savepoint could undo that, and there is none.
            raise RuntimeError("The spine refused an event after writing to it.") from error
        # Refused before writing anything: withdraw the claim, so the id stays free.
        InboundEvent.objects.filter(pk=inbound.pk).delete()
        raise
    inbound.journey_event = recorded.event
    prepared.linked.append(inbound)
    prepared.received[event_id] = inbound
    warnings = [] if recorded.applied else ["Older than the journey's state: logged, not applied."]
    return InboundResult(
        inbound=inbound, applied=recorded.applied, duplicate=False, warnings=warnings
    )


def _replayed(first: InboundEvent, event: StatusEventIn) -> InboundResult:
    if (first.journey_id, first.code, first.occurred_at) != (
        event.journey.pk,
        event.code,
        event.occurred_at,
    ):
        raise ApplicationError(
            f"event_id {first.event_id!r} was already used for a different event.",
            code="event_id_conflict",
            fields={"event_id": ["Already used for a different event."]},
            status=409,
        )
    applied = bool(first.journey_event and first.journey_event.applied)
    return InboundResult(inbound=first, applied=applied, duplicate=True, warnings=[])
