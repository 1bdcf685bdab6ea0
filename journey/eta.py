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
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from journey.compiled import CompiledRead
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
    StageDefinition,
    TemplateEtaStats,
    booked_day,
)
from journey.unit import ETA_FIELDS, Writes

logger = logging.getLogger(__name__)

START = "_start"  # the segment before the first stage is reached
# The planned fallback's range: plans are optimistic, so the range leans late.
PLANNED_LOW = 0.85
PLANNED_HIGH = 1.5
# Planned fallback: a stage is stalled after twice its planned duration.
PLANNED_STALL = 2.0
SCENARIOS = 1000
LOW_Q, HIGH_Q, STALL_Q = 0.10, 0.90, 0.95
MAX_HISTORY = 500  # the most recent completed journeys a template learns from
# Conditioning on the elapsed time needs this many longer cases to draw from.
MIN_CONDITIONED = 5
# Draws a history keeps for journeys in the same state (``History.drawn``), 56 KB each
# for seven segments: a template has a dozen states, a simulation of many seeds more.
MAX_DRAWN = 128


class Segment(NamedTuple):
    """The time from reaching ``key`` (or the start) to reaching the next stage.

    A tuple: the segments ahead are the key of the scenarios journeys in the same state
    share (``History.drawn``), looked up once per event, and a tuple of tuples hashes
    and compares in C."""

    key: str
    planned: float  # seconds
    shipping: bool = False


@dataclass(frozen=True)
class Learned:
    """Durations of each segment in completed journeys, in seconds (None: unknown)."""

    keys: list[str]
    journeys: list[list[float | None]]

    def samples(self, key: str) -> list[float]:
        return self.history.samples(key).tolist()

    @cached_property
    def history(self) -> "History":
        """The journeys as arrays, built on first use: a Learned lives as long as its
        template's statistics (``_learned_for``), and forecasts only read it."""
        return History.build(self.keys, self.journeys)


@dataclass(frozen=True, eq=False)
class History:
    """What the Monte Carlo draws from, as arrays."""

    # A row per key, a column per journey, NaN where unknown; one more row, all NaN,
    # stands for a segment no journey recorded.
    durations: np.ndarray
    rows: dict[str, int]
    # Each row's known durations, sorted, one after the other: row i's are
    # pool[offsets[i] : offsets[i] + sizes[i]] (its marginal).
    pool: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    # Per row: the shortest known duration above zero (inf when none is), for ``shifts``.
    shortest: np.ndarray
    # The scenarios of journeys in one state, by (segments, seed): see ``drawn``.
    states: dict[tuple[tuple[Segment, ...], int], "Drawn"] = field(default_factory=dict)

    @classmethod
    def build(cls, keys: list[str], journeys: list[list[float | None]]) -> "History":
        durations = np.full((len(keys) + 1, len(journeys)), np.nan)
        if journeys:
            durations[:-1] = np.array(journeys, dtype=float).T  # None becomes NaN
        rows: dict[str, int] = {}
        for row, key in enumerate(keys):
            rows.setdefault(key, row)  # as list.index: the first of a repeated key
        marginals = [np.sort(row[~np.isnan(row)]) for row in durations]
        sizes = np.array([m.size for m in marginals])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        # Sorted, so the positive durations are each marginal's tail.
        firsts = [int(np.searchsorted(m, 0.0, side="right")) for m in marginals]
        return cls(
            durations=durations,
            rows=rows,
            pool=np.concatenate(marginals),
            offsets=offsets,
            sizes=sizes,
            shortest=np.array(
                [m[i] if i < m.size else np.inf for m, i in zip(marginals, firsts, strict=True)]
            ),
        )

    def row(self, key: str) -> int:
        return self.rows.get(key, len(self.sizes) - 1)

    def marginal(self, row: int) -> np.ndarray:
        return self.pool[self.offsets[row] : self.offsets[row] + self.sizes[row]]

    def samples(self, key: str) -> np.ndarray:
        """The known durations of segment ``key``, sorted (none for an unknown key)."""
        row = self.rows.get(key)
        return self.pool[:0] if row is None else self.marginal(row)

    def shifts(self, key: str, elapsed: float) -> bool:
        """Whether the forecast of a segment ``key`` that has run ``elapsed`` seconds is
        the one for a segment just begun, moved earlier by ``elapsed``.

        It is while no recorded journey's segment lasted longer than nothing but not
        longer than ``elapsed``: the recorded journeys the Monte Carlo draws from (or,
        when too few of them outlasted the elapsed time, the rests it draws on their own)
        are then the same, drawn in the same order, and only the current segment's rest,
        so every end, is ``elapsed`` shorter. That holds for nearly every event: a stage
        is reached minutes before its event is applied, and stages last hours or days."""
        row = self.rows.get(key)
        return row is not None and 0.0 <= elapsed < self.shortest[row] < np.inf

    def drawn(self, segments: list[Segment], seed: int) -> "Drawn":
        """The scenarios of a journey whose current segment has just begun, kept for as
        long as this history: journeys in the same state share them, so a partner's
        batch moving a hundred cars to their next stages runs the Monte Carlo once per
        stage reached, not once per car, and sorts its scenarios only when a carrier's
        ETA falls among them."""
        key = (tuple(segments), seed)
        drawn = self.states.get(key)
        if drawn is None:
            if len(self.states) >= MAX_DRAWN:
                self.states.clear()  # only an evaluation over many seeds gets here
            steps = _draw(segments, 0.0, self, seed)
            drawn = self.states[key] = Drawn(steps=steps, outlook=_outlook(steps, {}))
        return drawn


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


