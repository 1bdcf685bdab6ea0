"""The measurements of ``make bench``, one function per step (see bench/run.py).

Each returns a dict of figures (JSON), which bench/report.py writes into the document.
Servers, the load generator (wrk) and the Celery worker are real processes on loopback.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.host import python_speed
from bench.load import Manifest, load, manifest_read, manifest_write

SERVERS = ["gunicorn", "granian"]
DEFAULT_SERVER = "gunicorn"  # what the Dockerfile runs; chosen from the figures (docs)
WORKERS = 4  # per server: the two cores spend much of each request waiting on PostgreSQL
PORT = int(os.environ.get("BENCH_PORT", "8097"))
FACTORY_CODES = ["SLOT", "BIW", "PNT-IN", "ASSY", "QC-PASS", "GATE-RDY"]
# The code that moves a car at each stage (position) to the next, and who sends it.
NEXT_CODE = {
    1: ("iberia-motor-works", "SLOT"),
    2: ("iberia-motor-works", "BIW"),
    3: ("iberia-motor-works", "PNT-IN"),
    4: ("iberia-motor-works", "ASSY"),
    5: ("iberia-motor-works", "QC-PASS"),
    6: ("iberia-motor-works", "GATE-RDY"),
    7: ("northsea-roro", "PICKED-UP"),
    8: ("northsea-roro", "DELIVERED-DLR"),
    9: ("northsea-roro", "HANDED-OVER"),
}


@dataclass
class Context:
    env: dict[str, str]
    seconds: int
    artifacts: Path
    bin: Path
    manifest: Manifest | None = None
    notes: list[str] = field(default_factory=list)


def manifest_load(path: Path) -> Manifest:
    if not path.exists():
        raise SystemExit("No data set yet: run the load step first (make bench).")
    return manifest_read(path)


# --- processes ---------------------------------------------------------------------------


def _wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def _stop(process: subprocess.Popen, *, timeout: float) -> None:
    """Ask a process to stop (SIGTERM: gunicorn and Celery finish what they hold), then
    kill it if it has not within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def server(context: Context, kind: str = DEFAULT_SERVER, workers: int = WORKERS):
    """A production server on loopback, serving the project with the bench settings."""
    app = "config.wsgi:application"
    if kind == "gunicorn":
        args = [
            str(context.bin / "gunicorn"),
            app,
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ]
    elif kind == "granian":
        args = [
            str(context.bin / "granian"),
            "--interface",
            "wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(PORT),
            "--workers",
            str(workers),
            "--blocking-threads",
            "1",  # one request at a time per worker, as gunicorn's sync workers
            "--log-level",
            "warning",
            app,
        ]
    else:
        raise ValueError(kind)
    log = (context.artifacts / f"{kind}.log").open("ab")
    process = subprocess.Popen(args, env=context.env, stdout=log, stderr=log, cwd=settings.BASE_DIR)
    try:
        _wait_for(f"http://127.0.0.1:{PORT}/healthz")
        yield f"http://127.0.0.1:{PORT}"
    finally:
        _stop(process, timeout=20)
        log.close()


