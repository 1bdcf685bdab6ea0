"""Write the benchmark's figures into docs/performance.md, between two markers.

What is outside the markers (the targets' reasons, the findings, what to do next) is
written by hand and kept; what is inside is replaced by every run, from results.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin (written by bench/report.py from make bench; do not edit) -->"
END = "<!-- bench:end -->"

TARGETS = {
    "load": ("Data set loaded", "under 600 s"),
    "queries": ("Journey page SQL queries", "the same for a typical and the largest journey"),
    "page": ("Journey page requests/s vs the floor", "at least 40%"),
    "ingest_single": ("Single events through the API", "at least 300 events/s"),
    "ingest_async": (
        "Single events with `Prefer: respond-async`, counted when applied",
        "at least 300 events/s",
    ),
    "ingest_batch": ("Events through the batch endpoint", "at least 2,000 events/s"),
    "know": ("Time to know, p95", "under 1,000 ms"),
    "jobs": (
        "Reminder job; sweep with digests; the ETA's stall check and nightly recompute",
        "each under 30 s, on indexes",
    ),
    "weight": ("Journey page weight without photos", "under 80 KB compressed, one host"),
}


# The ETA's periodic jobs the bench times (bench.measure._eta_jobs), in the order it runs them.
ETA_JOBS = [
    ("stall_check", "Stall check (hourly)"),
    ("nightly", "Nightly relearn and recompute"),
    ("stall_check_next_hour", "Stall check, an hour later"),
]

LARGE = 50_000  # rows: a smaller table is read whole when most of it is wanted anyway


STREAMS = {
    "single": "single, random",
    "async": "single queued, random",
    "batch": "batch, random",
    "single_moving": "single, next stages",
    "async_moving": "single queued, next stages",
    "batch_moving": "batch, next stages",
}


def _moved(run: dict[str, Any]) -> str:
    """The share of the stored events that moved their journey."""
    if "events_applied" not in run:
        return ""
    return f"{run['events_applied'] / max(run['events_stored'], 1):.0%}"


def _queued(ingest: dict[str, Any]) -> str:
    return ", ".join(
        f"{STREAMS[name]}: {r['queued']:,} events for {r['cars']:,} cars"
        + (f", {r['seconds']} s" if "seconds" in r else "")
        for name in ("single_moving", "async_moving", "batch_moving")
        if (r := ingest.get(name))
    )


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def _summary(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    if load := results.get("load"):
        rows.append(
            (
                *TARGETS["load"],
                f"{load['total_seconds']:.0f} s (COPY {load['load_seconds']:.0f} s)",
                _verdict(load["total_seconds"] < 600 and load["scale"] >= 1),
            )
        )
    if q := results.get("queries"):
        same = (
            q["typical"]["queries"] == q["largest"]["queries"]
            and q["typical"]["queries_rendered"] == q["largest"]["queries_rendered"]
        )
        rows.append(
            (
                *TARGETS["queries"],
                f"{q['typical']['queries_rendered']} rendered, {q['typical']['queries']} "
                f"cached ({q['typical']['events']} events); "
                f"{q['largest']['queries_rendered']} and {q['largest']['queries']} "
                f"({q['largest']['events']} events)",
                _verdict(same),
            )
        )
    if page := results.get("page"):
        default = page[page["default"]]
        rows.append(
            (
                *TARGETS["page"],
                f"{default['ratio']:.0%} ({default['page']['rps']:.0f} of "
                f"{default['floor']['rps']:.0f} req/s, {page['default']})",
                _verdict(default["ratio"] >= 0.4),
            )
        )
    if ingest := results.get("ingest"):
        # Judged by the lower of the two streams: random events (mostly not moving their
        # journeys once earlier runs pushed them on) and each car's next stage.
        for kind, target, what in (
            ("single", 300, ""),
            ("async", 300, " applied"),
            ("batch", 2000, f" (batches of {ingest['batch']['batch_size']})"),
        ):
            if kind not in ingest:
                continue
            streams = [ingest[kind], ingest.get(f"{kind}_moving")]
            measured = [r for r in streams if r]
            lowest = min(r["events_per_second"] for r in measured)
            shown = " and ".join(
                f"{r['events_per_second']:.0f} ({_moved(r)} moved a journey)" for r in measured
            )
            # A stream of next stages that outlasted its queue sent duplicates that move
            # nothing and cost a fifth as much: its figure is not one of moving events.
            ran_out = any(
                "queued" in r and max(r["events_sent"], r["events_stored"]) > r["queued"]
                for r in measured
            )
            note = "; the next stages ran out during the run: not moving events" if ran_out else ""
            rows.append(
                (
                    *TARGETS[f"ingest_{kind}"],
                    f"{shown} events/s{what}{note}",
                    _verdict(
                        lowest >= target and not ran_out and not any(r["non_2xx"] for r in measured)
                    ),
                )
            )
    if know := results.get("know"):
        queued = know.get("queued")
        rows.append(
            (
                *TARGETS["know"],
                f"p50 {know['p50_ms']:.0f} ms, p95 {know['p95_ms']:.0f} ms "
                f"({know['emails']} emails, {know['missing']} missing)"
                + (
                    f"; queued: p50 {queued['p50_ms']:.0f} ms, p95 {queued['p95_ms']:.0f} ms "
                    f"({queued['emails']} emails, {queued['missing']} missing)"
                    if queued
                    else ""
                ),
                _verdict(
                    all(
                        k["p95_ms"] < 1000 and not k["missing"] and k["emails"]
                        for k in filter(None, [know, queued])
                    )
                ),
            )
        )
    if jobs := results.get("jobs"):
        reminders, sweep = jobs["reminders"], jobs["sweep"]
        large = _large_scans(jobs)
        eta_jobs = [jobs[name] for name, _label in ETA_JOBS if name in jobs]
        rows.append(
            (
                *TARGETS["jobs"],
                f"reminders {reminders['seconds']:.1f} s (next run "
                f"{reminders['next_run_seconds']:.1f} s); sweep runs at most "
                f"{sweep['slowest_round_seconds']:.1f} s; "
                + (
                    f"ETA jobs at most {max(job['seconds'] for job in eta_jobs):.1f} s; "
                    if eta_jobs
                    else ""
                )
                + f"sequential scans of large tables: {', '.join(large) or 'none'}",
                _verdict(
                    reminders["seconds"] < 30
                    and sweep["slowest_round_seconds"] < 30
                    and all(job["seconds"] < 30 for job in eta_jobs)
                    and not large
                ),
            )
        )
    if weight := results.get("weight"):
        rows.append(
            (
                *TARGETS["weight"],
                f"{_kb(weight['total_compressed_bytes'])} in {weight['requests']} requests; "
                f"other hosts: {', '.join(weight['other_hosts']) or 'none'}",
                _verdict(
                    weight["total_compressed_bytes"] < 80 * 1024 and not weight["other_hosts"]
                ),
            )
        )
    return rows


def _large_scans(jobs: dict[str, Any]) -> list[str]:
    """Tables of LARGE rows or more that a job's plans read whole."""
    sizes = jobs.get("table_rows", {})
    return sorted(
        {
            table
            for job in ("reminders", "sweep", *(name for name, _label in ETA_JOBS))
            for plan in jobs.get(job, {}).get("plans", [])
            for table in plan.get("seq_scans", [])
            if sizes.get(table, 0) >= LARGE
        }
    )


