"""``manage.py beat_embedded``: Celery beat's schedule run in-process for ``make run``."""

import logging
from datetime import timedelta

import pytest
import time_machine
from celery.schedules import crontab
from django.utils import timezone

from config.celery import app
from integrations.models import InboundEvent
from journey.management.commands.beat_embedded import EmbeddedBeat
from tests.integrations.test_api_queued import current_stage, queue

pytestmark = pytest.mark.django_db


@app.task(name="tests.beat_embedded.record")
def record(label: str) -> None:
    CALLS.append(label)


@app.task(name="tests.beat_embedded.fail")
def fail() -> None:
    raise RuntimeError("the job broke")


CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _calls():
    CALLS.clear()


def test_every_entry_of_the_real_schedule_names_a_task_that_exists(settings):
    beat = EmbeddedBeat(settings.CELERY_BEAT_SCHEDULE)
    assert {entry.name for entry in beat.entries} == set(settings.CELERY_BEAT_SCHEDULE)
    assert [entry.task.name for entry in beat.entries] == [
        spec["task"] for spec in settings.CELERY_BEAT_SCHEDULE.values()
    ]


def test_an_interval_runs_once_it_has_passed_since_the_start_then_since_its_last_run():
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        beat = EmbeddedBeat(
            {
                "often": {
                    "task": "tests.beat_embedded.record",
                    "schedule": timedelta(seconds=30),
                    "args": ("often",),
                },
                "rarely": {
                    "task": "tests.beat_embedded.record",
                    "schedule": 3600.0,  # seconds, as beat reads a number
                    "kwargs": {"label": "rarely"},
                },
            }
        )
        assert beat.tick() == []  # as beat: not at start, an interval after it
        clock.shift(timedelta(seconds=31))
        assert beat.tick() == ["often"]
        assert beat.tick() == []
        clock.shift(timedelta(seconds=31))
        assert beat.tick() == ["often"]
        clock.shift(timedelta(hours=1))
        assert beat.tick() == ["often", "rarely"]
    assert CALLS == ["often", "often", "often", "rarely"]


def test_a_crontab_runs_at_its_time():
    with time_machine.travel(timezone.now().replace(hour=1, minute=0), tick=False) as clock:
        beat = EmbeddedBeat(
            {
                "nightly": {
                    "task": "tests.beat_embedded.record",
                    "schedule": crontab(hour=2, minute=30),
                    "args": ("nightly",),
                }
            }
        )
        clock.shift(timedelta(minutes=89))  # 02:29
        assert beat.tick() == []
        clock.shift(timedelta(minutes=2))  # 02:31
        assert beat.tick() == ["nightly"]
    assert CALLS == ["nightly"]


def test_a_task_that_fails_is_logged_and_the_others_still_run(caplog):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        beat = EmbeddedBeat(
            {
                "broken": {"task": "tests.beat_embedded.fail", "schedule": 10.0},
                "fine": {"task": "tests.beat_embedded.record", "schedule": 10.0, "args": ("ok",)},
            }
        )
        clock.shift(timedelta(seconds=11))
        with caplog.at_level(logging.ERROR):
            assert beat.tick() == ["broken", "fine"]
        clock.shift(timedelta(seconds=5))
        assert beat.tick() == []  # tried again at its next time, not at once
    assert CALLS == ["ok"]
    (logged,) = [r for r in caplog.records if r.name == EmbeddedBeat.__module__]
    assert logged.getMessage() == (
        "Scheduled task broken (tests.beat_embedded.fail) failed: "
        "RuntimeError('the job broke'); it runs again at its next time."
    )


def test_a_schedule_naming_a_task_that_does_not_exist_fails_when_read():
    with pytest.raises((ImportError, AttributeError)):
        EmbeddedBeat({"typo": {"task": "integrations.tasks.no_such_task", "schedule": 30.0}})


def test_a_queued_event_whose_apply_was_lost_is_applied_by_the_schedule(
    api, journey, settings, django_capture_on_commit_callbacks
):
    """What make run's loop is for: without a broker the applier runs in the request,
    after commit; if that run is lost, nothing else would apply the event."""
    with time_machine.travel(timezone.now(), tick=False) as clock:
        beat = EmbeddedBeat(settings.CELERY_BEAT_SCHEDULE)
        with django_capture_on_commit_callbacks(execute=False):  # the in-request run lost
            assert queue(api, journey, code="S2").status_code == 202
        assert InboundEvent.objects.get().state == "queued"

        clock.shift(timedelta(seconds=31))
        assert "inbound-queue-sweep" in beat.tick()

    assert InboundEvent.objects.get().state == "applied"
    assert current_stage(journey) == "stage-2"
