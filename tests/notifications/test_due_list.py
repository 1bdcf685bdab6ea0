"""Rows due now wait in a Redis list, and one broker message wakes a worker for however
many came meanwhile (``services._queue_delivery``, ``tasks.deliver_due``).

Against the Redis these machines and CI run (``REDIS_URL``, or 127.0.0.1:6379), each test
under a key prefix of its own. The broker message is recorded, not sent: the test runs
the task as the woken worker would. ``test_worker.py`` runs the same path with a real
worker.
"""

import contextlib
import logging
import os
import socket
import uuid
from datetime import timedelta

import pytest
import redis
import time_machine
from django.core import mail
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone

from config.celery import app as celery_app
from journey.cache import redis_client
from notifications import services, tasks
from notifications.models import Notification, NotificationState
from tests.factories import UserFactory

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
REQUIRED = os.environ.get("MILEPOST_REQUIRE_WORKER_TESTS") == "1"


def redis_answers(url: str) -> bool:
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


AVAILABLE = redis_answers(REDIS_URL)
if REQUIRED and not AVAILABLE:
    raise RuntimeError(f"MILEPOST_REQUIRE_WORKER_TESTS=1 but Redis does not answer at {REDIS_URL}")

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not AVAILABLE, reason=f"needs Redis at {REDIS_URL}"),
]


def redis_cache(settings, location: str = REDIS_URL) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": location,
            "KEY_PREFIX": f"test-{uuid.uuid4().hex[:12]}",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
        }
    }


@pytest.fixture(autouse=True)
def _forget_the_list():
    """The list and the flag a test left go with it (the Redis is shared)."""
    yield
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        keys = [cache.make_and_validate_key(key) for key in (services._DUE, services._WAKE)]
        with contextlib.suppress(redis.RedisError):  # a test's Redis down on purpose
            redis_client(cache).delete(*keys)


@pytest.fixture
def queued():
    """Tasks go to the broker, not in-process (as with a worker)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def woken(settings, monkeypatch, queued) -> list[tuple[str, str]]:
    """The broker messages that woke a worker (their arguments)."""
    redis_cache(settings)
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(tasks.deliver_due, "delay", lambda *args: sent.append(args))
    return sent


def due_list() -> list[int]:
    cache = caches["default"]
    key = cache.make_and_validate_key(services._DUE)
    return [int(pk) for pk in redis_client(cache).lrange(key, 0, -1)]


def wake_set() -> bool:
    return wake_ttl() != -2


def wake_ttl() -> int:
    """The flag's seconds to live: -2 if it is not set, -1 if it never expires."""
    cache = caches["default"]
    return redis_client(cache).ttl(cache.make_and_validate_key(services._WAKE))


def messages_due(capture, customers: int) -> list[Notification]:
    """One transaction that makes an email due now to each of ``customers`` new ones."""
    outbox = services.Outbox()
    for _ in range(customers):
        outbox.add(
            recipient=UserFactory(), kind="task_assigned", dedup_key=uuid.uuid4().hex, context={}
        )
    with capture(execute=True):
        return [row for row in outbox.flush() if row.channel == "email"]


def message_due(capture) -> Notification:
    """One transaction that makes an email due now to a new customer."""
    [row] = messages_due(capture, 1)
    return row


def broker_down(*args: str) -> None:
    raise ConnectionError("broker down")


def emails_to(row: Notification) -> int:
    return sum(row.recipient.email in message.to for message in mail.outbox)


def assert_sent_once(rows: list[Notification]) -> None:
    for row in rows:
        row.refresh_from_db()
        assert row.state == NotificationState.SENT
        assert emails_to(row) == 1


def test_rows_due_wake_one_worker_however_many_transactions_come(
    woken, django_capture_on_commit_callbacks
):
    rows = [message_due(django_capture_on_commit_callbacks) for _ in range(3)]

    assert len(woken) == 1  # one message for the three transactions
    assert due_list() == [row.pk for row in rows]
    # The flag expires, so that a wake-up whose message was lost does not hold the
    # next rows' for good.
    assert 0 < wake_ttl() <= services._WAKE_SECONDS

    tasks.deliver_due(*woken[0])  # the woken worker

    assert due_list() == []
    assert not wake_set()
    assert_sent_once(rows)
    # Once the worker has taken the list, the next row due wakes one again.
    later = message_due(django_capture_on_commit_callbacks)
    assert len(woken) == 2
    assert due_list() == [later.pk]


def test_a_worker_takes_a_chunk_and_wakes_another_for_the_rest(
    woken, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "DELIVERY_CHUNK", 2)
    rows = [message_due(django_capture_on_commit_callbacks) for _ in range(5)]
    assert len(woken) == 1

    taken = []
    while woken:
        before = due_list()
        tasks.deliver_due(*woken.pop(0))
        taken.append(len(before) - len(due_list()))

    assert taken == [2, 2, 1]  # three workers woken in turn, each for a chunk
    assert not wake_set()
    assert_sent_once(rows)


