"""Writes to journeys. The spine: every change to a journey goes through here."""

import zoneinfo
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, CharField, DateTimeField, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import CustomerProfile, User
from journey import events
from journey.compiled import CompiledRead
from journey.errors import ApplicationError
from journey.eta import ETA_FIELDS, eta_recompute, eta_refresh
from journey.jargon import jargon_check
from journey.models import (
    BEFORE_START_GRACE,
    Appointment,
    Checkpoint,
    CustomerTask,
    EtaCause,
    EventSource,
    Feedback,
    Journey,
    JourneyEvent,
    JourneyTemplate,
    Message,
    Milestone,
    MilestoneState,
    RescheduleRequest,
    RescheduleState,
    ShipmentLeg,
    StageDefinition,
    appointment_time_problems,
)
from journey.unit import Writes, open_leg_end
from notifications.triggers import (
    notify_appointment,
    notify_appointment_cancelled,
    notify_staff_of_customer_message,
    notify_staff_reply,
    notify_task_assigned,
    settle_task_messages,
)

# Partners' and staff clocks drift: an event a few minutes "in the future" is accepted.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class RecordedEvent:
    event: JourneyEvent
    applied: bool


def journey_create(
    *,
    template: JourneyTemplate,
    owner: User,
    title: str,
    started_at: datetime | None = None,
    promised_date: date | None = None,
) -> Journey:
    """Create a journey with one milestone per stage of its template, planned in order."""
    started_at = started_at or timezone.now()
    stages = list(template.stages.order_by("position"))
    if not stages:
        raise ApplicationError(
            f"The template {template.name!r} has no stages.", fields={"template": ["No stages."]}
        )
    with transaction.atomic():
        journey = Journey.objects.create(
            template=template,
            owner=owner,
            title=title,
            started_at=started_at,
            promised_date=promised_date,
        )
        planned = started_at
        milestones = []
        for stage in stages:
            # A stage's duration runs from reaching it to reaching the next one.
            milestones.append(
                Milestone(
                    journey=journey,
                    stage=stage,
                    position=stage.position,
                    planned_date=timezone.localdate(planned),
                )
            )
            planned += stage.expected_duration
        # A journey created after it started is forecast from now, not from its start.
        eta_refresh(
            journey=journey,
            milestones=milestones,
            now=max(started_at, timezone.now()),
            cause=EtaCause.CREATED,
        )
        Milestone.objects.bulk_create(milestones)
        journey.save(update_fields=[*ETA_FIELDS, "updated_at"])
    return journey


@dataclass
class LockedJourney:
    """A journey locked for writing in the current transaction, with what the spine reads
    (owner and profile, template, milestones with their stages, in order). The spine
    keeps it current as it writes, so one transaction can record several events; its
    writes go into ``unit``, shared by the journeys locked together, until it is flushed
    (``Writes.flush``) before the transaction ends."""

    journey: Journey
    milestones: list[Milestone]
    unit: Writes
    # Events recorded through it: a caller without a savepoint checks that a refusal
    # (an ApplicationError) came before any write.
    writes: int = 0


def journeys_for_spine() -> QuerySet[Journey]:
    """Journeys with what the spine reads with them: owner and profile, template. A
    caller that reads journeys anyway (the partner API, by reference) reads them so and
    hands them to ``journeys_lock``, which then need not read them again."""
    return Journey.objects.select_related("owner__profile", "template")


def _for_spine(pks: list[int]) -> QuerySet[Journey]:
    return journeys_for_spine().order_by().filter(pk__one_of=pks)


def _for_spine_locked(pks: list[int]) -> QuerySet[Journey]:
    # of=self: the lock is on the journey row only (the profile join is nullable).
    return _for_spine(pks).select_for_update(of=("self",), no_key=True)


def _versions_locked(pks: list[int]) -> QuerySet[Journey]:
    return (
        Journey.objects.select_for_update(of=("self",), no_key=True)
        .filter(pk__one_of=pks)
        .order_by("pk")
        .values_list("pk", "version")
    )


# A column of the appointment booked for the milestone the statement reads (the latest),
# on its index by stage. Raw SQL, not a ``Subquery``: a batch's read is compiled by Django
# each time, and resolving two subqueries' querysets cost a third more of that read's
# Python (``bench.profile batch --phases``).
_LATEST_BOOKING = {
    "arrive_at": RawSQL(
        'SELECT "arrive_at" FROM "journey_appointment" '
        'WHERE "journey_appointment"."milestone_id" = "journey_milestone"."id" '
        'ORDER BY "journey_appointment"."starts_at" DESC, "journey_appointment"."id" DESC '
        "LIMIT 1",
        (),
        output_field=DateTimeField(),
    ),
    "time_zone": RawSQL(
        'SELECT "time_zone" FROM "journey_appointment" '
        'WHERE "journey_appointment"."milestone_id" = "journey_milestone"."id" '
        'ORDER BY "journey_appointment"."starts_at" DESC, "journey_appointment"."id" DESC '
        "LIMIT 1",
        (),
        output_field=CharField(),
    ),
}


def _booked(milestones: QuerySet[Milestone]) -> QuerySet[Milestone]:
    """The milestones, each with the appointment booked for it, if any (the latest, as
    the journey page shows it): its arrival and its place's time zone
    (``booked_arrive_at``, ``booked_zone``), the day the ETA does not put the stage
    before (``journey.eta``). Read with the milestones, by their own statement: no round
    trip more for an event, and a booking's change moves the journey's version as any
    appointment's does, so a batch's read before the lock is checked as the rest."""
    return milestones.order_by().annotate(
        booked_arrive_at=_LATEST_BOOKING["arrive_at"], booked_zone=_LATEST_BOOKING["time_zone"]
    )


def _milestones(journeys: list[int]) -> QuerySet[Milestone]:
    """The journeys' milestones (``_booked``)."""
    return _booked(Milestone.objects.filter(journey__one_of=journeys))


def _milestones_with_stages(journeys: list[int]) -> QuerySet[Milestone]:
    return _milestones(journeys).select_related("stage")


def _milestones_version_locked(journey: int) -> QuerySet[Milestone]:
    """One journey's milestones with their stages, and its row locked (FOR NO KEY
    UPDATE) by the same statement, its version read with them (``journey_version``: the
    row's latest, as the lock reads it; None if it was deleted meanwhile), and what the
    ETA reads of its open legs (``journey_leg_end``: ``journey.unit.open_leg_end``)."""
    # By the key given, not the row's journey_id: PostgreSQL runs an uncorrelated
    # subquery once (an InitPlan), where a correlated one locks again for every row.
    version = (
        Journey.objects.filter(pk=journey)
        .select_for_update(no_key=True)
        .order_by()
        .values("version")
    )
    # By the one key as a parameter (a single event's statement, planned as such).
    return (
        _booked(Milestone.objects.filter(journey=journey))
        .select_related("stage")
        .annotate(journey_version=Subquery(version), journey_leg_end=open_leg_end(journey))
    )


