"""The ETA: learned from history, with an 80% range, health, delay messages, stalls."""

import collections
import io
import itertools
import math
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, OperationalError, connection, transaction
from django.forms import modelform_factory
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from journey import eta
from journey.errors import ApplicationError
from journey.models import (
    EtaBasis,
    EtaCause,
    EtaEstimate,
    EventSource,
    Health,
    Journey,
    JourneyTemplate,
    ShipmentLeg,
    StageDefinition,
    TemplateEtaStats,
)
from journey.services import journey_create, journey_record_milestone
from journey.tasks import eta_check_stalled, eta_recompute_nightly
from notifications.models import Notification
from notifications.services import notification_deliver
from tests.factories import LegFactory, TemplateFactory, UserFactory
from tests.sql import unit_writes

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = 86400.0


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def reach(journey: Journey, stage: int, days: float) -> None:
    journey_record_milestone(
        journey=journey, stage_key=f"stage-{stage}", occurred_at=at(days), source=EventSource.STAFF
    )


@pytest.fixture
def template():
    # Four stages planned at two days each: the last is reached six days after the first.
    return TemplateFactory(stages=4)


def new_journey(template, *, promised: date | None = None, started: float = 0) -> Journey:
    return journey_create(
        template=template,
        owner=UserFactory(),
        title="Car",
        started_at=at(started),
        promised_date=promised,
    )


def completed(template, *, stage_days: float) -> Journey:
    """A finished journey whose every stage took ``stage_days``."""
    with time_machine.travel(at(0), tick=False):
        journey = new_journey(template)
    with time_machine.travel(at(3 * stage_days + 1), tick=False):
        for stage in range(1, 5):
            reach(journey, stage, (stage - 1) * stage_days)
    return journey


# --- The pure core --------------------------------------------------------------------


def test_planned_fallback_gives_the_plan_and_a_late_leaning_range():
    segments = [eta.Segment(key="a", planned=2 * DAY), eta.Segment(key="b", planned=4 * DAY)]

    result = eta.forecast(segments=segments, elapsed=DAY, now=T0, learned=None, min_history=20)

    # One day left of a, then four days of b.
    assert result.basis == EtaBasis.PLANNED
    assert result.stage_expected == [at(1), at(5)]
    assert result.expected == at(5)
    assert result.low == at(0.85 * 2 - 1 + 0.85 * 4)
    assert result.high == at(1.5 * 2 - 1 + 1.5 * 4)


def test_thin_history_falls_back_to_the_plan():
    learned = eta.learn([[DAY, DAY]] * 3, ["a", "b"])
    segments = [eta.Segment(key="a", planned=2 * DAY), eta.Segment(key="b", planned=2 * DAY)]

    result = eta.forecast(segments=segments, elapsed=0, now=T0, learned=learned, min_history=4)

    assert result.basis == EtaBasis.PLANNED
    assert result.expected == at(4)


def test_history_conditions_the_current_stage_on_the_time_already_elapsed():
    # Stage a took one day in two journeys, five in six, nine in two; b always two days.
    a_days = [1] * 2 + [5] * 6 + [9] * 2
    learned = eta.learn([[d * DAY, 2 * DAY] for d in a_days], ["a", "b"])
    segments = [eta.Segment(key="a", planned=DAY), eta.Segment(key="b", planned=DAY)]

    def predict(elapsed_days: float) -> tuple[datetime, datetime, datetime]:
        result = eta.forecast(
            segments=segments,
            elapsed=elapsed_days * DAY,
            now=at(elapsed_days),
            learned=learned,
            min_history=5,
        )
        assert result.basis == EtaBasis.HISTORY
        return result.low, result.expected, result.high

    assert predict(0) == (at(1 + 2), at(5 + 2), at(9 + 2))
    # Three days in, only the five- and nine-day journeys are alike: 2 or 6 days left.
    assert predict(3) == (at(3 + 2 + 2), at(3 + 2 + 2), at(3 + 6 + 2))
    # Past the five-day ones, two alike are too few: the rest comes from those two alone.
    assert predict(5.5) == (at(9 + 2), at(9 + 2), at(9 + 2))


def test_a_stage_longer_than_all_history_still_gets_a_future_date():
    learned = eta.learn([[d * DAY] for d in range(1, 11)], ["a"])
    segments = [eta.Segment(key="a", planned=DAY)]

    result = eta.forecast(
        segments=segments, elapsed=20 * DAY, now=at(20), learned=learned, min_history=5
    )

    assert result.low > at(20)
    assert result.low <= result.expected <= result.high


def test_negative_durations_in_history_are_dropped():
    learned = eta.learn([[-DAY, DAY], [DAY, None]], ["a", "b"])
    assert learned.journeys == [[None, DAY], [DAY, None]]
    assert learned.samples("a") == [DAY]


# The scenarios are drawn all at once (numpy): these pin that fast path to the method.


