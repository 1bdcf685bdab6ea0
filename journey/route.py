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
class Label:
    """The names of one place, or of stops too close to tell apart, one per line.

    ``y`` is the middle of the lines (the place's, or moved up or down by whole lines
    of the phone's size, in SVG units); ``first_dy`` (in em, so right at any font size)
    puts the first line's baseline relative to it: the lines centred on ``y``."""

    x: float
    y: float
    anchor: str
    lines: tuple[str, ...]
    first_dy: str


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
    stops: list[Point]
    labels: list[Label]
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
            # A leg's end is the next one's start: one stop. Two places of the same name
            # far apart ("Depot") are two.
            if not any(
                s.name == point.name and math.dist((s.x, s.y), (point.x, point.y)) < NEAR
                for s in unique
            ):
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
        stops=unique,
        labels=_place_labels(unique, marker),
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


# Labels are judged at the size a phone draws them (the CSS's 24 units; 15 on wider
# screens, which then sit inside the same boxes), with the line height the template's
# tspans use. A line's width is estimated a letter at a time, on the wide side of common
# sans-serifs at weight 600 (DejaVu Sans, which Debian's Chromium draws with, measured
# 0.63 to 0.66 of the size for lower case and about 0.8 for capitals).
LABEL_FONT = 24
THIN = frozenset("il.,:;!'|")
NARROW = frozenset("fjtrI()[] -")
WIDE = frozenset("mwMW@%")
LINE_EM = 1.25
LINE = LINE_EM * LABEL_FONT
GAP = 14  # from the stop's centre to its label
NEAR = 16  # stops closer than this share one label
DOT = 10  # a stop's radius with its stroke, kept clear of other labels
MARKER = 14  # the last-seen marker's outer ring
EDGE = 6  # kept clear at the picture's edges
OUTSIDE_WEIGHT = 10  # per unit² of a label outside the picture
MOVE_WEIGHT = 300  # per line a label moves off its place, as 300 unit² of overlap
HIDES = 10  # per unit² of a label over another label, a dot or the marker
CUT_WEIGHT = 100  # per letter a long name loses to its ellipsis


@dataclass(frozen=True)
class _Box:
    left: float
    top: float
    right: float
    bottom: float

    def overlap(self, other: "_Box") -> float:
        width = min(self.right, other.right) - max(self.left, other.left)
        height = min(self.bottom, other.bottom) - max(self.top, other.top)
        return width * height if width > 0 and height > 0 else 0.0

    def outside(self) -> float:
        """How much of the box lies outside the picture."""
        inside = _Box(0, 0, WIDTH, HEIGHT).overlap(self)
        return (self.right - self.left) * (self.bottom - self.top) - inside


def _label_box(place: Point, width: float, height: float, anchor: str, shift: int) -> _Box:
    """A label's box beside ``place`` (right of it for "start", left for "end"), centred on
    it and moved ``shift`` whole lines down."""
    left = place.x + GAP if anchor == "start" else place.x - GAP - width
    top = place.y - height / 2 + shift * LINE
    return _Box(left, top, left + width, top + height)


def text_width(line: str) -> float:
    """A line's width in SVG units at ``LABEL_FONT``, estimated a letter at a time."""
    ems = 0.0
    for char in line:
        if char in THIN:
            ems += 0.36
        elif char in NARROW:
            ems += 0.5
        elif char in WIDE:
            ems += 1.0
        elif char.isupper():
            ems += 0.8
        else:
            ems += 0.68
    return ems * LABEL_FONT


def _cut(line: str, room: float) -> str:
    """``line``, cut with an ellipsis where it would pass ``room``."""
    if text_width(line) <= room:
        return line
    while line and text_width(line + "…") > room:
        line = line[:-1]
    return line.rstrip() + "…"


