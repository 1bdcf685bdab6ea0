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


def label_box(label) -> tuple[float, float, float, float]:
    """The label's box as the placement judges it (the phone's font size)."""
    from journey.route import LABEL_FONT, LINE_EM, text_width

    width = max(text_width(line) for line in label.lines)
    height = len(label.lines) * LINE_EM * LABEL_FONT
    first = float(label.first_dy.removesuffix("em"))
    # The first baseline sits 0.35em below the first line's middle.
    top = label.y + (first - 0.35 - LINE_EM / 2) * LABEL_FONT
    left = label.x if label.anchor == "start" else label.x - width
    return left, top, left + width, top + height


def test_stops_too_close_to_tell_apart_share_one_label_a_line_each():
    """The demo car's last leg, Portbury Dock to a Bristol showroom, is a dot on a route
    across Europe: one label with both names, centred on the place."""
    journey = make_journey()
    legs = [
        leg(
            journey,
            1,
            ("Valencia factory", "39.47", "-0.38"),
            ("Port of Santander", "43.46", "-3.80"),
        ),
        leg(
            journey, 2, ("Port of Santander", "43.46", "-3.80"), ("Portbury Dock", "51.48", "-2.72")
        ),
        leg(
            journey, 3, ("Portbury Dock", "51.48", "-2.72"), ("Bristol showroom", "51.45", "-2.59")
        ),
    ]
    route = route_schematic(legs)
    assert [s.name for s in route.stops] == [
        "Valencia factory",
        "Port of Santander",
        "Portbury Dock",
        "Bristol showroom",
    ]
    assert sorted(label.lines for label in route.labels) == [
        ("Port of Santander",),
        ("Portbury Dock", "Bristol showroom"),
        ("Valencia factory",),
    ]
    two = next(label for label in route.labels if len(label.lines) == 2)
    # Two lines of 1.25em centred on the place: the first baseline 0.625em above its own.
    assert two.first_dy == "-0.275em"


def test_labels_of_a_crowded_route_do_not_overlap_and_stay_in_the_picture():
    """Stops close together but not together (a port, a rail yard, a depot and a
    showroom in one city region): each label finds room beside, above or below."""
    journey = make_journey()
    places = [
        ("Hamburg port", "53.54", "9.97"),
        ("Maschen rail yard", "53.40", "10.06"),
        ("Lübeck depot", "53.87", "10.69"),
        ("Kiel showroom", "54.32", "10.12"),
        ("Bremen compound", "53.08", "8.80"),
    ]
    legs = [leg(journey, n + 1, places[n], places[n + 1]) for n in range(len(places) - 1)]
    route = route_schematic(legs)
    assert len(route.labels) == len(places)
    boxes = [label_box(label) for label in route.labels]
    for index, (left, top, right, bottom) in enumerate(boxes):
        assert 0 <= left and right <= WIDTH and 0 <= top and bottom <= HEIGHT, route.labels[index]
        for other in boxes[index + 1 :]:
            apart = right <= other[0] or other[2] <= left or bottom <= other[1] or other[3] <= top
            assert apart, (route.labels[index], other)


def test_a_long_name_is_wrapped_or_cut_to_stay_in_the_picture_and_namesakes_are_kept():
    """A north-south route leaves little room beside it: "Southampton Vehicle Processing
    Centre" wraps at its words, a word too long for the room is cut with an ellipsis. Two
    places called "Depot" far apart are two stops."""
    journey = make_journey()
    legs = [
        leg(journey, 1, ("Depot", "39.30", "-0.42"), ("Portbury", "51.48", "-2.72")),
        leg(
            journey,
            2,
            ("Portbury", "51.48", "-2.72"),
            (
                "Southampton Vehicle Processing Centre Supercalifragilisticexpialidocious",
                "50.91",
                "-1.42",
            ),
        ),
        leg(journey, 3, ("Southampton", "50.91", "-1.40"), ("Depot", "52.00", "-1.00")),
    ]
    route = route_schematic(legs)
    assert [s.name for s in route.stops].count("Depot") == 2
    long = next(label for label in route.labels if label.lines[0].startswith("Southampton V"))
    assert len(long.lines) >= 2 and any(line.endswith("…") for line in long.lines)
    for label in route.labels:
        left, top, right, bottom = label_box(label)
        assert 0 <= left and right <= WIDTH and 0 <= top and bottom <= HEIGHT, label


def test_labels_keep_clear_of_the_last_seen_marker():
    journey = make_journey()
    only = leg(
        journey, 1, ("Valencia factory", "39.30", "-0.42"), ("Barcelona port", "41.35", "2.17")
    )
    seen = Checkpoint(
        leg=only,
        occurred_at=timezone.now(),
        location_name="At sea",
        lat=Decimal("39.35"),
        lon=Decimal("0.1"),
    )
    route = route_schematic([only], checkpoint=seen)
    marker = route.checkpoint
    for label in route.labels:
        left, top, right, bottom = label_box(label)
        assert (
            right <= marker.x - 14
            or marker.x + 14 <= left
            or bottom <= marker.y - 14
            or (marker.y + 14 <= top)
        ), (label, marker)


def test_a_label_moved_up_or_down_does_not_sit_beside_another_stop():
    """Three stops a little over a line apart: a label moved by a line would read as the
    next stop's name. Each label stays nearer its own stop than any other."""
    from journey.route import Point, _place_labels

    stops = [Point(300, 150, "Alpha"), Point(300, 175, "Bravo"), Point(300, 200, "Charlie")]
    labels = _place_labels(stops)
    for stop, label in zip(stops, labels, strict=True):
        assert label.lines == (stop.name,)
        own = abs(label.y - stop.y)
        assert all(own < abs(label.y - other.y) for other in stops if other is not stop), (
            stop,
            label,
        )


def test_a_shared_label_lists_its_stops_top_to_bottom():
    """A cluster's names in the order its dots stand, not the order the legs visit them:
    the top line names the top dot."""
    from journey.route import Point, _place_labels

    stops = [Point(300, 170, "Rennes"), Point(302, 160, "Saint-Malo"), Point(200, 40, "Far")]
    cluster = next(label for label in _place_labels(stops) if len(label.lines) == 2)
    assert cluster.lines == ("Saint-Malo", "Rennes")
