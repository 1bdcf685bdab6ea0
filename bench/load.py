"""The benchmark's data set, written with PostgreSQL's COPY (not through the request path).

At scale 1: 10,000 customers, 20,000 journeys, about 1,000,000 timeline events, 50,000
photos (small generated JPEGs, hard-linked from a pool so the disk holds 64 of them), and
200,000 checkpoints, with the milestones, legs, tasks, appointments, promised items,
agreements, messages, ETA history and notification history a real portal would hold
around them. The demo (``manage.py demo``) is loaded first: its templates, partners and
status mappings are the ones every journey here uses.

Some journeys have a fixed shape the measurements rely on:

* ``typical`` journeys: 40 events, 12 photos, 4 legs (the journey page benchmark);
* ``plain`` journeys: the same without photos (the page weight);
* ``ready`` journeys: a car at the factory whose owner has email, no quiet hours and no
  recent message (time to know: the next stage's code is sent for each).

``load`` returns a ``Manifest`` naming them; it is also written to the artifacts folder.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection, models, transaction
from django.utils import timezone
from PIL import Image, ImageDraw

from accounts.models import CustomerProfile, User
from integrations.models import IdempotencyRecord, InboundEvent, Partner, StatusMapping
from journey.eta import eta_stats_recompute
from journey.models import (
    Agreement,
    Appointment,
    Checkpoint,
    CustomerTask,
    EtaEstimate,
    Journey,
    JourneyEvent,
    JourneyTemplate,
    Message,
    Milestone,
    Photo,
    PromisedItem,
    ShipmentLeg,
    StageDefinition,
)
from notifications.models import Notification

CUSTOMERS = 10_000
JOURNEYS = 20_000
EVENTS = 1_000_000
PHOTOS = 50_000
CHECKPOINTS = 200_000
TYPICAL = {"events": 40, "photos": 12, "legs": 4}
# The stage at which each template's journeys take the road (the demo's templates): their
# legs depart when it is reached.
SHIPS_AT = {"car-built-to-order": "in_transit", "fitted-kitchen": "delivery"}
POOL = 64  # distinct generated images; every photo file is a hard link to one of them
PASSWORD = "bench-password-not-secret"  # noqa: S105 - bench customers on a bench database

PORTS = [
    ("Santander", Decimal("43.46230"), Decimal("-3.80998")),
    ("Portbury", Decimal("51.49617"), Decimal("-2.72496")),
    ("Bristol", Decimal("51.45451"), Decimal("-2.58791")),
    ("Valencia", Decimal("39.46991"), Decimal("-0.37629")),
    ("Zeebrugge", Decimal("51.33300"), Decimal("3.20700")),
    ("Southampton", Decimal("50.90970"), Decimal("-1.40435")),
    ("Leeds", Decimal("53.80076"), Decimal("-1.54907")),
]
NOTES = [
    "Parts for your build arrived at the line.",
    "Your build passed its midpoint inspection.",
    "The transport slot is confirmed.",
    "Our team checked your order against the specification.",
    "A small delay at the port; we are watching it.",
    "Your documents were prepared.",
]


@dataclass
class Manifest:
    scale: float
    customers: int = 0
    journeys: int = 0
    events: int = 0
    photos: int = 0
    checkpoints: int = 0
    notifications: int = 0
    seconds: float = 0.0
    typical: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)
    customer_password: str = PASSWORD
    counts: dict[str, int] = field(default_factory=dict)


class Copier:
    """COPY rows into a model's table, with ids handed out here (and the sequence moved)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def next_id(self, model: type[models.Model]) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{model._meta.db_table}"')  # noqa: S608
            return cursor.fetchone()[0] + 1

    def copy(self, model: type[models.Model], rows: Iterable[dict[str, Any]]) -> int:
        """Write ``rows`` (dicts by field name, ``id`` included); a field left out takes
        its model default."""
        fields = [f for f in model._meta.concrete_fields]
        defaults = {}
        for f in fields:
            if f.has_default():
                defaults[f.attname] = f.get_default()
            elif f.null:
                defaults[f.attname] = None
            elif isinstance(f, models.DateTimeField) and (f.auto_now or f.auto_now_add):
                defaults[f.attname] = timezone.now()
            elif f.blank and isinstance(f, (models.CharField, models.TextField)):
                defaults[f.attname] = ""
        json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
        names = [f.attname for f in fields]
        columns = ", ".join(f'"{f.column}"' for f in fields)
        table = model._meta.db_table
        count = 0
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg 3
            with raw.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
                for row in rows:
                    values = []
                    for name in names:
                        value = row[name] if name in row else defaults[name]
                        if name in json_fields and value is not None:
                            value = json.dumps(value)
                        values.append(value)
                    copy.write_row(values)
                    count += 1
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "  # noqa: S608
                f'(SELECT COALESCE(MAX(id), 1) FROM "{table}"))'
            )
        self.counts[table] = self.counts.get(table, 0) + count
        return count