def _rank(count: int, q: float) -> int:
    """Where the empirical quantile (nearest rank) is among ``count`` sorted values."""
    return min(count - 1, max(0, round(q * (count - 1))))


def _quantile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The empirical quantile (nearest rank) of sorted values."""
    return values[_rank(len(values), q)]


def stall_threshold(segment: Segment, learned: Learned | None, min_history: int) -> float | None:
    """How long (seconds) the segment may run before it counts as stalled."""
    samples = learned.history.samples(segment.key) if learned else ()
    if len(samples) >= min_history:
        return float(_quantile(samples, STALL_Q))
    if segment.planned > 0:
        return segment.planned * PLANNED_STALL
    return None


@dataclass(frozen=True)
class Outlook:
    """What the scenarios say, in seconds from a starting point: when each segment is
    expected to end (its median scenario), and the last one's 10th percentile, median
    and 90th percentile (the range and the ETA)."""

    ends: list[float]
    low: float
    expected: float
    high: float

    def after(self, index: int, start: float) -> "Outlook":
        """This outlook, its ends from segment ``index`` on counted from ``start``."""
        return Outlook(
            ends=self.ends[:index] + [start + end for end in self.ends[index:]],
            low=start + self.low,
            expected=start + self.expected,
            high=start + self.high,
        )


@dataclass(frozen=True, eq=False)
class Drawn:
    """The scenarios of journeys in one state, their current segment just begun
    (``History.drawn``), in seconds from when it began."""

    steps: np.ndarray  # each segment's duration: a row per segment, a column per scenario
    outlook: Outlook  # with no carrier's ETA
    # By the carrier's segment: what ``outlook_for`` needs (see ``_carrier``).
    carriers: dict[int, tuple[float, float, Outlook, Outlook]] = field(default_factory=dict)

    def outlook_for(self, elapsed: float, partner_ends: dict[int, float]) -> Outlook:
        """The outlook of a journey in this state whose current segment has run
        ``elapsed`` seconds (``History.shifts`` holds), the carrier's ETA (at most one)
        counted from when the segment began: the same as ``_outlook`` would give.

        Each scenario reaches the carrier's segment at some time A and leaves it at the
        later of A and the carrier's ETA. When that ETA is before every scenario's A (the
        carrier's ETA already past) or after every one, it is the same for all scenarios
        and the outlook comes from sums sorted once per state; only an ETA among them
        sorts this journey's own scenarios."""
        if not partner_ends:
            return self.outlook
        ((index, end),) = partner_ends.items()
        lowest, highest, early, late = self._carrier(index)
        if index == 0:  # the carrier's segment is the current one: left at once, or then
            return late.after(0, max(elapsed, end))
        if end <= lowest:
            return early
        if end >= highest:
            return late.after(index, end)
        return _outlook(self.steps, partner_ends, now=elapsed)

    def _carrier(self, index: int) -> tuple[float, float, Outlook, Outlook]:
        """For a carrier's ETA ending segment ``index``: the earliest and latest time a
        scenario reaches that segment; the outlook when the ETA is before all of them;
        and the one when it is after all of them, its ends from ``index`` on counted
        from the ETA."""
        if index not in self.carriers:
            # With an ETA long past, the carrier's segment ends as it is reached.
            ends = _ends(self.steps, {index: -np.inf}, now=0.0)
            reached = ends[index]
            after = ends[index:] - reached  # the later segments, from leaving it
            self.carriers[index] = (
                float(reached.min()),
                float(reached.max()),
                _outlook_of(ends),
                _joined(self.outlook.ends[:index], _outlook_of(after)),
            )
        return self.carriers[index]


def _joined(before: list[float], rest: Outlook) -> Outlook:
    """``rest``, after the ends of the segments ``before`` it."""
    return Outlook(ends=before + rest.ends, low=rest.low, expected=rest.expected, high=rest.high)


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
    carrier's ETA for its last open leg: the segment then ends at that time (or at once,
    if that is past). ``seed`` seeds the Monte Carlo: the same inputs give the same
    dates.
    """
    partner_ends = partner_ends or {}
    # A seeded draw needs at least one journey to draw from.
    use_history = learned is not None and len(learned.journeys) >= max(min_history, 1)
    if use_history:
        basis = EtaBasis.HISTORY_PARTNER if partner_ends else EtaBasis.HISTORY
        history = learned.history
        origin = now.timestamp()
        if not segments:  # nothing left: every scenario ends now
            outlook = Outlook(ends=[], low=0.0, expected=0.0, high=0.0)
        elif (
            len(partner_ends) <= 1
            and all(0 <= index < len(segments) for index in partner_ends)
            and history.shifts(segments[0].key, elapsed)
        ):
            # Counted from when the current segment began: the same as below.
            origin -= elapsed
            outlook = history.drawn(segments, seed).outlook_for(
                elapsed, {index: end.timestamp() - origin for index, end in partner_ends.items()}
            )
        else:
            carrier = {index: end.timestamp() - origin for index, end in partner_ends.items()}
            outlook = _outlook(_draw(segments, elapsed, history, seed), carrier)
        stage_expected = [datetime.fromtimestamp(origin + e, tz=now.tzinfo) for e in outlook.ends]
        low, expected, high = (
            datetime.fromtimestamp(origin + e, tz=now.tzinfo)
            for e in (outlook.low, outlook.expected, outlook.high)
        )
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


def _outlook(steps: np.ndarray, partner_ends: dict[int, float], now: float = 0.0) -> Outlook:
    """The outlook of drawn segment durations (``_draw``), the carrier's ETAs and now
    counted from where the first segment's duration begins."""
    return _outlook_of(_ends(steps, partner_ends, now=now))


