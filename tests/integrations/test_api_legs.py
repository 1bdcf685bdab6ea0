"""Shipment legs and checkpoints through the API."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from journey.models import Checkpoint, ShipmentLeg

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clock():
    """The dates below are in the past of this clock and after the journey's start (the
    journey fixture starts ten days before now: 17 November)."""
    with time_machine.travel(datetime(2026, 11, 27, 12, tzinfo=UTC), tick=True):
        yield


def legs_url(journey) -> str:
    return reverse("api:journey-legs", kwargs={"reference": journey.reference})


def leg_url(journey, sequence: int = 1) -> str:
    return reverse("api:journey-leg", kwargs={"reference": journey.reference, "sequence": sequence})


def checkpoints_url(journey, sequence: int = 1) -> str:
    return reverse(
        "api:leg-checkpoints", kwargs={"reference": journey.reference, "sequence": sequence}
    )


def leg(**overrides: object) -> dict[str, object]:
    return {
        "sequence": 1,
        "mode": "ship",
        "carrier": "NorthSea",
        "origin_name": "Valencia",
        "origin_lat": "39.45000",
        "origin_lon": "-0.32000",
        "destination_name": "Southampton",
        "destination_lat": "50.90000",
        "destination_lon": "-1.40000",
        "departed_at": "2026-11-20T10:00:00Z",
        **overrides,
    }


def test_a_leg_is_created_and_updated(api, journey):
    created = api.post(legs_url(journey), leg(), format="json")
    assert created.status_code == 201
    assert created.json()["destination_lat"] == "50.90000"

    updated = api.patch(
        leg_url(journey), {"arrived_at": "2026-11-24T08:00:00+01:00"}, format="json"
    )
    assert updated.status_code == 200
    assert updated.json()["arrived_at"] == "2026-11-24T07:00:00Z"
    stored = ShipmentLeg.objects.get()
    assert stored.origin_lat == Decimal("39.45000")
    assert stored.arrived_at.isoformat() == "2026-11-24T07:00:00+00:00"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (39.469912, "39.46991"),  # a GPS fix's six decimals
        (0.1 + 0.2, "0.30000"),  # a float's 0.30000000000000004
        (-89.123456, "-89.12346"),
        ("-0.000004", "0.00000"),  # not "-0.00000"
        (90.000004, "90.00000"),
    ],
)
def test_coordinates_are_rounded_to_five_decimals_not_refused(api, journey, sent, kept):
    response = api.post(legs_url(journey), leg(origin_lat=sent), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["origin_lat"] == kept
    assert ShipmentLeg.objects.get().origin_lat == Decimal(kept)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"origin_lat": "91"}, "origin_lat"),
        ({"origin_lat": 90.00001}, "origin_lat"),
        ({"origin_lon": 123456.5}, "origin_lon"),
        ({"destination_lon": "-180.5"}, "destination_lon"),
        ({"mode": "rocket"}, "mode"),
        ({"arrived_at": "2026-11-19T10:00:00Z"}, "arrived_at"),
        ({"departed_at": None, "arrived_at": "2026-11-19T10:00:00Z"}, "departed_at"),
        ({"departed_at": "2026-11-20T10:00:00"}, "departed_at"),
        ({"sequence": 0}, "sequence"),
    ],
)
def test_a_bad_leg_is_refused_naming_the_field(api, journey, overrides, field):
    response = api.post(legs_url(journey), leg(**overrides), format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert ShipmentLeg.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"departed_at": "2026-11-10T10:00:00Z"}, "departed_at", "Before the journey started."),
        ({"departed_at": "2026-12-20T10:00:00Z"}, "departed_at", "In the future"),
        ({"arrived_at": "2099-11-21T10:00:00Z"}, "arrived_at", "In the future"),
        ({"eta": "2026-11-01T10:00:00Z"}, "eta", "Before the journey started."),
        ({"eta": "2026-11-19T10:00:00Z"}, "eta", "Before the leg departed."),
        ({"eta": "9999-01-01T10:00:00Z"}, "eta", "More than two years ahead."),
    ],
)
def test_a_legs_times_are_checked_against_the_journey_and_now(
    api, journey, overrides, field, problem
):
    response = api.post(legs_url(journey), leg(**overrides), format="json")
    assert response.status_code == 400
    assert problem in response.json()["error"]["fields"][field][0]
    assert ShipmentLeg.objects.count() == 0
    assert api.post(legs_url(journey), leg(), format="json").status_code == 201
    response = api.patch(leg_url(journey), overrides, format="json")
    assert response.status_code == 400
    assert problem in response.json()["error"]["fields"][field][0]


def test_an_update_judges_what_it_sets_and_a_start_has_a_days_grace(api, journey):
    """As events: a departure an hour before the journey's recorded start (it was
    created after the truck left). An update does not judge again what is stored (a
    leg written before these checks, an ETA gone stale before its departure)."""
    from datetime import timedelta

    early = (journey.started_at - timedelta(hours=1)).isoformat()
    assert api.post(legs_url(journey), leg(departed_at=early), format="json").status_code == 201
    stored = ShipmentLeg.objects.get()
    ShipmentLeg.objects.filter(pk=stored.pk).update(
        departed_at=journey.started_at - timedelta(days=3),  # before today's checks
        eta=journey.started_at + timedelta(days=2),  # stale by now (27 November)
    )
    assert api.patch(leg_url(journey), {"carrier": "Other"}, format="json").status_code == 200
    arrived = api.patch(leg_url(journey), {"arrived_at": "2026-11-26T09:00:00Z"}, format="json")
    assert arrived.status_code == 200
    stored.refresh_from_db()
    assert (stored.carrier, stored.arrived_at.isoformat()) == ("Other", "2026-11-26T09:00:00+00:00")


def test_a_stale_eta_sent_back_does_not_block_the_departure_that_makes_it_so(api, journey):
    from datetime import timedelta

    assert api.post(legs_url(journey), leg(departed_at=None), format="json").status_code == 201
    stale = journey.started_at + timedelta(days=1)  # 18 November: before the departure
    ShipmentLeg.objects.update(eta=stale)
    # The whole leg sent back, its ETA as stored, with the departure that happened.
    whole = {**leg(departed_at="2026-11-20T10:00:00Z"), "eta": stale.isoformat()}
    whole.pop("sequence")
    response = api.patch(leg_url(journey), whole, format="json")
    assert response.status_code == 200, response.json()
    # A new ETA before that departure is judged, and refused.
    response = api.patch(leg_url(journey), {"eta": "2026-11-19T10:00:00Z"}, format="json")
    assert response.json()["error"]["fields"] == {"eta": ["Before the leg departed."]}


def test_an_eta_before_the_start_has_no_grace(api, journey):
    """A forecast, not a report: as the admin (ShipmentLeg.clean) and the ETA read it."""
    from datetime import timedelta

    early = {"departed_at": (journey.started_at - timedelta(hours=3)).isoformat()}
    early["eta"] = (journey.started_at - timedelta(hours=1)).isoformat()
    response = api.post(legs_url(journey), leg(**early), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"eta": ["Before the journey started."]}


def test_a_checkpoint_before_the_journey_started_is_refused(api, journey):
    api.post(legs_url(journey), leg(), format="json")
    body = {"occurred_at": "1990-11-22T10:00:00Z", "location_name": "X"}
    response = api.post(checkpoints_url(journey), body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"occurred_at": ["Before the journey started."]}
    assert Checkpoint.objects.count() == 0


def test_a_second_leg_with_the_same_sequence_is_a_conflict(api, journey):
    api.post(legs_url(journey), leg(), format="json")
    response = api.post(legs_url(journey), leg(carrier="Other"), format="json")
    assert response.status_code == 409
    assert response.json()["error"]["fields"] == {"sequence": ["Already used."]}
    assert list(ShipmentLeg.objects.values_list("carrier", flat=True)) == ["NorthSea"]


def test_an_update_arriving_before_departure_changes_nothing(api, journey):
    api.post(legs_url(journey), leg(), format="json")
    response = api.patch(leg_url(journey), {"arrived_at": "2026-11-01T00:00:00Z"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"arrived_at": ["Before departed_at."]}
    assert ShipmentLeg.objects.get().arrived_at is None


def test_a_checkpoint_is_posted(api, journey):
    api.post(legs_url(journey), leg(), format="json")
    response = api.post(
        checkpoints_url(journey),
        {
            "occurred_at": "2026-11-22T10:00:00Z",
            "location_name": "Bay of Biscay",
            "lat": "45.1",
            "lon": "-5.2",
        },
        format="json",
    )
    assert response.status_code == 201
    checkpoint = Checkpoint.objects.get()
    assert (checkpoint.location_name, checkpoint.lat, checkpoint.lon) == (
        "Bay of Biscay",
        Decimal("45.10000"),
        Decimal("-5.20000"),
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"occurred_at": "2026-11-22T10:00:00Z", "location_name": "X", "lat": "95"}, "lat"),
        ({"occurred_at": "2026-11-22T10:00:00Z", "location_name": "X", "lat": "45"}, "lon"),
        ({"occurred_at": "2999-01-01T00:00:00Z", "location_name": "X"}, "occurred_at"),
        ({"location_name": "X"}, "occurred_at"),
    ],
)
def test_a_bad_checkpoint_is_refused(api, journey, body, field):
    api.post(legs_url(journey), leg(), format="json")
    response = api.post(checkpoints_url(journey), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert Checkpoint.objects.count() == 0


def test_partner_b_cannot_touch_partner_a_legs(api, other_api, journey):
    api.post(legs_url(journey), leg(), format="json")
    responses = [
        other_api.post(legs_url(journey), leg(sequence=2), format="json"),
        other_api.patch(leg_url(journey), {"carrier": "Pirates"}, format="json"),
        other_api.post(
            checkpoints_url(journey),
            {"occurred_at": "2026-11-22T10:00:00Z", "location_name": "X"},
            format="json",
        ),
    ]
    assert [r.status_code for r in responses] == [404, 404, 404]
    assert list(ShipmentLeg.objects.values_list("carrier", flat=True)) == ["NorthSea"]
    assert Checkpoint.objects.count() == 0


def test_an_unknown_leg_is_a_404(api, journey):
    response = api.patch(leg_url(journey, 7), {"carrier": "X"}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
