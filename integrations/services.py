"""Writes for partners: API keys and inbound status events."""

import hashlib
import hmac
import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.conf import settings
from django.core.cache import cache
from django.db import (
    DataError,
    Error,
    IntegrityError,
    connections,
    router,
    transaction,
)
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from integrations.models import (
    IdempotencyRecord,
    InboundEvent,
    Partner,
    PartnerAPIKey,
    StatusMapping,
)
from journey.cache import flag_set
from journey.compiled import CompiledRead, read_side_by_side
from journey.db import (
    Together,
    bulk_create_unless_taken,
    create_unless_taken,
    insert_unless_taken_statement,
    key_drawn,
    mark_saved,
)
from journey.errors import ApplicationError
from journey.models import EventSource, Journey
from journey.services import (
    LockedJourney,
    journey_check_occurred_at,
    journey_lock_claiming,
    journey_read_for_spine,
    journey_record_milestone,
    journeys_for_spine,
    journeys_lock,
)
from journey.unit import Writes

logger = logging.getLogger(__name__)

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
    parts = _key_parts(raw)
    if parts is None:
        return None
    prefix, secret = parts
    try:
        key = _KEY_BY_PREFIX.get(prefix=prefix)  # the prefix is unique
    except PartnerAPIKey.DoesNotExist:
        return None
    return _usable(key, secret)


def _served_for_spine_by_key(prefix: str, reference: str) -> QuerySet[Journey]:
    return journeys_for_spine().filter(partners__api_keys__prefix=prefix, reference=reference)


# Read with the key for every event posted: compiled once (journey.compiled).
_SERVED_FOR_SPINE_BY_KEY = CompiledRead(_served_for_spine_by_key)


def partner_key_authenticate_serving(
    raw: str, reference: str
) -> tuple[PartnerAPIKey | None, Journey | None]:
    """``partner_key_authenticate``, and the journey named ``reference`` if the key's
    partner serves it, read for the spine (``journeys_for_spine``), by the same
    statement: a round trip fewer for a partner's event. No journey without a usable
    key."""
    parts = _key_parts(raw)
    if parts is None:
        return None, None
    prefix, secret = parts
    keys, journeys = read_side_by_side(
        (_KEY_BY_PREFIX, {"prefix": prefix}),
        (_SERVED_FOR_SPINE_BY_KEY, {"prefix": prefix, "reference": reference}),
    )
    key = _usable(keys[0], secret) if keys else None
    if key is None:
        return None, None
    return key, journeys[0] if journeys else None


def _key_parts(raw: str) -> tuple[str, str] | None:
    """A key's prefix and secret, or None if ``raw`` is not shaped as a key."""
    if not raw.startswith(KEY_PREFIX) or "." not in raw:
        return None
    prefix, _, secret = raw[len(KEY_PREFIX) :].partition(".")
    return prefix, secret


