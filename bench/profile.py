"""Python's share of partner ingest, in-process: CPU per request, or a profile.

The bench's wrk runs give events/s and CPU by process; this gives where gunicorn's share
goes, without a server, through Django's test client against the bench's loaded data
(run ``make bench`` or ``python -m bench.run --only load`` first)::

    .venv/bin/python -m bench.profile single              # CPU ms per single event
    .venv/bin/python -m bench.profile next                # per single next stage
    .venv/bin/python -m bench.profile batch --count 10    # per batch of 100 next stages
    .venv/bin/python -m bench.profile batch --size 8      # per batch of 8: what a request
                                                          #   costs whatever its events
    .venv/bin/python -m bench.profile single --sort cumulative --top 80
    .venv/bin/python -m bench.profile batch --sql         # PostgreSQL's side, by statement
    .venv/bin/python -m bench.profile duplicate --sql     # the floor of a single event
    .venv/bin/python -m bench.profile batch --phases      # the CPU of each step of the path
    .venv/bin/python -m bench.profile deliver             # a worker's delivery of the emails
                                                          #   those events queued, 25 a task

``single`` sends random factory codes to random cars (as the bench's random stream);
``next`` sends single events of cars' next factory stages, each moving its journey, and
``batch`` batches of 100 of them; ``queued`` sends the same single events with ``Prefer:
respond-async`` (what accepting one costs; the events are applied after the measurement,
untimed: ``partner_queued_events_drain``). Two more give the partner API's floor for a single
event: ``duplicate`` sends one event already received, again and again under fresh
Idempotency-Keys (the cheapest request through the event endpoint: it writes nothing
but its key's record), and ``floor`` lists the partner's webhooks (the cheapest
authenticated API request: the key, the rate limit, one query).
The CPU time (``time.process_time()``) of each request is taken, and the median given:
on a shared host the mean moves by a quarter from run to run, the median less; a profile
(cProfile, on CPU time) is slower and weighs small calls more than they cost.

``deliver`` is the worker's side: it delivers the outbox's due rows (the messages the
events of an earlier ``next`` or ``batch`` run queued, whose tasks wait in Redis with no
worker), a task's list at a time (``--size``, 25 as the outbox queues them; 1 as an
answered event's own task), through the bench's mail backend.

``--sql`` gives PostgreSQL's side instead: the CPU time of the request's database backend
(from ``/proc``, when PostgreSQL runs on this machine) and of this process, per request,
and each statement's time from sending it to its last row (most of it the server's for
the large ones), summed over the requests and ranked. To see inside one statement, run
it under ``EXPLAIN (ANALYZE, BUFFERS)`` on a copy of the database (``CREATE DATABASE x
TEMPLATE milepost_bench``): its triggers' times are listed there, and ``auto_explain``
with ``log_nested_statements`` shows the plans of the statements they run.
"""