def _outlook_of(ends: np.ndarray) -> Outlook:
    """The medians of each row of scenarios' ends, and the last row's quantiles."""
    middle = (SCENARIOS - 1) // 2  # statistics.median_low's rank
    # numpy's sort (SIMD since 2.0) orders 7 x 1,000 in a quarter of the time its
    # partition takes to place these four ranks.
    ordered = np.sort(ends, axis=1)
    low, expected, high = ordered[-1, [_rank(SCENARIOS, q) for q in (LOW_Q, 0.5, HIGH_Q)]]
    return Outlook(
        ends=ordered[:, middle].tolist(), low=float(low), expected=float(expected), high=float(high)
    )


def _ends(steps: np.ndarray, partner_ends: dict[int, float], now: float) -> np.ndarray:
    """When each segment ends in each scenario, counted from where the first segment's
    duration begins: each after the one before, but a carrier's segment at the later of
    its start (or ``now``, for the first segment) and the carrier's ETA."""
    ends = np.empty_like(steps)
    previous: np.ndarray | float = 0.0
    for index in range(steps.shape[0]):
        if index in partner_ends:
            start = now if index == 0 else previous
            np.maximum(start, partner_ends[index], out=ends[index])
        else:
            np.add(previous, steps[index], out=ends[index])
        previous = ends[index]
    return ends


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


def _residuals(samples: np.ndarray, elapsed: float) -> np.ndarray:
    """What is left of a segment that has run ``elapsed`` seconds: the durations of the
    similar ones (``samples``, sorted) that lasted longer, minus the elapsed time."""
    longer = samples[samples > elapsed] - elapsed
    if longer.size:
        return longer
    # Longer than every recorded case: assume it overruns as far again as the slower
    # half of them overran their median (at least an hour).
    median = _quantile(samples, 0.5)
    return np.maximum(samples[samples >= median] - median, 3600.0)


