"""The route as an SVG schematic: no map tiles, no external requests."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from journey.models import Checkpoint, ShipmentLeg

WIDTH = 640
HEIGHT = 320
MARGIN = 48


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    name: str


@dataclass(frozen=True)
class Stop:
    x: float
    y: float
    name: str
    label_x: float
    label_y: float
    anchor: str


@dataclass(frozen=True)
class LegPath:
    leg: ShipmentLeg
    start: Point
    end: Point
    done: bool
    active: bool


@dataclass(frozen=True)
class RouteSchematic:
    width: int
    height: int
    legs: list[LegPath]
    stops: list[Stop]
    # The latest checkpoint, when it has coordinates: where the goods were last seen.
    checkpoint: Point | None = None
    # The projection (SVG units per radian, offsets, and the frame's west edge and
    # north edge in Mercator units), so map tiles can be laid under the schematic.
    scale: float = 1.0
    off_x: float = 0.0
    off_y: float = 0.0
    west: float = 0.0
    north: float = 0.0


@dataclass(frozen=True)
class Tile:
    href: str
    x: float
    y: float
    size: float


def _mercator_y(lat: float) -> float:
    lat = max(min(lat, 85.0), -85.0)
    return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def route_schematic(
    legs: Sequence[ShipmentLeg], *, checkpoint: Checkpoint | None = None
) -> RouteSchematic | None:
    """Project the legs' end points (Mercator, fitted to the box) into SVG coordinates."""
    if not legs:
        return None
    coords: list[tuple[float, float, str]] = []
    for leg in legs:
        coords.append((float(leg.origin_lon), _mercator_y(float(leg.origin_lat)), leg.origin_name))
        coords.append(
            (
                float(leg.destination_lon),
                _mercator_y(float(leg.destination_lat)),
                leg.destination_name,
            )
        )
    xs = [c[0] for c in coords]
    ys = [c[1] for c in coords]
    span_x = max(max(xs) - min(xs), 1e-6)
    span_y = max(max(ys) - min(ys), 1e-6)
    # One scale for both axes keeps the geography's shape; degrees of longitude to radians.
    scale = min(
        (WIDTH - 2 * MARGIN) / math.radians(span_x) if span_x > 1e-6 else math.inf,
        (HEIGHT - 2 * MARGIN) / span_y if span_y > 1e-6 else math.inf,
    )
    if math.isinf(scale):
        scale = 1.0
    used_w = math.radians(span_x) * scale
    used_h = span_y * scale
    off_x = (WIDTH - used_w) / 2
    off_y = (HEIGHT - used_h) / 2

    def project(lon: float, y: float, name: str) -> Point:
        return Point(
            x=round(off_x + math.radians(lon - min(xs)) * scale, 1),
            y=round(off_y + (max(ys) - y) * scale, 1),
            name=name,
        )

    points = [project(*c) for c in coords]
    paths = []
    unique: list[Point] = []
    first_open = next((leg for leg in legs if leg.arrived_at is None), None)
    for index, leg in enumerate(legs):
        start, end = points[2 * index], points[2 * index + 1]
        paths.append(
            LegPath(
                leg=leg,
                start=start,
                end=end,
                done=leg.arrived_at is not None,
                active=leg is first_open and leg.departed_at is not None,
            )
        )
        for point in (start, end):
            if not any(s.name == point.name for s in unique):
                unique.append(point)
    marker = None
    if checkpoint is not None and checkpoint.lat is not None and checkpoint.lon is not None:
        # Projected on the legs' frame; a stray position is kept inside the box.
        point = project(
            float(checkpoint.lon), _mercator_y(float(checkpoint.lat)), checkpoint.location_name
        )
        marker = Point(
            x=min(max(point.x, 8.0), WIDTH - 8.0),
            y=min(max(point.y, 8.0), HEIGHT - 8.0),
            name=point.name,
        )
    return RouteSchematic(
        width=WIDTH,
        height=HEIGHT,
        legs=paths,
        stops=_place_labels(unique),
        checkpoint=marker,
        scale=scale,
        off_x=off_x,
        off_y=off_y,
        west=math.radians(min(xs)),
        north=max(ys),
    )


def map_tiles(route: RouteSchematic, url_template: str, *, max_tiles: int = 40) -> list[Tile]:
    """Web Mercator tiles ({z}/{x}/{y}) that cover the schematic's box, placed in its
    coordinates. The schematic is Mercator too, so a tile is a square of the same scale."""
    target = 256.0  # SVG units per tile: detailed enough, few requests
    zoom = max(0, min(18, round(math.log2(route.scale * 2 * math.pi / target))))
    while True:
        count = 2**zoom
        size = route.scale * 2 * math.pi / count

        def tile_x(svg_x: float, count: int = count) -> float:
            lon = route.west + (svg_x - route.off_x) / route.scale
            return (lon + math.pi) / (2 * math.pi) * count

        def tile_y(svg_y: float, count: int = count) -> float:
            merc = route.north - (svg_y - route.off_y) / route.scale
            return (math.pi - merc) / (2 * math.pi) * count

        xs = range(math.floor(tile_x(0)), math.floor(tile_x(route.width)) + 1)
        ys = range(
            max(0, math.floor(tile_y(0))), min(count - 1, math.floor(tile_y(route.height))) + 1
        )
        if len(xs) * len(ys) <= max_tiles or zoom == 0:
            break
        zoom -= 1
    tiles = []
    for tx in xs:
        for ty in ys:
            tiles.append(
                Tile(
                    href=url_template.format(z=zoom, x=tx % count, y=ty),
                    x=round(
                        route.off_x
                        + (tx * 2 * math.pi / count - math.pi - route.west) * route.scale,
                        1,
                    ),
                    y=round(
                        route.off_y
                        + (route.north - (math.pi - ty * 2 * math.pi / count)) * route.scale,
                        1,
                    ),
                    size=round(size + 0.4, 1),  # a hair of overlap hides seams
                )
            )
    return tiles


def _place_labels(points: list[Point]) -> list[Stop]:
    """Labels beside their stop, on the side with more room; a label that would overlap
    an earlier one moves below it."""
    stops: list[Stop] = []
    for point in points:
        right = point.x < WIDTH * 0.6
        label_x = point.x + 14 if right else point.x - 14
        label_y = point.y + 5
        for other in stops:
            if abs(other.label_y - label_y) < 20 and abs(other.label_x - label_x) < 160:
                label_y = other.label_y + 22
        stops.append(
            Stop(
                x=point.x,
                y=point.y,
                name=point.name,
                label_x=round(label_x, 1),
                label_y=round(label_y, 1),
                anchor="start" if right else "end",
            )
        )
    return stops
