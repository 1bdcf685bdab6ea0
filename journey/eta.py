"""The ETA: an expected date and an 80% range, learned from completed journeys.

Two layers:

* a pure core (``learn``, ``forecast``, ``stall_threshold``) on plain numbers, used by
  the spine and by the ``eta_evaluate`` command alike;
* the database side (``eta_refresh``, ``eta_stats_recompute``, ``eta_check_stalled``,
  ``leg_eta_update``), which feeds the core from the models and records the result.

A journey is cut into *segments*: from its start to reaching the first stage, then from
reaching each stage to reaching the next. The ETA is when the last stage is reached.
See docs/eta.md for the method and its measured accuracy.
"""

import itertools
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from journey.errors import ApplicationError
from journey.models import (
    EtaBasis,
    EtaCause,
    EtaEstimate,
    Health,
    Journey,
    JourneyTemplate,
    Milestone,
    MilestoneState,
    ShipmentLeg,
    TemplateEtaStats,
)
from journey.unit import Writes

# The fields of Journey this module sets; callers save them.
ETA_FIELDS = ["eta", "eta_low", "eta_high", "eta_basis", "health", "stalled_since"]
START = "_start"  # the segment before the first stage is reached
# The planned fallback's range: plans are optimistic, so the range leans late.
PLANNED_LOW = 0.85
PLANNED_HIGH = 1.5
# Planned fallback: a stage is stalled after twice its planned duration.
PLANNED_STALL = 2.0
SCENARIOS = 1000
LOW_Q, HIGH_Q, STALL_Q = 0.10, 0.90, 0.95
MAX_HISTORY = 500
# Conditioning on the elapsed time needs this many longer cases to draw from.
MIN_CONDITIONED = 5  # the most recent completed journeys a template learns from


@dataclass(frozen=True)
class Segment:
    """The time from reaching ``key`` (or the start) to reaching the next stage."""

    key: str
    planned: float  # seconds
    shipping: bool = False


@dataclass(frozen=True)
class Learned:
    """Durations of each segment in completed journeys, in seconds (None: unknown)."""

    keys: list[str]
    journeys: list[list[float | None]]

    def samples(self, key: str) -> list[float]:
        if key not in self.keys:
            return []
        column = self.keys.index(key)
        return sorted(row[column] for row in self.journeys if row[column] is not None)


@dataclass(frozen=True)
class Forecast:
    expected: datetime
    low: datetime
    high: datetime
    basis: str
    # When each segment's end (the next stage) is expected, from the current one on.
    stage_expected: list[datetime] = field(default_factory=list)


def learn(rows: Sequence[Sequence[float | None]], keys: list[str]) -> Learned:
    """Keep what a history can teach: negative durations are data errors, dropped."""
    cleaned = [[v if v is not None and v >= 0 else None for v in row] for row in rows]
    return Learned(keys=list(keys), journeys=cleaned)


def _quantile(values: Sequence[float], q: float) -> float:
    """The empirical quantile (nearest rank) of sorted values."""
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[index]


def stall_threshold(segment: Segment, learned: Learned | None, min_history: int) -> float | None:
    """How long (seconds) the segment may run before it counts as stalled."""
    samples = learned.samples(segment.key) if learned else []
    if len(samples) >= min_history:
        return _quantile(samples, STALL_Q)
    if segment.planned > 0:
        return segment.planned * PLANNED_STALL
    return None