def _draw(segments: list[Segment], elapsed: float, history: History, seed: int) -> np.ndarray:
    """Monte Carlo over recorded journeys, each scenario one recorded journey: the
    current segment's rest is what that journey's segment lasted beyond the elapsed
    time, and the later segments are its own, so a journey slow in this stage stays
    slow after it. Only journeys whose current segment lasted longer than the elapsed
    time are drawn; when fewer than ``MIN_CONDITIONED`` did, the rest of the current
    segment is drawn on its own (see ``_residuals``). A carrier's ETA does not change
    what is drawn (``_ends`` applies it).

    Returns each segment's duration (the current one's from now): a row per segment, a
    column per scenario. All scenarios are drawn at once: a Python loop over 1,000 of
    them was the largest single cost of an event."""
    rng = np.random.default_rng(seed)
    rows = [history.row(s.key) for s in segments]
    candidates = None  # every journey
    residuals = None
    if segments and segments[0].key in history.rows:
        first = history.durations[rows[0]]
        known = history.sizes[rows[0]]
        longer = np.flatnonzero(first > elapsed)  # NaN is never longer
        # Enough alike journeys (or all of them alike): keep each one whole.
        if longer.size and longer.size >= min(MIN_CONDITIONED, known):
            candidates = longer
        elif history.sizes[rows[0]]:
            residuals = _residuals(history.marginal(rows[0]), elapsed)
    if candidates is None:
        drawn = rng.integers(history.durations.shape[1], size=SCENARIOS)
    else:
        drawn = candidates[rng.integers(candidates.size, size=SCENARIOS)]
    # Each scenario's journey: its durations of the remaining segments, a row each.
    steps = history.durations.take(rows, axis=0).take(drawn, axis=1)
    for index, segment in enumerate(segments):
        if index == 0:
            if residuals is not None:
                steps[0] = residuals[rng.integers(residuals.size, size=SCENARIOS)]
            else:
                rest = max(segment.planned - elapsed, 0.0)
                steps[0] = np.where(steps[0] > elapsed, steps[0] - elapsed, rest)
        elif not history.sizes[rows[index]]:
            steps[index] = segment.planned  # no journey recorded this segment
    # What a journey did not record (a stage passed over) is drawn from all journeys'
    # durations of that segment, each unknown on its own: one draw for all of them.
    unknown = np.flatnonzero(np.isnan(steps))
    if unknown.size:
        of = np.asarray(rows)[unknown // SCENARIOS]  # each unknown's history row
        picks = history.offsets[of] + rng.integers(history.sizes[of])
        steps.flat[unknown] = history.pool[picks]
    return steps


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
# (pk, computed_at, journey_count), with when that identity was last read (the monotonic
# clock). The spine reads those three columns for an event that moves a journey at most
# once every ETA_STATS_RECHECK_SECONDS per template and process, and the history itself
# (up to MAX_HISTORY journeys of JSON, parsed and cleaned, then made into arrays by the
# first forecast: ``Learned.history``) only when it was recomputed since. The statistics
# change nightly and when a journey finishes, in a worker as a rule: a forecast from
# those of a minute ago is as good, for one statement fewer per event. Recomputing in
# this process forgets them at once.
_LEARNED: dict[int, tuple[tuple[int, datetime, int], Learned | None, float]] = {}


def _stats_stamp(template: int) -> QuerySet[TemplateEtaStats]:
    return (
        TemplateEtaStats.objects.filter(template_id=template)
        .order_by("pk")
        .values_list("pk", "computed_at", "journey_count")[:1]
    )


# Read for an event that moves a journey (once a recheck): compiled once (journey.compiled).
_STATS_STAMP = CompiledRead(_stats_stamp)


def _learned_for(template_id: int) -> Learned | None:
    cached = _LEARNED.get(template_id)
    now = time.monotonic()
    if cached is not None and now - cached[2] < settings.ETA_STATS_RECHECK_SECONDS:
        return cached[1]
    stamp = _STATS_STAMP.first(template=template_id)
    if stamp is not None and cached is not None and cached[0] == stamp:
        _LEARNED[template_id] = (stamp, cached[1], now)
        return cached[1]
    stats = TemplateEtaStats.objects.filter(template_id=template_id).first()
    if stats is None:
        # First use: learn now (once); afterwards the nightly task and finished
        # journeys keep the cache fresh.
        stats = eta_stats_recompute(template=JourneyTemplate.objects.get(pk=template_id))
    learned = learn(stats.data["journeys"], stats.data["keys"]) if stats.journey_count else None
    _LEARNED[template_id] = ((stats.pk, stats.computed_at, stats.journey_count), learned, now)
    return learned


def recomputed(count: int) -> str:
    """What the admin's action and the command say after recomputing open journeys."""
    return f"Recomputed {count} open journey{'' if count == 1 else 's'}."


def eta_stats_recompute(*, template: JourneyTemplate) -> TemplateEtaStats:
    """Learn a template's segment durations from its most recent completed journeys."""
    _LEARNED.pop(template.pk, None)
    # And again once the new row is committed: another thread of this process may have
    # read the old one meanwhile and kept it, for a minute (at once outside a
    # transaction).
    transaction.on_commit(lambda: _LEARNED.pop(template.pk, None))
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


def _booked_day(milestone: Milestone) -> date | None:
    """The day of the appointment booked for ``milestone``, on its place's clock, as the
    spine's read of milestones brings it (``journey.services._milestones``); None when
    none is (or the milestone was not read so: a journey being made)."""
    arrive_at = getattr(milestone, "booked_arrive_at", None)
    return booked_day(arrive_at, milestone.booked_zone) if arrive_at is not None else None


def _segments(milestones: list[Milestone]) -> tuple[list[Segment], int]:
    """The remaining segments (current first) and the index of the current milestone
    (-1 before the first stage is reached)."""
    current = -1
    for index, milestone in enumerate(milestones):
        if milestone.state != MilestoneState.UPCOMING:
            current = index
    segments = [Segment(key=START, planned=0.0)] if current == -1 else []
    segments.extend(_segment(milestone.stage) for milestone in milestones[max(current, 0) : -1])
    return segments, current


def _segment(stage: StageDefinition) -> Segment:
    """The segment from reaching ``stage``."""
    return _segment_of(stage.key, stage.expected_duration, stage.shipping)


@lru_cache(maxsize=1024)
def _segment_of(key: str, duration: timedelta, shipping: bool) -> Segment:
    """Made once per stage as it is (a batch's journeys share a template's dozen)."""
    return Segment(key=key, planned=duration.total_seconds(), shipping=shipping)


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
    previous_health, before = journey.health, _promise(journey)
    unit.save_milestones(unsaved)
    if all(m.state == MilestoneState.DONE for m in milestones):
        arrived = timezone.localdate(
            milestones[-1].reached_at or now, timezone.get_default_timezone()
        )
        journey.eta = journey.eta_low = journey.eta_high = arrived
        journey.eta_basis = EtaBasis.DONE
        journey.health = Health.DONE
        journey.stalled_since = None
        journey.delay_told_eta = None
        if previous_health != Health.DONE and journey.pk:
            from journey.tasks import eta_recompute_template

            # A finished journey is new history for its template.
            eta_recompute_template.delay_on_commit(journey.template_id)
        return _record(journey=journey, now=now, cause=cause, unit=unit, before=before)

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
    )

    changed = []
    first_upcoming = current + 1
    # The day in the site's zone, looked up once (a lookup per date was 4% of a batch);
    # not the zone a staff member's request activated (their profile's).
    zone = timezone.get_default_timezone()
    # A stage booked (an appointment for its handover, its installation) is reached on
    # its booking's day at the earliest: when the forecast has it sooner, it and every
    # stage after it move later by as much (those take as long as forecast after it),
    # and so does the journey's range.
    shift = timedelta(0)
    for offset, milestone in enumerate(milestones[first_upcoming:]):
        expected = timezone.localdate(result.stage_expected[offset], zone) + shift
        booked = _booked_day(milestone)
        if booked is not None and expected < booked:
            shift += booked - expected
            expected = booked
        if milestone.expected_date != expected:
            milestone.expected_date = expected
            changed.append(milestone)
    if changed and changed[0].pk is not None:
        unit.save_milestones(changed)

    journey.eta, journey.eta_low, journey.eta_high = (
        timezone.localdate(moment, zone) + shift
        for moment in (result.expected, result.low, result.high)
    )
    journey.eta_basis = result.basis
    journey.health = health_for(
        expected=journey.eta, high=journey.eta_high, promised=journey.promised_date
    )
    threshold = stall_threshold(segments[0], learned, min_history) if segments else None
    if threshold is not None and elapsed > threshold and current < len(milestones) - 1:
        journey.stalled_since = journey.stalled_since or now
    else:
        journey.stalled_since = None

    estimate = _record(journey=journey, now=now, cause=cause, unit=unit, before=before)
    if journey.health != Health.DELAYED:
        told, journey.delay_told_eta = journey.delay_told_eta, None
        if told is not None and journey.promised_date is not None and journey.eta < told:
            # Told it was late, and now expected sooner, by the promise: the customer
            # plans for the late date until told otherwise. (The promise moved later
            # with the date unchanged, or taken away, is no news to them.)
            _notify_on_time(journey=journey, now=now, unit=unit, told=told)
    elif cause != EtaCause.CREATED and (
        previous_health != Health.DELAYED
        # Delayed already, and now a week or more later than the customer was told (or,
        # never told, than it was: a journey made delayed, or delayed before this).
        or journey.eta >= (journey.delay_told_eta or before[0] or journey.eta) + FURTHER_SLIP
    ):
        # A booking set the date: the message says so (the appointment's own said when).
        _notify_delay(journey=journey, now=now, unit=unit, booked=bool(shift))
        journey.delay_told_eta = journey.eta
    return estimate