def _usable(key: PartnerAPIKey, secret: str) -> PartnerAPIKey | None:
    """``key`` if ``secret`` is its secret and it may be used now (its last use noted
    once a minute), else None."""
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
    in the caller's transaction: the partner's mappings (as of its read of the partner:
    ``partner_mappings``), the events already received with their ids, the inbound rows
    claimed for the new ones, and the journeys to move, locked (``journeys_lock``)."""

    partner: Partner
    mappings: dict[str, StatusMapping]
    received: dict[str, InboundEvent]
    claimed: dict[str, InboundEvent]
    locked: dict[int, LockedJourney]
    # The writes of all the events, flushed together by partner_status_events_finish.
    unit: Writes
    linked: list[InboundEvent] = field(default_factory=list)
    # A refused event's row is deleted, so that its id may be sent again corrected; a
    # queued event's is kept with its rejection instead, for the partner to read.
    withdraw_refused: bool = True
    # Journeys the claims name (or the batch's items that may claim an id later) that
    # were deleted before they could be locked: their events are refused
    # (``_refuse_for_a_deleted_journey``) without locking again.
    gone: set[int] = field(default_factory=set)


def _mappings(partner: int) -> QuerySet[StatusMapping]:
    return StatusMapping.objects.filter(partner=partner).order_by()


_MAPPINGS = CompiledRead(_mappings)

# Each partner's mappings by code, as this process last read them, with the partner's
# created_at and mappings_version then (a deleted partner's id reused on SQLite).
_MAPPINGS_READ: dict[int, tuple[datetime, int, dict[str, StatusMapping]]] = {}


def partner_mappings(partner: Partner) -> dict[str, StatusMapping]:
    """The partner's mappings by code, as of ``partner``'s read of its row: read once per
    process for each ``mappings_version``, which triggers give a value never used before
    at every change to them (migration 0007), and kept. Every event reads them, and the
    API key's read brings the partner's row with the version: a statement fewer for each
    event. Shared: read only."""
    read = _MAPPINGS_READ.get(partner.pk)
    if read is not None and read[:2] == (partner.created_at, partner.mappings_version):
        return read[2]
    mappings = {m.code: m for m in _MAPPINGS.list(partner=partner.pk)}
    _MAPPINGS_READ[partner.pk] = (partner.created_at, partner.mappings_version, mappings)
    return mappings


def _received(partner: int, ids: list[str]) -> QuerySet[InboundEvent]:
    return InboundEvent.objects.filter(partner=partner, event_id__one_of=ids).select_related(
        "journey", "journey_event"
    )


# Read for every event sent again (a partner's retry): compiled once (journey.compiled).
_RECEIVED = CompiledRead(_received, whole=("ids",))


def _received_drawn(partner: int, ids: list[str]) -> QuerySet[InboundEvent]:
    """``_received``, each row with the key this session last drew for an inbound row
    (``drawn``: PostgreSQL only, after a claim)."""
    return _received(partner, ids).annotate(drawn=key_drawn(InboundEvent))


_RECEIVED_DRAWN = CompiledRead(_received_drawn, whole=("ids",))


def partner_status_events_prepare(
    *, partner: Partner, events: list[StatusEventIn]
) -> StatusEventsPrepared:
    """Claim the new events' ids and lock their journeys, in the caller's
    transaction (the claims and locks are held until it ends), in two to six statements
    whatever the number of events:

    * the partner's mappings, unless this process holds them as of the partner's read
      (``partner_mappings``);
    * one INSERT ... ON CONFLICT DO NOTHING of an inbound row per new event_id, in
      event_id order: the unique (partner, event_id) makes a concurrent sender of the same
      id wait for this transaction, and then find it received;
    * the rows of the ids that were already there (only if any), to answer as duplicates;
    * the new events' journeys (those the mapped events may move, those the claims
      of unmapped ones name, so that none is deleted before the claims commit, and those
      of items that may claim their id later), locked in one statement in primary-key
      order, their milestones and (for several journeys) their stages.

    Everyone takes these in that order (claims, then journeys, each sorted), so two
    batches that share event ids or journeys queue behind each other instead of
    deadlocking. Finish with ``partner_status_events_finish`` before the transaction ends.
    """
    mappings = partner_mappings(partner)
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
    for event_id in taken:
        if event_id not in received:
            # Its holder was gone before it could be read (its journey deleted, or its
            # claim withdrawn): the id is free again, claimed now, before any lock.
            holder = _claimed_or_holder(rows[event_id])
            if holder is None:
                claimed[event_id] = rows[event_id]
            else:
                received[event_id] = holder
    # An item whose id an earlier item of the batch claimed is claimed by ``_record`` if
    # that one is refused: its journey is locked now with the rest, in order, not by
    # itself later (two batches could then deadlock).
    also = [event.journey for event in events if event.event_id in claimed]
    return _prepared(partner, mappings, received, claimed, also=also)


def _prepared(
    partner: Partner,
    mappings: dict[str, StatusMapping],
    received: dict[str, InboundEvent],
    claimed: dict[str, InboundEvent],
    *,
    withdraw_refused: bool = True,
    also: Iterable[Journey] = (),
) -> StatusEventsPrepared:
    """The journeys of the claimed events (and ``also`` these), locked in one statement,
    in primary-key order, for a unit of work of their own: those the mapped events may
    move, and those of unmapped ones, which move nothing but whose claims name them
    (locked, they cannot be deleted before the claims commit; one deleted already is
    refused by ``_record``)."""
    journeys = {row.journey.pk: row.journey for row in claimed.values()}
    for journey in also:
        journeys.setdefault(journey.pk, journey)
    to_lock = set(journeys)
    unit = Writes()
    locked = journeys_lock(pks=to_lock, unit=unit, journeys=journeys) if to_lock else {}
    return StatusEventsPrepared(
        partner=partner,
        mappings=mappings,
        received=received,
        claimed=claimed,
        locked=locked,
        unit=unit,
        withdraw_refused=withdraw_refused,
        gone=to_lock - set(locked),
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


def partner_status_events_finish(
    *,
    prepared: StatusEventsPrepared,
    rows: list[InboundEvent] | None = None,
    fields: tuple[str, ...] = ("journey_event",),
    together: Together | None = None,
) -> None:
    """Write what the events changed (one write per table, ``journey.unit``), with the
    inbound rows linked to the timeline events they made: one UPDATE for them all
    (``rows``, ``fields``: for other rows or more of their fields as well), in the same
    statement on PostgreSQL; with ``together``'s writes too."""
    linked = prepared.linked if rows is None else rows
    prepared.unit.flush(together, linked=(linked, list(fields), "journey_event"))
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


