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
from datetime import datetime
from typing import Any

from celery import Task
from celery.schedules import BaseSchedule, maybe_schedule
from celery.utils.imports import symbol_by_name
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from config.celery import app

logger = logging.getLogger(__name__)


@dataclass
class Entry:
    name: str
    task: Task
    schedule: BaseSchedule
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    last_run_at: datetime


class EmbeddedBeat:
    """The entries of a beat schedule, each run in this process when it is due. Their
    tasks are found when the schedule is read (importing their modules), so a schedule
    that names a task that does not exist fails at once, not when the entry falls due."""

    def __init__(self, entries: dict[str, dict[str, Any]], now: datetime | None = None) -> None:
        started = now or app.now()
        self.entries = [
            Entry(
                name=name,
                task=app.tasks.get(spec["task"]) or symbol_by_name(spec["task"]),
                schedule=maybe_schedule(spec["schedule"], app=app),
                args=tuple(spec.get("args", ())),
                kwargs=dict(spec.get("kwargs", {})),
                last_run_at=started,
            )
            for name, spec in entries.items()
        ]

    def tick(self) -> list[str]:
        """Run the entries that are due; returns their names. One that fails is logged
        (Celery logs its traceback) and counts as run: beat too tries it again at its
        next time, not at once. Database connections are looked after as a worker does
        around each task: one that broke or outlived CONN_MAX_AGE is closed."""
        ran = []
        for entry in self.entries:
            due, _next = entry.schedule.is_due(entry.last_run_at)
            if not due:
                continue
            entry.last_run_at = app.now()
            ran.append(entry.name)
            _close_old_connections()
            try:
                result = entry.task.apply(args=entry.args, kwargs=entry.kwargs)
            except Exception:  # apply() keeps a task's error; this would be beat's own
                logger.exception(
                    "Scheduled task %s (%s) could not run.", entry.name, entry.task.name
                )
                continue
            finally:
                _close_old_connections()
            if result.failed():
                logger.error(
                    "Scheduled task %s (%s) failed: %r; it runs again at its next time.",
                    entry.name,
                    entry.task.name,
                    result.result,
                )
        return ran


def _close_old_connections() -> None:
    """What a Celery worker does around each task (``close_old_connections``), except to
    a connection inside a transaction: a caller's (a test's) is never closed under it."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


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
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            self.stderr.write(
                "A broker is configured (REDIS_URL): run Celery beat and a worker instead; "
                "this runs the scheduled tasks here, and what they queue goes to the broker."
            )
        beat = EmbeddedBeat(settings.CELERY_BEAT_SCHEDULE)
        self.stdout.write(
            f"Running {len(beat.entries)} scheduled tasks in this process: "
            + ", ".join(entry.name for entry in beat.entries)
        )
        try:
            while True:
                for name in beat.tick():
                    if options["verbosity"] > 1:
                        self.stdout.write(f"ran {name}")
                time.sleep(options["tick"])
        except KeyboardInterrupt:
            return