# The WITH query ``_milestones_claiming_version_locked`` reads (quoted there): a
# claim's INSERT.
_CLAIM = "claim"


def _milestones_claiming_version_locked(journey: int) -> QuerySet[Milestone]:
    """``_milestones_version_locked`` after the WITH query ``claim`` (an ``INSERT ...
    RETURNING`` the key of the one row it may insert: ``journey_lock_claiming``): no rows
    unless it inserted one, whose key each row brings (``claimed``). That condition names
    no column of the rows, so PostgreSQL checks it once, before it reads any (a one-time
    filter): the claim is made, or found taken, before the journey is locked, the order
    every writer takes them in (``partner_status_events_prepare``)."""
    claimed = RawSQL('SELECT * FROM "claim"', (), BigIntegerField())
    return (
        _milestones_version_locked(journey).annotate(claimed=claimed).filter(claimed__isnull=False)
    )


# What every event the spine records reads: compiled once (journey.compiled), the
# journeys' keys as one parameter (``__one_of``), for a single event's one journey as for
# a batch's hundred.
_FOR_SPINE = CompiledRead(_for_spine, whole=("pks",))
_FOR_SPINE_LOCKED = CompiledRead(_for_spine_locked, whole=("pks",))
_VERSIONS_LOCKED = CompiledRead(_versions_locked, whole=("pks",))
_MILESTONES = CompiledRead(_milestones, whole=("journeys",))
_MILESTONES_WITH_STAGES = CompiledRead(_milestones_with_stages, whole=("journeys",))


def _stages(templates: list[int]) -> QuerySet[StageDefinition]:
    return StageDefinition.objects.filter(template__one_of=templates).order_by()


_STAGES = CompiledRead(_stages, whole=("templates",))
_MILESTONES_VERSION_LOCKED = CompiledRead(_milestones_version_locked)
_MILESTONES_CLAIMING_VERSION_LOCKED = CompiledRead(_milestones_claiming_version_locked)


def journeys_delete(*, pks: Iterable[int]) -> int:
    """Delete the journeys of ``pks`` with everything of theirs, in one transaction,
    each locked first (FOR UPDATE, in primary-key order, as every writer locks them);
    returns how many journeys were deleted.

    A partner's event names its journey from the start (its inbound row, whose foreign
    key is checked when it commits) and locks it later. Locked first, the deletion
    waits for an event that holds the lock, then deletes its row with the rest; an
    event that comes later waits for the deletion and finds the journey gone (404).
    Django's own delete locks the journey last, after reading what refers to it: an
    event committed meanwhile would make the deletion fail at its commit."""
    with transaction.atomic():
        locked = list(
            Journey.objects.filter(pk__in=list(pks))
            .order_by("pk")
            .select_for_update()
            .values_list("pk", flat=True)
        )
        if not locked:
            return 0
        Journey.objects.filter(pk__in=locked).delete()
    return len(locked)


