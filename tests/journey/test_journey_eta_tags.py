"""The ETA in plain words on the portal (journey/templatetags/journey_eta.py)."""

from datetime import UTC, date, datetime

import pytest
import time_machine
from django.urls import reverse

from journey.eta import eta_recompute
from journey.models import EtaCause, Health, Journey
from journey.templatetags.journey_eta import eta_in_words
from tests.factories import PASSWORD, make_journey

pytestmark = pytest.mark.django_db


def words(**fields: object) -> str:
    journey = Journey(health=Health.ON_TRACK, **fields)
    return eta_in_words(journey)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (
            date(2026, 12, 1),
            date(2026, 12, 6),
            "Expected 3 December, most likely between 1 and 6 December.",
        ),
        (
            date(2026, 11, 28),
            date(2026, 12, 6),
            "Expected 3 December, most likely between 28 November and 6 December.",
        ),
        (
            date(2026, 11, 28),
            date(2027, 1, 6),
            "Expected 3 December, most likely between 28 November 2026 and 6 January 2027.",
        ),
        (date(2026, 12, 3), date(2026, 12, 3), "Expected 3 December."),
    ],
)
def test_the_expected_date_and_range_in_plain_words(low, high, expected):
    assert words(eta=date(2026, 12, 3), eta_low=low, eta_high=high) == expected


def test_the_dates_in_spanish_read_as_spanish_dates():
    from django.utils import translation

    with translation.override("es"):
        said = words(eta=date(2026, 12, 3), eta_low=date(2026, 11, 28), eta_high=date(2027, 1, 6))
        one_month = words(
            eta=date(2026, 12, 10), eta_low=date(2026, 12, 10), eta_high=date(2026, 12, 12)
        )
    assert said == (
        "Previsto el 3 de diciembre, probablemente entre el 28 de noviembre de 2026 y el "
        "6 de enero de 2027."
    )
    assert (
        one_month == "Previsto el 10 de diciembre, probablemente entre el 10 y el 12 de diciembre."
    )


def test_an_arrived_journey_says_when_and_a_journey_without_eta_says_nothing():
    arrived = Journey(health=Health.DONE, eta=date(2026, 12, 3))
    assert eta_in_words(arrived) == "Arrived on 3 December."
    assert words(eta=None) == ""


def test_the_portal_shows_the_range_and_how_the_date_moved(client, customer):
    with time_machine.travel(datetime(2026, 11, 2, 9, 0, tzinfo=UTC), tick=False):
        journey = make_journey(owner=customer)
    with time_machine.travel(datetime(2026, 11, 4, 9, 0, tzinfo=UTC), tick=False):
        # Two days on without an event: the stage-1 wait was planned as none.
        eta_recompute(journey=journey, cause=EtaCause.NIGHTLY)
        client.login(email=customer.email, password=PASSWORD)
        detail = client.get(reverse("journey:detail", args=[journey.reference]))
        home = client.get(reverse("journey:home"))

    sentence = "Expected 10 November, most likely between 9 and 13 November."
    assert sentence in detail.content.decode()
    assert sentence in home.content.decode()
    assert "How this date has moved" in detail.content.decode()
    assert "expected 8 Nov (between 7 Nov and 11 Nov)" in detail.content.decode()