def _needs_transaction(name: str) -> None:
    """The one-statement ways write in their caller's transaction and set it to roll
    back when they cannot finish: they refuse to run without one."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(f"{name} needs a transaction.")


def partner_record_status_event_at_once(
    *,
    partner: Partner,
    journey: Journey,
    event_id: str,
    code: str,
    occurred_at: datetime,
    payload: dict[str, Any],
    answer: Callable[[InboundResult], IdempotencyRecord],
) -> IdempotencyRecord | None:
    """``partner_record_status_event`` and the request's Idempotency-Key with its answer
    (the record ``answer`` makes from the result), in the caller's transaction, the key's
    record and the inbound row's link to the timeline written in the statement of the
    event's writes (``journey.db.Together``): three round trips fewer for the request
    than claiming the key first and storing its answer last. Both or neither: None,
    with the transaction set to roll back, when the key was taken already (a retry):
    the caller then answers as without this, which knows what to say. An event_id
    received already is answered as a duplicate, as without this. A refusal
    (ApplicationError) is raised with nothing written."""
    _needs_transaction("partner_record_status_event_at_once")
    event = StatusEventIn(
        journey=journey,
        event_id=event_id,
        code=code,
        occurred_at=occurred_at,
        payload=payload,
    )
    prepared = _prepare_one(partner, event)
    record = answer(_record(prepared, event))
    records: list[IdempotencyRecord] = []
    together = Together()
    together.insert_unless_taken([record], key="key", then=records.extend)
    partner_status_events_finish(prepared=prepared, together=together)
    if not records:
        transaction.set_rollback(True)
        return None
    return record


def _prepare_one(partner: Partner, event: StatusEventIn) -> StatusEventsPrepared:
    """``partner_status_events_prepare`` for one event, its id claimed by the statement
    that locks its journey (``journey_lock_claiming``) where that can be: on PostgreSQL,
    for a journey read for the spine, whether its code is mapped or not. A round trip
    fewer; the claim still comes before the lock, as everyone takes them."""
    mappings = partner_mappings(partner)
    inbound = _inbound(partner, event, mappings)
    # An unmapped code's claim too: it names the journey, which the lock keeps from
    # being deleted before the claim commits.
    claim = (
        insert_unless_taken_statement(inbound) if journey_read_for_spine(event.journey) else None
    )
    if claim is None:
        return partner_status_events_prepare(partner=partner, events=[event])
    unit = Writes()
    made = journey_lock_claiming(journey=event.journey, claim=claim, unit=unit)
    if made is not None:
        key, locked = made
        mark_saved(inbound, key)
        return StatusEventsPrepared(
            partner=partner,
            mappings=mappings,
            received={},
            claimed={event.event_id: inbound},
            locked=locked,
            unit=unit,
            gone=set() if locked else {event.journey.pk},
        )
    # Nothing came back: the id was received already, or this claim was made for a
    # journey without milestones, which is locked the usual way, or for one deleted
    # since the request read it, which is refused.
    row = _RECEIVED_DRAWN.first(partner=partner.pk, ids=[event.event_id])
    if row is not None and row.pk == row.drawn:
        mark_saved(inbound, row.pk)
        return _prepared(partner, mappings, {}, {event.event_id: inbound})
    if row is None and not Journey.objects.filter(pk=event.journey.pk).exists():
        # The receipt is read with its journey (an inner join): this claim's journey
        # was deleted since the request read it.
        _refuse_for_a_deleted_journey(partner, event)
    # (Received and then withdrawn meanwhile, it is claimed again by ``_record``.)
    return _prepared(partner, mappings, {event.event_id: row} if row else {}, {})


def _refuse_for_a_deleted_journey(partner: Partner, event: StatusEventIn) -> NoReturn:
    """Refuse (404) an event whose journey was deleted after the caller read it (by
    staff, or a partner's sandbox journey purged), its claim withdrawn: the claim names
    the journey, and left it would break the foreign key when the transaction commits
    (Django's are checked then), a 500 for the whole request or batch. Withdrawn even
    for the queued applier, which keeps a refused event's row: the journey's deletion
    removes its rows."""
    InboundEvent.objects.filter(
        partner=partner, event_id=event.event_id, journey=event.journey.pk
    ).delete()
    raise ApplicationError(
        f"The journey {event.journey.reference} no longer exists.",
        code="not_found",
        fields={"journey": ["Deleted."]},
        status=404,
    )


# How often ``_claimed_or_holder`` tries an id whose holder keeps vanishing.
_CLAIM_TURNS = 3


def _claimed_or_holder(row: InboundEvent) -> InboundEvent | None:
    """Claim the row's event_id (insert the row): None once claimed, else the inbound row
    that holds the id, read with its journey and timeline event (to answer as a
    duplicate). The holder can be gone by the time it is read (its journey deleted, or
    its claim withdrawn when its event was refused): the id is free again, and claimed
    for this row. Each turn round waits for another transaction to claim the id and then
    lose it; a few turns in a row mean the insert failed for another reason (a row the
    database skipped), an error rather than a loop without end."""
    for _turn in range(_CLAIM_TURNS):
        if create_unless_taken(row):
            return None
        holder = _RECEIVED.first(partner=row.partner_id, ids=[row.event_id])
        if holder is not None:
            return holder
    raise RuntimeError(
        f"The event_id {row.event_id!r} was neither claimed nor found held in {_CLAIM_TURNS} turns."
    )


def _record(prepared: StatusEventsPrepared, event: StatusEventIn) -> InboundResult:
    partner, event_id = prepared.partner, event.event_id
    if event_id in prepared.received:
        return _replayed(prepared.received[event_id], event)
    inbound = prepared.claimed.pop(event_id, None)
    if inbound is None:
        # The batch's earlier item with this id was refused (its claim withdrawn), or the
        # receipt ``_prepare_one`` found the id taken by was gone when read: claim it.
        inbound = _inbound(partner, event, prepared.mappings)
        first = _claimed_or_holder(inbound)
        if first is not None:
            return _replayed(first, event)
    locked = prepared.locked.get(event.journey.pk)
    if locked is None and event.journey.pk not in prepared.gone:
        # Claimed after preparing one event whose receipt was gone when read
        # (``_prepare_one``): locked now, or found deleted.
        locked = journeys_lock(
            pks=[event.journey.pk],
            unit=prepared.unit,
            journeys={event.journey.pk: event.journey},
        ).get(event.journey.pk)
    if locked is None:
        _refuse_for_a_deleted_journey(partner, event)
    prepared.locked[event.journey.pk] = locked
    mapping = prepared.mappings.get(event.code)
    if mapping is None:
        prepared.received[event_id] = inbound
        return InboundResult(
            inbound=inbound,
            applied=False,
            duplicate=False,
            warnings=[_unmapped_warning(event.code)],
        )
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
        if prepared.withdraw_refused:
            # Refused before writing anything: withdraw the claim, so the id stays free.
            InboundEvent.objects.filter(pk=inbound.pk).delete()
        if error.code == REFUSED_FOR_ITS_MAPPING:
            # The partner sent a code, not a stage: name what it sent and why it fails.
            raise ApplicationError(
                f"Your code {event.code!r} is mapped to the stage {mapping.stage_key!r}, "
                "which this journey does not have.",
                code=error.code,
                fields={"code": [f"Mapped to a stage this journey lacks: {mapping.stage_key!r}."]},
            ) from error
        raise
    inbound.journey_event = recorded.event
    prepared.linked.append(inbound)
    prepared.received[event_id] = inbound
    warnings = [] if recorded.applied else [_OLDER_WARNING]
    return InboundResult(
        inbound=inbound, applied=recorded.applied, duplicate=False, warnings=warnings
    )


_OLDER_WARNING = "Older than the journey's state: logged, not applied."


def _unmapped_warning(code: str) -> str:
    return f"Unmapped status code {code!r}: kept for staff, not shown to customers."


def inbound_warnings(inbound: InboundEvent) -> list[str]:
    """What the answer to the event warned of, for an event read back later."""
    state = inbound.state
    if state == "unmapped":
        return [_unmapped_warning(inbound.code)]
    if state == "logged":
        return [_OLDER_WARNING]
    return []


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
    # The first answer's warnings too: a duplicate answers as the first result did.
    return InboundResult(
        inbound=first, applied=applied, duplicate=True, warnings=inbound_warnings(first)
    )


# --- Events accepted now and applied by a worker (``Prefer: respond-async``) ------------
#
# A partner that sends events one at a time and does not need each one's outcome in its
# answer may ask for it to be queued: the request then only checks the event, stores it
# and answers 202, and a worker applies the queue's events together, a unit of work of up
# to QUEUE_BATCH at a time, as the batch endpoint applies its items. The request's fixed
# costs (docs/performance.md) are then paid once per unit, not once per event.

QUEUE_BATCH = 100
# A unit of at least this many events (and fewer than QUEUE_BATCH) leaves the next look for
# later (INBOUND_QUEUE_GATHER), for fuller units under load. Smaller ones mean events come
# about one per unit's apply (a partner posting a few a second, or tens): looked at again
# at once, they are applied within a unit's time, not the gathering's.
GATHER_FROM = 4
# Set by a request that queued an event, unless already set, which then queues the
# applier's task; the applier deletes it before each look at the queue. One task per
# look, not one per event, however many events arrive meanwhile.
_NUDGE = "integrations:inbound-queue:nudge"
# A nudge whose task was lost expires (the periodic sweep applies the events meanwhile).
_NUDGE_SECONDS = 300
# Set while a look an applier left for later (INBOUND_QUEUE_GATHER on) is pending: one at
# a time, and the looks for anything else leave the queue to it. Expires, with the nudge
# set beside it, if that task is lost.
_LATER = "integrations:inbound-queue:later"
_LATER_SECONDS = 10
# One applier at a time, so a journey's queued events are applied in the order they
# were accepted (``_unit``).
_APPLIER_LOCK = 0x6D696C65706F7374  # "milepost"
_LOCAL_APPLIER = threading.Lock()


def _served(partner: int, reference: str) -> QuerySet[Journey]:
    return Journey.objects.filter(partners=partner, reference=reference).only(
        "pk", "reference", "started_at"
    )


_SERVED = CompiledRead(_served)


def partner_journey_served(*, partner: Partner, reference: str) -> Journey | None:
    """The journey with this reference if the partner serves it (its key, reference and
    start only), else None."""
    try:
        return _SERVED.get(partner=partner.pk, reference=reference)
    except Journey.DoesNotExist:
        return None


def _queued_row(
    partner: Partner,
    journey: Journey,
    event_id: str,
    code: str,
    occurred_at: datetime,
    payload: dict[str, Any],
) -> InboundEvent:
    """The inbound row of an event to queue, its time checked as the spine checks it."""
    journey_check_occurred_at(journey=journey, occurred_at=occurred_at)
    return InboundEvent.new(
        partner=partner,
        journey=journey,
        event_id=event_id,
        code=code,
        occurred_at=occurred_at,
        payload=payload,
        queued=True,
    )


def partner_queue_status_event(
    *,
    partner: Partner,
    journey: Journey,
    event_id: str,
    code: str,
    occurred_at: datetime,
    payload: dict[str, Any] | None = None,
) -> InboundResult:
    """Accept a partner's status event for a worker to apply: its time checked as the
    spine checks it, its row stored as queued in the caller's transaction, and the
    applier nudged once that commits. An event_id already received answers as
    ``partner_record_status_event`` would (the first event, or 409 for another one).
    The code's mapping is looked up when the event is applied."""
    row = _queued_row(partner, journey, event_id, code, occurred_at, payload or {})
    first = _claimed_or_holder(row)
    if first is not None:
        event = StatusEventIn(
            journey=journey, event_id=event_id, code=code, occurred_at=occurred_at
        )
        return _replayed(first, event)
    transaction.on_commit(_nudge)
    return InboundResult(inbound=row, applied=False, duplicate=False, warnings=[])


def partner_queue_status_event_at_once(
    *,
    partner: Partner,
    journey: Journey,
    event_id: str,
    code: str,
    occurred_at: datetime,
    payload: dict[str, Any],
    answer: Callable[[InboundResult], IdempotencyRecord],
) -> IdempotencyRecord | None:
    """``partner_queue_status_event`` and the request's Idempotency-Key with its answer
    (the record ``answer`` makes from the result), in one statement
    (``journey.db.Together``), in the caller's transaction: five round trips for the
    request instead of seven. Both or neither: None, with the transaction set to roll
    back, when the event_id or the key was taken already (a retry, a duplicate): the
    caller then answers as without this, which knows what to say."""
    _needs_transaction("partner_queue_status_event_at_once")
    row = _queued_row(partner, journey, event_id, code, occurred_at, payload)
    rows: list[InboundEvent] = []
    records: list[IdempotencyRecord] = []
    together = Together()
    together.insert_unless_taken([row], key="event_id", then=rows.extend)
    stamped = row.received_at  # stamped as its statement is made (on PostgreSQL)
    record = answer(InboundResult(inbound=row, applied=False, duplicate=False, warnings=[]))
    together.insert_unless_taken([record], key="key", then=records.extend)
    together.send()
    # Sent one by one (not PostgreSQL), the row is stamped again when inserted: the
    # answer would not say what was stored.
    if not rows or not records or row.received_at != stamped:
        transaction.set_rollback(True)
        return None
    transaction.on_commit(_nudge)
    return record


def _nudge() -> None:
    from integrations.tasks import apply_queued_events

    try:
        if flag_set(_NUDGE, _NUDGE_SECONDS):
            try:
                apply_queued_events.delay()
            except Exception:
                # No task is coming: let the next request's nudge queue one.
                cache.delete(_NUDGE)
                raise
    except Exception:
        # Redis is down: the events stay queued and the periodic sweep applies them.
        logger.warning("Could not queue the applier of queued events; the sweep will run it.")


@contextmanager
def _unit() -> Iterator[bool]:
    """A transaction that holds the applier's lock if it is free (yields whether it got
    it): one applier at a time, so the queue's events are taken and applied in the
    order they were accepted. On PostgreSQL an advisory lock of the transaction (any
    process; held by the transaction, not the session, so it is right behind a pooler
    in transaction mode too). Elsewhere a lock of this process, for the applier run in
    each request of the embedded default; across processes (``make run``'s
    ``beat_embedded`` runs the periodic sweep) SQLite's one writer at a time, whose lock
    a transaction takes as it begins (``transaction_mode`` IMMEDIATE, in settings)."""
    connection = connections[router.db_for_write(InboundEvent)]
    if connection.vendor != "postgresql":
        held = _LOCAL_APPLIER.acquire(blocking=False)
        try:
            with transaction.atomic():
                yield held
        finally:
            if held:
                _LOCAL_APPLIER.release()
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_APPLIER_LOCK])
            (held,) = cursor.fetchone()
        yield held


