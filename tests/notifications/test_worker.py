"""The Celery path with a real worker and Redis (CI runs it against PostgreSQL and Redis)."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from config.celery import app as celery_app
from notifications.models import Notification, NotificationState
from tests.factories import make_journey

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("MILEPOST_REQUIRE_WORKER_TESTS") == "1"
AVAILABLE = bool(os.environ.get("REDIS_URL")) and connection.vendor == "postgresql"
if not AVAILABLE and REQUIRED:
    raise RuntimeError("MILEPOST_REQUIRE_WORKER_TESTS=1 but REDIS_URL/PostgreSQL are not set.")

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(
        not AVAILABLE, reason="needs REDIS_URL and a PostgreSQL DATABASE_URL (CI sets both)"
    ),
]


def database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    """A real Celery worker (one process, no gossip) with the given environment."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_worker(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    print(output)  # shown by pytest when the test fails


@pytest.fixture
def worker(transactional_db, tmp_path):
    queue = f"milepost-test-{uuid.uuid4().hex[:8]}"
    outbox = tmp_path / "mail"
    outbox.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_QUEUE": queue,
        "EMAIL_FILE_PATH": str(outbox),
    }
    process = start_worker(env)
    previous = (celery_app.conf.task_always_eager, celery_app.conf.task_default_queue)
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    try:
        yield outbox
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = previous
        stop_worker(process)


def test_a_real_worker_delivers_the_email_after_commit(worker, api, journey, customer):
    response = api.post(
        reverse("api:journey-events", kwargs={"reference": journey.reference}),
        {"event_id": "w-1", "code": "S1", "occurred_at": timezone.now().isoformat()},
        format="json",
    )
    assert response.status_code == 201, response.content

    deadline = time.monotonic() + 60
    notification = Notification.objects.get(channel="email")
    while notification.state != NotificationState.SENT and time.monotonic() < deadline:
        time.sleep(0.2)
        notification.refresh_from_db()

    assert notification.state == NotificationState.SENT
    assert notification.attempts == 1
    files = list(worker.iterdir())
    assert len(files) == 1
    message = files[0].read_text()
    assert f"To: {customer.email}" in message
    assert "Subject: Test journey: Stage 1" in message


def test_a_burst_of_events_reaches_every_customer_once(worker, api, partner):
    """The rows due wait in Redis's list, under this test's key prefix, and the message
    that wakes the worker names that list: every customer's email goes, once."""
    journeys = [make_journey() for _ in range(6)]
    partner.journeys.add(*journeys)
    for n, journey in enumerate(journeys):
        response = api.post(
            reverse("api:journey-events", kwargs={"reference": journey.reference}),
            {"event_id": f"burst-{n}", "code": "S1", "occurred_at": timezone.now().isoformat()},
            format="json",
        )
        assert response.status_code == 201, response.content

    emails = Notification.objects.filter(channel="email", journey__in=journeys)
    deadline = time.monotonic() + 60
    while emails.exclude(state=NotificationState.SENT).exists() and time.monotonic() < deadline:
        time.sleep(0.2)

    assert emails.count() == 6
    assert set(emails.values_list("state", flat=True)) == {NotificationState.SENT}
    messages = [path.read_text() for path in worker.iterdir()]
    for journey in journeys:
        assert sum(f"To: {journey.owner.email}" in text for text in messages) == 1