def _pool(media_root: Path) -> list[tuple[str, str, int, int]]:
    """POOL small generated images and thumbnails; returns (image, thumb, w, h) paths."""
    folder = media_root / "bench-pool"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    pool = []
    for i in range(POOL):
        width, height = 480, 360
        image = Image.new("RGB", (width, height), (58 + i, 64, 72))
        draw = ImageDraw.Draw(image)
        colour = (rng.randrange(60, 240), rng.randrange(60, 240), rng.randrange(60, 240))
        draw.rectangle((0, 240, width, height), fill=(92, 96, 102))
        draw.rounded_rectangle((90, 150, 390, 250), radius=30, fill=colour)
        draw.text((12, 330), f"Bench photo {i}", fill=(255, 255, 255))
        paths = []
        for name, size in (("image", None), ("thumb", (240, 180))):
            out = image if size is None else image.resize(size)
            path = folder / f"{name}-{i}.jpg"
            out.save(path, format="JPEG", quality=80)
            paths.append(path)
        pool.append((str(paths[0]), str(paths[1]), width, height))
    return pool


def _link(source: str, media_root: Path, relative: str) -> None:
    target = media_root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.link(source, target)


def _spread(total: int, parts: int, rng: random.Random, low: int, high: int) -> list[int]:
    """``parts`` integers in [low, high] summing to about ``total``."""
    mean = total / parts
    values = [max(low, min(high, round(rng.gauss(mean, mean / 3)))) for _ in range(parts)]
    return values


def _settle(
    counts: list[int],
    shortfall: int,
    among: Sequence[int],
    rng: random.Random,
    *,
    low: int,
    high: int,
) -> None:
    """Nudge ``counts`` at the indexes ``among`` one at a time, within [low, high], until
    they make up ``shortfall`` more (or fewer): the totals come out exact."""
    while shortfall and among:
        i = rng.choice(among)
        step = 1 if shortfall > 0 else -1
        if low <= counts[i] + step <= high:
            counts[i] += step
            shortfall -= step


def _partner_traffic(now: datetime) -> tuple[int, int]:
    """What partners' events leave besides the timeline, written from it in two statements:
    the inbound row of every stage a partner's code reached (its code from the partner's
    status mapping), and the Idempotency-Key of each received in the last day (keys live a
    day). Without them the two tables are empty when analyzed, and a statement prepared on
    a table analyzed empty keeps the plan made for an empty table (a scan of every row)
    for its connection's life, however much the table grows (docs/performance.md,
    nineteenth pass): no database that holds a year of partner events has that."""
    inbound = InboundEvent._meta.db_table
    served = Partner.journeys.through._meta.db_table
    with connection.cursor() as cursor:
        # Table names from the models (no input reaches this SQL).
        cursor.execute(
            f"""
            INSERT INTO "{inbound}" (partner_id, journey_id, event_id, code, occurred_at,
                received_at, payload, unmapped, queued, journey_event_id)
            SELECT DISTINCT ON (e.id) mapping.partner_id, e.journey_id, 'loaded-' || e.id,
                mapping.code, e.occurred_at, e.received_at, '{{}}'::jsonb, false, false, e.id
            FROM "{JourneyEvent._meta.db_table}" e
            JOIN "{Milestone._meta.db_table}" m ON m.id = e.milestone_id
            JOIN "{StageDefinition._meta.db_table}" stage ON stage.id = m.stage_id
            JOIN "{StatusMapping._meta.db_table}" mapping ON mapping.stage_key = stage.key
            JOIN "{served}" served ON served.partner_id = mapping.partner_id
                AND served.journey_id = e.journey_id
            WHERE e.kind = 'milestone_reached'
            ORDER BY e.id, mapping.partner_id, mapping.code
            """  # noqa: S608
        )
        inbound_rows = cursor.rowcount
        cursor.execute(
            f"""
            INSERT INTO "{IdempotencyRecord._meta.db_table}" (partner_id, key, method, path,
                fingerprint, status_code, response_body, created_at, expires_at, locked_at)
            SELECT i.partner_id, 'loaded-' || i.id, 'POST',
                '/api/v1/journeys/' || j.reference || '/events/', md5(i.event_id) || md5(i.code),
                201, jsonb_build_object('event_id', i.event_id, 'state', 'applied'),
                i.received_at, i.received_at + %s, i.received_at
            FROM "{inbound}" i JOIN "{Journey._meta.db_table}" j ON j.id = i.journey_id
            WHERE i.received_at > %s
            """,  # noqa: S608
            [timedelta(days=1), now - timedelta(days=1)],
        )
        return inbound_rows, cursor.rowcount