def _queued(limit: int, pks: list[int] | None) -> list[InboundEvent]:
    """The oldest queued events, locked, as far as the first event of another partner
    (a unit is one partner's: its mappings, its name on the timeline); or those of
    ``pks``."""
    rows = InboundEvent.objects.filter(queued=True)
    if pks is not None:
        rows = rows.filter(pk__in=pks)
    found = list(
        rows.select_related("partner").select_for_update(of=("self",)).order_by("pk")[:limit]
    )
    partner = found[0].partner_id if found else None
    return list(itertools.takewhile(lambda row: row.partner_id == partner, found))


def partner_queued_events_apply(
    *, limit: int = QUEUE_BATCH, pks: list[int] | None = None
) -> int | None:
    """Apply the oldest queued events (at most ``limit``, as far as the first of another
    partner; or those of ``pks``) in one transaction, as the batch endpoint applies its
    items: the partner's mappings (``partner_mappings``), their journeys locked in one statement,
    their writes flushed together. An event the spine refuses is kept with its
    ``rejection``; one whose code is not mapped is flagged unmapped, as if it had been
    sent without the queue. Returns how many events it took off the queue, or None if
    another applier holds the lock. The nudge is cleared, under the lock, before the
    queue is read."""
    with _unit() as held:
        if not held:
            return None
        if pks is None:
            cache.delete(_NUDGE)
        rows = _queued(limit, pks)
        if not rows:
            return 0
        partner = rows[0].partner
        journeys = {
            j.pk: j
            for j in journeys_for_spine().order_by().filter(pk__in={r.journey_id for r in rows})
        }
        mappings = partner_mappings(partner)
        for row in rows:
            row.journey = journeys[row.journey_id]
            row.unmapped = row.code not in mappings
            row.queued = False
        prepared = _prepared(
            partner, mappings, {}, {row.event_id: row for row in rows}, withdraw_refused=False
        )
        for row in rows:
            event = StatusEventIn(
                journey=row.journey,
                event_id=row.event_id,
                code=row.code,
                occurred_at=row.occurred_at,
                payload=row.payload,
            )
            try:
                _record(prepared, event)
            except ApplicationError as error:
                row.rejection = {
                    "code": error.code,
                    "message": error.message,
                    "fields": error.fields,
                }
        partner_status_events_finish(
            prepared=prepared,
            rows=rows,
            fields=("queued", "unmapped", "journey_event", "rejection"),
        )
    return len(rows)