def forecast(
    *,
    segments: list[Segment],
    elapsed: float,
    now: datetime,
    learned: Learned | None,
    min_history: int,
    partner_ends: dict[int, datetime] | None = None,
    seed: int = 0,
) -> Forecast:
    """Predict when the last stage is reached.

    ``segments`` are the remaining ones, the current first; ``elapsed`` is how long the
    current one has run. ``partner_ends`` maps a shipping segment's index to the
    carrier's ETA for its last open leg: the segment then ends at that time.
    """
    partner_ends = partner_ends or {}
    use_history = learned is not None and len(learned.journeys) >= min_history
    if use_history:
        ends = _scenarios_from_history(segments, elapsed, now, learned, partner_ends, seed)
        basis = EtaBasis.HISTORY_PARTNER if partner_ends else EtaBasis.HISTORY
        finals = sorted(e[-1] for e in ends)
        stage_expected = [
            datetime.fromtimestamp(statistics.median_low([e[i] for e in ends]), tz=now.tzinfo)
            for i in range(len(segments))
        ]
        stamp = [_quantile(finals, q) for q in (LOW_Q, 0.5, HIGH_Q)]
        low, expected, high = (datetime.fromtimestamp(s, tz=now.tzinfo) for s in stamp)
    else:
        basis = EtaBasis.PLANNED_PARTNER if partner_ends else EtaBasis.PLANNED
        plan = _walk(segments, elapsed, now, partner_ends, factor=1.0)
        stage_expected = plan
        expected = plan[-1] if plan else now
        low = (_walk(segments, elapsed, now, partner_ends, factor=PLANNED_LOW) or [now])[-1]
        high = (_walk(segments, elapsed, now, partner_ends, factor=PLANNED_HIGH) or [now])[-1]
    return Forecast(
        expected=expected,
        low=min(low, expected),
        high=max(high, expected),
        basis=basis,
        stage_expected=stage_expected,
    )


def _walk(
    segments: list[Segment],
    elapsed: float,
    now: datetime,
    partner_ends: dict[int, datetime],
    factor: float,
) -> list[datetime]:
    """The planned path, every planned duration scaled by ``factor``."""
    cursor = now
    ends = []
    for index, segment in enumerate(segments):
        if index in partner_ends:
            cursor = max(cursor, partner_ends[index])
        else:
            length = segment.planned * factor
            if index == 0:
                length = max(length - elapsed, 0.0)
            cursor += timedelta(seconds=length)
        ends.append(cursor)
    return ends


def _residuals(samples: list[float], elapsed: float) -> list[float]:
    """What is left of a segment that has run ``elapsed`` seconds: the durations of the
    similar ones that lasted longer, minus the elapsed time."""
    longer = [s - elapsed for s in samples if s > elapsed]
    if longer:
        return longer
    # Longer than every recorded case: assume it overruns as far again as the slower
    # half of them overran their median (at least an hour).
    median = _quantile(samples, 0.5)
    return [max(s - median, 3600.0) for s in samples if s >= median]


def _scenarios_from_history(
    segments: list[Segment],
    elapsed: float,
    now: datetime,
    learned: Learned,
    partner_ends: dict[int, datetime],
    seed: int,
) -> list[list[float]]:
    """Monte Carlo over recorded journeys, each scenario one recorded journey: the
    current segment's rest is what that journey's segment lasted beyond the elapsed
    time, and the later segments are its own, so a journey slow in this stage stays
    slow after it. Only journeys whose current segment lasted longer than the elapsed
    time are drawn; when fewer than ``MIN_CONDITIONED`` did, the rest of the current
    segment is drawn on its own (see ``_residuals``)."""
    # Not for secrets: a seeded generator makes the same inputs give the same dates.
    rng = random.Random(seed)  # noqa: S311
    columns = [learned.keys.index(s.key) if s.key in learned.keys else None for s in segments]
    marginals = [learned.samples(s.key) for s in segments]
    first = columns[0] if segments else None
    rows = learned.journeys
    residuals = None
    if first is not None:
        known = [r for r in rows if r[first] is not None]
        longer = [r for r in known if r[first] > elapsed]
        # Enough alike journeys (or all of them alike): keep each one whole.
        if longer and len(longer) >= min(MIN_CONDITIONED, len(known)):
            rows = longer
        elif marginals[0]:
            residuals = _residuals(marginals[0], elapsed)
    start = now.timestamp()
    scenarios = []
    for _draw in range(SCENARIOS):
        row = rng.choice(rows)
        cursor = start
        ends = []
        for index, segment in enumerate(segments):
            column = columns[index]
            value = row[column] if column is not None else None
            if index in partner_ends:
                cursor = max(cursor, partner_ends[index].timestamp())
            elif index == 0:
                if residuals is not None:
                    cursor += rng.choice(residuals)
                elif value is not None and value > elapsed:
                    cursor += value - elapsed
                else:
                    cursor += max(segment.planned - elapsed, 0.0)
            else:
                if value is None:
                    value = rng.choice(marginals[index]) if marginals[index] else segment.planned
                cursor += value
            ends.append(cursor)
        scenarios.append(ends or [start])
    return scenarios


