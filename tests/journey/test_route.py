import math
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from journey.models import Checkpoint, ShipmentLeg
from journey.route import HEIGHT, WIDTH, map_tiles, route_schematic
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


def slippy(lat: float, lon: float, zoom: int) -> tuple[float, float]:
    """The standard Web Mercator tile coordinates of a point (fractional)."""
    count = 2**zoom
    lat_r = math.radians(lat)
    return (
        (lon + 180) / 360 * count,
        (1 - math.log(math.tan(lat_r) + 1 / math.cos(lat_r)) / math.pi) / 2 * count,
    )


def test_map_tiles_sit_under_the_points_they_show():
    journey = make_journey()
    legs = [
        leg(
            journey, 1, ("Valencia", "39.46975", "-0.37739"), ("Santander", "43.46300", "-3.80400")
        ),
        leg(
            journey, 2, ("Santander", "43.46300", "-3.80400"), ("Portbury", "51.47800", "-2.72000")
        ),
    ]
    route = route_schematic(legs)
    tiles = map_tiles(route, "https://tiles.example/{z}/{x}/{y}.png")
    assert 0 < len(tiles) <= 40
    zoom = int(tiles[0].href.split("/")[3])
    for path in route.legs:
        for point, (lat, lon) in (
            (path.start, (path.leg.origin_lat, path.leg.origin_lon)),
            (path.end, (path.leg.destination_lat, path.leg.destination_lon)),
        ):
            tx, ty = slippy(float(lat), float(lon), zoom)
            tile = next(t for t in tiles if t.href.endswith(f"/{zoom}/{int(tx)}/{int(ty)}.png"))
            # The point lies inside its tile, where the tile's own fraction puts it.
            assert tile.x + (tx % 1) * tile.size == pytest.approx(point.x, abs=1.5)
            assert tile.y + (ty % 1) * tile.size == pytest.approx(point.y, abs=1.5)
    # Together the tiles cover the whole box.
    assert min(t.x for t in tiles) <= 0 and min(t.y for t in tiles) <= 0
    assert max(t.x + t.size for t in tiles) >= WIDTH
    assert max(t.y + t.size for t in tiles) >= HEIGHT