@dataclass(frozen=True)
class UnmappedApplied:
    """What ``partner_unmapped_events_apply`` did with the events it was given."""

    applied: int = 0  # moved their journeys
    logged: int = 0  # older than their journey's state: on its timeline, moving nothing
    refused: int = 0  # the spine refused them: rejected, with why (readable back)
    left: int = 0  # applied already, still unmapped, or of a journey no longer served
    busy: bool = False  # another applier held the lock: nothing was done


# Events per call: they are applied in one transaction under the applier's lock, which
# holds every partner's queue meanwhile.
UNMAPPED_AT_ONCE = 500


# The spine's refusal of an event mapped to a stage its journey's template lacks: the
# mapping's fault, so the event is taken again once staff have changed the mapping.
REFUSED_FOR_ITS_MAPPING = "unknown_stage"


def partner_unmapped_events_apply(*, pks: list[int]) -> UnmappedApplied:
    """Apply the unmapped events of ``pks`` (at most ``UNMAPPED_AT_ONCE``) whose codes are
    mapped now (staff added the mapping after the event came), and those refused for a
    stage their journey lacks (``REFUSED_FOR_ITS_MAPPING``: staff changed the mapping
    since; one that still points there is refused again), through the queue's
    applier as if just queued, one unit per partner: each moves its journey (or is
    logged as older than the journey's state) and tells the customer as any event does,
    or is refused (rejected, with why). Left as they are: events applied already, still
    unmapped, or of a journey the partner no longer serves (the API would refuse the
    partner now). If another applier holds the lock, nothing changes."""
    if len(pks) > UNMAPPED_AT_ONCE:
        raise ApplicationError(f"At most {UNMAPPED_AT_ONCE} events at a time.")
    with transaction.atomic():
        rows = list(
            InboundEvent.objects.filter(
                Q(unmapped=True) | Q(rejection__code=REFUSED_FOR_ITS_MAPPING),
                pk__in=pks,
                queued=False,
                journey_event__isnull=True,
                journey__partners=F("partner"),
            )
            .select_for_update(of=("self",))
            .order_by("pk")
        )
        mapped = {
            (m.partner_id, m.code)
            for m in StatusMapping.objects.filter(
                partner__in={r.partner_id for r in rows}, code__in={r.code for r in rows}
            )
        }
        by_partner: dict[int, list[int]] = {}
        for row in rows:
            if (row.partner_id, row.code) in mapped:
                by_partner.setdefault(row.partner_id, []).append(row.pk)
        ready = [pk for partner_pks in by_partner.values() for pk in partner_pks]
        InboundEvent.objects.filter(pk__in=ready).update(
            queued=True, unmapped=False, rejection=None
        )
        for partner_pks in by_partner.values():
            taken = partner_queued_events_apply(limit=len(partner_pks), pks=partner_pks)
            if taken is None:
                # Another applier holds the lock: leave everything as it was.
                transaction.set_rollback(True)
                return UnmappedApplied(left=len(pks), busy=True)
            if taken != len(partner_pks):  # one partner's rows, locked here: all are taken
                raise RuntimeError(f"The applier took {taken} of {len(partner_pks)} events.")
        outcomes = InboundEvent.objects.filter(pk__in=ready).aggregate(
            refused=Count("pk", filter=Q(rejection__isnull=False)),
            logged=Count("pk", filter=Q(journey_event__applied=False)),
        )
    refused, logged = outcomes["refused"], outcomes["logged"]
    return UnmappedApplied(
        applied=len(ready) - refused - logged,
        logged=logged,
        refused=refused,
        left=len(pks) - len(ready),
    )