import argparse
import collections
import cProfile
import json
import os
import pstats
import random
import secrets
import statistics
import time
from datetime import timedelta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "kind", choices=["single", "next", "queued", "batch", "duplicate", "floor", "deliver"]
    )
    parser.add_argument("--count", type=int, default=None, help="requests (600 / 10 / 16)")
    parser.add_argument(
        "--size", type=int, default=None, help="events per batch (100), rows per delivery (25)"
    )
    parser.add_argument("--sort", help="profile, sorted by this (tottime, cumulative)")
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--sql", action="store_true", help="PostgreSQL's side, by statement")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="this process's CPU per request in each step of the event path",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="the same cars and codes on every run: to compare two checkouts, each on its "
        "own copy of the loaded database (BENCH_DATABASE_URL), under callgrind",
    )
    args = parser.parse_args()
    if args.size is None:
        args.size = 25 if args.kind == "deliver" else 100

    plain, rng, cars, now = factory_cars(name="bench-profile", seed=args.seed)
    from django.test import Client

    from bench.measure import FACTORY_CODES, _moving_queues

    client = Client(HTTP_HOST="127.0.0.1")
    run = secrets.token_hex(4)
    headers = {"HTTP_AUTHORIZATION": f"Api-Key {plain}"}
    moving = args.kind in ("next", "queued", "batch")
    queue = iter(_moving_queues(cars, threads=1)[0]) if moving else None
    received = {"event_id": f"profile-{run}", "code": FACTORY_CODES[0], "occurred_at": now}
    count = args.count or {"batch": 10, "deliver": 16}.get(args.kind, 600)
    lists = _due_lists(args.size, count + 3) if args.kind == "deliver" else []

    def post(n: int) -> None:
        key = f"profile-{run}-{n}"
        if args.kind == "deliver":
            from notifications.services import notifications_deliver

            notifications_deliver(notification_ids=lists[n + 3 if n >= 0 else -1 - n])
            return
        if args.kind == "floor":
            response = client.get("/api/v1/webhooks/", **headers)
            if response.status_code != 200:
                raise SystemExit(f"{response.status_code}: {response.content[:300]!r}")
            return
        if args.kind == "duplicate":
            body, url = received, f"/api/v1/journeys/{cars[0]}/events/"
        elif queue is None:
            body = {"event_id": key, "code": rng.choice(FACTORY_CODES), "occurred_at": now}
            url = f"/api/v1/journeys/{rng.choice(cars)}/events/"
        elif args.kind in ("next", "queued"):
            ref, code = next(queue).split("|")
            body = {"event_id": key, "code": code, "occurred_at": now}
            url = f"/api/v1/journeys/{ref}/events/"
        else:
            items = []
            for i in range(args.size):
                ref, code = next(queue).split("|")
                items.append(
                    {"event_id": f"{key}-{i}", "code": code, "occurred_at": now, "journey": ref}
                )
            body, url = {"events": items}, "/api/v1/events/batch/"
        response = client.post(
            url,
            json.dumps(body),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=key,
            **headers,
            **({"HTTP_PREFER": "respond-async"} if args.kind == "queued" else {}),
        )
        if response.status_code >= 300 and response.status_code != 202:
            raise SystemExit(f"{response.status_code}: {response.content[:300]!r}")

    for n in range(3):  # warm: the first requests import and fill caches
        post(-1 - n)
    try:
        _measure(post, count, args)
    finally:
        if args.kind == "queued":
            # What was accepted is applied here, untimed: the database is left as the
            # other kinds leave it (and its task, queued in Redis, finds nothing).
            from integrations.services import partner_queued_events_drain

            partner_queued_events_drain(later=False)