def exact_ends(rows: list[list[float | None]], elapsed: float) -> dict[tuple, Fraction]:
    """The method spelled out by enumeration, in days: every possible scenario (when
    each segment ends, after now) with its exact probability. Each recorded journey
    whose current segment lasted longer than ``elapsed`` is equally likely and kept
    whole; with fewer such journeys than MIN_CONDITIONED, any journey is, and the rest
    of the current segment is drawn on its own; an unknown later duration is any one of
    that segment's recorded durations, equally likely."""

    def recorded(column: int) -> list[float]:
        return [row[column] for row in rows if row[column] is not None]

    longer = [row for row in rows if row[0] is not None and row[0] > elapsed]
    if len(longer) >= min(eta.MIN_CONDITIONED, len(recorded(0))):
        journeys, rests = longer, None
    else:
        journeys, rests = rows, [s - elapsed for s in recorded(0) if s > elapsed]
    ends: dict[tuple, Fraction] = collections.Counter()
    for row in journeys:
        choices = [rests or [row[0] - elapsed]]
        choices += [[v] if v is not None else recorded(i) for i, v in enumerate(row[1:], 1)]
        weight = Fraction(1, len(journeys) * math.prod(len(c) for c in choices))
        for durations in itertools.product(*choices):
            ends[tuple(itertools.accumulate(durations))] += weight
    return ends


def exact_quantile(ends: dict[tuple, Fraction], segment: int, q: float) -> float:
    """Where the distribution of a segment's end first reaches ``q``. The cases below
    keep ``q`` well inside one step of it, so that 1,000 draws find the same value."""
    below = Fraction(0)
    for value in sorted({e[segment] for e in ends}):
        mass = sum(p for e, p in ends.items() if e[segment] == value)
        if below + mass >= q:
            assert below <= q - 0.05 and below + mass >= q + 0.05, "q is too near a step"
            return value
        below += mass
    raise AssertionError(q)


@pytest.mark.parametrize(
    ("rows", "elapsed"),
    [
        # Five journeys outlasted the two days elapsed, each slow or fast all along; the
        # one that did not (forty-day stages) is never drawn.
        ([[1, 40, 40], [3, 1, 1], [4, 2, 2], [5, 3, 3], [6, 4, 4], [7, 5, 5]], 2),
        # Half the journeys did not record b: theirs is any recorded b (not the plan).
        ([[2, None]] * 5 + [[2, 1]] * 4 + [[2, 9]], 0),
        # Three journeys outlasted the five days elapsed, too few to keep whole: the rest
        # of a (1, 2 or 5 days) is drawn on its own, b from every journey.
        ([[1, 0], [2, 0], [3, 0], [6, 4], [7, 4], [10, 4]], 5),
    ],
    ids=["whole-journeys", "unknown-durations", "residuals"],
)
def test_the_forecast_follows_the_exact_distribution_of_scenarios(rows, elapsed):
    keys = ["a", "b", "c"][: len(rows[0])]
    history = [[None if d is None else d * DAY for d in row] for row in rows]
    segments = [eta.Segment(key=key, planned=5 * DAY) for key in keys]
    ends = exact_ends(rows, elapsed)

    result = eta.forecast(
        segments=segments,
        elapsed=elapsed * DAY,
        now=at(elapsed),
        learned=eta.learn(history, keys),
        min_history=1,
    )

    def exact(segment: int, q: float) -> datetime:
        return at(elapsed + exact_quantile(ends, segment, q))

    assert (result.low, result.expected, result.high) == (
        exact(-1, 0.1),
        exact(-1, 0.5),
        exact(-1, 0.9),
    )
    assert result.stage_expected == [exact(i, 0.5) for i in range(len(keys))]


@pytest.mark.parametrize(
    ("carrier", "ends"),
    # The carrier's ETA ends b in place of its own four days; one already past by the
    # time b begins ends it at once.
    [(None, [2, 6, 8]), (10, [2, 10, 12]), (1, [2, 2, 4])],
    ids=["no-carrier", "carrier-later", "carrier-earlier"],
)
def test_a_history_of_identical_journeys_gives_exact_dates(carrier, ends):
    # Every journey took three, four and two days; half did not record b, which is then
    # the four days the others recorded. One day of a has run.
    history = [[3 * DAY, 4 * DAY, 2 * DAY]] * 5 + [[3 * DAY, None, 2 * DAY]] * 5
    segments = [eta.Segment(key=key, planned=DAY) for key in ("a", "b", "c")]

    result = eta.forecast(
        segments=segments,
        elapsed=DAY,
        now=T0,
        learned=eta.learn(history, ["a", "b", "c"]),
        min_history=1,
        partner_ends={} if carrier is None else {1: at(carrier)},
        seed=7,
    )

    assert result.stage_expected == [at(d) for d in ends]
    assert result.low == result.expected == result.high == at(ends[-1])


def test_two_equally_likely_journeys_are_never_mixed():
    # A fast journey (one day a stage) and a slow one (three days): a scenario is one of
    # them whole, two or six days, never a fast stage then a slow one.
    history = [[DAY, DAY]] * 10 + [[3 * DAY, 3 * DAY]] * 10
    segments = [eta.Segment(key=key, planned=DAY) for key in ("a", "b")]

    result = eta.forecast(
        segments=segments, elapsed=0, now=T0, learned=eta.learn(history, ["a", "b"]), min_history=1
    )

    assert (result.low, result.high) == (at(2), at(6))
    assert result.expected in (at(2), at(6))
    assert result.stage_expected[0] in (at(1), at(3))


# Journeys in the same state share their scenarios (``History.drawn``): these pin that
# the shared path gives what drawing for the journey alone gives.