def journeys_lock(
    *,
    pks: Iterable[int],
    unit: Writes | None = None,
    journeys: Mapping[int, Journey] | None = None,
) -> dict[int, LockedJourney]:
    """Lock journeys for the spine, in the caller's transaction, and load them.

    The rows are locked in primary-key order, so two transactions locking overlapping sets
    (two partner batches) queue behind each other instead of deadlocking. The lock is FOR
    NO KEY UPDATE: it serializes writers of the journey (the spine, ETA recomputes) but not
    inserts that merely reference it (a foreign key check takes KEY SHARE), so writing an
    inbound event or a notification never waits on it or upgrades a lock.

    Several journeys (a batch), or journeys the caller has already read
    (``journeys``, from ``journeys_for_spine``), are read before they are locked, and only
    those whose ``version`` moved meanwhile are read again under the lock: the version
    moves with every change to the journey, its milestones and its template's stages
    (database triggers), so what is kept is what a read under the lock would have
    returned (at READ COMMITTED, the project's isolation level, where each statement
    sees the latest commits), and a batch holds the locks that other batches wait for
    only while it writes. One journey not read yet is read under its lock at once; one
    the caller read (a single event's) has its milestones read by the statement that
    locks it, which reads its latest version too (``_milestones_version_locked``).

    The journeys share one unit of work (``unit``, or a new one): the caller flushes it.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("journeys_lock() needs a transaction.")
    unit = unit or Writes()
    pks = set(pks)
    given = {
        pk: journey
        for pk, journey in (journeys or {}).items()
        if pk in pks and journey_read_for_spine(journey)
    }
    if len(pks) == 1 and not given:
        locked = _journeys_load(pks, unit=unit, lock=True)
    elif len(pks) == 1 and (locked := _given_locked(given, unit=unit)) is not None:
        pass
    else:
        locked = _journeys_load(pks, unit=unit, lock=False, given=given)
        versions = dict(_VERSIONS_LOCKED.list(pks=sorted(pks)))
        for pk in set(locked) - set(versions):
            del locked[pk]  # deleted meanwhile
        moved = {
            pk
            for pk, version in versions.items()
            if pk not in locked or locked[pk].journey.version != version
        }
        if moved:
            locked.update(_journeys_load(moved, unit=unit, lock=False))
    unit.lock(locked)
    return locked


def journey_lock_claiming(
    *, journey: Journey, claim: tuple[str, Sequence[Any]], unit: Writes
) -> tuple[int, dict[int, LockedJourney]] | None:
    """``journeys_lock`` for one journey the caller read (``journeys_for_spine``), with
    ``claim`` (SQL and parameters: an ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` the
    key of the one row it may insert, on PostgreSQL) made by the statement that locks the
    journey and reads its milestones, before the lock: one round trip for both, in the
    order every writer takes them (claims, then journeys), so that a claim another
    transaction holds is waited for with nothing locked.

    Returns the key the claim inserted and the journey locked (``journeys_lock``'s
    dict: empty if the journey was deleted while the lock was awaited), or None when
    nothing came back: either the claim was taken already, and
    nothing is locked, or the claim was made and the journey has no milestones (or was
    deleted), and is not locked yet. The caller tells those apart (``journey.db.key_drawn``
    names the key this session's claim drew) and locks it the usual way, or refuses the
    event for a journey deleted."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("journey_lock_claiming() needs a transaction.")
    if not journey_read_for_spine(journey):
        raise ValueError("journey_lock_claiming() takes a journey read by journeys_for_spine.")
    milestones = _MILESTONES_CLAIMING_VERSION_LOCKED.list_with(_CLAIM, claim, journey=journey.pk)
    if not milestones:
        return None
    key = milestones[0].claimed
    for milestone in milestones:
        del milestone.claimed
    locked = _locked_as_read(journey, milestones, unit=unit)
    unit.lock(locked)
    return key, locked


def _given_locked(given: Mapping[int, Journey], *, unit: Writes) -> dict[int, LockedJourney] | None:
    """The one journey the caller read, locked, with its milestones, in one statement;
    read again under the lock if its version moved since the caller read it. The
    milestones come from the statement's snapshot and the version from the row as
    locked (the latest): equal to the caller's, nothing changed between the two. None
    when no milestone came back (a journey without any, or deleted before the
    statement): the caller locks it on its own."""
    ((pk, journey),) = given.items()
    milestones = _MILESTONES_VERSION_LOCKED.list(journey=pk)
    if not milestones:
        return None
    return _locked_as_read(journey, milestones, unit=unit)


def _locked_as_read(
    journey: Journey, milestones: list[Milestone], *, unit: Writes
) -> dict[int, LockedJourney]:
    """``_given_locked``'s journey from the rows of ``_milestones_version_locked``."""
    pk = journey.pk
    version = milestones[0].journey_version
    if version is None:  # deleted while the statement waited for its lock
        return {}
    if version != journey.version:
        return _journeys_load({pk}, unit=unit, lock=False)
    # The legs as of the statement's snapshot, as the milestones: what the lock's latest
    # version says nothing changed since.
    unit.leg_end_read(pk, milestones[0].journey_leg_end)
    state = LockedJourney(journey=journey, milestones=milestones, unit=unit)
    journey_field = Milestone.journey.field
    for milestone in milestones:
        del milestone.journey_version, milestone.journey_leg_end
        journey_field.set_cached_value(milestone, journey)
    milestones.sort(key=attrgetter("position"))
    return {pk: state}


def _journeys_load(
    pks: set[int], *, unit: Writes, lock: bool, given: Mapping[int, Journey] | None = None
) -> dict[int, LockedJourney]:
    """The journeys with what the spine reads: owner and profile, template, milestones in
    order with their stages; locked (FOR NO KEY UPDATE) if asked. Journeys ``given``
    (read by the caller with ``journeys_for_spine``) are not read again.

    No ORDER BY: the rows are keyed, and milestones put in order here. (With one, Django
    hashes every selected column to match it against the select list, a third of the
    cost of compiling these wide queries.)"""
    given = given or {}
    loaded = {
        pk: LockedJourney(journey=journey, milestones=[], unit=unit)
        for pk, journey in given.items()
    }
    if missing := pks - set(given):
        loaded.update(
            (journey.pk, LockedJourney(journey=journey, milestones=[], unit=unit))
            for journey in (_FOR_SPINE_LOCKED if lock else _FOR_SPINE).list(pks=sorted(missing))
        )
    stages: dict[int, StageDefinition] = {}
    if len(loaded) > 1:
        milestones = _MILESTONES.list(journeys=sorted(loaded))
        # Many journeys share a few templates: one object per stage, not one per milestone.
        templates = sorted({state.journey.template_id for state in loaded.values()})
        stages = {s.pk: s for s in _STAGES.list(templates=templates)}
    else:
        milestones = _MILESTONES_WITH_STAGES.list(journeys=sorted(loaded))
    # Filled in as select_related would: the related objects cached, without the
    # descriptor's checks (a thousand milestones in a batch).
    journey_field, stage_field = Milestone.journey.field, Milestone.stage.field
    for milestone in milestones:
        state = loaded[milestone.journey_id]
        journey_field.set_cached_value(milestone, state.journey)
        if stages:
            stage_field.set_cached_value(milestone, stages[milestone.stage_id])
        state.milestones.append(milestone)
    for state in loaded.values():
        state.milestones.sort(key=attrgetter("position"))
    return loaded


def journey_read_for_spine(journey: Journey) -> bool:
    """Whether the journey was read with what the spine reads (``journeys_for_spine``):
    any other is read again rather than have its owner, profile and template read one
    query at a time."""
    return (
        Journey.template.field.is_cached(journey)
        and Journey.owner.field.is_cached(journey)
        and User.profile.related.is_cached(journey.owner)
    )


def journey_check_occurred_at(
    *, journey: Journey, occurred_at: datetime, now: datetime | None = None
) -> None:
    """Refuse a milestone's time that has no offset, is in the future (beyond the clock
    skew allowed) or is more than a day before the journey started: what
    ``journey_record_milestone`` refuses first, for a caller that accepts an event now
    and records it later (a partner's queued event)."""
    if timezone.is_naive(occurred_at):
        raise ApplicationError(
            "occurred_at needs a time zone offset.", fields={"occurred_at": ["No time zone."]}
        )
    if occurred_at > (now or timezone.now()) + CLOCK_SKEW:
        raise ApplicationError(
            "occurred_at is in the future.", fields={"occurred_at": ["In the future."]}
        )
    if occurred_at < journey.started_at - BEFORE_START_GRACE:
        raise ApplicationError(
            "occurred_at is before the journey started.",
            fields={"occurred_at": ["Before the journey started."]},
        )


def journey_record_milestone(
    *,
    journey: Journey,
    stage_key: str,
    occurred_at: datetime,
    source: EventSource,
    actor: User | None = None,
    source_name: str = "",
    message: str = "",
    payload: dict[str, Any] | None = None,
    locked: LockedJourney | None = None,
) -> RecordedEvent:
    """Record that a journey reached a stage.

    In one transaction: appends the event to the timeline, moves the milestones
    forward (never backwards: an event older than the journey's current state is kept
    in the log but changes nothing), recomputes ETA and health, and writes the
    customer's notification to the outbox. Delivery is queued after commit.

    ``locked`` is the journey as ``journeys_lock`` returned it in the caller's
    transaction (a batch locks all its journeys first); without it the journey is locked
    and loaded here, in a transaction (or savepoint) of its own. With it, the caller's
    transaction is the unit of work: the writes go into ``locked.unit``, which the caller
    flushes once for all its events; every ApplicationError is raised before anything is
    recorded (``locked.writes`` counts the events recorded), so a batch can refuse one
    event and go on without a savepoint for each. The returned event has its primary key
    once the unit is flushed.
    """
    now = timezone.now()
    journey_check_occurred_at(journey=journey, occurred_at=occurred_at, now=now)
    jargon_check(message=message)

    own = locked is None
    with transaction.atomic() if own else nullcontext():
        if locked is None:
            # One writer per journey at a time: concurrent events are applied in turn.
            locked = journeys_lock(pks=[journey.pk]).get(journey.pk)
            if locked is None:
                raise Journey.DoesNotExist(f"No journey {journey.pk}.")
        elif locked.journey.pk != journey.pk:
            raise ValueError("locked is another journey.")
        journey, milestones, unit = locked.journey, locked.milestones, locked.unit
        target = next((m for m in milestones if m.stage.key == stage_key), None)
        if target is None:
            raise ApplicationError(
                f"This journey has no stage {stage_key!r}.",
                code="unknown_stage",
                fields={"stage": [f"Unknown stage {stage_key!r}."]},
            )
        reached = [m for m in milestones if m.state != MilestoneState.UPCOMING]
        latest = reached[-1] if reached else None
        applied = latest is None or target.position > latest.position

        # Nothing is refused from here on.
        locked.writes += 1
        event = events.event_milestone_reached(
            journey=journey,
            milestone=target,
            occurred_at=occurred_at,
            source=source,
            applied=applied,
            actor=actor,
            source_name=source_name,
            message=message,
            payload=payload,
        )
        unit.events.append(event)
        if applied:
            advanced = _advance(milestones=milestones, target=target, occurred_at=occurred_at)
            journey.last_event_at = max(filter(None, [journey.last_event_at, occurred_at]))
            # Saves the advanced milestones with their new expected dates.
            eta_refresh(
                journey=journey,
                milestones=milestones,
                now=now,
                cause=EtaCause.EVENT,
                unsaved=advanced,
                unit=unit,
            )
            unit.journeys[journey.pk] = journey
            if (
                target.stage.customer_visible
                and target.stage.notify_customer
                and not journey.is_sandbox
            ):
                unit.outbox.add(
                    recipient=journey.owner,
                    journey=journey,
                    kind="milestone_reached",
                    dedup_key=f"milestone-reached:{target.pk}",
                    context={
                        "stage_label": target.stage.label,
                        "explanation": target.stage.explanation,
                        # Rendered in the recipient's language when the message goes.
                        "stage_translations": target.stage.translations,
                        "message": message,
                        "occurred_at": occurred_at.isoformat(),
                        "position": target.position,
                        "stage_count": len(milestones),
                        "eta": journey.eta.isoformat() if journey.eta else None,
                    },
                    occurred_at=occurred_at,
                )
        elif target.state == MilestoneState.DONE and target.reached_at is None:
            # A stage passed over earlier now has its own time; state is unchanged.
            target.reached_at = occurred_at
            unit.save_milestones([target])
        if own:
            unit.flush()
    return RecordedEvent(event=event, applied=applied)


def _advance(
    *, milestones: list[Milestone], target: Milestone, occurred_at: datetime
) -> list[Milestone]:
    """Move the milestones up to ``target``; returns those changed, not yet saved."""
    last = milestones[-1]
    changed = []
    for milestone in milestones:
        if milestone.position < target.position and milestone.state != MilestoneState.DONE:
            # A stage passed over without its own event is done all the same.
            milestone.state = MilestoneState.DONE
            changed.append(milestone)
    target.state = MilestoneState.DONE if target is last else MilestoneState.CURRENT
    target.reached_at = occurred_at
    changed.append(target)
    return changed


# --- Shipment legs, checkpoints, customer tasks and appointments --------------------------

LEG_FIELDS = frozenset(
    {
        "mode",
        "carrier",
        "origin_name",
        "origin_lat",
        "origin_lon",
        "destination_name",
        "destination_lat",
        "destination_lon",
        "departed_at",
        "arrived_at",
        "eta",
    }
)


def _check_coordinates(fields: dict[str, Any]) -> None:
    errors: dict[str, list[str]] = {}
    for name, value in fields.items():
        if value is None:
            continue
        limit = 90 if name.endswith("lat") else 180
        if not -limit <= Decimal(value) <= limit:
            errors[name] = [f"Must be between -{limit} and {limit}."]
    if errors:
        raise ApplicationError(f"Invalid coordinates: {', '.join(errors)}.", fields=errors)


def _check_leg(leg: ShipmentLeg, changed: set[str] | None = None) -> None:
    _check_coordinates(
        {
            "origin_lat": leg.origin_lat,
            "origin_lon": leg.origin_lon,
            "destination_lat": leg.destination_lat,
            "destination_lon": leg.destination_lon,
        }
    )
    for name in ("departed_at", "arrived_at", "eta"):
        value = getattr(leg, name)
        if value is not None and timezone.is_naive(value):
            raise ApplicationError(f"{name} needs a time zone offset.", fields={name: ["Naive."]})
    if leg.arrived_at is not None and leg.departed_at is None:
        raise ApplicationError(
            "A leg cannot arrive before it has departed.",
            fields={"departed_at": ["Required when arrived_at is given."]},
        )
    if leg.arrived_at is not None and leg.arrived_at < leg.departed_at:
        raise ApplicationError(
            "arrived_at is before departed_at.",
            fields={"arrived_at": ["Before departed_at."]},
        )
    _check_leg_times(leg, changed)


# How far ahead a leg's ETA may be: a typo of a year otherwise reaches the customer.
LEG_ETA_HORIZON = timedelta(days=2 * 366)


def _check_leg_times(leg: ShipmentLeg, changed: set[str] | None = None) -> None:
    """What happened (departure, arrival) happened by now and after the journey began
    (as events, a day's grace); the ETA after the start itself, within two years, and
    not before the departure. ``changed``: the fields an update sets; the
    others, stored already, are not judged again (an ETA gone stale does not block the
    departure that makes it so)."""
    now, start = timezone.now(), leg.journey.started_at
    started = start - BEFORE_START_GRACE
    given = changed if changed is not None else {"departed_at", "arrived_at", "eta"}
    errors: dict[str, list[str]] = {}
    for name in ("departed_at", "arrived_at"):
        value = getattr(leg, name)
        if value is None or name not in given:
            continue
        if value > now + CLOCK_SKEW:
            errors[name] = ["In the future: give it once it has happened."]
        elif value < started:
            errors[name] = ["Before the journey started."]
    if leg.eta is not None and "eta" in given:
        # A forecast, not a report: no grace (ShipmentLeg.clean and the ETA's forecast
        # read an ETA before the start as a typo too).
        if leg.eta < start:
            errors["eta"] = ["Before the journey started."]
        elif leg.departed_at is not None and leg.eta < leg.departed_at:
            errors["eta"] = ["Before the leg departed."]
        elif leg.eta > now + LEG_ETA_HORIZON:
            errors["eta"] = ["More than two years ahead."]
    if errors:
        raise ApplicationError(f"Invalid leg times: {', '.join(errors)}.", fields=errors)


def journey_leg_create(*, journey: Journey, sequence: int, **fields: Any) -> ShipmentLeg:
    """Add a shipment leg; its ``sequence`` is unique within the journey."""
    unknown = set(fields) - LEG_FIELDS
    if unknown:
        raise ApplicationError(f"Unknown leg fields: {', '.join(sorted(unknown))}.")
    leg = ShipmentLeg(journey=journey, sequence=sequence, **fields)
    _check_leg(leg)
    try:
        with transaction.atomic():
            leg.save()
    except IntegrityError as error:
        raise ApplicationError(
            f"This journey already has a leg {sequence}.",
            code="conflict",
            fields={"sequence": ["Already used."]},
            status=409,
        ) from error
    return leg


def journey_leg_update(*, leg: ShipmentLeg, **changes: Any) -> ShipmentLeg:
    """Change some of a leg's fields (departure, arrival, ETA, places...)."""
    unknown = set(changes) - LEG_FIELDS
    if unknown:
        raise ApplicationError(f"Unknown leg fields: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        leg = ShipmentLeg.objects.select_for_update().get(pk=leg.pk)
        # Judged: what changes (a partner sending the whole leg back sends what is stored).
        changed = {name for name, value in changes.items() if getattr(leg, name) != value}
        for name, value in changes.items():
            setattr(leg, name, value)
        _check_leg(leg, changed)
        if changes:
            leg.save(update_fields=sorted(changes))
    return leg


def journey_checkpoint_add(
    *,
    leg: ShipmentLeg,
    occurred_at: datetime,
    location_name: str,
    lat: Decimal | None = None,
    lon: Decimal | None = None,
    description: str = "",
) -> Checkpoint:
    """Record where a leg's shipment was seen."""
    if timezone.is_naive(occurred_at):
        raise ApplicationError(
            "occurred_at needs a time zone offset.", fields={"occurred_at": ["No time zone."]}
        )
    if occurred_at > timezone.now() + CLOCK_SKEW:
        raise ApplicationError(
            "occurred_at is in the future.", fields={"occurred_at": ["In the future."]}
        )
    if occurred_at < leg.journey.started_at - BEFORE_START_GRACE:
        raise ApplicationError(
            "occurred_at is before the journey started.",
            fields={"occurred_at": ["Before the journey started."]},
        )
    if (lat is None) != (lon is None):
        raise ApplicationError(
            "Give both lat and lon, or neither.",
            fields={"lat": ["Needs lon."], "lon": ["Needs lat."]},
        )
    _check_coordinates({"lat": lat, "lon": lon})
    return Checkpoint.objects.create(
        leg=leg,
        occurred_at=occurred_at,
        location_name=location_name,
        lat=lat,
        lon=lon,
        description=description,
    )


TASK_DUE_HORIZON = timedelta(days=2 * 366)  # as an appointment's (APPOINTMENT_HORIZON)
TASK_FIELDS = frozenset({"title", "description", "due_date"})


def _task_problems(fields: Mapping[str, Any]) -> None:
    """Refuse what is wrong with a task's ``fields`` (those given: an update judges what
    it changes, not what is stored, so a task gone overdue can still be retitled). A
    title is not empty; a due date is today or later (a task due yesterday is late from
    the start), and within two years; the words are the company's, not its jargon."""
    if "title" in fields and not (fields["title"] or "").strip():
        raise ApplicationError("A task needs a title.", fields={"title": ["Empty."]})
    due_date = fields.get("due_date")
    # Today where it is earliest (UTC-12): a partner in New York at 20:00 posting a task
    # due today is not refused because it is tomorrow in UTC.
    today = (timezone.now() - timedelta(hours=12)).date()
    if due_date is not None and due_date < today:
        raise ApplicationError(
            "A task cannot be due before today.", fields={"due_date": ["Before today."]}
        )
    if due_date is not None and due_date > (timezone.now() + TASK_DUE_HORIZON).date():
        raise ApplicationError(
            "A task cannot be due more than two years ahead.",
            fields={"due_date": ["More than two years ahead."]},
        )
    jargon_check(**{name: fields[name] for name in ("title", "description") if name in fields})


def journey_task_create(
    *, journey: Journey, title: str, description: str = "", due_date: date | None = None
) -> CustomerTask:
    """Something the customer must do, shown on their journey page. A due date is today
    or later (a task due yesterday is late from the start), and within two years."""
    _task_problems({"title": title, "description": description, "due_date": due_date})
    with transaction.atomic():
        task = CustomerTask.objects.create(
            journey=journey, title=title.strip(), description=description, due_date=due_date
        )
        if not journey.is_sandbox:
            notify_task_assigned(task)
    return task


def _open_task_locked(task: CustomerTask) -> CustomerTask:
    """The task, locked for a partner's write (the customer ticking it off waits for it,
    and sees what it left), refused once the customer has done it: what they did stands."""
    locked = CustomerTask.objects.select_for_update().filter(pk=task.pk).first()
    if locked is None:
        raise ApplicationError("No such task.", code="not_found", status=404)
    if locked.done_at is not None:
        raise ApplicationError(
            "The customer has done this task: it can no longer be changed or withdrawn.",
            code="conflict",
            fields={"done_at": ["Done already."]},
            status=409,
        )
    return locked


def journey_task_update(*, task: CustomerTask, **changes: Any) -> CustomerTask:
    """Change a task the customer has not done yet: its title, description or due date,
    judged as ``journey_task_create`` judges them (only what changes). A done task is
    refused (409 ``conflict``): what the customer did stands.

    The customer is sent no message, whatever changes, the due date included. The
    message a new task sends (``task_assigned``) announces something new to do, and it
    is sent once per task (its dedup key is the task's): sent again it would be
    swallowed, and "there is something for you to do" would be wrong about a task they
    know. The due date needs none of its own: the page shows the new date at once, and
    the reminders are keyed by the due date (``notifications.reminders``), so the
    customer is reminded of the new date two days before it, and told on the day after
    it that the task is overdue, as of any task; a reminder of the old date still waiting
    to go out (held for quiet hours or a digest) is dropped."""
    unknown = set(changes) - TASK_FIELDS
    if unknown:
        raise ApplicationError(f"Unknown task fields: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        task = _open_task_locked(task)
        if "title" in changes and changes["title"] is not None:
            changes["title"] = changes["title"].strip()
        # Judged: what changes (a partner sending the whole task back sends what is stored).
        changed = {name: value for name, value in changes.items() if getattr(task, name) != value}
        _task_problems(changed)
        for name, value in changed.items():
            setattr(task, name, value)
        if changed:
            task.save(update_fields=sorted(changed))
        if "due_date" in changed:
            settle_task_messages(task, assigned=False)
    return task


def journey_task_withdraw(*, task: CustomerTask) -> None:
    """Take back a task the customer has not done yet (it is not needed any more): it is
    deleted, and simply leaves the customer's page. No message tells them: there is
    nothing for them to do about it, and a message about what they need not do is noise
    (their reminders stop with it, and its messages still waiting to go out are
    dropped). A done task is refused (409 ``conflict``): what the
    customer did stands."""
    with transaction.atomic():
        task = _open_task_locked(task)
        settle_task_messages(task, assigned=True)
        task.delete()


# Arriving early (for a handover's paperwork, a check-in) is an hour or so; a day's
# difference is a mistyped date.
ARRIVE_AHEAD_AT_MOST = timedelta(hours=12)
# What a partner (and staff, in the admin's form, in this order) may set.
APPOINTMENT_FIELDS = (
    "title",
    "starts_at",
    "arrive_at",
    "duration",
    "place_name",
    "address",
    "time_zone",
    "what_to_bring",
    "visit",
    "milestone",
)
# What the customer is told again when it changes: when and where to be.
APPOINTMENT_TOLD = frozenset(
    {"starts_at", "arrive_at", "place_name", "address", "time_zone", "visit"}
)
# What a booked stage's day is read from (``journey.models.booked_day``; the arrival
# moves with the start).
BOOKED_DAY_FIELDS = frozenset({"starts_at", "arrive_at", "time_zone"})


def _appointment_problems(
    *,
    starts_at: datetime,
    arrive_at: datetime,
    duration: timedelta,
    time_zone: str,
    judged: Collection[str] = APPOINTMENT_FIELDS,
) -> None:
    """Refuse what is wrong with an appointment's times and zone, naming each field: times
    with their offsets; the arrival not after the start, nor more than
    ``ARRIVE_AHEAD_AT_MOST`` before it; the start and duration as
    ``appointment_time_problems`` has them for a new appointment (not in the past, within
    two years, a minute to a day); a known IANA zone. ``judged``: the fields an update
    changes; the others, stored already, are not judged again (an appointment under way
    can still have its place corrected)."""
    errors: dict[str, list[str]] = {}
    if "starts_at" in judged and timezone.is_naive(starts_at):
        errors["starts_at"] = ["No time zone."]
    if "arrive_at" in judged and timezone.is_naive(arrive_at):
        errors["arrive_at"] = ["No time zone."]
    if not errors and {"starts_at", "arrive_at"} & set(judged):
        if arrive_at > starts_at:
            errors["arrive_at"] = ["After starts_at."]
        elif starts_at - arrive_at > ARRIVE_AHEAD_AT_MOST:
            errors["arrive_at"] = ["More than 12 hours before starts_at."]
    errors.update(
        {
            name: [str(problem) for problem in problems]
            for name, problems in appointment_time_problems(
                starts_at=starts_at if "starts_at" in judged else None,
                duration=duration if "duration" in judged else None,
                new=True,
            ).items()
        }
    )
    if "time_zone" in judged:
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            errors["time_zone"] = [f"Unknown time zone {time_zone!r}."]
    if errors:
        raise ApplicationError(f"Invalid appointment: {', '.join(errors)}.", fields=errors)


def journey_appointment_create(
    *,
    journey: Journey,
    title: str,
    starts_at: datetime,
    arrive_at: datetime | None = None,
    duration: timedelta = timedelta(hours=1),
    place_name: str,
    address: str = "",
    time_zone: str | None = None,
    what_to_bring: str = "",
    visit: bool = False,
    milestone: Milestone | None = None,
) -> Appointment:
    """An appointment the customer attends, or a visit we make to them (``visit``: they
    are told when we will be with them); ``arrive_at`` defaults to ``starts_at`` and
    lies within ``ARRIVE_AHEAD_AT_MOST`` before it; ``time_zone`` (the place's) defaults
    to the customer's own, where most appointments are (a visit, a showroom near home).
    ``milestone``: the journey's stage it is booked for (its page then says so)."""
    _appointment_stage_check(journey_id=journey.pk, milestone=milestone)
    arrive_at = arrive_at or starts_at
    if time_zone is None:
        time_zone = (
            CustomerProfile.objects.filter(user=journey.owner_id)
            .values_list("time_zone", flat=True)
            .first()
        ) or "Europe/London"
    _appointment_problems(
        starts_at=starts_at, arrive_at=arrive_at, duration=duration, time_zone=time_zone
    )
    # The words the customer reads, as a task's are: the company's, not its jargon.
    jargon_check(title=title, what_to_bring=what_to_bring)
    with transaction.atomic():
        appointment = Appointment.objects.create(
            journey=journey,
            title=title,
            starts_at=starts_at,
            arrive_at=arrive_at,
            duration=duration,
            place_name=place_name,
            address=address,
            time_zone=time_zone,
            what_to_bring=what_to_bring,
            visit=visit,
            milestone=milestone,
        )
        if not journey.is_sandbox:
            notify_appointment(appointment, changed=False)
        if milestone is not None:
            _booking_moved(journey)
    return appointment


def _booking_moved(journey: Journey) -> None:
    """A stage was booked, moved or freed (an appointment for it made, moved, given
    another stage, or cancelled): the ETA puts no booked stage before its booking's
    day, so it is recomputed now, in the caller's transaction, with what that changes
    (a handover booked past the promise tells the customer of the delay)."""
    eta_recompute(journey=journey, cause=EtaCause.BOOKING)


def _appointment_stage_check(*, journey_id: int, milestone: Milestone | None) -> None:
    """An appointment is booked for a stage of its own journey, not another's, one its
    customer sees (a booking for a hidden stage would be shown nowhere), and one still
    to come (not reached yet)."""
    if milestone is None:
        return
    if milestone.journey_id != journey_id:
        raise ApplicationError(
            "That stage is another journey's.", fields={"milestone": ["Not this journey's."]}
        )
    if not milestone.stage.customer_visible:
        raise ApplicationError(
            "That stage is hidden from the customer.",
            code="hidden_stage",
            fields={"milestone": ["Hidden from the customer."]},
        )
    if milestone.state != MilestoneState.UPCOMING:
        # A stage is reached when it happens (the car at the showroom, the handover
        # done): a booking tells when one is to come, and its page shows no other.
        raise ApplicationError(
            "That stage is reached already.",
            code="stage_reached",
            fields={"milestone": ["Reached already."]},
        )


def _appointment_locked(appointment: Appointment) -> Appointment:
    """The appointment, locked for writing, with what telling its customer reads (the
    journey, its owner and profile, its template); the lock is on its row only."""
    locked = (
        Appointment.objects.select_for_update(of=("self",))
        .select_related("journey__owner__profile", "journey__template", "milestone__stage")
        .filter(pk=appointment.pk)
        .first()
    )
    if locked is None:
        raise ApplicationError("No such appointment.", code="not_found", status=404)
    return locked


def journey_appointment_update(*, appointment: Appointment, **changes: Any) -> Appointment:
    """Change some of an appointment's fields, judged as ``journey_appointment_create``
    judges them (only what changes: an appointment under way can still have its title
    corrected; a new start is not in the past).

    A new start alone moves the arrival with it (the same time before the start, as when
    staff answer a request for another time, or move it in the admin); a new arrival
    sent with it is kept. When the customer's when or where changes (the start, the
    arrival, the place's name or address, its time zone), they are told once, with the
    calendar file that replaces the old entry (``appointment_changed``; not for a
    sandbox journey), and a new start answers their requests for another time still
    waiting (as staff moving it in the admin does). A new title, duration or what to
    bring shows on their page without a message. Nothing changed (the appointment sent
    back as it is): nothing is written, and nobody is told."""
    unknown = set(changes).difference(APPOINTMENT_FIELDS)
    if unknown:
        raise ApplicationError(f"Unknown appointment fields: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        appointment = _appointment_locked(appointment)
        # Judged: what changes (a partner sending the whole appointment back sends what
        # is stored).
        changed = {
            name: value for name, value in changes.items() if getattr(appointment, name) != value
        }
        if "starts_at" in changed and "arrive_at" not in changed:
            # The start alone moved (its arrival left out, or sent back as it was): the
            # arrival moves with it, as the admin's form moves it.
            lead = appointment.starts_at - appointment.arrive_at
            if not timezone.is_naive(changed["starts_at"]):
                changed["arrive_at"] = changed["starts_at"] - lead
        _appointment_problems(
            **{
                name: changed.get(name, getattr(appointment, name))
                for name in ("starts_at", "arrive_at", "duration", "time_zone")
            },
            judged=set(changed),
        )
        jargon_check(
            **{name: changed[name] for name in ("title", "what_to_bring") if name in changed}
        )
        if "milestone" in changed:
            _appointment_stage_check(
                journey_id=appointment.journey_id, milestone=changed["milestone"]
            )
        if not changed:
            return appointment
        for name, value in changed.items():
            setattr(appointment, name, value)
        appointment.save(update_fields=sorted(changed))
        if "starts_at" in changed:
            # A new time is the answer to any request for one still waiting.
            RescheduleRequest.objects.filter(
                appointment=appointment, state=RescheduleState.OPEN
            ).update(state=RescheduleState.HANDLED)
        if APPOINTMENT_TOLD & set(changed) and not appointment.journey.is_sandbox:
            notify_appointment(appointment, changed=True)
        if "milestone" in changed or (
            appointment.milestone_id is not None and BOOKED_DAY_FIELDS & set(changed)
        ):
            _booking_moved(appointment.journey)
    return appointment


def journey_appointment_cancel(*, appointment: Appointment) -> None:
    """Call an appointment off: the customer is told (``appointment_cancelled``, with a
    calendar file that removes it from their calendar; not for a sandbox journey), and
    the appointment is deleted, with any request of theirs for another time. The
    message is written first, from what it needs to say (it never reads the row again).

    Refused (409 ``conflict``) once the appointment has started: what happened
    happened."""
    with transaction.atomic():
        appointment = _appointment_locked(appointment)
        if appointment.starts_at <= timezone.now():
            raise ApplicationError(
                "This appointment has started: it can no longer be cancelled.",
                code="conflict",
                fields={"starts_at": ["Started already."]},
                status=409,
            )
        if not appointment.journey.is_sandbox:
            notify_appointment_cancelled(appointment)
        booked = appointment.milestone_id is not None
        appointment.delete()
        if booked:
            _booking_moved(appointment.journey)


# The customer's own writes from the portal. Each is one function, so whatever must
# follow (telling staff, partner webhooks) is added in one place.

MESSAGE_MAX_LENGTH = 4000


def task_complete(*, task: CustomerTask, user: User) -> CustomerTask:
    """The journey's owner ticks a task off. Ticking a done task again changes nothing."""
    if task.journey.owner_id != user.pk:
        raise ApplicationError(
            _("Only the journey's owner can tick off its tasks."), code="forbidden", status=403
        )
    with transaction.atomic():
        # Conditional update: two clicks (or two tabs) record the first time only.
        ticked = CustomerTask.objects.filter(pk=task.pk, done_at__isnull=True).update(
            done_at=timezone.now()
        )
        try:
            task.refresh_from_db(fields=["done_at"])
        except CustomerTask.DoesNotExist:
            # Withdrawn meanwhile (the partner no longer needs it): nothing to tick off.
            raise ApplicationError(
                _("This task is no longer needed."), code="not_found", status=404
            ) from None
        if ticked:
            _tell_partners(
                "task.completed",
                task.journey,
                {"task": {"id": task.pk, "title": task.title, "done_at": task.done_at}},
            )
    return task


# How far ahead a customer may ask for an appointment to move to.
RESCHEDULE_HORIZON = timedelta(days=366)


def reschedule_request_answer(*, request: RescheduleRequest, choice: str) -> Appointment:
    """Staff answer a customer's request by moving the appointment to the time the
    customer asked for first (``choice="first"``) or second (``"second"``). That time is
    the arrival: the customer only ever sees arrival times ("Please arrive at 10:20"),
    so it is the one they ask for; the start follows, as long after it as before. The
    request is answered, and the customer is told the new time as of any moved
    appointment. Refused (nothing
    changed) when the request is answered already, there is no second choice, or the
    time is no longer one an appointment can have (past, say)."""
    if choice not in ("first", "second"):
        raise ValueError(f"choice must be 'first' or 'second', not {choice!r}")
    with transaction.atomic():
        # The appointment first, then its request: the order a partner's change or
        # cancellation takes them in (the appointment, then its requests), so the two
        # wait for each other instead of deadlocking.
        appointment = Appointment.objects.select_for_update().get(pk=request.appointment_id)
        request = (
            RescheduleRequest.objects.select_for_update()
            .select_related("appointment__journey__owner")
            .get(pk=request.pk)
        )
        if request.state != RescheduleState.OPEN:
            raise ApplicationError("This request was answered already.", code="conflict")
        arrive = request.first_choice if choice == "first" else request.second_choice
        if arrive is None:
            raise ApplicationError("The customer gave no second time.", code="invalid")
        start = arrive + (appointment.starts_at - appointment.arrive_at)
        problems = appointment_time_problems(
            starts_at=start, duration=appointment.duration, new=True
        )
        if arrive <= timezone.now():
            # The start, a lead later, may not have passed yet: the time asked for has.
            problems.setdefault("arrive_at", []).append("The time asked for has passed.")
        if problems:
            words = " ".join(str(p) for ps in problems.values() for p in ps)
            raise ApplicationError(f"That time cannot be used: {words}", fields=problems)
        appointment.starts_at, appointment.arrive_at = start, arrive
        appointment.save(update_fields=["starts_at", "arrive_at"])
        RescheduleRequest.objects.filter(
            appointment=appointment, state=RescheduleState.OPEN
        ).update(state=RescheduleState.HANDLED)
        notify_appointment(appointment, changed=True)
        if appointment.milestone_id is not None:
            _booking_moved(request.appointment.journey)
    return appointment


def appointment_request_reschedule(
    *,
    appointment: Appointment,
    user: User,
    first_choice: datetime,
    second_choice: datetime | None = None,
    note: str = "",
) -> RescheduleRequest:
    """The owner asks for another time; staff are alerted and answer. Times must be in
    the future, and within ``RESCHEDULE_HORIZON`` (a year). The same times asked for
    again while the first request is open give that request, not a second one; other
    times while it is open are refused (the page offers no second request: the
    conversation is where a request changes, staff answering one at a time)."""
    from notifications.triggers import notify_staff_of_reschedule_request

    if appointment.journey.owner_id != user.pk:
        raise ApplicationError(
            _("Only the journey's owner can ask to move its appointments."),
            code="forbidden",
            status=403,
        )
    now = timezone.now()
    errors: dict[str, list[str]] = {}
    for name, value in (("first_choice", first_choice), ("second_choice", second_choice)):
        if value is None:
            continue
        if timezone.is_naive(value):
            errors[name] = [_("Give a time with its time zone.")]
        elif value <= now:
            errors[name] = [_("Choose a time in the future.")]
        elif value > now + RESCHEDULE_HORIZON:
            errors[name] = [_("Choose a time within the next year.")]
    if second_choice is not None and second_choice == first_choice and not errors:
        errors["second_choice"] = [_("Choose a different second time, or leave it empty.")]
    if errors:
        raise ApplicationError(_("Please check the times you asked for."), fields=errors)
    with transaction.atomic():
        # The appointment locked: two clicks sent at once make one request, not two.
        if not list(Appointment.objects.select_for_update().filter(pk=appointment.pk).values("pk")):
            # Cancelled meanwhile (a partner, staff): nothing to move.
            raise ApplicationError(
                _("This appointment has been cancelled."), code="not_found", status=404
            )
        asked = appointment.reschedule_requests.filter(
            state=RescheduleState.OPEN,
            first_choice=first_choice,
            second_choice=second_choice,
            note=note.strip(),
        ).first()
        if asked is not None:
            return asked  # sent twice (a double click, a reload): the request stands
        if appointment.reschedule_requests.filter(state=RescheduleState.OPEN).exists():
            # Another while one waits (a stale tab, a post without the page's script).
            raise ApplicationError(
                _(
                    "You already asked for another time. To change that request, write "
                    "to us in the conversation."
                ),
                code="conflict",
                fields={"first_choice": [_("A request is already waiting for an answer.")]},
                status=409,
            )
        request = RescheduleRequest.objects.create(
            appointment=appointment,
            requested_by=user,
            first_choice=first_choice,
            second_choice=second_choice,
            note=note.strip(),
        )
        notify_staff_of_reschedule_request(request)
        _tell_partners(
            "appointment.reschedule_requested",
            appointment.journey,
            {
                "appointment": {"id": appointment.pk, "title": appointment.title},
                "first_choice": first_choice,
                "second_choice": second_choice,
                "note": request.note,
            },
        )
    return request


def _message_body(body: str) -> str:
    """A message's text, stripped; empty or too long is refused (same rule for both sides)."""
    body = body.strip()
    if not body:
        raise ApplicationError(
            _("Write a message first."), fields={"body": [_("Write a message first.")]}
        )
    if len(body) > MESSAGE_MAX_LENGTH:
        raise ApplicationError(
            _("That message is too long."),
            fields={
                "body": [
                    _("Keep it to %(limit)s characters at most.") % {"limit": MESSAGE_MAX_LENGTH}
                ]
            },
        )
    return body


def message_post(
    *,
    journey: Journey,
    author: User,
    body: str,
    milestone: Milestone | None = None,
    via: str = "portal",
) -> Message:
    """A customer's message in the journey's conversation, optionally replying to an update."""
    body = _message_body(body)
    if milestone is not None and milestone.journey_id != journey.pk:
        raise ApplicationError(
            _("That update is not part of this journey."),
            fields={"milestone": [_("Unknown update.")]},
        )
    with transaction.atomic():
        message = Message.objects.create(
            journey=journey, author=author, from_staff=False, body=body, milestone=milestone
        )
        notify_staff_of_customer_message(message, via=via)
        _tell_partners(
            "message.posted",
            journey,
            {"message": {"id": message.pk, "body": body, "created_at": message.created_at}},
        )
    return message


def staff_reply_post(
    *, journey: Journey, author: User, body: str, private: bool = False
) -> Message:
    """The company's answer in the journey's conversation; the customer is told of it."""
    body = _message_body(body)
    jargon_check(body=body)
    with transaction.atomic():
        message = Message.objects.create(
            journey=journey, author=author, from_staff=True, body=body, private=private
        )
        if not journey.is_sandbox:
            notify_staff_reply(message)
    return message


def feedback_give(
    *, milestone: Milestone, customer: User, rating: int, comment: str = ""
) -> Feedback:
    """Rate a completed milestone (1 to 5). Rating again replaces the customer's earlier
    one, and whether it is the owner's (``Feedback.by_owner``) is as at that rating."""
    if milestone.state != MilestoneState.DONE:
        raise ApplicationError(
            _("You can rate a stage once it is done."),
            fields={"milestone": [_("This stage is not done yet.")]},
        )
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise ApplicationError(
            _("Choose a rating from 1 to 5."), fields={"rating": [_("Choose from 1 to 5.")]}
        )
    with transaction.atomic():
        feedback, _created = Feedback.objects.update_or_create(
            milestone=milestone,
            customer=customer,
            defaults={
                "rating": rating,
                "comment": comment.strip(),
                "by_owner": customer.pk == milestone.journey.owner_id,
            },
        )
    return feedback


def _tell_partners(event_type: str, journey: Journey, data: dict[str, Any]) -> None:
    """A signed webhook to the partners serving the journey, written in this transaction.

    The one place the domain calls out to integrations: imported here, not at the top,
    because integrations imports journey.
    """
    from integrations.webhooks import webhook_emit

    webhook_emit(event_type=event_type, journey=journey, data=data)