def health_for(*, expected: date, high: date, promised: date | None) -> Health:
    """Delayed when the expected date is past the promise; at risk when only the range
    crosses it."""
    if promised is None or high <= promised:
        return Health.ON_TRACK
    if expected <= promised:
        return Health.AT_RISK
    return Health.DELAYED


# --- The database side -------------------------------------------------------------------


# What each template learned, as last read in this process, by the stats row's identity
# (pk, computed_at, journey_count): the spine reads those three columns on each event, and
# the history itself (up to MAX_HISTORY journeys of JSON, parsed and cleaned) only when it
# was recomputed since. Recomputing in this process also forgets it.
_LEARNED: dict[int, tuple[tuple[int, datetime, int], Learned | None]] = {}


def _learned_for(template_id: int) -> Learned | None:
    stamp = (
        TemplateEtaStats.objects.filter(template_id=template_id)
        .values_list("pk", "computed_at", "journey_count")
        .first()
    )
    cached = _LEARNED.get(template_id)
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1]
    stats = TemplateEtaStats.objects.filter(template_id=template_id).first()
    if stats is None:
        # First use: learn now (once); afterwards the nightly task and finished
        # journeys keep the cache fresh.
        stats = eta_stats_recompute(template=JourneyTemplate.objects.get(pk=template_id))
    learned = learn(stats.data["journeys"], stats.data["keys"]) if stats.journey_count else None
    _LEARNED[template_id] = ((stats.pk, stats.computed_at, stats.journey_count), learned)
    return learned


def eta_stats_recompute(*, template: JourneyTemplate) -> TemplateEtaStats:
    """Learn a template's segment durations from its most recent completed journeys."""
    _LEARNED.pop(template.pk, None)
    stages = list(template.stages.order_by("position").values_list("key", flat=True))
    keys = [START, *stages[:-1]]
    journeys = list(
        Journey.objects.filter(template=template, health=Health.DONE)
        .order_by("-last_event_at")
        .values_list("pk", "started_at")[:MAX_HISTORY]
    )
    reached: dict[int, dict[str, datetime]] = {pk: {} for pk, _start in journeys}
    for journey_id, key, at in Milestone.objects.filter(
        journey_id__in=reached, reached_at__isnull=False
    ).values_list("journey_id", "stage__key", "reached_at"):
        reached[journey_id][key] = at
    rows = []
    for pk, started_at in journeys:
        times = [started_at, *(reached[pk].get(key) for key in stages)]
        row = []
        for begin, end in itertools.pairwise(times):
            row.append((end - begin).total_seconds() if begin and end else None)
        rows.append(row)
    stats, _created = TemplateEtaStats.objects.update_or_create(
        template=template,
        defaults={
            "computed_at": timezone.now(),
            "journey_count": len(rows),
            "data": {"keys": keys, "journeys": learn(rows, keys).journeys},
        },
    )
    return stats


def _segments(milestones: list[Milestone]) -> tuple[list[Segment], int]:
    """The remaining segments (current first) and the index of the current milestone
    (-1 before the first stage is reached)."""
    current = -1
    for index, milestone in enumerate(milestones):
        if milestone.state != MilestoneState.UPCOMING:
            current = index
    segments = []
    if current == -1:
        segments.append(Segment(key=START, planned=0.0))
    for milestone in milestones[max(current, 0) : -1]:
        segments.append(
            Segment(
                key=milestone.stage.key,
                planned=milestone.stage.expected_duration.total_seconds(),
                shipping=milestone.stage.shipping,
            )
        )
    return segments, current