def factory_cars(*, name: str, seed: int | None) -> tuple[str, random.Random, list[str], str]:
    """Django set up with the bench's settings, and what a stream of the factory
    partner's events needs: a new API key of theirs (``name``), the random generator
    (``seed``: the same cars and codes on every run), up to 6,000 of the loaded cars
    in random order, and a minute ago as the events' time."""
    from bench.run import bench_env

    os.environ.update(bench_env())
    import django

    django.setup()
    from django.utils import timezone

    from integrations.models import Partner
    from integrations.services import partner_key_create
    from journey.models import Journey

    partner = Partner.objects.get(slug="iberia-motor-works")
    _key, plain = partner_key_create(partner=partner, name=name)
    rng = random.Random(seed)
    refs = list(
        Journey.objects.filter(template__key="car-built-to-order", reference__startswith="MP-B")
        .order_by("pk")
        .values_list("reference", flat=True)
    )
    cars = rng.sample(refs, min(6000, len(refs)))
    now = (timezone.now() - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return plain, rng, cars, now


def _due_lists(size: int, lists: int) -> list[list[int]]:
    """The outbox's due rows, ``size`` to a list, as their tasks would carry them."""
    from django.utils import timezone

    from notifications.models import Notification

    due = list(
        Notification.objects.filter(state="pending", scheduled_at__lte=timezone.now())
        .exclude(channel="inapp")
        .order_by("pk")
        .values_list("pk", flat=True)[: size * lists]
    )
    if len(due) < size * lists:
        raise SystemExit(
            f"{len(due)} due rows, {size * lists} needed: send events first "
            "(bench.profile next), on freshly loaded data"
        )
    return [due[start : start + size] for start in range(0, len(due), size)]


def _measure(post, count: int, args: argparse.Namespace) -> None:
    if args.sql:
        _sql_profile(post, count, args.top)
        return
    if args.phases:
        _phases(post, count)
        return
    if args.sort:
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for n in range(count):
            post(n)
        profile.disable()
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
        return
    spent = []
    for n in range(count):
        started = time.process_time()
        post(n)
        spent.append((time.process_time() - started) * 1000)
    unit = {"batch": f"batch of {args.size}", "deliver": f"list of {args.size} rows"}.get(
        args.kind, "request"
    )
    print(
        f"{statistics.median(spent):.2f} ms of CPU per {unit}, the median of {count} "
        f"(mean {statistics.fmean(spent):.2f}, lowest {min(spent):.2f})"
    )


# The steps of the event endpoints' path timed by --phases: (module, owner, name, label).
# Each is a function the views or services look up by that name when they run, so a
# wrapper set there sees every call (a step both the views and the services name is
# wrapped in both, under one label); nested steps are indented, their time is also their
# parent's.
_PHASES = [
    ("integrations.api.idempotency", None, "idempotency_begin", "the Idempotency-Key's claim"),
    ("integrations.api.parsers", "JSONParser", "parse", "the body parsed"),
    ("integrations.api.views", "BatchInSerializer", "is_valid", "the batch's list validated"),
    ("integrations.api.views", "EventBatchCreate", "_parse", "each item validated"),
    ("integrations.api.views", None, "_event_in", "the single event validated"),
    (
        "integrations.api.views",
        None,
        "partner_status_events_prepare",
        "prepared: the mappings, the claims, the journeys",
    ),
    (
        "integrations.services",
        None,
        "partner_status_events_prepare",
        "prepared: the mappings, the claims, the journeys",
    ),
    (
        "integrations.services",
        None,
        "_prepare_one",
        "prepared: the mappings, the claims, the journeys",
    ),
    ("integrations.services", None, "journeys_lock", "  the journeys locked and loaded"),
    (
        "integrations.services",
        None,
        "journey_lock_claiming",
        "  the journeys locked and loaded",
    ),
    ("integrations.services", None, "journey_record_milestone", "the spine, per event"),
    (
        "integrations.api.views",
        None,
        "partner_status_events_finish",
        "the writes (journey.unit), the inbound rows linked",
    ),
    (
        "integrations.services",
        None,
        "partner_status_events_finish",
        "the writes (journey.unit), the inbound rows linked",
    ),
    ("integrations.services", None, "update_rows", "  the inbound rows linked"),
    ("integrations.api.views", None, "_event_out", "the answer's bodies"),
    ("integrations.api.idempotency", None, "idempotency_finish", "the answer stored"),
    ("notifications.services", None, "_queue_delivery", "the delivery tasks queued"),
    ("rest_framework.renderers", "JSONRenderer", "render", "the answer rendered"),
]


def _phases(post, count: int) -> None:
    """CPU per request (``time.process_time``, this process only: PostgreSQL's is
    ``--sql``) spent in each step of the path, the mean over ``count`` requests; the
    rest is Django, DRF, the reads not listed and the commit."""
    import importlib

    spent: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()

    running: set[str] = set()

    def timed(function, label):
        def wrapper(*args, **kwargs):
            if label in running:  # a step within a step of the same label: counted once
                return function(*args, **kwargs)
            running.add(label)
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                running.discard(label)
                spent[label] += time.process_time() - started
                calls[label] += 1

        return wrapper

    for module, owner, name, label in _PHASES:
        target = importlib.import_module(module)
        if owner is not None:
            target = getattr(target, owner)
        function = getattr(target, name, None)
        if function is not None:
            setattr(target, name, timed(function, label))
    total = []
    for n in range(count):
        started = time.process_time()
        post(n)
        total.append(time.process_time() - started)
    print(f"{statistics.fmean(total) * 1000:.2f} ms of CPU per request, the mean of {count}:")
    for label in dict.fromkeys(label for *_where, label in _PHASES):
        if calls[label]:
            print(
                f"{spent[label] / count * 1000:8.2f} ms  {label} "
                f"({calls[label] / count:g} calls a request)"
            )


def _sql_profile(post, count: int, top: int) -> None:
    """Per request: the database backend's CPU and this process's; per statement: the time
    from sending it to its last row, summed over the requests."""
    from django.db import connection

    spent: dict[str, list[float]] = collections.defaultdict(list)

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent[" ".join(sql.split())[:100]].append(time.perf_counter() - started)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        stat = f"/proc/{cursor.fetchone()[0]}/stat"

    def backend_cpu() -> float | None:
        try:
            with open(stat) as f:  # utime and stime, after the command's name
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # PostgreSQL runs elsewhere
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    backend, own = backend_cpu(), time.process_time()
    with connection.execute_wrapper(timed):
        for n in range(count):
            post(n)
    own = (time.process_time() - own) * 1000 / count
    after = backend_cpu()
    server = f"{(after - backend) * 1000 / count:.1f} ms" if backend is not None else "unknown"
    total = sum(map(sum, spent.values())) * 1000 / count
    print(
        f"per request, the mean of {count}: database backend CPU {server} (10 ms ticks), "
        f"this process {own:.1f} ms; statements {total:.1f} ms from send to last row"
    )
    ranked = sorted(spent.items(), key=lambda item: -sum(item[1]))
    for sql, times in ranked[:top]:
        print(f"{sum(times) * 1000 / count:8.2f} ms  x{len(times) / count:<4g} {sql}")


if __name__ == "__main__":
    main()