DURATIONS = st.sampled_from([None, 0.0, 0.001, 0.5, 1.0, 2.0, 3.0, 4.0, 7.5])


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(DURATIONS, min_size=3, max_size=3), min_size=1, max_size=12),
    elapsed=st.sampled_from([-60 / DAY, 0.0, 60 / DAY, 0.25, 0.5, 0.75, 1.0, 1.5, 3.5, 8.0]),
    # (an index past the segments, or below them, is ignored, as by the journey's own draw)
    carrier=st.none() | st.tuples(st.integers(-1, 3), st.floats(-3, 20, allow_nan=False)),
    seed=st.integers(0, 3),
)
def test_journeys_in_the_same_state_get_what_their_own_draw_gives(rows, elapsed, carrier, seed):
    keys = ["a", "b", "c"]
    learned = eta.learn([[None if d is None else d * DAY for d in row] for row in rows], keys)
    segments = [eta.Segment(key=key, planned=2 * DAY) for key in keys]
    now = at(elapsed)
    partner_ends = {} if carrier is None else {carrier[0]: at(carrier[1])}

    def forecast():
        return eta.forecast(
            segments=segments,
            elapsed=elapsed * DAY,
            now=now,
            learned=learned,
            min_history=1,
            partner_ends=partner_ends,
            seed=seed,
        )

    # The journey's own draw, from now: what the forecast did before states were shared.
    own = eta._outlook(
        eta._draw(segments, elapsed * DAY, learned.history, seed),
        {index: (end - now).total_seconds() for index, end in partner_ends.items()},
    )
    for result in (forecast(), forecast()):  # the state drawn, then kept
        got = [*result.stage_expected, result.low, result.expected, result.high]
        wanted = [*own.ends, own.low, own.expected, own.high]
        # (low and high as forecast() orders them around the expected date)
        wanted[-3], wanted[-1] = min(own.low, own.expected), max(own.high, own.expected)
        assert [(g - now).total_seconds() for g in got] == pytest.approx(wanted, abs=1e-3)


def test_journeys_in_the_same_state_are_drawn_once(monkeypatch):
    # Five journeys took one to five days a stage; the carrier's ETA ends b.
    learned = eta.learn([[d * DAY] * 3 for d in (1, 2, 3, 4, 5)], ["a", "b", "c"])
    segments = [eta.Segment(key=key, planned=DAY) for key in ("a", "b", "c")]
    draws, draw = [], eta._draw
    monkeypatch.setattr(eta, "_draw", lambda *args: draws.append(args) or draw(*args))

    def forecast(elapsed: float, carrier: float | None) -> eta.Forecast:
        return eta.forecast(
            segments=segments,
            elapsed=elapsed,
            now=at(elapsed / DAY),
            learned=learned,
            min_history=1,
            partner_ends={} if carrier is None else {1: at(carrier)},
        )

    # Less than a day in a (its shortest): every journey outlasted it, so each forecast
    # is the state's, whatever the carrier says (before, among or after the scenarios).
    results = [forecast(e, c) for e in (0, 60, 3600) for c in (None, -1, 3, 30)]
    assert len(draws) == 1
    assert results[0].expected == at(9)  # the middle journey: a, then b and c, 3 days each
    assert forecast(60, 30).expected == at(33)  # b ends when the carrier says, c 3 days on
    # Among them (day 2): b ends then for the journeys that reached it sooner, at once
    # for the others; the middle journey reaches b on day 3 and ends c on day 6.
    assert forecast(60, 2).expected == at(6)
    # Past the shortest journey's a, the journeys drawn from differ: drawn for itself.
    forecast(1.5 * DAY, None)
    assert len(draws) == 2


@pytest.mark.parametrize(
    ("promised", "health"),
    [
        (date(2026, 11, 11), Health.ON_TRACK),  # the whole range is before the promise
        (date(2026, 11, 10), Health.AT_RISK),  # the range crosses it
        (date(2026, 11, 8), Health.AT_RISK),
        (date(2026, 11, 7), Health.DELAYED),  # the expected date is past it
        (None, Health.ON_TRACK),
    ],
)
def test_health_against_the_promise(promised, health):
    assert eta.health_for(
        expected=date(2026, 11, 8), high=date(2026, 11, 11), promised=promised
    ) == (health)


# --- Through the spine ----------------------------------------------------------------


def test_a_new_journey_without_history_uses_the_plan_and_records_it(template):
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template, promised=date(2026, 11, 20))

    journey.refresh_from_db()
    assert (journey.eta_low, journey.eta, journey.eta_high) == (
        date(2026, 11, 7),  # 0.85 x 6 days
        date(2026, 11, 8),
        date(2026, 11, 11),  # 1.5 x 6 days
    )
    assert journey.eta_basis == EtaBasis.PLANNED
    assert journey.health == Health.ON_TRACK
    history = list(journey.eta_estimates.values_list("expected", "basis", "cause"))
    assert history == [(date(2026, 11, 8), EtaBasis.PLANNED, EtaCause.CREATED)]
    stats = TemplateEtaStats.objects.get(template=template)
    assert stats.journey_count == 0


def test_with_enough_history_the_spine_learns_from_it(template, settings):
    settings.ETA_MIN_HISTORY = 3
    for days in (3, 4, 5):
        completed(template, stage_days=days)
    eta.eta_stats_recompute(template=template)

    with time_machine.travel(at(30), tick=False):
        journey = new_journey(template, started=30)
        reach(journey, 1, 30)

    journey.refresh_from_db()
    # Three more stages of 3, 4 or 5 days (each journey kept whole).
    assert journey.eta_basis == EtaBasis.HISTORY
    assert (journey.eta_low, journey.eta, journey.eta_high) == (
        at(39).date(),
        at(42).date(),
        at(45).date(),
    )
    expected = dict(journey.milestones.values_list("stage__key", "expected_date"))
    assert expected == {
        "stage-1": at(30).date(),  # as last expected before it was reached
        "stage-2": at(34).date(),
        "stage-3": at(38).date(),
        "stage-4": at(42).date(),
    }
    # Reaching the first stage on the day it began did not move the promise.
    assert list(journey.eta_estimates.values_list("basis", "cause")) == [
        (EtaBasis.HISTORY, EtaCause.CREATED),
    ]