# The promise an ETA history row records: a new row only when it changed.
Promise = tuple[date | None, date | None, date | None, str, str]


def _promise(journey: Journey) -> Promise:
    return (journey.eta, journey.eta_low, journey.eta_high, journey.eta_basis, journey.health)


def _record(
    *, journey: Journey, now: datetime, cause: EtaCause, unit: Writes, before: Promise
) -> EtaEstimate | None:
    """One history row per change of the promise (not per recompute).

    The promise before is the journey's own: its ETA fields are only ever set here (the
    spine saves them with the row, in one transaction; the admin saves only the fields
    its form edits), so they are what the last row says, with no read of it."""
    if journey.pk is None or journey.eta is None or _promise(journey) == before:
        return None
    estimate = EtaEstimate.new(
        journey=journey,
        computed_at=now,
        expected=journey.eta,
        low=journey.eta_low,
        high=journey.eta_high,
        basis=journey.eta_basis,
        health=journey.health,
        cause=cause,
    )
    unit.estimates.append(estimate)
    return estimate


# How much later than the customer was last told a delayed journey's date must move for
# them to be told again: a day's drift of the forecast is not news; a week is.
FURTHER_SLIP = timedelta(days=7)


def _notify_delay(*, journey: Journey, now: datetime, unit: Writes, booked: bool = False) -> None:
    """The proactive delay message: once per slip, i.e. per (promise, new date);
    ``booked`` when the new date is an appointment's booked for a stage (docs/eta.md)."""
    context = {
        "eta": journey.eta.isoformat(),
        "promised_date": journey.promised_date.isoformat(),
        "reason": journey.delay_reason,
    }
    if booked:
        context["booked"] = True
    _tell(journey=journey, kind="journey_delayed", context=context, now=now, unit=unit)


