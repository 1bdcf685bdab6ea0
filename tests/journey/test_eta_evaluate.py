"""The evaluation command, on a handful of journeys (the real run is in docs/eta.md)."""

import io
import random

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from journey.eta import learn
from journey.management.commands.eta_evaluate import DAY, STAGES, generate, replay

KEYS = [key for key, _days, _bias in STAGES]


def test_the_command_reports_both_models_on_a_few_journeys():
    out = io.StringIO()
    call_command("eta_evaluate", "--journeys", "8", "--seed", "3", stdout=out)
    lines = out.getvalue().splitlines()
    # 4 replayed journeys x 8 segments x (at the start, halfway) = 64 forecasts.
    assert lines[0] == "journeys 8 (trained on 4, replayed 4), seed 3, 64 forecasts"
    assert lines[2].startswith("learned (history)")
    assert lines[3].startswith("baseline (planned)")
    assert lines[4].startswith("median error ") and lines[4].endswith("than the baseline")


def test_a_perfectly_regular_history_is_predicted_exactly():
    rows = [[DAY * d for d in (0.5, 2, 3, 4, 2, 2, 5, 3)]] * 5
    score = replay(rows, learn(rows, KEYS), min_history=1)
    assert score.median_error_days == 0
    assert score.inside_range == 1
    assert score.forecasts == 5 * 8 * 2


def test_the_generator_is_reproducible():
    assert generate(3, random.Random(1)) == generate(3, random.Random(1))


def test_too_few_journeys_are_refused():
    with pytest.raises(CommandError, match="at least 4 journeys"):
        call_command("eta_evaluate", "--journeys", "2")