def test_a_finished_journey_relearns_its_template_after_commit(
    template, django_capture_on_commit_callbacks
):
    completed(template, stage_days=3)  # its own recompute ran in the test transaction
    TemplateEtaStats.objects.all().delete()
    with time_machine.travel(at(20), tick=False):
        journey = new_journey(template, started=10)
        for stage in range(1, 4):
            reach(journey, stage, 10 + stage)
        TemplateEtaStats.objects.all().delete()
        with django_capture_on_commit_callbacks(execute=True):
            reach(journey, 4, 15)

    stats = TemplateEtaStats.objects.get(template=template)
    assert stats.journey_count == 2
    # Start to stage 1, then each stage to the next.
    assert sorted(stats.data["journeys"]) == [
        [0.0, 3 * DAY, 3 * DAY, 3 * DAY],
        [1 * DAY, 1 * DAY, 1 * DAY, 2 * DAY],
    ]
    journey.refresh_from_db()
    assert journey.eta_basis == EtaBasis.DONE
    assert journey.eta == journey.eta_low == journey.eta_high == at(15).date()


def test_the_history_keeps_only_changes_of_the_promise(template):
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template)
        eta.eta_recompute(journey=journey, cause=EtaCause.NIGHTLY)  # nothing moved
    with time_machine.travel(at(1), tick=False):
        reach(journey, 1, 1)

    assert list(journey.eta_estimates.values_list("expected", "cause")) == [
        (date(2026, 11, 8), EtaCause.CREATED),
        (date(2026, 11, 9), EtaCause.EVENT),
    ]


def ship_template() -> JourneyTemplate:
    template = TemplateFactory(stages=4)
    StageDefinition.objects.filter(template=template, key="stage-2").update(shipping=True)
    return template


def leg(journey: Journey, *, eta_at: datetime | None, arrived: bool = False) -> ShipmentLeg:
    return LegFactory(
        journey=journey, departed_at=at(1), arrived_at=at(2) if arrived else None, eta=eta_at
    )


def test_a_shipping_stage_ends_when_the_carrier_expects_its_last_open_leg():
    template = ship_template()
    with time_machine.travel(at(1), tick=False):
        journey = new_journey(template)
        reach(journey, 2, 1)  # in transit
        leg(journey, eta_at=at(9), arrived=True)  # arrived: no longer counts
        first = leg(journey, eta_at=at(4))
        leg(journey, eta_at=at(7))
        eta.leg_eta_update(leg=first, eta=at(5))

    journey.refresh_from_db()
    # Stage 3 is reached when the last open leg arrives, then two planned days.
    assert journey.eta_basis == EtaBasis.PLANNED_PARTNER
    assert journey.eta == at(9).date()
    assert journey.milestones.get(stage__key="stage-3").expected_date == at(7).date()
    assert journey.eta_estimates.last().cause == EtaCause.LEG_ETA


def test_a_leg_eta_before_the_journey_started_is_refused_and_moves_nothing():
    template = ship_template()
    with time_machine.travel(at(1), tick=False):
        journey = new_journey(template)
        reach(journey, 2, 1)
        open_leg = leg(journey, eta_at=at(6))
        eta.leg_eta_update(leg=open_leg, eta=at(6))
        journey.refresh_from_db()
        before = (journey.eta, journey.eta_low, journey.eta_high, journey.eta_basis)
        rows = EtaEstimate.objects.count()

        with pytest.raises(ApplicationError) as error:
            eta.leg_eta_update(leg=open_leg, eta=at(-3))
        with pytest.raises(ApplicationError) as naive:
            eta.leg_eta_update(leg=open_leg, eta=datetime(2026, 11, 9, 9, 0))

    assert error.value.fields == {"eta": ["Before the journey started."]}
    assert naive.value.fields == {"eta": ["No time zone."]}
    open_leg.refresh_from_db()
    assert open_leg.eta == at(6)
    journey.refresh_from_db()
    assert (journey.eta, journey.eta_low, journey.eta_high, journey.eta_basis) == before
    assert EtaEstimate.objects.count() == rows


def test_a_leg_eta_before_the_start_saved_elsewhere_is_ignored():
    template = ship_template()
    with time_machine.travel(at(1), tick=False):
        journey = new_journey(template, started=1)
        reach(journey, 2, 1)
        leg(journey, eta_at=at(-5))  # a typo that bypassed validation
        eta.eta_recompute(journey=journey, cause=EtaCause.RECOMPUTE)

    journey.refresh_from_db()
    assert journey.eta_basis == EtaBasis.PLANNED
    assert journey.eta == at(5).date()


def test_the_leg_form_refuses_an_eta_before_the_journey_started(template):
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template)
    bad = ShipmentLeg(
        journey=journey,
        sequence=1,
        mode="truck",
        origin_name="A",
        origin_lat=Decimal(0),
        origin_lon=Decimal(0),
        destination_name="B",
        destination_lat=Decimal(1),
        destination_lon=Decimal(1),
        eta=at(-1),
    )
    with pytest.raises(ValidationError) as error:
        bad.full_clean()
    assert error.value.message_dict == {"eta": ["The ETA is before the journey started."]}


