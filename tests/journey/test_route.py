from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from journey.models import Checkpoint, ShipmentLeg
from journey.route import HEIGHT, WIDTH, route_schematic
from tests.factories import make_journey

pytestmark = pytest.mark.django_db


def leg(journey, sequence: int, origin: tuple, destination: tuple) -> ShipmentLeg:
    return ShipmentLeg.objects.create(
        journey=journey,
        sequence=sequence,
        mode="truck",
        origin_name=origin[0],
        origin_lat=Decimal(origin[1]),
        origin_lon=Decimal(origin[2]),
        destination_name=destination[0],
        destination_lat=Decimal(destination[1]),
        destination_lon=Decimal(destination[2]),
        departed_at=timezone.now() - timedelta(days=1),
    )


def test_the_latest_checkpoint_is_drawn_between_its_legs_ends():
    journey = make_journey()
    only = leg(journey, 1, ("South", "40", "0"), ("North", "50", "0"))
    checkpoint = Checkpoint(
        leg=only,
        occurred_at=timezone.now(),
        location_name="Halfway",
        lat=Decimal(45),
        lon=Decimal(0),
    )
    route = route_schematic([only], checkpoint=checkpoint)
    start, end = route.legs[0].start, route.legs[0].end
    assert route.checkpoint.name == "Halfway"
    assert route.checkpoint.x == start.x == end.x
    assert end.y < route.checkpoint.y < start.y


def test_a_checkpoint_without_coordinates_or_far_away_is_handled():
    journey = make_journey()
    only = leg(journey, 1, ("A", "40", "0"), ("B", "50", "5"))
    nowhere = Checkpoint(leg=only, occurred_at=timezone.now(), location_name="Unknown")
    assert route_schematic([only], checkpoint=nowhere).checkpoint is None
    far = Checkpoint(
        leg=only,
        occurred_at=timezone.now(),
        location_name="Far",
        lat=Decimal(-60),
        lon=Decimal(170),
    )
    marker = route_schematic([only], checkpoint=far).checkpoint
    assert 0 < marker.x <= WIDTH - 8 and 0 < marker.y <= HEIGHT - 8
    assert route_schematic([only]).checkpoint is None