@contextmanager
def worker(context: Context, concurrency: int = 2, queue: str | None = None):
    log = (context.artifacts / "worker.log").open("ab")
    process = subprocess.Popen(
        [
            str(context.bin / "celery"),
            "-A",
            "config",
            "worker",
            "-Q",
            queue or context.env["CELERY_QUEUE"],
            "-c",
            str(concurrency),
            "-l",
            os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING"),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=context.env,
        stdout=log,
        stderr=log,
        cwd=settings.BASE_DIR,
    )
    try:
        time.sleep(4)  # the pool forks and connects to Redis
        if process.poll() is not None:
            raise RuntimeError("The Celery worker did not start; see artifacts/bench/worker.log")
        yield process
    finally:
        _stop(process, timeout=30)
        log.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return round(float(number) * _UNITS[unit], 2)


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int = 8,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    script_args: list[str] | None = None,
) -> dict[str, float]:
    """Run wrk (2 threads) and return requests/s, latency percentiles and errors."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    if script:
        args += ["-s", str(script)]
    args.append(url)
    if script_args:
        args += ["--", *script_args]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    figures: dict[str, float] = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non_2xx": int(m.group(1))
        if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out))
        else 0,
        "errors": sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out)),
    }
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+\w+)", out, re.MULTILINE)
        figures[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    return figures


Processes = dict[tuple[int, int], tuple[str, float, float, int]]


def cpu_seconds() -> Processes:
    """CPU time (user + system) used so far by every process, by pid and start time (a
    pid reused meanwhile is another process): its command name (gunicorn, postgres,
    wrk...), its own CPU, that of its children it has reaped (a database backend that
    ended, in the postmaster's), and its parent's pid; from /proc, {} where there is none."""
    tick = os.sysconf("SC_CLK_TCK")
    used: Processes = {}
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # Fields 4, 14 to 17 and 22 of proc_pid_stat(5): ppid, utime, stime, cutime,
        # cstime, starttime.
        own = (int(fields[11]) + int(fields[12])) / tick
        reaped = (int(fields[13]) + int(fields[14])) / tick
        used[(int(pid), int(fields[19]))] = (name, own, reaped, int(fields[1]))
    return used


def cpu_busy() -> float | None:
    """Seconds the CPUs have been busy so far, all of them together (``/proc/stat``);
    None where there is no /proc."""
    try:
        return busy_seconds(Path("/proc/stat").read_text(), os.sysconf("SC_CLK_TCK"))
    except OSError:
        return None


def busy_seconds(stat: str, tick: int) -> float:
    """The busy time of ``/proc/stat``'s first line: user (guest time is counted in it
    and nice's), nice, system, interrupts; not idle, waiting for I/O, or stolen by the
    hypervisor (time these CPUs did not run at all)."""
    first = stat.split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in first[1:8])
    return (user + nice + system + irq + softirq) / tick


def _command(name: str) -> str:
    """The name a process's CPU is counted under: the kernel's worker threads as one
    (``kworker/u8:1-writeback``: a kworker's name carries the work it is doing, and
    changes with it)."""
    return "kworker" if name.startswith("kworker/") else name


def cpu_split(
    before: Processes, after: Processes, events: int, *, children: dict[int, str] | None = None
) -> dict[str, float]:
    """Milliseconds of CPU per event, by the four commands that used the most between two
    ``cpu_seconds()`` readings (``cpu_spent``)."""
    spent = cpu_spent(before, after, children=children)
    top = sorted(spent.items(), key=lambda item: -item[1])[:4]
    return {name: round(seconds * 1000 / max(events, 1), 2) for name, seconds in top if seconds}


def cpu_spent(
    before: Processes, after: Processes, *, children: dict[int, str] | None = None
) -> dict[str, float]:
    """Seconds of CPU by command between two ``cpu_seconds()`` readings.

    A process is matched by pid and start time, not by name: a kworker renamed between
    the readings was counted with all the CPU of its life until the twenty-fourth pass.
    One that ended meanwhile is counted under its parent's name, from what the parent
    reaped less what the process had used by the first reading: until the twenty-fifth
    pass it was lost, and with it a database backend's work whenever Django closed a
    connection at its ``CONN_MAX_AGE`` during a run (docs/performance.md). ``children``
    names the reaped children of some parents by pid instead (this process's: wrk; the
    servers it also started live through every run)."""
    spent: dict[str, float] = {}

    def add(name: str, seconds: float) -> None:
        spent[_command(name)] = spent.get(_command(name), 0.0) + seconds

    for process, (name, own, reaped, _parent) in after.items():
        earlier = before.get(process)
        if earlier is None:  # started meanwhile: all of its life, and its children's
            add(name, own + reaped)
            continue
        gone = [
            used
            for key, (_name, *used, parent) in before.items()
            if parent == process[0] and key not in after
        ]
        add(name, own - earlier[1])
        # A parent that does not wait for its children (kthreadd, whose children are the
        # kworkers) reaps nothing: what those spent after the first reading is lost.
        offspring = (children or {}).get(process[0], name)
        add(offspring, max(reaped - earlier[2] - sum(o + r for o, r in gone), 0.0))
    return spent


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median run, by events/s where runs have them (for queued events, those applied,
    not the requests answered), else by requests/s."""
    key = "events_per_second" if "events_per_second" in runs[0] else "rps"
    best = sorted(runs, key=lambda r: r[key])[len(runs) // 2]
    return {
        **best,
        "rps_runs": [round(r["rps"], 1) for r in runs],
        **({"events_runs": [r["events_per_second"] for r in runs]} if key != "rps" else {}),
        # The host's speed as each run began (bench.host), in the runs' order.
        **({"speed_runs": [r["speed"] for r in runs]} if "speed" in best else {}),
    }


def _session_cookie(email: str) -> str:
    from accounts.models import User

    client = Client()
    client.force_login(User.objects.get(email=email))
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _owner_email(reference: str) -> str:
    from journey.models import Journey

    return Journey.objects.select_related("owner").get(reference=reference).owner.email


def collectstatic() -> None:
    call_command("collectstatic", interactive=False, verbosity=0)


# --- steps ---------------------------------------------------------------------------------


def step_load(context: Context, *, scale: float, manifest_path: Path) -> dict[str, Any]:
    """A new database: migrate, the demo, then the data set by COPY."""
    name = connection.settings_dict["NAME"]
    connections.close_all()
    admin = {k: v for k, v in connection.get_connection_params().items() if k != "dbname"}
    admin.pop("cursor_factory", None)
    admin.pop("context", None)
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg.execute(f'CREATE DATABASE "{name}"')
    media = Path(settings.MEDIA_ROOT)
    shutil.rmtree(media, ignore_errors=True)
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    started = time.perf_counter()
    call_command("migrate", interactive=False, verbosity=0)
    migrated = time.perf_counter() - started
    with open("/dev/null", "w") as quiet:
        call_command("demo", stdout=quiet)
    manifest = load(scale=scale)
    manifest_write(manifest, manifest_path)
    total = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cursor.fetchone()[0]
    return {
        "scale": scale,
        "migrate_seconds": round(migrated, 1),
        "load_seconds": manifest.seconds,
        "total_seconds": round(total, 1),
        "database_size": size,
        "rows": manifest.counts,
        "customers": manifest.customers,
        "journeys": manifest.journeys,
        "events": manifest.events,
        "photos": manifest.photos,
        "checkpoints": manifest.checkpoints,
        "notifications": manifest.notifications,
    }


def step_queries(context: Context) -> dict[str, Any]:
    """SQL queries of the journey page: a typical journey and the largest one."""
    from django.db.models import Count

    from journey.models import Journey

    typical = context.manifest.typical[0]
    largest = (
        Journey.objects.annotate(n=Count("events")).order_by("-n").values_list("reference", "n")[0]
    )
    figures = {}
    for label, reference in (("typical", typical), ("largest", largest[0])):
        client = Client(HTTP_HOST="127.0.0.1")
        client.cookies[settings.SESSION_COOKIE_NAME] = _session_cookie(_owner_email(reference))
        url = f"/journeys/{reference}/"
        client.get("/")  # the session is loaded once before counting
        caches["default"].clear()  # the bench's own Redis database
        with CaptureQueriesContext(connection) as rendered:
            client.get(url)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        journey = Journey.objects.get(reference=reference)
        figures[label] = {
            "reference": reference,
            "status": response.status_code,
            "queries_rendered": len(rendered.captured_queries),
            "queries": len(queries.captured_queries),
            "events": journey.events.count(),
            "photos": journey.photos.count(),
            "legs": journey.legs.count(),
            "html_bytes": len(response.content),
        }
    return figures


def _page_runs(context: Context, kind: str, rounds: int) -> dict[str, Any]:
    reference = context.manifest.typical[0]
    cookie = f"{settings.SESSION_COOKIE_NAME}={_session_cookie(_owner_email(reference))}"
    headers = {"Cookie": cookie}
    with server(context, kind) as base:
        urls = {"floor": f"{base}/bench/floor/", "page": f"{base}/journeys/{reference}/"}
        for url in urls.values():  # both answer 200 to this customer, and are warm
            request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                assert response.status == 200, (url, response.status)
            wrk(url, seconds=3, headers=headers)
        runs: dict[str, list[dict[str, float]]] = {"floor": [], "page": []}
        for _ in range(rounds):  # interleaved, so drift affects both alike
            for name, url in urls.items():
                runs[name].append(wrk(url, seconds=context.seconds, headers=headers))
    floor, page = _median_run(runs["floor"]), _median_run(runs["page"])
    return {
        "server": kind,
        "workers": WORKERS,
        "floor": floor,
        "page": page,
        "ratio": round(page["rps"] / floor["rps"], 3),
    }


def step_page(context: Context) -> dict[str, Any]:
    """Requests/s of the journey page against the floor view, under both servers."""
    figures = {"reference": context.manifest.typical[0], "connections": 8}
    for kind in SERVERS:
        figures[kind] = _page_runs(context, kind, rounds=3)
    figures["default"] = DEFAULT_SERVER
    return figures


# What both ingest scripts share: a thread number, and requests of one event (to the
# journey's URL) or of a batch, each with an Idempotency-Key of its own. Each script
# adds its data, init(), and event(id, with_journey) -> reference, JSON body.
_LUA_REQUESTS = """
local batch = %(batch)d
local prefer = "%(prefer)s"
local counter = 0
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
request = function()
  counter = counter + 1
  local id = runid .. "-" .. tid .. "-" .. counter
  local headers = {["Content-Type"] = "application/json",
                   ["Authorization"] = "%(auth)s", ["Idempotency-Key"] = id}
  if prefer ~= "" then headers["Prefer"] = prefer end
  if batch == 0 then
    local ref, body = event(id, false)
    return wrk.format("POST", "/api/v1/journeys/" .. ref .. "/events/", headers, body)
  end
  local items = {}
  for i = 1, batch do
    local _, body = event(id .. "-" .. i, true)
    items[i] = body
  end
  return wrk.format("POST", "/api/v1/events/batch/", headers,
                    '{"events":[' .. table.concat(items, ",") .. ']}')
end
local function body(id, ref, code, with_journey)
  local text = '{"event_id":"' .. id .. '","code":"' .. code .. '","occurred_at":"%(now)s"'
  if with_journey then text = text .. ',"journey":"' .. ref .. '"' end
  return text .. '}'
end
"""

# Random factory codes to random cars.
INGEST_LUA = (
    _LUA_REQUESTS
    + """
local refs = {%(refs)s}
local codes = {%(codes)s}
init = function(args)
  runid = args[1]
  math.randomseed(tid * 7919 + os.time())
end
function event(id, with_journey)
  local ref = refs[math.random(#refs)]
  return ref, body(id, ref, codes[math.random(#codes)], with_journey)
end
"""
)

# Each thread sends its own cars' next stages, a round of every car's next code before
# the next round, so a car's events arrive in order and far apart. An exhausted queue
# sends its last event again under a new id: a duplicate claim of nothing, not applied,
# and counted as such (the step reports the share of events that moved a journey).
MOVING_LUA = (
    _LUA_REQUESTS
    + """
local queues = {%(queues)s}
init = function(args)
  runid = args[1]
  queue = queues[tid]
  pos = 0
end
function event(id, with_journey)
  if pos < #queue then pos = pos + 1 end
  local ref, code = queue[pos]:match("([^|]+)|([^|]+)")
  return ref, body(id, ref, code, with_journey)
end
"""
)


def _ingest_run(
    base: str,
    script: Path,
    run_id: str,
    seconds: int,
    per_request: int,
    partner: Any,
    *,
    queued: bool = False,
) -> dict[str, Any]:
    """One wrk run of an ingest script, with what the database kept of it. ``queued``:
    the events were sent with Prefer: respond-async; the run lasts until the worker has
    applied the last of them, and its events/s are those applied over that time."""
    from django.db.models import Count, Q

    from integrations.models import InboundEvent

    before, busy = cpu_seconds(), cpu_busy()
    started = time.monotonic()
    result = wrk(f"{base}/api/v1/", seconds=seconds, script=script, script_args=[run_id])
    sent, busy_sent = time.monotonic(), cpu_busy()
    received = InboundEvent.objects.filter(partner=partner, event_id__startswith=f"{run_id}-")

    def drain() -> float | None:
        if not queued:
            return None
        deadline = time.monotonic() + 600
        while received.filter(queued=True).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("The queued events were not applied in 10 minutes.")
            time.sleep(0.05)
        return time.monotonic()

    drained = drain()
    # wrk stops with requests still in the server: count once they have all committed.
    stored, deadline = -1, time.monotonic() + 10
    while (now := received.count()) != stored and time.monotonic() < deadline:
        stored = now
        time.sleep(0.5)
    if queued and received.filter(queued=True).exists():
        drained = drain()  # requests that committed after the queue first ran empty
    after = cpu_seconds()  # with the requests that were still running
    # All the CPUs' busy time, the kernel's included: over the whole reading, per event;
    # over wrk's run, as cores (the requests still running at its end are a few per cent).
    load = (busy_sent - busy) / (sent - started) if busy is not None else None
    busy = cpu_busy() - busy if busy is not None else None
    # Events that move a journey cost about twice those that do not (the ETA, the
    # messages): how many did says how far earlier runs had pushed the data.
    counts = received.aggregate(
        stored=Count("pk"), applied=Count("pk", filter=Q(journey_event__applied=True))
    )
    stored, applied = counts["stored"], counts["applied"]
    return {
        "steady_events_per_second": _steady_rate(
            list(received.values_list("received_at", flat=True))
        ),
        **result,
        "batch_size": per_request,
        "events_per_second": round(result["rps"] * per_request, 1),
        "events_stored": stored,
        "events_applied": applied,
        "events_sent": result["requests"] * per_request,
        "cpu_ms_per_event": cpu_split(before, after, stored, children={os.getpid(): "wrk"}),
        **(
            {
                "cpu_ms_per_event_all": round(busy * 1000 / max(stored, 1), 2),
                "cores_busy": round(load, 2),
            }
            if busy is not None
            else {}
        ),
        **(
            {
                # Accepted by wrk's count; applied from the first request to the last
                # event off the queue; how long the queue took to empty after wrk.
                "accepted_per_second": round(result["rps"] * per_request, 1),
                "events_per_second": round(stored / (drained - started), 1),
                "drained_seconds": round(drained - sent, 2),
            }
            if drained is not None
            else {}
        ),
    }


def _steady_rate(stamps: list[Any], trim: float = 0.1) -> float | None:
    """Events/s from the server's own clock (when each event was received), over the run
    without its first and last tenth. wrk counts the requests completed within its
    duration, so the ones still running at the end count for nothing: on a run of a few
    seconds with 8 connections of half-second requests, a few per cent of the work."""
    if len(stamps) < 2:
        return None
    first, last = min(stamps), max(stamps)
    span = (last - first).total_seconds()
    if span <= 0:
        return None
    start, end = first + (last - first) * trim, last - (last - first) * trim
    inside = sum(start <= stamp < end for stamp in stamps)
    return round(inside / (span * (1 - 2 * trim)), 1)


def _moving_queues(refs: list[str], threads: int = 2) -> list[list[str]]:
    """Per wrk thread, "reference|code" of its cars' next factory stages, by rounds."""
    from django.db.models import Max, Q

    from journey.models import Journey

    factory = {p: code for p, (slug, code) in NEXT_CODE.items() if slug == "iberia-motor-works"}
    # The stage each car has reached (none yet: it starts from the first code).
    reached = dict(
        Journey.objects.filter(reference__in=refs)
        .annotate(at=Max("milestones__position", filter=~Q(milestones__state="upcoming")))
        .values_list("reference", "at")
    )
    plans = [
        (ref, [factory[p] for p in range(at or 1, max(factory) + 1) if p in factory])
        for ref, at in sorted(reached.items())
    ]
    queues: list[list[str]] = [[] for _ in range(threads)]
    for round_ in range(max((len(codes) for _ref, codes in plans), default=0)):
        for n, (ref, codes) in enumerate(plans):
            if round_ < len(codes):
                queues[n % threads].append(f"{ref}|{codes[round_]}")
    return queues


# The streams of random events: name, events per request (0: the single endpoint), and
# the Prefer header (respond-async: accepted with 202 and applied by the queue's worker).
STREAMS = [("single", 0, ""), ("async", 0, "respond-async"), ("batch", 100, "")]


def step_ingest(context: Context) -> dict[str, Any]:
    """Partner events through the API, single and batched, with idempotency keys."""
    import redis

    from integrations.models import Partner
    from integrations.services import partner_key_create
    from journey.models import Journey
    from notifications.models import Notification

    partner = Partner.objects.get(slug="iberia-motor-works")
    _key, plain = partner_key_create(partner=partner, name="bench")
    reserved = set(context.manifest.ready + context.manifest.typical + context.manifest.plain)
    refs = [
        r
        for r in Journey.objects.filter(
            template__key="car-built-to-order", reference__startswith="MP-B"
        )
        .order_by("?")
        .values_list("reference", flat=True)[:3000]
        if r not in reserved
    ][:2000]
    now = (timezone.now() - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    figures: dict[str, Any] = {"journeys": len(refs), "connections": 8}
    started = timezone.now()
    # The applier of events sent with Prefer: respond-async, on a queue of its own (as
    # the customers' messages these events queue are not, here, delivered: see below).
    kind = os.environ.get("BENCH_INGEST_SERVER", DEFAULT_SERVER)  # to compare servers
    with server(context, kind) as base, worker(context, 1, context.env["CELERY_INBOUND_QUEUE"]):
        for name, batch, prefer in STREAMS:
            script = context.artifacts / f"ingest-{name}.lua"
            script.write_text(
                INGEST_LUA
                % {
                    "refs": ",".join(f'"{r}"' for r in refs),
                    "codes": ",".join(f'"{c}"' for c in FACTORY_CODES),
                    "batch": batch,
                    "prefer": prefer,
                    "now": now,
                    "auth": f"Api-Key {plain}",
                }
            )
            per_request = max(batch, 1)
            # Three runs, the median kept, as for the page: on two shared cores one run
            # alone moves by a fifth from one minute to the next. Each with the host's
            # speed as it began: the median run's is kept with it.
            runs = [
                {
                    "speed": python_speed(),
                    **_ingest_run(
                        base,
                        script,
                        f"{name}-{int(time.time())}-{n}",
                        context.seconds,
                        per_request,
                        partner,
                        queued=bool(prefer),
                    ),
                }
                for n in range(3)
            ]
            figures[name] = _median_run(runs)
        # The same endpoints with every event its car's next stage at the factory, as a
        # factory posting its cars' progress would: each moves its journey (the ETA, the
        # customer's messages), which the random events above mostly do not once earlier
        # runs have pushed their 2,000 cars forward. Other cars, none of those kept for
        # time to know (their owners must not have had a message just now); one run
        # each, as long as the cars' remaining stages last.
        kept = Journey.objects.filter(reference__in=context.manifest.ready).values("owner_id")
        pool = list(
            Journey.objects.filter(template__key="car-built-to-order", reference__startswith="MP-B")
            .exclude(reference__in=reserved | set(refs))
            .exclude(owner_id__in=kept)
            .order_by("reference")
            .values_list("reference", flat=True)
        )
        # A single event stream needs about a tenth of a batch stream's events (a sixth
        # of the cars lasts it five seconds at 400 events/s). The queued stream runs
        # twice as long, so has twice the cars: its figure counts until the last event
        # is applied, some tenths of a second after the last request (the applier's
        # gathering and its last unit), a twentieth of ten seconds but a tenth of five.
        share = max(len(pool) // 6, 1)
        for name, batch, prefer, cars, longest in (
            ("single_moving", 0, "", pool[:share], context.seconds // 3),
            ("async_moving", 0, "respond-async", pool[share : 3 * share], context.seconds * 2 // 3),
            ("batch_moving", 100, "", pool[3 * share :], context.seconds // 3),
        ):
            queues = _moving_queues(cars)
            queued = sum(map(len, queues))
            # As long as the stages last: at the random stream's rate (moving events are
            # no quicker), with a fifth to spare; at least two seconds.
            random_rate = figures[name.removesuffix("_moving")]["events_per_second"]
            seconds = max(min(longest, int(queued * 0.8 / random_rate)), 2)
            script = context.artifacts / f"ingest-{name}.lua"
            script.write_text(
                MOVING_LUA
                % {
                    "queues": ",".join(
                        "{" + ",".join(f'"{e}"' for e in queue) + "}" for queue in queues
                    ),
                    "batch": batch,
                    "prefer": prefer,
                    "now": now,
                    "auth": f"Api-Key {plain}",
                }
            )
            speed = python_speed()
            run = _ingest_run(
                base,
                script,
                f"{name}-{int(time.time())}",
                seconds,
                max(batch, 1),
                partner,
                queued=bool(prefer),
            )
            figures[name] = {
                **run,
                "cars": len(cars),
                "queued": queued,
                "seconds": seconds,
                "speed": speed,
            }
    # The deliveries these events queued are not the subject here: their tasks are
    # dropped, and their rows marked sent, so that the sweep measured later meets only
    # the messages it is given.
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    Notification.objects.filter(state="pending", created_at__gte=started).update(
        state="sent", sent_at=timezone.now()
    )
    return figures


def _know_setup(context: Context, wanted: int) -> tuple[dict[str, str], list[Any]]:
    """The partners' keys, and up to ``wanted`` cars to move for time to know, one per
    customer: cars still on their way whose owners read email, keep no quiet hours and
    were told nothing within the digest window (they would get a digest, later by
    design). The ones the data set made ready first, then any others like them. Empties
    the bench's Redis database and the mail log."""
    from integrations.models import Partner
    from integrations.services import partner_key_create
    from journey.models import Journey
    from notifications.models import Notification

    keys = {
        slug: partner_key_create(partner=Partner.objects.get(slug=slug), name="bench-know")[1]
        for slug in {slug for slug, _code in NEXT_CODE.values()}
    }
    recent = Notification.objects.filter(
        created_at__gte=timezone.now() - settings.NOTIFICATION_DIGEST_WINDOW - timedelta(minutes=1)
    ).values("recipient_id")
    shaped = context.manifest.typical + context.manifest.plain
    candidates = (
        Journey.objects.filter(
            template__key="car-built-to-order",
            reference__startswith="MP-B",
            health__in=["on_track", "at_risk", "delayed"],
            owner__profile__quiet_hours_start__isnull=True,
            owner__profile__channel_email=True,
            milestones__state="current",
            milestones__position__lt=max(NEXT_CODE) + 1,
        )
        .exclude(owner_id__in=recent)
        .exclude(reference__in=shaped)
        .select_related("owner")
    )
    ready = set(context.manifest.ready)
    journeys, owners = [], set()
    for journey in sorted(candidates, key=lambda j: (j.reference not in ready, j.reference)):
        if journey.owner_id not in owners:
            owners.add(journey.owner_id)
            journeys.append(journey)
        if len(journeys) == wanted:
            break
    # Tasks another step queued with no worker running (the jobs' deliveries) would be
    # worked off first and delay these: the bench's own Redis database starts empty.
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    Path(context.env["BENCH_MAIL_LOG"]).unlink(missing_ok=True)
    return keys, journeys


def _next_stage(journey: Any) -> tuple[str, str] | None:
    """The partner and code of the car's next stage; None at its last (a reused data set)."""
    current = journey.milestones.filter(state="current").values_list("position", flat=True)
    if not current or current[0] not in NEXT_CODE:
        return None
    return NEXT_CODE[current[0]]


def _know_send(
    conn: http.client.HTTPConnection,
    keys: dict[str, str],
    journey: Any,
    stage: tuple[str, str],
    event_id: str,
    *,
    queued: bool,
) -> tuple[int, float, float]:
    """Post the car's next stage; its answer's status, when it was sent and how long the
    answer took."""
    slug, code = stage
    body = json.dumps(
        {"event_id": event_id, "code": code, "occurred_at": timezone.now().isoformat()}
    )
    headers = {"Authorization": f"Api-Key {keys[slug]}", "Content-Type": "application/json"}
    if queued:
        headers["Prefer"] = "respond-async"
    started = time.time()
    conn.request(
        "POST", f"/api/v1/journeys/{journey.reference}/events/", body=body, headers=headers
    )
    response = conn.getresponse()
    response.read()
    return response.status, started, time.time() - started


def _handed(context: Context, emails: set[str], timeout: float = 60) -> dict[str, float]:
    """When the worker handed each customer's first email to the mail backend (its log),
    waiting up to ``timeout`` seconds for all of ``emails``."""
    mail_log = Path(context.env["BENCH_MAIL_LOG"])
    deadline = time.time() + timeout
    handed: dict[str, float] = {}
    while time.time() < deadline:
        if mail_log.exists():
            for line in mail_log.read_text().splitlines():
                stamp, to = line.split(" ", 1)
                handed.setdefault(to, float(stamp))
        if emails <= handed.keys():
            break
        time.sleep(0.5)
    return handed


def _know_worker(context: Context):
    # One worker for both queues (the applier's and the messages'), as production runs
    # by default (CELERY_INBOUND_QUEUE unset: the same queue).
    return worker(
        context, queue=f"{context.env['CELERY_QUEUE']},{context.env['CELERY_INBOUND_QUEUE']}"
    )


def step_know(
    context: Context, count: int = 1000, pace: float = 0.05, queued: int = 300
) -> dict[str, Any]:
    """From a partner event accepted to the customer's email handed to the mail backend:
    ``count`` events answered as applied, then ``queued`` more (other customers) sent with
    Prefer: respond-async, which the worker applies before it sends their emails."""
    keys, journeys = _know_setup(context, count + queued)
    # Per customer's email: when its event was sent, and how long the answer took.
    sent: dict[str, tuple[float, float]] = {}
    sent_queued: dict[str, tuple[float, float]] = {}
    statuses: dict[int, int] = {}
    with server(context, workers=2) as base, _know_worker(context):
        host, port = base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        for n, journey in enumerate(journeys):
            began = time.time()
            stage = _next_stage(journey)
            if stage is None:
                continue
            code, started, answered = _know_send(
                conn, keys, journey, stage, f"know-{int(began)}-{n}", queued=n >= count
            )
            statuses[code] = statuses.get(code, 0) + 1
            if code == 201:
                sent[journey.owner.email] = (started, answered)
            elif code == 202 and n >= count:
                sent_queued[journey.owner.email] = (started, answered)
            time.sleep(max(0.0, pace - (time.time() - began)))
        conn.close()
        handed = _handed(context, set(sent | sent_queued))
    first = min((t for t, _answer in (sent | sent_queued).values()), default=0.0)
    return {
        "events": sum(statuses.values()),
        "statuses": statuses,
        **_latencies(sent, handed, first),
        "queued": _latencies(sent_queued, handed, first),
        "pace_ms": pace * 1000,
        "worker_concurrency": 2,
        "server_workers": 2,
    }


def step_burst(context: Context, count: int = 500, connections: int = 4) -> dict[str, Any]:
    """Time to know when the events come as fast as the server takes them: ``count``
    events queued (as the partner API's guide asks of a partner sending volume one event
    at a time), then ``count`` answered, each to another customer, from ``connections``
    connections at once and no pause, with time to know's server and worker. Not in
    ``make bench``'s run: it needs customers the know step has not just told (``--only
    burst --reuse`` on freshly loaded data)."""
    return {
        "queued": _burst(context, count, connections, queued=True),
        "answered": _burst(context, count, connections, queued=False),
    }


def _burst(context: Context, count: int, connections: int, *, queued: bool) -> dict[str, Any]:
    import threading

    keys, journeys = _know_setup(context, count)
    sent: dict[str, tuple[float, float]] = {}
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stamp = int(time.time())
    with server(context, workers=2) as base, _know_worker(context):
        host, port = base.removeprefix("http://").split(":")

        def send(part: list[tuple[int, Any, tuple[str, str]]]) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            for n, journey, stage in part:
                code, started, answered = _know_send(
                    conn, keys, journey, stage, f"burst-{stamp}-{n}", queued=queued
                )
                with lock:
                    statuses[code] = statuses.get(code, 0) + 1
                    if code == (202 if queued else 201):
                        sent[journey.owner.email] = (started, answered)
            conn.close()

        # The stages read here, before the burst: the senders' threads only post (no
        # database connection of their own, no reads beside the server's).
        stages = [(journey, _next_stage(journey)) for journey in journeys]
        items = [(n, journey, stage) for n, (journey, stage) in enumerate(stages) if stage]
        threads = [
            threading.Thread(target=send, args=(items[i::connections],)) for i in range(connections)
        ]
        began = time.time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ended = time.time()
        handed = _handed(context, set(sent))
    times = [handed[email] for email in sent if email in handed]
    return {
        "events": sum(statuses.values()),
        "statuses": statuses,
        "connections": connections,
        "sent_per_second": round(len(sent) / (ended - began), 1),
        # The emails handed over from the first event sent to the last email.
        "handed_per_second": round(len(times) / (max(times) - began), 1) if times else None,
        **_latencies(sent, handed, began),
    }


def _latencies(
    sent: dict[str, tuple[float, float]], handed: dict[str, float], first: float, slowest: int = 10
) -> dict[str, Any]:
    """The quantiles of the times from sending to the email handed over; and the slowest
    events, each with its answer's time and when it was sent (seconds after ``first``,
    the step's first event), so that a slow tail can be told apart: slow answers, or a
    stretch of slow work after them."""
    events = sorted(
        (
            ((handed[e] - t) * 1000, answer * 1000, t - first)
            for e, (t, answer) in sent.items()
            if e in handed
        ),
        reverse=True,
    )
    latencies = sorted(ms for ms, _answer, _at in events)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0] * 99
    return {
        "emails": len(latencies),
        "missing": len(sent) - len(latencies),
        "p50_ms": round(quantiles[49], 1),
        "p95_ms": round(quantiles[94], 1),
        "p99_ms": round(quantiles[98], 1),
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "slowest": [
            {"ms": round(ms), "answer_ms": round(answer), "sent_at_s": round(at, 1)}
            for ms, answer, at in events[:slowest]
        ],
    }


class _Capture:
    """Every statement a job runs, by shape (numbers and strings blanked): how often, how
    long, and the first one of each shape with its parameters, to EXPLAIN afterwards.
    (Django's own query log keeps only the last 9,000.)"""

    def __init__(self) -> None:
        self.shapes: dict[str, dict[str, Any]] = {}
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.count += 1
            shape = re.sub(r"'[^']*'|\b\d+\b", "?", sql)
            entry = self.shapes.setdefault(
                shape, {"sql": sql, "params": params, "count": 0, "time": 0.0}
            )
            entry["count"] += 1
            entry["time"] += time.perf_counter() - started


def _plans(capture: _Capture, limit: int = 6) -> list[dict[str, Any]]:
    """EXPLAIN ANALYZE the SELECTs that took the job the longest, one of each shape."""
    selects = [e for e in capture.shapes.values() if e["sql"].lstrip().upper().startswith("SELECT")]
    chosen = sorted(selects, key=lambda e: e["time"], reverse=True)[:limit]
    plans = []
    with connection.cursor() as cursor:
        for entry in chosen:
            cursor.execute("EXPLAIN (ANALYZE, TIMING OFF) " + entry["sql"], entry["params"])
            plan = "\n".join(row[0] for row in cursor.fetchall())
            plans.append(
                {
                    "sql": cursor.mogrify(entry["sql"], entry["params"])[:1500]
                    if hasattr(cursor, "mogrify")
                    else entry["sql"][:1500],
                    "runs": entry["count"],
                    "seconds": round(entry["time"], 3),
                    "plan": plan,
                    "seq_scans": sorted(set(re.findall(r"Seq Scan on (\w+)", plan))),
                }
            )
    return plans


def _timed(function, *args, **kwargs) -> tuple[Any, float, _Capture]:
    capture = _Capture()
    with connection.execute_wrapper(capture):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        seconds = time.perf_counter() - started
    return result, seconds, capture


def step_jobs(context: Context) -> dict[str, Any]:
    """The reminder job, the sweep delivering held messages as digests, and the ETA's
    stall check and nightly recompute, at full size."""
    from notifications.models import Notification
    from notifications.reminders import ReminderCounts, send_reminders
    from notifications.services import outbox_due_ids, outbox_sweep

    figures: dict[str, Any] = {}
    # The same start on every run: no reminder sent yet, no held message left over.
    reminder_kinds = list(vars(ReminderCounts()))
    Notification.objects.filter(kind__in=reminder_kinds).delete()
    Notification.objects.filter(dedup_key__startswith="bench-held:").delete()
    counts, seconds, queries = _timed(send_reminders)
    again, again_seconds, again_queries = _timed(send_reminders)
    figures["reminders"] = {
        "seconds": round(seconds, 2),
        "enqueued": vars(counts),
        "queries": queries.count,
        "next_run_seconds": round(again_seconds, 2),
        "next_run_enqueued": vars(again),
        "next_run_queries": again_queries.count,
        "plans": _plans(queries),
    }

    # The reminders' messages are the workers' to send (none runs here): out of the way.
    Notification.objects.filter(kind__in=reminder_kinds, state="pending").update(
        state="sent", sent_at=timezone.now()
    )
    # Held messages now due: three each for 1,000 customers (quiet hours ended, a digest
    # window closed), which the sweep sends as one digest per customer.
    from journey.models import Journey

    now = timezone.now()
    owners = list(
        Journey.objects.filter(reference__startswith="MP-B")
        .values_list("owner_id", "pk")
        .order_by("owner_id")
        .distinct("owner_id")[:1000]
    )
    held = [
        Notification(
            recipient_id=owner,
            journey_id=journey,
            kind="milestone_reached",
            channel="email",
            context={"stage": "Paint"},
            dedup_key=f"bench-held:{owner}:{k}:{now.timestamp()}",
            scheduled_at=now - timedelta(minutes=1),
            occurred_at=now - timedelta(minutes=10),
        )
        for owner, journey in owners
        for k in range(3)
    ]
    Notification.objects.bulk_create(held, batch_size=1000)
    Notification.objects.filter(dedup_key__startswith="bench-held:").update(
        created_at=now - timedelta(minutes=10)
    )
    due, due_seconds, due_queries = _timed(outbox_due_ids)
    rounds = []
    total = 0.0
    sent = 0
    capture = _Capture()
    while True:
        with connection.execute_wrapper(capture):
            started = time.perf_counter()
            delivered = outbox_sweep()
            seconds = time.perf_counter() - started
        if not delivered:
            break
        rounds.append({"delivered": delivered, "seconds": round(seconds, 2)})
        total += seconds
        sent += delivered
    left = Notification.objects.filter(dedup_key__startswith="bench-held:", state="pending").count()
    figures["sweep"] = {
        "held_rows": len(held),
        "due_query_seconds": round(due_seconds, 3),
        "due_found": len(due),
        "deliveries": sent,
        "rounds": rounds,
        "seconds": round(total, 2),
        "left_pending": left,
        "notifications_in_table": Notification.objects.count(),
        "slowest_round_seconds": max((r["seconds"] for r in rounds), default=0),
        "queries": capture.count,
        "plans": _plans(due_queries, limit=1) + _plans(capture, limit=5),
    }
    figures.update(_eta_jobs())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples::bigint FROM pg_class WHERE relkind = 'r' "
            "AND relnamespace = 'public'::regnamespace"
        )
        figures["table_rows"] = dict(cursor.fetchall())
    return figures


def _eta_jobs() -> dict[str, Any]:
    """The hourly stall check, the nightly relearn and recompute, and the stall check an
    hour later, each over every open journey."""
    from journey.eta import eta_check_stalled, eta_recompute_all, open_journeys
    from journey.models import EtaEstimate
    from notifications.models import Notification

    figures: dict[str, Any] = {}
    now = timezone.now()
    runs = [
        ("stall_check", eta_check_stalled, {"now": now}),
        ("nightly", eta_recompute_all, {}),
        ("stall_check_next_hour", eta_check_stalled, {"now": now + timedelta(hours=1)}),
    ]
    first_notification = Notification.objects.order_by("-pk").values_list("pk", flat=True).first()
    for name, job, kwargs in runs:
        journeys = open_journeys().count()
        estimates = EtaEstimate.objects.count()
        result, seconds, queries = _timed(job, **kwargs)
        figures[name] = {
            "seconds": round(seconds, 2),
            "open_journeys": journeys,
            "queries": queries.count,
            "flagged": len(result) if isinstance(result, list) else None,
            "history_rows": EtaEstimate.objects.count() - estimates,
            "plans": _plans(queries, limit=3),
        }
    # Their delay messages are the workers' to send (none runs here): out of the way of a
    # later run's sweep.
    Notification.objects.filter(pk__gt=first_notification or 0, state="pending").update(
        state="sent", sent_at=timezone.now()
    )
    return figures


def step_weight(context: Context) -> dict[str, Any]:
    """What the browser fetches for a journey page with no photos: sizes and hosts."""
    from urllib.parse import urlsplit

    from playwright.sync_api import sync_playwright

    reference = context.manifest.plain[0]
    cookie = _session_cookie(_owner_email(reference))
    responses: list[dict[str, Any]] = []
    with server(context) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        page_context = browser.new_context()
        page_context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": cookie,
                    "url": base,
                    "httpOnly": True,
                }
            ]
        )
        page = page_context.new_page()
        requests = []
        page.on("request", lambda request: requests.append(request))
        page.goto(f"{base}/journeys/{reference}/", wait_until="networkidle")
        for request in requests:
            response = request.response()
            if response is None:
                responses.append({"url": request.url, "status": None})
                continue
            body = response.body() if response.status < 300 else b""
            sizes = request.sizes()
            encoding = response.headers.get("content-encoding", "")
            compressed = sizes["responseBodySize"] if encoding else len(gzip.compress(body, 6))
            responses.append(
                {
                    "url": request.url.removeprefix(base),
                    "host": urlsplit(request.url).netloc,
                    "status": response.status,
                    "type": response.headers.get("content-type", "").split(";")[0],
                    "bytes": len(body),
                    "compressed_bytes": compressed,
                    "encoding": encoding or "gzip -6 (estimated, as a proxy would send it)",
                }
            )
        page.screenshot(path=str(context.artifacts / "weight.png"), full_page=True)
        browser.close()
    own_host = urlsplit(base).netloc
    return {
        "reference": reference,
        "requests": len(responses),
        "other_hosts": sorted({r["host"] for r in responses if r.get("host") != own_host}),
        "total_bytes": sum(r.get("bytes", 0) for r in responses),
        "total_compressed_bytes": sum(r.get("compressed_bytes", 0) for r in responses),
        "responses": responses,
    }
