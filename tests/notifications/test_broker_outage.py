"""Stop Redis, record events, start Redis again: every message arrives, once.

A private redis-server on a free port is the broker of this test's worker and of the
test itself, so stopping it touches nothing else on the machine.
"""

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import kombu.pools
import pytest
from django.urls import reverse
from django.utils import timezone

from config.celery import app as celery_app
from notifications.models import Notification, NotificationState
from notifications.tasks import sweep_outbox
from tests.notifications.test_worker import AVAILABLE, database_url, start_worker, stop_worker

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(
        not AVAILABLE or not shutil.which("redis-server"),
        reason="needs redis-server and a PostgreSQL DATABASE_URL (CI has both)",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Redis:
    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder, self.process = port, folder, None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def use_broker(url: str) -> None:
    """Point this process's Celery at ``url`` (forgetting pooled connections)."""
    celery_app.conf.broker_url = url
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def events_url(journey) -> str:
    return reverse("api:journey-events", kwargs={"reference": journey.reference})


def test_a_broker_outage_delays_messages_but_loses_none_and_sends_none_twice(
    transactional_db, tmp_path, api, journey, customer
):
    redis = Redis(free_port(), tmp_path)
    redis.start()
    url = f"redis://127.0.0.1:{redis.port}/0"
    queue = f"outage-{uuid.uuid4().hex[:8]}"
    outbox = tmp_path / "mail"
    outbox.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": url,
        "CELERY_QUEUE": queue,
        "EMAIL_FILE_PATH": str(outbox),
        "OUTBOX_SWEEP_GRACE_SECONDS": "1",
    }
    worker = start_worker(env)
    previous = (
        celery_app.conf.task_always_eager,
        celery_app.conf.task_default_queue,
        celery_app.conf.broker_url,
    )
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    use_broker(url)
    try:
        redis.stop()  # the broker goes down
        for stage in (1, 2, 3):
            response = api.post(
                events_url(journey),
                {
                    "event_id": f"o-{stage}",
                    "code": f"S{stage}",
                    "occurred_at": timezone.now().isoformat(),
                },
                format="json",
            )
            assert response.status_code == 201, response.content  # events are still accepted
        pending = Notification.objects.filter(channel="email")
        assert pending.count() == 3
        assert set(pending.values_list("state", flat=True)) == {NotificationState.PENDING}

        redis.start()  # the broker is back
        time.sleep(1.5)  # past the sweep's grace
        use_broker(url)
        sweep_outbox.delay()  # what beat does every minute
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and pending.exclude(state=NotificationState.SENT).exists()
        ):
            time.sleep(0.2)
        assert set(pending.values_list("state", flat=True)) == {NotificationState.SENT}

        sweep_outbox.delay()  # a second sweep (or a late task) sends nothing again
        time.sleep(2)
        mails = [p.read_text() for p in outbox.iterdir()]
        sent = sum(text.count(f"To: {customer.email}") for text in mails)
        assert sent == len(mails)
        # The three stages went out (as one digest or as three messages), each once.
        for stage in (1, 2, 3):
            assert sum(text.count(f"Stage {stage}") > 0 for text in mails) == 1
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = previous[:2]
        use_broker(previous[2])
        stop_worker(worker)
        redis.stop()