def load(*, scale: float = 1.0, seed: int = 1, log=print) -> Manifest:
    """Write the data set (after ``manage.py demo``). PostgreSQL only."""
    if connection.vendor != "postgresql":
        raise RuntimeError("The benchmark data set is written with COPY: PostgreSQL only.")
    started = time.perf_counter()
    rng = random.Random(seed)
    now = timezone.now()
    today = timezone.localdate(now)
    manifest = Manifest(scale=scale)
    n_customers = max(4, round(CUSTOMERS * scale))
    n_journeys = max(8, round(JOURNEYS * scale))
    n_events = round(EVENTS * scale)
    n_photos = round(PHOTOS * scale)
    n_checkpoints = round(CHECKPOINTS * scale)
    media_root = Path(settings.MEDIA_ROOT)
    pool = _pool(media_root)
    copier = Copier()

    car = JourneyTemplate.objects.get(key="car-built-to-order")
    kitchen = JourneyTemplate.objects.get(key="fitted-kitchen")
    stages = {
        t.pk: list(StageDefinition.objects.filter(template=t).order_by("position"))
        for t in (car, kitchen)
    }
    factory = Partner.objects.get(slug="iberia-motor-works")
    carrier = Partner.objects.get(slug="northsea-roro")

    # Which journeys have a fixed shape: every 400th is typical, the next plain; the
    # "ready" ones are cars at the factory, one per owner, owners without quiet hours.
    typical = set(range(0, n_journeys, 400))
    plain = {i + 1 for i in typical if i + 1 < n_journeys}
    n_ready = min(1000, max(2, n_journeys // 20))

    def log_step(what: str) -> None:
        log(f"  {time.perf_counter() - started:6.1f} s  {what}")

    with transaction.atomic():
        # --- customers -----------------------------------------------------------------
        password = make_password(PASSWORD)
        user_id = copier.next_id(User)
        profile_id = copier.next_id(CustomerProfile)
        users = list(range(user_id, user_id + n_customers))
        zones = ["Europe/London", "Europe/Madrid", "Europe/Berlin", "Europe/Dublin"]
        quiet_owner = {u: rng.random() < 0.3 for u in users}
        copier.copy(
            User,
            (
                {
                    "id": u,
                    "password": password,
                    "email": f"bench-{u}@customers.example",
                    "is_superuser": False,
                    "is_staff": False,
                    "is_active": True,
                    "date_joined": now - timedelta(days=200),
                    "last_login": None,
                }
                for u in users
            ),
        )
        copier.copy(
            CustomerProfile,
            (
                {
                    "id": profile_id + i,
                    "user_id": u,
                    "given_name": f"Customer{u}",
                    "family_name": "Bench",
                    "time_zone": zones[u % len(zones)],
                    "quiet_hours_start": datetime.strptime("21:00", "%H:%M").time()
                    if quiet_owner[u]
                    else None,
                    "quiet_hours_end": datetime.strptime("07:30", "%H:%M").time()
                    if quiet_owner[u]
                    else None,
                }
                for i, u in enumerate(users)
            ),
        )
        with connection.cursor() as cursor:
            cursor.execute(
                'INSERT INTO account_emailaddress (user_id, email, verified, "primary") '
                "SELECT id, email, true, true FROM accounts_user WHERE id >= %s",
                [user_id],
            )
        log_step(f"{n_customers} customers")

        # --- journeys and milestones --------------------------------------------------
        journey_id = copier.next_id(Journey)
        milestone_id = copier.next_id(Milestone)
        journeys: list[dict[str, Any]] = []
        milestones: list[dict[str, Any]] = []
        ready_owners: set[int] = set()
        for i in range(n_journeys):
            template = car if i % 2 == 0 or i in typical or i in plain else kitchen
            owner = users[i % n_customers]
            steps = stages[template.pk]
            ready = (
                template is car
                and len(ready_owners) < n_ready
                and owner not in ready_owners
                and not quiet_owner[owner]
                and i not in typical
                and i not in plain
            )
            if ready:
                ready_owners.add(owner)
                current = rng.randrange(1, 6)  # at the factory: the next stage has a code
            elif i in typical or i in plain:
                current = 8  # on its way: every leg drawn
            else:
                current = rng.randrange(1, len(steps) + 1)
            done = current == len(steps) and rng.random() < 0.5
            # Each stage lasts its planned time from when it is reached, give or take (0.3
            # to 0.9 of it), as the ETA reads a stage (journey.eta: a segment runs from
            # reaching its stage to reaching the next), and its history then learns. An
            # open journey is part of the way through its current stage: the times are
            # laid back from now, so a journey has been at its stage about as long as
            # such a stage lasts, except one in thirty, held up for one and a half to
            # three times as long: a few per cent stalled, as in a real fleet. (Drawn
            # from a fixed start instead, most journeys had sat at their stage for weeks:
            # the stall check flagged half of them.)
            durations = [step.expected_duration * rng.uniform(0.3, 0.9) for step in steps]
            if done:
                since = timedelta(days=rng.uniform(1, 20))  # handed over that long ago
            else:
                held_up = rng.random() < 1 / 30
                since = durations[current - 1] * (rng.uniform(1.5, 3) if held_up else rng.random())
            started_at = now - since - sum(durations[: current - 1], timedelta())
            reference = f"MP-B{i:06d}"
            journey = {
                "id": journey_id + i,
                "reference": reference,
                "title": ("Car built to order" if template is car else "Fitted kitchen")
                + f" for customer {owner}",
                "template_id": template.pk,
                "owner_id": owner,
                "started_at": started_at,
                "promised_date": (started_at + timedelta(days=60)).date(),
                "eta": (started_at + timedelta(days=55)).date(),
                "eta_low": (started_at + timedelta(days=50)).date(),
                "eta_high": (started_at + timedelta(days=62)).date(),
                "eta_basis": "planned",
                "health": "done" if done else rng.choice(["on_track"] * 8 + ["at_risk", "delayed"]),
                "created_at": started_at,
                "updated_at": now,
                "is_sandbox": False,
                "_current": current,
                "_template": template,
                "_ready": ready,
            }
            journeys.append(journey)
            if ready:
                manifest.ready.append(reference)
            if i in typical:
                manifest.typical.append(reference)
            if i in plain:
                manifest.plain.append(reference)
            moment = started_at
            for step, duration in zip(steps, durations, strict=True):
                reached = step.position <= current
                if step.key == SHIPS_AT.get(template.key):
                    journey["_ships_at"] = moment  # the legs start here (reached or planned)
                milestones.append(
                    {
                        "id": milestone_id + len(milestones),
                        "journey_id": journey["id"],
                        "stage_id": step.pk,
                        "position": step.position,
                        "state": "done"
                        if step.position < current or done
                        else ("current" if step.position == current else "upcoming"),
                        "planned_date": moment.date(),
                        "expected_date": moment.date(),
                        "reached_at": min(moment, now - timedelta(minutes=5)) if reached else None,
                    }
                )
                moment += duration
            journey["last_event_at"] = now - timedelta(hours=rng.uniform(12, 72))
        copier.copy(
            Journey,
            ({k: v for k, v in j.items() if not k.startswith("_")} for j in journeys),
        )
        copier.copy(Milestone, milestones)
        by_journey: dict[int, list[dict[str, Any]]] = {}
        for m in milestones:
            by_journey.setdefault(m["journey_id"], []).append(m)
        through = Partner.journeys.through
        with connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(
                f'COPY "{through._meta.db_table}" (partner_id, journey_id) FROM STDIN'
            ) as copy:
                for j in journeys:
                    if j["_template"] is car:
                        copy.write_row((factory.pk, j["id"]))
                        copy.write_row((carrier.pk, j["id"]))
        log_step(f"{n_journeys} journeys, {len(milestones)} milestones")

        # --- events ---------------------------------------------------------------------
        per_journey = _spread(n_events, n_journeys, rng, 6, 120)
        for i in typical | plain:
            per_journey[i] = TYPICAL["events"]
        shortfall = n_events - sum(per_journey)
        others = [i for i in range(n_journeys) if i not in typical and i not in plain]
        _settle(per_journey, shortfall, others, rng, low=6, high=200)
        event_id = copier.next_id(JourneyEvent)

        def events() -> Iterable[dict[str, Any]]:
            next_id = event_id
            for i, j in enumerate(journeys):
                reached = [m for m in by_journey[j["id"]] if m["reached_at"] is not None]
                count = per_journey[i]
                span = (now - j["started_at"]).total_seconds()
                for m in reached[:count]:
                    yield {
                        "id": next_id,
                        "journey_id": j["id"],
                        "milestone_id": m["id"],
                        "kind": "milestone_reached",
                        "occurred_at": m["reached_at"],
                        "received_at": m["reached_at"],
                        "source": "partner",
                        "source_name": "Iberia Motor Works",
                        "message": "",
                        "customer_visible": True,
                        "applied": True,
                        "payload": {},
                    }
                    next_id += 1
                notes = count - min(count, len(reached))
                offsets = sorted(rng.uniform(0, span) for _ in range(notes))
                for offset in offsets:
                    moment = j["started_at"] + timedelta(seconds=offset)
                    yield {
                        "id": next_id,
                        "journey_id": j["id"],
                        "milestone_id": None,
                        "kind": "note",
                        "occurred_at": moment,
                        "received_at": moment,
                        "source": "partner",
                        "source_name": "Iberia Motor Works",
                        "message": rng.choice(NOTES),
                        "customer_visible": rng.random() < 0.8,
                        "applied": True,
                        "payload": {"code": "NOTE", "station": rng.randrange(1, 40)},
                    }
                    next_id += 1

        manifest.events = copier.copy(JourneyEvent, events())
        log_step(f"{manifest.events} events")
        inbound, keys = _partner_traffic(now)
        copier.counts[InboundEvent._meta.db_table] = inbound
        copier.counts[IdempotencyRecord._meta.db_table] = keys
        log_step(f"{inbound} inbound partner events, {keys} idempotency keys")

        # --- photos -----------------------------------------------------------------------
        photo_counts = [0] * n_journeys
        for i in typical:
            photo_counts[i] = TYPICAL["photos"]
        rest = max(0, n_photos - sum(photo_counts))
        candidates = [i for i in others]
        for _ in range(rest):
            photo_counts[rng.choice(candidates)] += 1
        photo_id = copier.next_id(Photo)
        photo_rows = []
        for i, j in enumerate(journeys):
            reached = [m for m in by_journey[j["id"]] if m["reached_at"] is not None]
            for k in range(photo_counts[i]):
                image, thumb, width, height = pool[rng.randrange(POOL)]
                pid = photo_id + len(photo_rows)
                image_name = f"photos/{j['id']}/{pid:08d}-{uuid.uuid4().hex[:8]}.jpg"
                thumb_name = f"photos/{j['id']}/thumbs/{pid:08d}-{uuid.uuid4().hex[:8]}.jpg"
                _link(image, media_root, image_name)
                _link(thumb, media_root, thumb_name)
                milestone = reached[k % len(reached)]
                photo_rows.append(
                    {
                        "id": pid,
                        "journey_id": j["id"],
                        "milestone_id": milestone["id"],
                        "image": image_name,
                        "thumbnail": thumb_name,
                        "width": width,
                        "height": height,
                        "caption": f"Photo {k + 1} of your order",
                        "taken_at": milestone["reached_at"],
                        "created_at": milestone["reached_at"],
                    }
                )
        manifest.photos = copier.copy(Photo, photo_rows)
        log_step(f"{manifest.photos} photos")

        # --- legs and checkpoints -----------------------------------------------------
        leg_id = copier.next_id(ShipmentLeg)
        legs = []
        for i, j in enumerate(journeys):
            n_legs = (
                TYPICAL["legs"]
                if i in typical or i in plain
                else (3 if j["_template"] is car else 1)
            )
            departed = j.get("_ships_at", j["started_at"] + timedelta(days=20))
            for s in range(1, n_legs + 1):
                origin = PORTS[(i + s) % len(PORTS)]
                destination = PORTS[(i + s + 1) % len(PORTS)]
                arrived = departed + timedelta(days=rng.uniform(0.5, 3))
                is_arrived = arrived < now and s < n_legs
                legs.append(
                    {
                        "id": leg_id + len(legs),
                        "journey_id": j["id"],
                        "sequence": s,
                        "mode": ["truck", "ship", "truck", "van"][(s - 1) % 4]
                        if j["_template"] is car
                        else "van",
                        "carrier": "NorthSea Ro-Ro Logistics",
                        "origin_name": origin[0],
                        "origin_lat": origin[1],
                        "origin_lon": origin[2],
                        "destination_name": destination[0],
                        "destination_lat": destination[1],
                        "destination_lon": destination[2],
                        "departed_at": departed if departed < now else None,
                        "arrived_at": arrived if is_arrived and departed < now else None,
                        "eta": arrived,
                    }
                )
                departed = arrived + timedelta(hours=6)
        copier.copy(ShipmentLeg, legs)
        # Position reports come from legs under way or done, over their first 40 hours (or
        # as long as they have been under way): none from a vehicle that has not left.
        moving = [leg for leg in legs if leg["departed_at"] is not None] or legs[:1]
        per_leg = _spread(n_checkpoints, len(moving), rng, 1, 12)
        _settle(per_leg, n_checkpoints - sum(per_leg), range(len(moving)), rng, low=1, high=20)
        checkpoint_id = copier.next_id(Checkpoint)

        def checkpoints() -> Iterable[dict[str, Any]]:
            next_id = checkpoint_id
            for leg, count in zip(moving, per_leg, strict=True):
                start = leg["departed_at"] or now - timedelta(hours=1)
                span = min(timedelta(hours=40), now - start)
                for c in range(count):
                    fraction = (c + 1) / (count + 1)
                    yield {
                        "id": next_id,
                        "leg_id": leg["id"],
                        "occurred_at": start + span * fraction,
                        "location_name": f"Waypoint {c + 1}",
                        "lat": leg["origin_lat"]
                        + (leg["destination_lat"] - leg["origin_lat"]) * Decimal(fraction),
                        "lon": leg["origin_lon"]
                        + (leg["destination_lon"] - leg["origin_lon"]) * Decimal(fraction),
                        "description": "Position report",
                    }
                    next_id += 1

        manifest.checkpoints = copier.copy(Checkpoint, checkpoints())
        log_step(f"{len(legs)} legs, {manifest.checkpoints} checkpoints")

        # --- what the customer has to do, appointments, promises, agreements ----------
        task_id = copier.next_id(CustomerTask)
        appointment_id = copier.next_id(Appointment)
        item_id = copier.next_id(PromisedItem)
        agreement_id = copier.next_id(Agreement)
        message_id = copier.next_id(Message)
        eta_id = copier.next_id(EtaEstimate)
        tasks, appointments, items, agreements, messages, etas = [], [], [], [], [], []
        for j in journeys:
            for title in ("Upload your driving licence", "Choose a handover date"):
                tasks.append(
                    {
                        "id": task_id + len(tasks),
                        "journey_id": j["id"],
                        "title": title,
                        "description": "",
                        "due_date": today + timedelta(days=rng.randrange(-10, 40)),
                        "done_at": max(now - timedelta(days=1), j["started_at"])
                        if rng.random() < 0.5
                        else None,
                        "created_at": j["started_at"],
                    }
                )
            arrive = now + timedelta(hours=rng.uniform(-400, 800))
            appointments.append(
                {
                    "id": appointment_id + len(appointments),
                    "journey_id": j["id"],
                    "title": "Handover" if j["_template"] is car else "Measuring visit",
                    "starts_at": arrive + timedelta(minutes=15),
                    "arrive_at": arrive,
                    "duration": timedelta(hours=1),
                    "place_name": "Bristol showroom",
                    "address": "1 Harbour Road, Bristol",
                    "time_zone": "Europe/London",
                    "what_to_bring": "Your driving licence",
                }
            )
            if j["_template"] is kitchen:
                items.append(
                    {
                        "id": item_id + len(items),
                        "journey_id": j["id"],
                        "name": "Boiling-water tap",
                        "state": rng.choice(["promised", "ordered", "delivered"]),
                        "due_date": today + timedelta(days=rng.randrange(-10, 30)),
                    }
                )
            else:
                agreements.append(
                    {
                        "id": agreement_id + len(agreements),
                        "journey_id": j["id"],
                        "kind": "warranty",
                        "title": "Manufacturer's warranty",
                        "ends_on": today + timedelta(days=rng.randrange(0, 1100)),
                        "next_steps": "Book a service to extend it.",
                    }
                )
            for k in range(2):
                messages.append(
                    {
                        "id": message_id + len(messages),
                        "journey_id": j["id"],
                        "author_id": j["owner_id"] if k else None,
                        "from_staff": not k,
                        "body": "Thank you!" if k else "Your order is in good hands.",
                        "private": False,
                        "created_at": min(j["started_at"] + timedelta(days=k + 1), now),
                    }
                )
            for k in range(3):
                # The last row is the journey's own promise, as the ETA leaves them.
                last = k == 2
                expected = j["eta"] + timedelta(days=k - 2)
                etas.append(
                    {
                        "id": eta_id + len(etas),
                        "journey_id": j["id"],
                        "computed_at": min(
                            j["started_at"] + timedelta(days=k * 7), now - timedelta(minutes=3 - k)
                        ),
                        "expected": expected,
                        "low": j["eta_low"] if last else expected - timedelta(days=4),
                        "high": j["eta_high"] if last else expected + timedelta(days=5),
                        "basis": j["eta_basis"],
                        "health": j["health"] if last else "on_track",
                        "cause": "event",
                    }
                )
        for model, rows in (
            (CustomerTask, tasks),
            (Appointment, appointments),
            (PromisedItem, items),
            (Agreement, agreements),
            (Message, messages),
            (EtaEstimate, etas),
        ):
            copier.copy(model, rows)
        log_step(f"{len(tasks)} tasks, {len(appointments)} appointments, {len(messages)} messages")

        # --- notification history, and held messages now due (the sweep's work) -------
        notification_id = copier.next_id(Notification)

        def notifications() -> Iterable[dict[str, Any]]:
            next_id = notification_id
            for j in journeys:
                for m in by_journey[j["id"]]:
                    if m["reached_at"] is None:
                        continue
                    for channel in ("inapp", "email"):
                        yield {
                            "id": next_id,
                            "recipient_id": j["owner_id"],
                            "to_email": "",
                            "journey_id": j["id"],
                            "kind": "milestone_reached",
                            "channel": channel,
                            "context": {"stage": m["stage_id"]},
                            "dedup_key": f"milestone-reached:{m['id']}",
                            "state": "sent",
                            "attempts": 0 if channel == "inapp" else 1,
                            "scheduled_at": m["reached_at"],
                            "sent_at": m["reached_at"],
                            "read_at": m["reached_at"] if channel == "inapp" else None,
                            "occurred_at": m["reached_at"],
                            "created_at": m["reached_at"],
                            "digest_size": 1,
                        }
                        next_id += 1

        manifest.notifications = copier.copy(Notification, notifications())
        log_step(f"{manifest.notifications} notifications")

    # What the nightly relearn would have learned from the finished journeys: without it
    # every event would take the planned fallback, cheaper than production's forecast.
    for template in JourneyTemplate.objects.all():
        eta_stats_recompute(template=template)
    log_step("ETA history learned")

    # VACUUM as well as ANALYZE: a database a year old has long been vacuumed by
    # autovacuum, and freshly copied tables have not (no visibility map, no hint bits,
    # the dead journey rows the version triggers left). Autovacuum would otherwise do it
    # during the measurements that follow, on their two cores.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    manifest.customers = n_customers
    manifest.journeys = n_journeys
    manifest.counts = dict(copier.counts)
    manifest.seconds = round(time.perf_counter() - started, 1)
    log_step("vacuumed and analyzed")
    return manifest


def manifest_write(manifest: Manifest, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(manifest), indent=1, default=str))


def manifest_read(path: Path) -> Manifest:
    return Manifest(**json.loads(path.read_text()))