def test_rows_pushed_while_a_worker_delivers_wake_another(
    woken, monkeypatch, django_capture_on_commit_callbacks
):
    """The flag goes as the worker takes its chunk, not when it is done: a row that
    becomes due while the chunk is being sent wakes a worker of its own."""
    first = message_due(django_capture_on_commit_callbacks)
    real = services.notifications_deliver
    meanwhile: list[Notification] = []

    def deliver(*, notification_ids: list[int]):
        meanwhile.append(message_due(django_capture_on_commit_callbacks))
        return real(notification_ids=notification_ids)

    monkeypatch.setattr(services, "notifications_deliver", deliver)
    tasks.deliver_due(*woken[0])
    monkeypatch.setattr(services, "notifications_deliver", real)

    assert len(woken) == 2
    assert due_list() == [meanwhile[0].pk]
    tasks.deliver_due(*woken[1])
    for row in (first, meanwhile[0]):
        row.refresh_from_db()
        assert row.state == NotificationState.SENT


def test_a_wake_up_the_broker_refuses_leaves_the_flag_to_the_next_row(
    woken, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(tasks.deliver_due, "delay", broker_down)
    with caplog.at_level(logging.WARNING, logger="notifications.services"):
        first = message_due(django_capture_on_commit_callbacks)
    assert "the sweep will deliver them" in caplog.text
    assert not wake_set()  # no worker is coming: the next row due must wake one
    first.refresh_from_db()
    assert first.state == NotificationState.PENDING

    monkeypatch.setattr(tasks.deliver_due, "delay", lambda *args: woken.append(args))
    second = message_due(django_capture_on_commit_callbacks)
    assert len(woken) == 1
    tasks.deliver_due(*woken[0])  # takes both: the first was pushed before it failed
    assert_sent_once([first, second])


def test_with_redis_down_rows_wait_for_the_sweep(
    settings, monkeypatch, queued, caplog, django_capture_on_commit_callbacks
):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    redis_cache(settings, f"redis://127.0.0.1:{closed}/0")
    monkeypatch.setattr(tasks.deliver_due, "delay", lambda *args: pytest.fail("woken"))

    with caplog.at_level(logging.WARNING, logger="notifications.services"):
        row = message_due(django_capture_on_commit_callbacks)
    assert "the sweep will deliver them" in caplog.text
    row.refresh_from_db()
    assert row.state == NotificationState.PENDING
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.outbox_sweep() == 1
    assert emails_to(row) == 1


def test_the_list_keeps_its_newest_rows_and_the_sweep_sends_the_others(
    woken, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "_DUE_KEEP", 3)
    rows = [message_due(django_capture_on_commit_callbacks) for _ in range(5)]
    assert due_list() == [row.pk for row in rows[2:]]

    tasks.deliver_due(*woken[0])
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.outbox_sweep() == 2
    assert_sent_once(rows)


def test_a_row_the_sweep_sent_first_is_not_sent_again_from_the_list(
    woken, django_capture_on_commit_callbacks
):
    row = message_due(django_capture_on_commit_callbacks)
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.outbox_sweep() == 1
    tasks.deliver_due(*woken[0])  # late: the row was sent meanwhile
    assert emails_to(row) == 1
    assert due_list() == []


def test_tasks_in_process_deliver_at_once_without_the_list(
    settings, django_capture_on_commit_callbacks
):
    """The embedded default and the test suite: no worker to wake."""
    redis_cache(settings)
    row = message_due(django_capture_on_commit_callbacks)
    row.refresh_from_db()
    assert row.state == NotificationState.SENT
    assert due_list() == []
    assert not wake_set()


def test_a_long_list_wakes_several_workers_at_once(
    woken, monkeypatch, django_capture_on_commit_callbacks
):
    """A partner's batch: a worker per chunk (at most _WAKE_AT_ONCE), as its chunks were
    queued at once; each wakes the next, so they take the list side by side."""
    monkeypatch.setattr(services, "DELIVERY_CHUNK", 2)
    monkeypatch.setattr(services, "_WAKE_AT_ONCE", 2)
    rows = messages_due(django_capture_on_commit_callbacks, 7)

    assert len(woken) == 2  # four chunks, two workers woken at once
    while woken:
        tasks.deliver_due(*woken.pop(0))
    assert due_list() == []
    assert_sent_once(rows)


def test_a_worker_that_cannot_wake_the_next_still_delivers_its_chunk(
    woken, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "DELIVERY_CHUNK", 2)
    rows = [message_due(django_capture_on_commit_callbacks) for _ in range(3)]

    message = woken.pop()
    monkeypatch.setattr(tasks.deliver_due, "delay", broker_down)
    with caplog.at_level(logging.WARNING, logger="notifications.services"):
        tasks.deliver_due(*message)
    assert "Could not wake another worker" in caplog.text
    assert not wake_set()  # the next row due wakes a worker
    states = [Notification.objects.get(pk=row.pk).state for row in rows]
    assert states == [NotificationState.SENT, NotificationState.SENT, NotificationState.PENDING]
    assert due_list() == [rows[2].pk]
