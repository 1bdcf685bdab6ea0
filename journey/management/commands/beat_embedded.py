"""Celery beat's schedule, run in this process, for the embedded default (``make run``).

Without a broker there is no beat and no worker: tasks run in the request that queues
them (``CELERY_TASK_ALWAYS_EAGER``). What beat runs on a clock (``CELERY_BEAT_SCHEDULE``:
the outbox's sweep for held and retried messages, webhook retries, queued partner events
whose in-request apply failed, reminders, the ETA's jobs, the idempotency purge) would
never run. This loop runs each entry when beat would: an interval after it last ran (the
first time an interval after the loop started, as beat does), a crontab at its times.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import BaseSchedule, schedule
from celery.utils.imports import symbol_by_name
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from config.celery import app

logger = logging.getLogger(__name__)


@dataclass
class Entry:
    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    last_run_at: datetime


class EmbeddedBeat:
    """The entries of a beat schedule, each run in this process when it is due."""

    def __init__(self, entries: dict[str, dict[str, Any]], now: datetime | None = None) -> None:
        started = now or app.now()
        self.entries = [
            Entry(
                name=name,
                task=spec["task"],
                schedule=_schedule(spec["schedule"]),
                args=tuple(spec.get("args", ())),
                kwargs=dict(spec.get("kwargs", {})),
                last_run_at=started,
            )
            for name, spec in entries.items()
        ]

    def tick(self) -> list[str]:
        """Run the entries that are due; returns their names. One that fails is logged
        and counts as run (beat too tries it again at its next time, not at once)."""
        ran = []
        for entry in self.entries:
            due, _next = entry.schedule.is_due(entry.last_run_at)
            if not due:
                continue
            entry.last_run_at = app.now()
            ran.append(entry.name)
            task = app.tasks.get(entry.task) or symbol_by_name(entry.task)  # imports it
            result = task.apply(args=entry.args, kwargs=entry.kwargs)
            if result.failed():
                logger.error(
                    "Scheduled task %s (%s) failed:\n%s", entry.name, entry.task, result.traceback
                )
        return ran


def _schedule(value: BaseSchedule | timedelta | float) -> BaseSchedule:
    """As beat reads an entry's schedule: a number of seconds or a timedelta is an
    interval."""
    if isinstance(value, BaseSchedule):
        return value
    if isinstance(value, int | float):
        value = timedelta(seconds=value)
    return schedule(run_every=value, app=app)


class Command(BaseCommand):
    help = (
        "Run Celery beat's schedule (CELERY_BEAT_SCHEDULE) in this process, each task when "
        "beat would run it: `make run` uses it in the embedded default, which has no beat "
        "and no worker, so that held messages, webhook retries and queued partner events "
        "whose first apply failed are still seen to."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tick", type=float, default=5.0, help="Seconds between looks at the schedule (5)."
        )

    def handle(self, *args: object, **options: Any) -> None:
        beat = EmbeddedBeat(settings.CELERY_BEAT_SCHEDULE)
        self.stdout.write(
            f"Running {len(beat.entries)} scheduled tasks in this process: "
            + ", ".join(entry.name for entry in beat.entries)
        )
        while True:
            for name in beat.tick():
                if options["verbosity"] > 1:
                    self.stdout.write(f"ran {name}")
            time.sleep(options["tick"])