def eta_refresh(
    *,
    journey: Journey,
    milestones: list[Milestone],
    now: datetime,
    cause: EtaCause,
    unsaved: Sequence[Milestone] = (),
    unit: Writes | None = None,
) -> EtaEstimate | None:
    """Recompute the journey's ETA, range, basis, health and stall flag.

    Saves the unreached milestones' expected dates (when they exist) and, when the
    prediction moved, a row of ETA history; sets ``ETA_FIELDS`` on the journey for the
    caller to save in the same transaction. A change of health to delayed writes the
    customer's delay message to the outbox. Returns the new history row, if any.

    ``unsaved`` are milestones whose state and time of reaching the caller changed and
    did not save: they are saved here, with the expected dates.

    ``unit`` is the caller's unit of work (``journey.unit``): the writes go into it, to be
    flushed with the rest of the caller's; without one they are written before returning.
    """
    own = unit is None
    unit = unit or Writes()
    estimate = _refresh(
        journey=journey, milestones=milestones, now=now, cause=cause, unsaved=unsaved, unit=unit
    )
    if own:
        unit.flush()
    return estimate


def _refresh(
    *,
    journey: Journey,
    milestones: list[Milestone],
    now: datetime,
    cause: EtaCause,
    unsaved: Sequence[Milestone],
    unit: Writes,
) -> EtaEstimate | None:
    previous_health = journey.health
    unit.save_milestones(unsaved)
    if all(m.state == MilestoneState.DONE for m in milestones):
        arrived = timezone.localdate(milestones[-1].reached_at or now)
        journey.eta = journey.eta_low = journey.eta_high = arrived
        journey.eta_basis = EtaBasis.DONE
        journey.health = Health.DONE
        journey.stalled_since = None
        if previous_health != Health.DONE and journey.pk:
            from journey.tasks import eta_recompute_template

            # A finished journey is new history for its template.
            eta_recompute_template.delay_on_commit(journey.template_id)
        return _record(journey=journey, now=now, cause=cause, unit=unit)

    min_history = settings.ETA_MIN_HISTORY
    if journey.template_id not in unit.learned:
        unit.learned[journey.template_id] = _learned_for(journey.template_id)
    learned = unit.learned[journey.template_id]
    segments, current = _segments(milestones)
    since = milestones[current].reached_at if current >= 0 else journey.started_at
    elapsed = max((now - (since or now)).total_seconds(), 0.0)
    partner_ends = {}
    shipping = [i for i, s in enumerate(segments) if s.shipping]
    # A carrier's ETA only matters while a shipping segment is still ahead.
    leg_end = unit.leg_end(journey) if journey.pk and shipping else None
    if leg_end is not None:
        partner_ends[shipping[-1]] = leg_end
    result = forecast(
        segments=segments,
        elapsed=elapsed,
        now=now,
        learned=learned,
        min_history=min_history,
        partner_ends=partner_ends,
        seed=journey.pk or 0,
    )

    changed = []
    first_upcoming = current + 1
    for offset, milestone in enumerate(milestones[first_upcoming:]):
        expected = timezone.localdate(result.stage_expected[offset])
        if milestone.expected_date != expected:
            milestone.expected_date = expected
            changed.append(milestone)
    if changed and changed[0].pk is not None:
        unit.save_milestones(changed)

    journey.eta = timezone.localdate(result.expected)
    journey.eta_low = timezone.localdate(result.low)
    journey.eta_high = timezone.localdate(result.high)
    journey.eta_basis = result.basis
    journey.health = health_for(
        expected=journey.eta, high=journey.eta_high, promised=journey.promised_date
    )
    threshold = stall_threshold(segments[0], learned, min_history) if segments else None
    if threshold is not None and elapsed > threshold and current < len(milestones) - 1:
        journey.stalled_since = journey.stalled_since or now
    else:
        journey.stalled_since = None

    estimate = _record(journey=journey, now=now, cause=cause, unit=unit)
    if (
        cause != EtaCause.CREATED
        and journey.health == Health.DELAYED
        and previous_health != Health.DELAYED
    ):
        _notify_delay(journey=journey, now=now, unit=unit)
    return estimate


def _record(
    *, journey: Journey, now: datetime, cause: EtaCause, unit: Writes
) -> EtaEstimate | None:
    """One history row per change of the promise (not per recompute)."""
    if journey.pk is None or journey.eta is None:
        return None
    promise = (journey.eta, journey.eta_low, journey.eta_high, journey.eta_basis, journey.health)
    if unit.promise(journey) == promise:
        return None
    estimate = EtaEstimate(
        journey=journey,
        computed_at=now,
        expected=journey.eta,
        low=journey.eta_low,
        high=journey.eta_high,
        basis=journey.eta_basis,
        health=journey.health,
        cause=cause,
    )
    unit.estimate(estimate)
    return estimate