def _tell(
    *, journey: Journey, kind: str, context: dict[str, object], now: datetime, unit: Writes
) -> None:
    """A message about the journey's date to its owner (a delay, its undoing, a promise
    moved), keyed by ``_told_key`` under the kind's name."""
    unit.outbox.add(
        recipient=journey.owner,
        journey=journey,
        kind=kind,
        dedup_key=_told_key(kind.replace("_", "-"), journey, now),
        context=context,
        occurred_at=now,
    )


def _told_key(prefix: str, journey: Journey, now: datetime) -> str:
    """A delay or its undoing, told: the journey's state (``delay_told_eta``) decides
    what is news, so that a recompute tells nothing twice; the key is the telling's own,
    with its moment, so that a delay told again after a recovery (a booking moved there
    and back) is not taken for the first and dropped, leaving "back on time" the last
    word on a journey that is late."""
    moment = now.astimezone(UTC)
    return f"{prefix}:{journey.pk}:{journey.promised_date}:{journey.eta}:{moment:%Y%m%dT%H%M%S.%fZ}"


def _notify_on_time(*, journey: Journey, now: datetime, unit: Writes, told: date) -> None:
    """A delay told, undone. Told within this unit (a batch's earlier event), its message
    is withdrawn before anyone reads it, and nothing more is said. Else only if its
    message was written (a template may switch the kind off: the customer heard of no
    delay, and the latest message then is an older delay's), and within the promise it
    was told against: "as we promised" is not said of a promise moved later to cover the
    delay. One read, of the customer's latest delay message, on this rare path only."""
    from notifications.models import Notification

    if unit.outbox.withdraw(journey=journey, kind="journey_delayed"):
        return
    said = (
        Notification.objects.filter(
            recipient_id=journey.owner_id, journey_id=journey.pk, kind="journey_delayed"
        )
        .order_by("-created_at", "-pk")
        .values_list("context", flat=True)
        .first()
    )
    if (
        said is None
        or said["eta"] != told.isoformat()
        or journey.eta > date.fromisoformat(said["promised_date"])
    ):
        return
    context = {
        "eta": journey.eta.isoformat(),
        "promised_date": journey.promised_date.isoformat(),
        "told_eta": told.isoformat(),
    }
    _tell(journey=journey, kind="journey_on_time", context=context, now=now, unit=unit)