def _clip(text: str, width: int = 240) -> str:
    """Long lines (a list of a thousand ids) cut, so the plans stay readable."""
    return "\n".join(
        line if len(line) <= width else line[:width] + " …" for line in text.splitlines()
    )


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _how(figures: dict[str, Any]) -> str:
    speed = (
        f"; `sum(range(10**6))` in {figures['speed'][0]} ms as it began, "
        f"{figures['speed'][1]} as it ended"
        if "speed" in figures
        else ""
    )
    return (
        f"`{figures['command']}` — {figures['when']}, {figures['took_seconds']:.0f} s in all"
        f"{speed}."
    )


def _python_build(machine: dict[str, str]) -> str:
    built = machine.get("python_build")
    if built is None:  # a run from before the build was recorded
        return "build not recorded"
    if built == "none":
        return "built without PGO or LTO, unlike the production image's"
    return f"built with {built}" + (", as the production image's" if built == "PGO and LTO" else "")


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        BEGIN,
        "",
        f"Machine: {m['cpus']} x {m['cpu']}, {m['memory']}, {m['os']}, Python {m['python']} "
        f"({_python_build(m)}), "
        f"PostgreSQL {m['postgresql']}. Last run: {m['date']}, scale {results.get('scale')}.",
        "",
        f"This host runs `sum(range(10**6))` in {m.get('speed', '?')} ms (the best of five; "
        "less is faster): the figures of two runs compare only at like speeds. The same "
        "host's speed moves within a run (a neighbour's load), so each step below says it "
        "as the step began and ended, and each ingest stream's CPU line as its runs began.",
        "",
        "### Summary",
        "",
        *_table(
            ["what", "target", "measured", ""],
            [list(r) for r in _summary(results)],
        ),
    ]
    if load := results.get("load"):
        lines += [
            "",
            "### 1. The data set",
            "",
            _how(load),
            "",
            f"Migrations {load['migrate_seconds']:.0f} s, the rows by COPY "
            f"{load['load_seconds']:.0f} s; the database is {load['database_size']}.",
            "",
            *_table(["table", "rows"], [[t, f"{n:,}"] for t, n in sorted(load["rows"].items())]),
        ]
    if q := results.get("queries"):
        lines += ["", "### 2a. SQL queries of the journey page", "", _how(q), ""]
        lines += _table(
            ["journey", "events", "photos", "legs", "queries rendered", "cached", "HTML"],
            [
                [
                    f"{label} ({v['reference']})",
                    v["events"],
                    v["photos"],
                    v["legs"],
                    v["queries_rendered"],
                    v["queries"],
                    _kb(v["html_bytes"]),
                ]
                for label, v in (("typical", q["typical"]), ("largest", q["largest"]))
            ],
        )
    if page := results.get("page"):
        lines += [
            "",
            "### 2b and 7. The journey page against the floor, under gunicorn and granian",
            "",
            _how(page),
            "",
            f"Journey {page['reference']}; wrk, 2 threads, {page['connections']} connections, "
            "three interleaved runs of each URL, the median shown (all three in brackets).",
            "",
        ]
        rows = []
        for kind in ("gunicorn", "granian"):
            if kind not in page:
                continue
            s = page[kind]
            for name in ("floor", "page"):
                r = s[name]
                rows.append(
                    [
                        f"{kind} x{s['workers']}",
                        name,
                        f"{r['rps']:.0f} ({', '.join(f'{x:.0f}' for x in r['rps_runs'])})",
                        r["p50_ms"],
                        r["p99_ms"],
                        r["non_2xx"] + r["errors"],
                        f"{s['ratio']:.0%}" if name == "page" else "",
                    ]
                )
        lines += _table(
            ["server", "URL", "req/s", "p50 ms", "p99 ms", "errors", "page/floor"], rows
        )
    if ingest := results.get("ingest"):
        lines += ["", "### 3. Partner ingest", "", _how(ingest), ""]
        rows = []
        for name in STREAMS:
            if not (r := ingest.get(name)):
                continue
            runs = r.get("events_runs") or [x * r["batch_size"] for x in r.get("rps_runs", [])]
            rows.append(
                [
                    STREAMS[name],
                    r["batch_size"],
                    f"{r['rps']:.0f}",
                    f"{r['events_per_second']:.0f}"
                    + (f" ({', '.join(f'{x:.0f}' for x in runs)})" if runs else ""),
                    r["p50_ms"],
                    r["p99_ms"],
                    r["non_2xx"] + r["errors"],
                    f"{r['events_stored']:,} of {r['events_sent']:,}",
                    _moved(r),
                    f"{r['steady_events_per_second']:.0f}"
                    if r.get("steady_events_per_second")
                    else "",
                ]
            )
        lines += _table(
            [
                "endpoint",
                "events/request",
                "req/s",
                "events/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "stored",
                "moved a journey",
                "events/s, server's clock",
            ],
            rows,
        )
        lines += [
            "",
            f"Every request carries an Idempotency-Key; events go to {ingest['journeys']:,} "
            f"random cars, {ingest['connections']} connections; the median of three runs "
            "(each run's events/s in brackets). An event that moves its journey costs about "
            "twice one that does not (the ETA, the customer's messages), so the share that "
            "did says how far earlier runs had pushed the data: compare runs with like "
            "shares. The streams of next stages send each of their cars' remaining "
            f"factory stages in turn ({_queued(ingest)}), in one run as long as they last "
            "at the random stream's rate of the same endpoint, with a fifth to spare "
            "(a third of the random stream's length at most, two seconds at least; the "
            "queued stream two thirds, as its figure counts until its last event is "
            "applied). "
            "The last column counts the events by when the server received them, over the "
            "run without its first and last tenth: wrk counts only the requests completed "
            "within its run, and on the short runs of next stages the requests still running "
            "at its end are a few per cent of the work. The targets are judged by wrk's "
            "figure.",
        ]
        queued = [
            f"{STREAMS[name]}: answered (202) at {r['accepted_per_second']:.0f} events/s, the "
            f"last applied {r['drained_seconds']:.2f} s after wrk's end"
            for name in ("async", "async_moving")
            if (r := ingest.get(name)) and "accepted_per_second" in r
        ]
        if queued:
            lines += [
                "",
                "The queued streams send the same events with `Prefer: respond-async`: each is "
                "answered 202 once stored, and the queue's worker (one Celery process on a "
                "queue of its own) applies them. Their events/s are the events applied, from "
                "the first request to the last event off the queue; the worker's CPU is in "
                f"their rows below. {'; '.join(queued)}.",
            ]
        for name in STREAMS:
            if split := ingest.get(name, {}).get("cpu_ms_per_event"):
                spent = ", ".join(f"{command} {ms}" for command, ms in split.items())
                run = ingest[name]
                all_ = (
                    f"; all the CPUs together {run['cpu_ms_per_event_all']} "
                    f"({run['cores_busy']} cores busy)"
                    if "cpu_ms_per_event_all" in run
                    else ""
                )
                if "speed_runs" in run:
                    speeds = ", ".join(str(speed) for speed in run["speed_runs"])
                    all_ += f"; `sum(range(10**6))` in {speeds} ms as its three runs began"
                elif "speed" in run:
                    all_ += f"; `sum(range(10**6))` in {run['speed']} ms as its run began"
                lines += [
                    "",
                    f"CPU per stored event, {STREAMS[name]} (ms, by process, from /proc): "
                    f"{spent}{all_}.",
                ]
    if know := results.get("know"):
        lines += [
            "",
            "### 4. Time to know",
            "",
            _how(know),
            "",
            f"{know['events']} partner events, one every {know['pace_ms']:.0f} ms, each to "
            "another customer; measured from the moment the request was sent to the moment "
            "the worker handed the email to the mail backend. gunicorn "
            f"x{know['server_workers']}, one Celery worker (prefork x{know['worker_concurrency']})"
            " on Redis, for the messages and the queue's applier alike. The queued events "
            "(`Prefer: respond-async`, to other customers, after the others) are applied by "
            "the worker before their emails are sent.",
            "",
            *_table(
                ["events", "p50", "p95", "p99", "max", "emails", "missing"],
                [
                    [
                        name,
                        f"{k['p50_ms']:.0f} ms",
                        f"{k['p95_ms']:.0f} ms",
                        f"{k['p99_ms']:.0f} ms",
                        f"{k['max_ms']:.0f} ms" if k["max_ms"] is not None else "",
                        k["emails"],
                        k["missing"],
                    ]
                    for name, k in (("answered", know), ("queued", know.get("queued")))
                    if k
                ],
            ),
            "",
            "Responses: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(know["statuses"].items()))
            + ".",
        ]
        for name, k in (("answered", know), ("queued", know.get("queued"))):
            if k and k.get("slowest"):
                slow = ", ".join(
                    f"{e['ms']:,} ms (answered in {e['answer_ms']} ms, "
                    f"sent {e['sent_at_s']} s into the step)"
                    for e in k["slowest"][:5]
                )
                lines += ["", f"The slowest {name} events: {slow}."]
    if jobs := results.get("jobs"):
        r, s = jobs["reminders"], jobs["sweep"]
        lines += [
            "",
            "### 5. Reminder, digest and sweep jobs; the ETA's jobs",
            "",
            _how(jobs),
            "",
            f"Reminders: {r['seconds']:.2f} s, {r['queries']} queries, enqueued "
            + ", ".join(f"{k} {v}" for k, v in r["enqueued"].items())
            + ".",
            "",
            f"Sweep with digests: {s['held_rows']:,} held messages for "
            f"{s['held_rows'] // 3:,} customers, due now, among "
            f"{s['notifications_in_table']:,} notifications. Finding what is due took "
            f"{s['due_query_seconds'] * 1000:.0f} ms; {len(s['rounds'])} sweeps made "
            f"{s['deliveries']:,} deliveries in {s['seconds']:.1f} s; "
            f"{s['left_pending']} left pending.",
            "",
        ]
        eta_rows = [
            [
                label,
                f"{job['seconds']:.1f} s",
                f"{job['open_journeys']:,}",
                f"{job['queries']:,}",
                f"{job['history_rows']:,}",
                "" if job["flagged"] is None else f"{job['flagged']:,}",
            ]
            for name, label in ETA_JOBS
            if (job := jobs.get(name))
        ]
        if eta_rows:
            lines += [
                "",
                "The ETA's jobs, over every open journey, in this order: the stall check "
                "(after the ingest's events), the nightly relearn and recompute, and the "
                "stall check an hour later (its clock moved on by an hour). Each recomputes "
                "the open journeys a hundred at a time and saves only those whose ETA "
                "changed; a history row is written per changed prediction.",
                "",
                *_table(
                    ["job", "time", "open journeys", "queries", "history rows", "newly stalled"],
                    eta_rows,
                ),
            ]
        lines += [
            "",
            "The query plans (EXPLAIN ANALYZE of the slowest distinct queries each job ran):",
        ]
        named = [("reminders", r), ("sweep", s)]
        named += [(label, jobs[name]) for name, label in ETA_JOBS if name in jobs]
        for name, job in named:
            for plan in job["plans"]:
                lines += [
                    "",
                    f"<details><summary>{name}: {plan['runs']} run(s), {plan['seconds']:.3f} s"
                    + (
                        f" — reads whole: {', '.join(plan['seq_scans'])}"
                        if plan.get("seq_scans")
                        else ""
                    )
                    + "</summary>",
                    "",
                    "```sql",
                    _clip(plan["sql"]),
                    "```",
                    "",
                    "```",
                    _clip(plan["plan"]),
                    "```",
                    "",
                    "</details>",
                ]
    if weight := results.get("weight"):
        lines += ["", "### 6. Page weight", "", _how(weight), ""]
        lines += _table(
            ["request", "type", "status", "bytes", "compressed", "encoding"],
            [
                [
                    f"`{r['url'][:70]}`",
                    r.get("type", ""),
                    r.get("status"),
                    f"{r.get('bytes', 0):,}",
                    f"{r.get('compressed_bytes', 0):,}",
                    r.get("encoding", ""),
                ]
                for r in weight["responses"]
            ],
        )
        lines += [
            "",
            f"In all {_kb(weight['total_bytes'])}, {_kb(weight['total_compressed_bytes'])} "
            f"compressed; hosts other than the server: "
            f"{', '.join(weight['other_hosts']) or 'none'}.",
        ]
    lines += ["", END]
    return "\n".join(lines)


def report_write(results: dict[str, Any], path: Path) -> None:
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    path.write_text(head + render(results) + tail)