def _notify_delay(*, journey: Journey, now: datetime, unit: Writes) -> None:
    """The proactive delay message: once per slip, i.e. per (promise, new date)."""
    unit.outbox.add(
        recipient=journey.owner,
        journey=journey,
        kind="journey_delayed",
        dedup_key=f"journey-delayed:{journey.pk}:{journey.promised_date}:{journey.eta}",
        context={
            "eta": journey.eta.isoformat(),
            "promised_date": journey.promised_date.isoformat(),
            "reason": journey.delay_reason,
        },
        occurred_at=now,
    )


def eta_recompute(*, journey: Journey, cause: EtaCause, now: datetime | None = None) -> Journey:
    """Recompute one open journey's ETA outside an event (nightly, leg ETA, on demand)."""
    now = now or timezone.now()
    with transaction.atomic():
        journey = (
            Journey.objects.select_for_update(of=("self",), no_key=True)
            .select_related("owner__profile", "template")
            .get(pk=journey.pk)
        )
        if journey.health == Health.CANCELLED:
            return journey
        milestones = list(journey.milestones.select_related("stage").order_by("position"))
        eta_refresh(journey=journey, milestones=milestones, now=now, cause=cause)
        journey.save(update_fields=[*ETA_FIELDS, "updated_at"])
    return journey


def open_journeys() -> QuerySet[Journey]:
    return Journey.objects.exclude(health__in=[Health.DONE, Health.CANCELLED])


def eta_recompute_template_journeys(
    *, template: JourneyTemplate, cause: EtaCause = EtaCause.RECOMPUTE
) -> int:
    """Relearn one template and recompute its open journeys. Returns how many."""
    eta_stats_recompute(template=template)
    pks = list(open_journeys().filter(template=template).values_list("pk", flat=True))
    for pk in pks:
        eta_recompute(journey=Journey(pk=pk), cause=cause)
    return len(pks)


def eta_recompute_all(*, cause: EtaCause = EtaCause.NIGHTLY) -> int:
    """Relearn every template, then recompute every open journey. Returns the count."""
    for template in JourneyTemplate.objects.all():
        eta_stats_recompute(template=template)
    pks = list(open_journeys().values_list("pk", flat=True))
    for pk in pks:
        eta_recompute(journey=Journey(pk=pk), cause=cause)
    return len(pks)


def eta_check_stalled(*, now: datetime | None = None) -> list[int]:
    """Flag the open journeys whose current stage has run longer than 95% of similar
    ones (or twice its plan, without history). Returns the ids newly flagged."""
    now = now or timezone.now()
    flagged = []
    for pk in list(open_journeys().values_list("pk", flat=True)):
        journey = Journey.objects.only("pk", "stalled_since").get(pk=pk)
        was = journey.stalled_since
        journey = eta_recompute(journey=journey, cause=EtaCause.RECOMPUTE, now=now)
        if was is None and journey.stalled_since is not None:
            flagged.append(pk)
    return flagged


def leg_eta_update(*, leg: ShipmentLeg, eta: datetime | None) -> ShipmentLeg:
    """Set a leg's ETA from the carrier and recompute the journey's prediction.

    An ETA without a time zone, or before the journey started, is refused and changes
    nothing.
    """
    if eta is not None and timezone.is_naive(eta):
        raise ApplicationError(
            _("The ETA needs a time zone offset."), fields={"eta": [_("No time zone.")]}
        )
    journey = leg.journey
    if eta is not None and eta < journey.started_at:
        raise ApplicationError(
            _("The ETA is before the journey started."),
            fields={"eta": [_("Before the journey started.")]},
        )
    with transaction.atomic():
        ShipmentLeg.objects.filter(pk=leg.pk).update(eta=eta)
        leg.eta = eta
        eta_recompute(journey=journey, cause=EtaCause.LEG_ETA)
    return leg
