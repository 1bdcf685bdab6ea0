"""Replay generated journeys through the ETA and score it against the planned baseline.

    python manage.py eta_evaluate --journeys 400 --seed 7

Generates histories for one template (a car built to order: optimistic plans, spread,
journey-wide slowness, occasional delays and a few outliers), learns from the first
part, then replays the rest: at the start and halfway through each stage it asks for
a forecast, and compares it with the real date the journey finished. Nothing is
written to the database; the forecast is the same function the spine calls.
"""

import math
import random
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from journey.eta import START, Segment, forecast, learn

DAY = 86400.0
# (key, planned days, how far reality runs over the plan on the median)
STAGES = [
    (START, 0, 1.0),
    ("order_confirmed", 2, 1.0),
    ("production_scheduled", 5, 1.2),
    ("production", 10, 1.35),
    ("quality_check", 2, 1.0),
    ("ready_to_ship", 2, 1.5),
    ("in_transit", 6, 1.15),
    ("at_showroom", 3, 1.2),
]
EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Score:
    median_error_days: float
    inside_range: float
    forecasts: int


def generate(count: int, rng: random.Random) -> list[list[float]]:
    """Durations in seconds of each segment of ``count`` journeys."""
    journeys = []
    for _ in range(count):
        # Some journeys are slow all along (a busy plant, a far destination).
        slowness = rng.lognormvariate(0, 0.15)
        outlier = rng.randrange(len(STAGES)) if rng.random() < 0.03 else None
        row = []
        for index, (_key, planned, bias) in enumerate(STAGES):
            if planned == 0:
                days = rng.uniform(0, 1)  # the order is confirmed within a day
            else:
                days = planned * bias * slowness * rng.lognormvariate(0, 0.3)
            if rng.random() < 0.08:
                days += rng.uniform(2, 12)  # a missing part, a strike, bad weather
            if index == outlier:
                days += rng.uniform(20, 45)  # a recall, a lost container
            row.append(days * DAY)
        journeys.append(row)
    return journeys


def replay(
    test: list[list[float]], learned: Any, min_history: int, *, halfway: bool = True
) -> Score:
    segments = [Segment(key=key, planned=days * DAY) for key, days, _bias in STAGES]
    errors = []
    inside = 0
    for row in test:
        finish = EPOCH + timedelta(seconds=sum(row))
        for index in range(len(segments)):
            began = EPOCH + timedelta(seconds=sum(row[:index]))
            for elapsed in (0.0, row[index] / 2) if halfway else (0.0,):
                now = began + timedelta(seconds=elapsed)
                result = forecast(
                    segments=segments[index:],
                    elapsed=elapsed,
                    now=now,
                    learned=learned,
                    min_history=min_history,
                )
                errors.append(abs((result.expected - finish).total_seconds()) / DAY)
                if result.low.date() <= finish.date() <= result.high.date():
                    inside += 1
    return Score(
        median_error_days=statistics.median(errors),
        inside_range=inside / len(errors),
        forecasts=len(errors),
    )


class Command(BaseCommand):
    help = "Score the ETA on generated histories against the planned-durations baseline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--journeys", type=int, default=400)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--train", type=float, default=0.6, help="The share of journeys learned from."
        )

    def handle(self, *args: Any, journeys: int, seed: int, train: float, **options: Any) -> None:
        if journeys < 4 or not 0 < train < 1:
            raise CommandError("Give at least 4 journeys and a training share between 0 and 1.")
        rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not a secret
        history = generate(journeys, rng)
        cut = max(1, min(len(history) - 1, math.floor(len(history) * train)))
        learned = learn(history[:cut], [key for key, _days, _bias in STAGES])
        model = replay(history[cut:], learned, min_history=1)
        baseline = replay(history[cut:], None, min_history=1)
        improvement = 1 - model.median_error_days / baseline.median_error_days
        self.stdout.write(
            f"journeys {journeys} (trained on {cut}, replayed {len(history) - cut}), "
            f"seed {seed}, {model.forecasts} forecasts\n"
            f"{'':24}{'median error (days)':>22}{'inside 80% range':>18}\n"
            f"{'learned (history)':24}{model.median_error_days:>22.2f}"
            f"{model.inside_range:>18.1%}\n"
            f"{'baseline (planned)':24}{baseline.median_error_days:>22.2f}"
            f"{baseline.inside_range:>18.1%}\n"
            f"median error {improvement:.1%} lower than the baseline"
        )