@pytest.mark.parametrize("duration", ["-1 00:00:00", "731 00:00:00"])
def test_an_absurd_stage_duration_is_a_form_error_and_a_db_error(template, duration):
    stage = template.stages.get(key="stage-1")
    form_class = modelform_factory(StageDefinition, fields=["expected_duration"])

    form = form_class(data={"expected_duration": duration}, instance=stage)

    assert not form.is_valid()
    assert list(form.errors) == ["expected_duration"]
    with pytest.raises(IntegrityError), transaction.atomic():
        StageDefinition.objects.filter(pk=stage.pk).update(
            expected_duration=timedelta(days=int(duration.split()[0]))
        )
    stage.refresh_from_db()
    assert stage.expected_duration == timedelta(days=2)


# --- Health and the delay message -----------------------------------------------------


def delays() -> list[Notification]:
    return list(Notification.objects.filter(kind="journey_delayed", channel="email"))


def test_a_slip_past_the_promise_is_told_once_with_the_reason_and_the_new_date(template):
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template, promised=date(2026, 11, 10))
    Journey.objects.filter(pk=journey.pk).update(delay_reason="The ship sailed a day late.")
    journey.refresh_from_db()
    assert journey.health == Health.AT_RISK  # expected 8th, range to the 11th
    assert delays() == []

    with time_machine.travel(at(4), tick=False):
        reach(journey, 2, 4)  # expected the 10th, range to the 12th
    journey.refresh_from_db()
    assert journey.health == Health.AT_RISK
    assert delays() == []

    with time_machine.travel(at(9), tick=False):
        reach(journey, 3, 9)  # expected the 13th: past the promise
        eta.eta_recompute(journey=journey, cause=EtaCause.NIGHTLY)
    with time_machine.travel(at(9.5), tick=False):
        eta.eta_check_stalled()

    journey.refresh_from_db()
    assert journey.health == Health.DELAYED
    [message] = delays()
    assert message.recipient == journey.owner
    # The telling's own key: the journey, the promise, the new date, the moment.
    assert message.dedup_key.startswith(f"journey-delayed:{journey.pk}:2026-11-10:2026-11-13:")
    assert message.context == {
        "eta": "2026-11-13",
        "promised_date": "2026-11-10",
        "reason": "The ship sailed a day late.",
    }
    assert list(journey.eta_estimates.values_list("health", flat=True)) == [
        Health.AT_RISK,
        Health.AT_RISK,
        Health.DELAYED,
    ]

    # The milestone emails went out when they happened (no on-commit delivery runs in
    # this test): without this, the delay would go out in one digest with them.
    Notification.objects.filter(kind="milestone_reached").update(state="sent", sent_at=at(9))
    notification_deliver(notification_id=message.pk)
    [email] = [m for m in mail.outbox if "now expected" in m.subject]
    # The subject, all a digest lists of it, says the promise missed too.
    assert email.subject == "Car: now expected 13 November, not by 10 November"
    assert "will not arrive by 10 November 2026 as we promised" in email.body
    assert "We now expect it on 13 November 2026." in email.body
    assert "The ship sailed a day late." in email.body


def test_a_slip_after_a_new_promise_is_told(template):
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template, promised=date(2026, 11, 7))
    assert journey.health == Health.DELAYED
    assert delays() == []  # not on creation: staff set an impossible promise

    Journey.objects.filter(pk=journey.pk).update(promised_date=date(2026, 11, 30))
    with time_machine.travel(at(1), tick=False):
        eta.eta_recompute(journey=journey, cause=EtaCause.RECOMPUTE)
    Journey.objects.filter(pk=journey.pk).update(promised_date=date(2026, 11, 8))
    with time_machine.travel(at(2), tick=False):
        eta.eta_recompute(journey=journey, cause=EtaCause.RECOMPUTE)

    journey.refresh_from_db()
    assert journey.health == Health.DELAYED
    [delay] = delays()
    assert delay.dedup_key.startswith(f"journey-delayed:{journey.pk}:2026-11-08:2026-11-10:")


def test_a_delayed_journey_slipping_a_week_further_is_told_again(template):
    """A walk-through's kitchen, delayed already, was booked five weeks later and its
    customer heard of no delay: only a change *to* delayed was told. A date a week or
    more later than the customer was last told is told again; a day's drift is not."""
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template, promised=date(2026, 11, 30))
    with time_machine.travel(at(1), tick=False):
        reach(journey, 1, 1)  # the last stage six days on: the 9th
    Journey.objects.filter(pk=journey.pk).update(promised_date=date(2026, 11, 8))

    def recomputed(days: float) -> Journey:
        with time_machine.travel(at(days), tick=False):
            return eta.eta_recompute(journey=journey, cause=EtaCause.NIGHTLY)

    assert recomputed(1.5).delay_told_eta == date(2026, 11, 9)  # delayed: told
    # Stage 1 overruns its two days: every day on, the end a day later.
    assert recomputed(5).eta == date(2026, 11, 11)
    assert recomputed(9).eta == date(2026, 11, 15)  # six days later than told
    assert [n.context["eta"] for n in delays()] == ["2026-11-09"]
    assert recomputed(10).eta == date(2026, 11, 16)  # a week later: told again
    assert recomputed(11).delay_told_eta == date(2026, 11, 16)
    assert sorted(n.context["eta"] for n in delays()) == ["2026-11-09", "2026-11-16"]

    # Back within a new promise, the told date is let go: a later delay is new news.
    Journey.objects.filter(pk=journey.pk).update(promised_date=date(2026, 12, 31))
    back = recomputed(11.5)
    assert back.health != Health.DELAYED and back.delay_told_eta is None
    # The promise moved, the date did not: no news to the customer.
    assert not Notification.objects.filter(kind="journey_on_time").exists()