# The messages that quote a journey's promise: one written tells a new promise too.
_TOLD_PROMISE = ("journey_delayed", "journey_on_time")


def eta_promise_moved(
    *,
    journey: Journey,
    before: date | None,
    now: datetime | None = None,
    since: datetime | None = None,
) -> Journey:
    """Staff moved a journey's promise (``promised_date``, saved; ``before`` the one it
    replaced): its ETA recomputed now (its health, the lists and the delay message follow
    the new promise), and its customer told the new promise (``journey_promise_moved``),
    unless that recompute told them already: a delay quotes the new promise, and so does
    "back on time"; or, ``since`` the caller's change began, another recompute of the
    same change did (a booking cancelled in the same save: one query). Not for a promise
    taken away, nor for a finished or cancelled journey. Returns the journey as
    recomputed."""
    from notifications.models import Notification

    now = now or timezone.now()
    told = (
        since is not None
        and Notification.objects.filter(
            journey_id=journey.pk, kind__in=_TOLD_PROMISE, created_at__gte=since
        ).exists()
    )
    recomputed = _recompute_chunk(
        [journey.pk],
        cause=EtaCause.RECOMPUTE,
        now=now,
        promised_before=None if told else {journey.pk: before},
    )
    if journey.pk not in recomputed:
        raise Journey.DoesNotExist(f"No journey {journey.pk}.")
    moved = recomputed[journey.pk][0]
    if moved.health != Health.DELAYED:
        # A delay still waiting to go out (held for quiet hours or a digest) is not true
        # under the new promise: dropped, as a settled proposal's message is.
        from notifications.services import notification_settle

        waiting = Notification.objects.filter(
            journey_id=journey.pk, kind="journey_delayed", state="pending", attempts=0
        ).values_list("recipient_id", "dedup_key")
        for recipient, key in set(waiting):
            notification_settle(recipient=recipient, dedup_key=key)
    return moved


def _notify_promise_moved(
    *, journey: Journey, before: date | None, now: datetime, unit: Writes
) -> None:
    promised = journey.promised_date
    if (
        promised is None
        or promised == before
        or journey.health in (Health.DONE, Health.CANCELLED)
        or unit.outbox.holds(journey=journey, kinds=_TOLD_PROMISE)
    ):
        return
    context = {
        "promised_date": promised.isoformat(),
        "previous_promised_date": before.isoformat() if before else None,
        "eta": journey.eta.isoformat() if journey.eta else None,
        # Still expected after the new promise: said so, with an apology.
        "late": journey.eta is not None and journey.eta > promised,
    }
    _tell(journey=journey, kind="journey_promise_moved", context=context, now=now, unit=unit)


def eta_recompute(*, journey: Journey, cause: EtaCause, now: datetime | None = None) -> Journey:
    """Recompute one journey's ETA outside an event (a leg's ETA, on demand), as the
    periodic jobs do (``eta_recompute_many``): saved only if it changed; a cancelled
    journey is left alone. Returns the journey as recomputed."""
    recomputed = _recompute_chunk([journey.pk], cause=cause, now=now or timezone.now())
    if journey.pk not in recomputed:
        raise Journey.DoesNotExist(f"No journey {journey.pk}.")
    return recomputed[journey.pk][0]


def open_journeys() -> QuerySet[Journey]:
    return Journey.objects.exclude(health__in=[Health.DONE, Health.CANCELLED])


def eta_recompute_template_journeys(
    *, template: JourneyTemplate, cause: EtaCause = EtaCause.RECOMPUTE
) -> int:
    """Relearn one template and recompute its open journeys. Returns how many."""
    eta_stats_recompute(template=template)
    pks = list(open_journeys().filter(template=template).values_list("pk", flat=True))
    eta_recompute_many(pks=pks, cause=cause)
    return len(pks)


def eta_recompute_all(*, cause: EtaCause = EtaCause.NIGHTLY) -> int:
    """Relearn every template, then recompute every open journey. Returns the count."""
    for template in JourneyTemplate.objects.all():
        eta_stats_recompute(template=template)
    pks = list(open_journeys().values_list("pk", flat=True))
    eta_recompute_many(pks=pks, cause=cause)
    return len(pks)