_INTERNAL_ERROR = {
    "code": "internal_error",
    "message": "The event could not be applied; staff have been told.",
    "fields": {},
}


def _passing(error: Exception) -> bool:
    """Whether an error is the database's or the code's trouble rather than the event's:
    a lost connection, a deadlock, a plan cached before a deploy (the events stay queued
    for the next try). Only an integrity or data error may be one event's fault."""
    return isinstance(error, Error) and not isinstance(error, IntegrityError | DataError)


def _apply_or_isolate(limit: int) -> int | None:
    """A unit of queued events (None if another applier holds the lock). If it fails
    for something that may be one event's fault, its events are tried one at a time, so
    that one bad event cannot hold up the queue: one that fails alone is taken off it,
    rejected, and logged for staff. If every event of a unit of several fails alone the
    same way, the fault is not theirs (a bug, say): the error is raised and the events
    stay queued."""
    try:
        return partner_queued_events_apply(limit=limit)
    except Exception as error:
        if _passing(error):
            raise
        logger.exception("A unit of queued events failed; applying them one at a time.")
    pks = [row.pk for row in _queued_unlocked(limit)]
    failures: list[tuple[int, Exception]] = []
    for pk in pks:
        try:
            if partner_queued_events_apply(pks=[pk]) is None:
                return None  # another applier took over
        except Exception as error:
            if _passing(error):
                raise
            failures.append((pk, error))
    if len(pks) > 1 and len(failures) == len(pks) and len({type(e) for _pk, e in failures}) == 1:
        raise failures[-1][1]
    for pk, error in failures:
        logger.error("Queued inbound event %s could not be applied.", pk, exc_info=error)
        InboundEvent.objects.filter(pk=pk, queued=True).update(
            queued=False, rejection=_INTERNAL_ERROR
        )
    return len(pks)