def test_a_delay_undone_is_told(template):
    """Told it was late, the customer plans for the late date: when the journey is back
    within its promise, sooner than they were told, they hear so, once."""
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template, promised=date(2026, 11, 30))
    with time_machine.travel(at(1), tick=False):
        reach(journey, 1, 1)  # the last stage six days on: the 9th
    Journey.objects.filter(pk=journey.pk).update(promised_date=date(2026, 11, 8))
    with time_machine.travel(at(1.5), tick=False):
        eta.eta_recompute(journey=journey, cause=EtaCause.NIGHTLY)
    assert [n.context["eta"] for n in delays()] == ["2026-11-09"]

    with time_machine.travel(at(1.6), tick=False):
        reach(journey, 2, 1.6)  # stage 1 done in a day and a half: the 7th
    journey.refresh_from_db()
    assert journey.health != Health.DELAYED
    assert journey.eta == date(2026, 11, 7)
    assert journey.delay_told_eta is None
    [told] = Notification.objects.filter(kind="journey_on_time", channel="email")
    assert told.recipient == journey.owner
    assert told.dedup_key.startswith(f"journey-on-time:{journey.pk}:2026-11-08:2026-11-07:")
    assert told.context == {
        "eta": "2026-11-07",
        "promised_date": "2026-11-08",
        "told_eta": "2026-11-09",
    }
    Notification.objects.exclude(pk=told.pk).update(state="sent", sent_at=at(1.6))
    notification_deliver(notification_id=told.pk)
    [email] = [m for m in mail.outbox if "back on time" in m.subject]
    assert email.subject == "Car: back on time, expected 7 November"
    assert (
        "We now expect it on 7 November 2026, by 8 November 2026 as we promised, and no "
        "longer on 9 November as we last told you." in " ".join(email.body.split())
    )

    # Recomputed again, nothing more: told once.
    with time_machine.travel(at(1.7), tick=False):
        eta.eta_recompute(journey=journey, cause=EtaCause.NIGHTLY)
    assert Notification.objects.filter(kind="journey_on_time", channel="email").count() == 1


def test_a_delay_undone_in_the_unit_that_told_it_is_withdrawn_unsent(template):
    """A reviewer's batch: one event makes the journey late, a later one in the same
    batch (one unit of work, written at its end) brings it back. The delay, never
    written, is withdrawn, and there is nothing to say "back on time" about."""
    from journey.unit import Writes

    with time_machine.travel(T0, tick=False):
        journey = new_journey(template, promised=date(2026, 11, 8))
    unit = Writes()
    eta._notify_delay(journey=journey, now=at(1), unit=unit)
    other = new_journey(template, promised=date(2026, 11, 8))
    eta._notify_delay(journey=other, now=at(1), unit=unit)
    assert unit.outbox.pending() == 2
    eta._notify_on_time(journey=journey, now=at(1), unit=unit, told=date(2026, 11, 9))
    assert unit.outbox.pending() == 1  # the other journey's delay stays
    unit.flush()
    assert [n.journey_id for n in delays()] == [other.pk]
    assert not Notification.objects.filter(kind="journey_on_time").exists()


# --- Stalled journeys -----------------------------------------------------------------


def test_a_stage_running_past_its_threshold_is_flagged_then_cleared_by_an_event(template):
    with time_machine.travel(at(1), tick=False):
        journey = new_journey(template)
        reach(journey, 1, 1)
    # No history: stalled after twice the planned two days.
    with time_machine.travel(at(4.9), tick=False):
        assert eta.eta_check_stalled() == []
    with time_machine.travel(at(5.1), tick=False):
        assert eta.eta_check_stalled() == [journey.pk]
    with time_machine.travel(at(6), tick=False):
        assert eta_check_stalled() == 0  # already flagged: not again
    journey.refresh_from_db()
    assert journey.stalled_since == at(5.1)

    with time_machine.travel(at(6.5), tick=False):
        reach(journey, 2, 6.5)
    journey.refresh_from_db()
    assert journey.stalled_since is None


def test_with_history_a_stage_stalls_past_95_percent_of_similar_ones(template, settings):
    settings.ETA_MIN_HISTORY = 3
    for days in (3, 4, 5):
        completed(template, stage_days=days)
    eta.eta_stats_recompute(template=template)
    with time_machine.travel(at(30), tick=False):
        journey = new_journey(template, started=30)
        reach(journey, 1, 30)
    # The longest stage 1 on record took five days (the 95th percentile of three).
    with time_machine.travel(at(34.9), tick=False):
        assert eta.eta_check_stalled() == []
    with time_machine.travel(at(35.1), tick=False):
        assert eta.eta_check_stalled() == [journey.pk]


