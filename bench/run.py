"""``make bench``: load the data set, measure, and write the figures into docs/performance.md.

    .venv/bin/python -m bench.run                 # everything, at full scale
    .venv/bin/python -m bench.run --scale 0.05    # a quick run on a smaller data set
    .venv/bin/python -m bench.run --reuse --only page,ingest    # keep the loaded data
    .venv/bin/python -m bench.run --reuse --only burst --no-report   # time to know under a
                                                  # burst, on freshly loaded data

It runs production's settings (``bench/settings.py``) against a database of its own
(``milepost_bench`` on the local PostgreSQL; set BENCH_DATABASE_URL to change it) and Redis
database 15, with servers and a Celery worker started here as subprocesses. Every figure is
written with the command that produced it, the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import sysconfig
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.host import python_speed

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "bench"
RESULTS = ARTIFACTS / "results.json"
MANIFEST = ARTIFACTS / "manifest.json"
DOC = ROOT / "docs" / "performance.md"
BIN = Path(sys.executable).parent
VENV = Path(sys.prefix).name  # .venv, or .venv-bench for another interpreter (Makefile)
STEPS = ["load", "queries", "page", "ingest", "know", "jobs", "weight"]
# Steps run only when asked for (--only): their figures go to results.json, not the report.
EXTRA_STEPS = ["burst"]


def bench_env() -> dict[str, str]:
    """Production's environment, pointed at the benchmark's own database and Redis db."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "MILEPOST_ENV": "production",
            "SECRET_KEY": env.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": env.get(
                "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/milepost_bench"
            ),
            "REDIS_URL": env.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
            "EMAIL_URL": "smtp://bench@127.0.0.1:2525",  # replaced by bench.mail (settings)
            "BENCH_MAIL_LOG": str(ARTIFACTS / "mail.log"),
            # Served over plain HTTP on loopback: no redirect to HTTPS.
            "SECURE_SSL_REDIRECT": "False",
            # The partner API's per-key limit would cap the ingest figures at 600/min.
            "API_RATE_LIMIT": "1000000/s",
            "MEDIA_ROOT": str(ARTIFACTS / "media"),
            "LOG_LEVEL": "WARNING",
            "CELERY_QUEUE": "milepost-bench",
            "CELERY_INBOUND_QUEUE": "milepost-bench-inbound",
        }
    )
    return env


def _python_build() -> str:
    """What the interpreter was built with, of the two optimisations the production image's
    (python:3.13-slim) has: profile-guided (PGO) and link-time (LTO). pyenv's default
    build has neither; they move every figure measured in Python (docs/performance.md)."""
    args = sysconfig.get_config_var("CONFIG_ARGS") or ""
    found = [
        name
        for flag, name in (("--enable-optimizations", "PGO"), ("--with-lto", "LTO"))
        if flag in args
    ]
    return " and ".join(found) or "none"


def _machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    pg = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "python": platform.python_version(),
        "python_build": _python_build(),
        "postgresql": pg,
        "os": platform.platform(terse=True),
        "speed": python_speed(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1 = the issue's data set")
    parser.add_argument(
        "--only",
        default=",".join(STEPS),
        help=f"steps: {','.join(STEPS)}; or {','.join(EXTRA_STEPS)}",
    )
    parser.add_argument("--reuse", action="store_true", help="keep the loaded database")
    parser.add_argument("--seconds", type=int, default=15, help="length of each load run")
    parser.add_argument("--no-report", action="store_true", help="do not touch the document")
    args = parser.parse_args(argv)
    steps = [s for s in args.only.split(",") if s]
    unknown = set(steps) - set(STEPS) - set(EXTRA_STEPS)
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    if args.reuse and "load" in steps:
        steps.remove("load")

    env = bench_env()
    os.environ.update(env)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    import django

    django.setup()
    from bench import measure

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = _machine()
    results["scale"] = args.scale if "load" in steps else results.get("scale", args.scale)

    if set(steps) - {"load"}:
        if "load" not in steps:  # a reused database gets this checkout's migrations
            from django.core.management import call_command

            call_command("migrate", interactive=False, verbosity=0)
        measure.collectstatic()  # production's manifest storage serves the pages' assets
    context = measure.Context(env=env, seconds=args.seconds, artifacts=ARTIFACTS, bin=BIN)
    for step in steps:
        print(f"== {step}", flush=True)
        speed = python_speed()
        started = time.perf_counter()
        if step == "load":
            figures = measure.step_load(context, scale=args.scale, manifest_path=MANIFEST)
        else:
            context.manifest = measure.manifest_load(MANIFEST)
            figures = getattr(measure, f"step_{step}")(context)
        figures["when"] = results["machine"]["date"]
        figures["command"] = f"{VENV}/bin/python -m bench.run --only {step}" + (
            f" --scale {args.scale}" if step == "load" else " --reuse"
        )
        figures["took_seconds"] = round(time.perf_counter() - started, 1)
        figures["speed"] = [speed, python_speed()]
        results[step] = figures
        RESULTS.write_text(json.dumps(results, indent=1, default=str))
        print(json.dumps(figures, indent=1, default=str)[:3000], flush=True)
    if not args.no_report:
        from bench.report import report_write

        report_write(results, DOC)
        print(f"Wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