def _queued_unlocked(limit: int) -> list[InboundEvent]:
    with transaction.atomic():
        return _queued(limit, None)


def partner_queued_events_drain(
    *, limit: int = QUEUE_BATCH, later: bool = True, scheduled: bool = False
) -> int:
    """Apply queued events, oldest first and ``limit`` at a time, until none is left;
    returns how many were taken off the queue. Only one applier runs at a time: another
    returns at once, leaving the queue to it.

    No event is left behind: a request nudges after its event has committed, and the
    applier clears the nudge, under the lock, before each look at the queue, so an event
    it did not see left a nudge that it finds after its last look (and looks again), or
    that queued a task which finds the lock free.

    After a unit of ``GATHER_FROM`` events or more, and fewer than ``limit``, it leaves
    the next look to a task queued ``INBOUND_QUEUE_GATHER`` seconds on (``later``;
    without it, it looks again at once), and returns: under load the units grow, which
    costs each event less (looking at once, they settle at a few events: as many as
    arrive while one is applied), while events that come a few to a unit or fewer are
    applied at once. One such look is pending at a time, and a look for anything else
    meanwhile (a request's nudge, the sweep) leaves the queue to it; ``scheduled`` is
    that look. It does not wait in the task: a worker's process waiting for the queue
    to fill sends no customer's message meanwhile, and with one queue for both
    (production's default) two appliers waiting in turn held both processes of a worker
    while a partner streamed events, the messages held until the stream ended
    (docs/performance.md)."""
    if scheduled:
        cache.delete(_LATER)
    elif later and settings.INBOUND_QUEUE_GATHER and cache.get(_LATER) is not None:
        return 0  # the look left for later is coming, and takes these events
    taken = 0
    while True:
        while True:
            done = _apply_or_isolate(limit)
            if done is None:
                return taken  # another applier holds the lock: the queue is its
            taken += done
            if not done:
                break
            # Several events came while the last unit was applied: under load, let the
            # next unit fill up, so that a unit's fixed work (its transaction, reads and
            # writes) is shared by more events.
            gather = later and GATHER_FROM <= done < limit and settings.INBOUND_QUEUE_GATHER
            if gather and _look_again_later():
                return taken
        if cache.get(_NUDGE) is None:
            return taken


def _look_again_later() -> bool:
    """Queue the applier's next look ``INBOUND_QUEUE_GATHER`` seconds from now, unless
    one is pending already, with the nudge set so that requests meanwhile queue no other
    (the look clears it, as every look does). True if a look is coming; False if it
    could not be queued: the caller looks at once."""
    from integrations.tasks import apply_queued_events

    if not flag_set(_LATER, _LATER_SECONDS):
        return True  # another applier's look is pending
    try:
        cache.set(_NUDGE, 1, _LATER_SECONDS)
        apply_queued_events.apply_async(
            kwargs={"scheduled": True}, countdown=settings.INBOUND_QUEUE_GATHER
        )
    except Exception:
        cache.delete_many([_LATER, _NUDGE])
        logger.warning("Could not queue the applier's next look; looking at once.")
        return False
    return True