def _lines(names: tuple[str, ...], room: float) -> tuple[str, ...]:
    """The names as lines that fit ``room`` (SVG units): a long name wrapped at its
    words onto two lines at most, and what is still too long cut with an ellipsis (the
    legs' list below the picture gives every name whole)."""
    room = max(room, 2 * LABEL_FONT)  # a letter or two and the ellipsis at least
    lines: list[str] = []
    for name in names:
        wrapped: list[str] = []
        for word in name.split():
            if wrapped and text_width(f"{wrapped[-1]} {word}") <= room:
                wrapped[-1] = f"{wrapped[-1]} {word}"
            else:
                wrapped.append(word)
        wrapped = wrapped or [name]
        if len(wrapped) > 2:
            wrapped = [wrapped[0], " ".join(wrapped[1:])]
        lines += [_cut(line, room) for line in wrapped]
    return tuple(lines)


def _place_labels(points: list[Point], marker: Point | None = None) -> list[Label]:
    """One label per place: stops too close to tell apart share one, a line each. Each
    label takes the position, beside its place or moved up or down by whole lines, that
    costs least: out of the picture most, then each line moved, then any overlap with
    another label, a stop, the band beside another stop or the last-seen marker (a long
    name wrapped or cut to fit the side it is on)."""
    groups: list[list[Point]] = []
    for point in points:
        near = next(
            (g for g in groups if math.dist((g[0].x, g[0].y), (point.x, point.y)) < NEAR), None
        )
        if near is None:
            groups.append([point])
        else:
            near.append(point)
    placed: list[_Box] = []
    labels: list[Label] = []
    for group in groups:
        place = group[0]
        # A shared label's lines in the order its dots stand, top to bottom.
        names = tuple(point.name for point in sorted(group, key=lambda p: (p.y, p.x)))
        # Every other stop's dot (its group's too), and the band right beside each stop
        # of another group, where a label would seem to name that stop instead.
        # (weight, box): what hides letters weighs more than a band.
        obstacles = [
            (HIDES, _Box(p.x - DOT, p.y - DOT, p.x + DOT, p.y + DOT)) for p in points if p != place
        ]
        obstacles += [
            (1, _Box(p.x - 2 * GAP, p.y - LINE / 2, p.x + 2 * GAP, p.y + LINE / 2))
            for p in points
            if p not in group
        ]
        if marker is not None:
            ring = _Box(marker.x - MARKER, marker.y - MARKER, marker.x + MARKER, marker.y + MARKER)
            obstacles.append((HIDES, ring))
        sides = ("start", "end") if place.x < WIDTH * 0.6 else ("end", "start")
        candidates = []
        for anchor in sides:
            room = WIDTH - place.x - GAP - EDGE if anchor == "start" else place.x - GAP - EDGE
            lines = _lines(names, room)
            width = max(text_width(line) for line in lines)
            height = len(lines) * LINE
            candidates += [
                (anchor, shift, lines, _label_box(place, width, height, anchor, shift))
                for shift in (0, 1, -1, 2, -2, 3, -3, 4, -4)
            ]
        # Nearest first (both sides at each shift): of those that cost least, the first.
        candidates.sort(key=lambda c: abs(c[1]) * 2 + (c[1] < 0))
        # What a position costs: leaving the picture most, then moving away from its
        # place (a line's move weighs as much as a small overlap), then overlapping.
        whole = sum(len(name) for name in names)
        costs = [
            OUTSIDE_WEIGHT * box.outside()
            + MOVE_WEIGHT * abs(shift)
            + CUT_WEIGHT * (whole - sum(len(line.rstrip("…")) for line in lines_))
            + sum(HIDES * box.overlap(other) for other in placed)
            + sum(weight * box.overlap(other) for weight, other in obstacles)
            for _anchor, shift, lines_, box in candidates
        ]
        anchor, shift, lines, box = candidates[costs.index(min(costs))]
        placed.append(box)
        # The first baseline: a line's baseline sits about 0.35em below its middle.
        first_dy = 0.35 - (len(lines) - 1) * LINE_EM / 2
        labels.append(
            Label(
                x=round(place.x + GAP if anchor == "start" else place.x - GAP, 1),
                y=round(place.y + shift * LINE, 1),
                anchor=anchor,
                lines=lines,
                first_dy=f"{first_dy:.3f}em",
            )
        )
    return labels