def stalled_fleet(template, count: int) -> list[Journey]:
    """Journeys at stage 1 since day 1: stalled (twice the plan) from day 5."""
    journeys = []
    with time_machine.travel(at(1), tick=False):
        for _ in range(count):
            journey = new_journey(template)
            reach(journey, 1, 1)
            journeys.append(journey)
    return journeys


def check_queries(when: datetime, **kwargs) -> tuple[list[int], int]:
    with time_machine.travel(when, tick=False), CaptureQueriesContext(connection) as queries:
        flagged = eta.eta_recompute_many(
            pks=list(eta.open_journeys().values_list("pk", flat=True)),
            cause=EtaCause.RECOMPUTE,
            **kwargs,
        )
    return flagged, len(queries)


def test_the_stall_check_costs_the_same_statements_for_3_journeys_and_for_30(template):
    few = stalled_fleet(template, 3)
    flagged, statements = check_queries(at(5.1))
    assert sorted(flagged) == sorted(j.pk for j in few)

    many = stalled_fleet(template, 27)
    Journey.objects.filter(pk__in=[j.pk for j in few]).update(stalled_since=None)
    flagged, statements_30 = check_queries(at(5.1))

    assert sorted(flagged) == sorted(j.pk for j in few + many)
    assert statements_30 == statements


def test_the_stall_check_goes_a_chunk_at_a_time_with_the_same_outcome(template):
    journeys = stalled_fleet(template, 5)

    flagged, statements = check_queries(at(5.1), chunk=2)
    _, one_chunk = check_queries(at(5.2), chunk=10)  # nothing new to flag or save

    assert sorted(flagged) == sorted(j.pk for j in journeys)
    assert one_chunk < statements  # one transaction against three
    for journey in journeys:
        journey.refresh_from_db()
        assert journey.stalled_since == at(5.1)


def test_journeys_cancelled_or_deleted_since_they_were_listed_are_left_alone(template):
    open_, cancelled = stalled_fleet(template, 2)
    Journey.objects.filter(pk=cancelled.pk).update(health=Health.CANCELLED)
    gone = Journey.objects.order_by("pk").last().pk + 100

    with time_machine.travel(at(5.1), tick=False):
        flagged = eta.eta_recompute_many(
            pks=[open_.pk, cancelled.pk, gone], cause=EtaCause.RECOMPUTE
        )

    assert flagged == [open_.pk]
    cancelled.refresh_from_db()
    assert (cancelled.health, cancelled.stalled_since) == (Health.CANCELLED, None)


def test_one_journey_recomputed_on_its_own_follows_the_same_rules(template):
    [journey] = stalled_fleet(template, 1)
    with time_machine.travel(at(5.1), tick=False):
        recomputed = eta.eta_recompute(journey=journey, cause=EtaCause.LEG_ETA)
    assert recomputed.stalled_since == at(5.1)
    journey.refresh_from_db()
    assert journey.stalled_since == at(5.1)

    Journey.objects.filter(pk=journey.pk).update(health=Health.CANCELLED, stalled_since=None)
    with time_machine.travel(at(6), tick=False):
        left = eta.eta_recompute(journey=journey, cause=EtaCause.LEG_ETA)
    assert (left.health, left.stalled_since) == (Health.CANCELLED, None)

    gone = Journey(pk=journey.pk + 1000)
    with pytest.raises(Journey.DoesNotExist):
        eta.eta_recompute(journey=gone, cause=EtaCause.LEG_ETA)


class Deadlock(Exception):
    sqlstate = "40P01"  # as psycopg's DeadlockDetected


def deadlocking(monkeypatch, *, times: int, on: int | None = None) -> list[int]:
    """journeys_lock, aborted by PostgreSQL as a deadlock ``times`` times (for chunks
    holding journey ``on``, or any); returns the calls' first ids."""
    from journey import services

    real, calls = services.journeys_lock, []

    def lock(*, pks, **kwargs):
        pks = list(pks)
        calls.append(pks[0])
        if (on is None or on in pks) and calls.count(pks[0]) <= times:
            raise OperationalError("deadlock detected") from Deadlock()
        return real(pks=pks, **kwargs)

    monkeypatch.setattr(services, "journeys_lock", lock)
    return calls


def test_a_chunk_aborted_as_a_deadlock_is_tried_again(template, monkeypatch, caplog):
    journeys = stalled_fleet(template, 3)
    calls = deadlocking(monkeypatch, times=1)

    flagged, _statements = check_queries(at(5.1))

    assert sorted(flagged) == sorted(j.pk for j in journeys)
    assert len(calls) == 2
    assert [r.levelname for r in caplog.records if r.name == "journey.eta"] == ["WARNING"]


def test_a_chunk_that_keeps_deadlocking_is_left_for_the_next_run(template, monkeypatch, caplog):
    first, *rest = stalled_fleet(template, 3)
    deadlocking(monkeypatch, times=eta.RECOMPUTE_TRIES, on=first.pk)

    flagged, _statements = check_queries(at(5.1), chunk=1)

    assert sorted(flagged) == sorted(j.pk for j in rest)  # the other chunks went on
    first.refresh_from_db()
    assert first.stalled_since is None
    levels = [r.levelname for r in caplog.records if r.name == "journey.eta"]
    assert levels == ["WARNING"] * (eta.RECOMPUTE_TRIES - 1) + ["ERROR"]


def test_another_database_error_stops_the_job(template, monkeypatch):
    from journey import services

    stalled_fleet(template, 1)

    def lock(**kwargs):
        raise OperationalError("the server closed the connection")

    monkeypatch.setattr(services, "journeys_lock", lock)
    with pytest.raises(OperationalError):
        check_queries(at(5.1))