def eta_check_stalled(*, now: datetime | None = None) -> list[int]:
    """Flag the open journeys whose current stage has run longer than 95% of similar
    ones (or twice its plan, without history). Returns the ids newly flagged."""
    pks = list(open_journeys().values_list("pk", flat=True))
    return eta_recompute_many(pks=pks, cause=EtaCause.RECOMPUTE, now=now)


# Journeys the periodic jobs recompute together: one transaction and one unit of work
# (journey.unit) each, so about ten statements per chunk instead of six per journey, and
# the chunk's locks held for about a tenth of a second (a partner's batch of a hundred
# events holds as many as long).
RECOMPUTE_CHUNK = 100
# Tries per chunk that PostgreSQL aborts as a deadlock, before the job leaves it for its
# next run and goes on with the next chunk.
RECOMPUTE_TRIES = 3
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE


def eta_recompute_many(
    *,
    pks: Sequence[int],
    cause: EtaCause,
    now: datetime | None = None,
    chunk: int = RECOMPUTE_CHUNK,
) -> list[int]:
    """Recompute open journeys' ETAs outside an event (the nightly recompute, the stall
    check), a chunk at a time. Returns the ids newly flagged as stalled.

    Each chunk is locked as the spine locks a partner's batch (in primary-key order, so
    it queues behind a batch holding some of them), computed into one unit of work at
    that moment (``now``, if given, for all of them) and flushed. Only a journey whose
    ETA fields changed is saved: an hourly check that rewrote every open journey would
    bump every version, and with it every customer's cached page, for nothing.
    Journeys cancelled or deleted since they were listed are left alone.

    A batch can still lock a journey out of order (an item claimed late, after its
    event id was refused and sent again for another journey), and PostgreSQL then
    aborts one of the two as a deadlock: a chunk so aborted is tried again.
    """
    flagged = []
    pks = sorted(set(pks))
    for start in range(0, len(pks), chunk):
        ids = pks[start : start + chunk]
        for attempt in range(1, RECOMPUTE_TRIES + 1):
            try:
                recomputed = _recompute_chunk(ids, cause=cause, now=now or timezone.now())
            except OperationalError as error:
                if getattr(error.__cause__, "sqlstate", None) != DEADLOCK_DETECTED:
                    raise
                last = attempt == RECOMPUTE_TRIES
                logger.log(
                    logging.ERROR if last else logging.WARNING,
                    "ETA recompute: journeys %s to %s deadlocked (try %d of %d); %s",
                    ids[0],
                    ids[-1],
                    attempt,
                    RECOMPUTE_TRIES,
                    "left for the next run." if last else "trying again.",
                )
            else:
                flagged += [
                    pk
                    for pk, (journey, was) in recomputed.items()
                    if was is None and journey.stalled_since is not None
                ]
                break
    return flagged


def _recompute_chunk(
    pks: list[int],
    *,
    cause: EtaCause,
    now: datetime,
    promised_before: dict[int, date | None] | None = None,
) -> dict[int, tuple[Journey, datetime | None]]:
    """Lock, recompute and save (if changed) these journeys in one transaction and unit
    of work. Returns each journey locked, with when it was flagged as stalled before
    (None: it was not); cancelled ones unchanged. ``promised_before``: the journeys whose
    promise staff moved, with the one it replaced (``eta_promise_moved``)."""
    # The spine's loader; journey.services imports this module.
    from journey.services import journeys_lock

    recomputed = {}
    with transaction.atomic():
        unit = Writes()
        for pk, state in journeys_lock(pks=pks, unit=unit).items():
            journey = state.journey
            recomputed[pk] = (journey, journey.stalled_since)
            if journey.health == Health.CANCELLED:
                continue
            before = _eta_fields(journey)
            _refresh(
                journey=journey,
                milestones=state.milestones,
                now=now,
                cause=cause,
                unsaved=(),
                unit=unit,
            )
            if _eta_fields(journey) != before:
                unit.journeys[pk] = journey
            if promised_before is not None and pk in promised_before:
                _notify_promise_moved(
                    journey=journey, before=promised_before[pk], now=now, unit=unit
                )
        unit.flush()
    return recomputed


def _eta_fields(journey: Journey) -> tuple[object, ...]:
    """What the ETA sets on a journey (``ETA_FIELDS``)."""
    return tuple(getattr(journey, name) for name in ETA_FIELDS)


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