def test_a_recompute_that_changes_nothing_writes_nothing(template):
    [journey] = stalled_fleet(template, 1)
    with time_machine.travel(at(2), tick=False):
        assert eta.eta_check_stalled() == []
    journey.refresh_from_db()
    version, updated_at = journey.version, journey.updated_at
    estimates = EtaEstimate.objects.count()

    # An hour later the forecast is the same: no journey saved, its version (and with it
    # the customer's cached page) kept, no history row.
    with time_machine.travel(at(2) + timedelta(hours=1), tick=False):
        assert eta.eta_check_stalled() == []
    journey.refresh_from_db()
    assert (journey.version, journey.updated_at) == (version, updated_at)
    assert EtaEstimate.objects.count() == estimates


def test_the_nightly_task_relearns_and_recomputes_open_journeys(template, settings):
    settings.ETA_MIN_HISTORY = 1
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template)
    assert journey.eta_basis == EtaBasis.PLANNED
    completed(template, stage_days=1)
    TemplateEtaStats.objects.filter(template=template).update(journey_count=0, data={})

    with time_machine.travel(at(0.5), tick=False):
        assert eta_recompute_nightly() == 1

    journey.refresh_from_db()
    assert journey.eta_basis == EtaBasis.HISTORY
    assert journey.eta == at(3).date()
    assert journey.eta_estimates.last().cause == EtaCause.NIGHTLY


def test_beat_runs_the_nightly_recompute_and_the_stall_check(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"journey.tasks.eta_recompute_nightly", "journey.tasks.eta_check_stalled"} <= tasks


def test_the_spine_reads_cached_statistics_without_rescanning_history(
    template, django_assert_num_queries, settings
):
    settings.ETA_STATS_RECHECK_SECONDS = 0  # the identity read for every event
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template)
        # Its transaction (a savepoint in the test's), journey lock, milestones, event,
        # the stats row's identity (its history is cached), one update of the milestones
        # (state and expected dates), journey save, the customer's messages (one read of
        # what the outbox holds for them, one insert for the centre's and the email's rows): no
        # scan of other journeys' milestones, no legs (no shipping stage is ahead), and no
        # read of the last ETA row (the journey's fields are the promise it recorded). The
        # four writes (event, milestones, journey, messages) are one statement on PostgreSQL.
        with django_assert_num_queries(6 + unit_writes(4)) as queries:
            reach(journey, 1, 0)
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "journey_templateetastats" in sql
    assert sql.count('FROM "journey_milestone"') == 1


def test_within_a_minute_of_reading_them_the_spine_reads_nothing_of_the_statistics(
    template, django_assert_num_queries
):
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template)  # learned, or found nothing to learn, just now
        with django_assert_num_queries(5 + unit_writes(4)) as queries:
            reach(journey, 1, 0)
    assert "journey_templateetastats" not in " ".join(q["sql"] for q in queries.captured_queries)


def test_statistics_recomputed_by_another_process_are_used_once_it_reads_them_again(
    template, settings
):
    settings.ETA_MIN_HISTORY = 3
    settings.ETA_STATS_RECHECK_SECONDS = 3600
    for days in (3, 4, 5):
        completed(template, stage_days=days)
    with time_machine.travel(at(30), tick=False):
        journey = new_journey(template, started=30)
    # Relearned elsewhere (the nightly job, in a worker): this process keeps what it
    # had, the plan (no history was learned yet).
    kept = eta._LEARNED[template.pk]
    eta.eta_stats_recompute(template=template)
    eta._LEARNED[template.pk] = kept

    with time_machine.travel(at(30), tick=False):
        reach(journey, 1, 30)
    journey.refresh_from_db()
    assert journey.eta_basis == EtaBasis.PLANNED

    settings.ETA_STATS_RECHECK_SECONDS = 0  # the minute has passed
    with time_machine.travel(at(31), tick=False):
        reach(journey, 2, 31)
    journey.refresh_from_db()
    assert journey.eta_basis == EtaBasis.HISTORY


def test_a_recompute_forgets_what_another_thread_kept_meanwhile_once_it_commits(
    template, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        eta.eta_stats_recompute(template=template)
        # Another thread of this process read the old row before the new one committed.
        eta._LEARNED[template.pk] = ((0, T0, 0), None, time.monotonic())
    assert template.pk not in eta._LEARNED


def test_the_recompute_command_relearns_and_recomputes(template, settings):
    settings.ETA_MIN_HISTORY = 1
    with time_machine.travel(T0, tick=False):
        journey = new_journey(template)
    completed(template, stage_days=1)
    out = io.StringIO()

    with time_machine.travel(at(0.5), tick=False):
        call_command("eta_recompute", stdout=out)

    assert out.getvalue() == "Recomputed 1 open journey.\n"
    journey.refresh_from_db()
    assert journey.eta_basis == EtaBasis.HISTORY
    assert journey.eta_estimates.last().cause == EtaCause.RECOMPUTE


@pytest.mark.parametrize(
    ("count", "said"),
    [
        (0, "Recomputed 0 open journeys."),
        (1, "Recomputed 1 open journey."),
        (2, "Recomputed 2 open journeys."),
    ],
)
def test_the_recompute_says_how_many_in_words_that_agree(count, said):
    assert eta.recomputed(count) == said
