"""A Celery worker killed (SIGKILL) in the middle of sending an email: the message is
sent once.

A real worker (``celery -A config worker``, Redis broker, PostgreSQL) picks up the
delivery task and talks SMTP to a server in this test that takes the message and never
answers it, so the worker is stuck mid-send, holding its claim on the outbox row, when it
is killed. Its task is not acknowledged (``acks_late``) and would come back after Redis's
visibility timeout; the row stays claimed until the claim's lease runs out. Then a second
worker's sweep sends it, and the late task finds nothing to do.

What "once" means here: a message counts as sent when the mail server accepts it (answers
250 to the end of DATA); until then it is the sender's to send again, and a server must
not deliver a message it did not accept. The first worker dies before that answer, so
exactly one accepted copy is the guarantee, and what this test checks. The window the
design cannot close is after it: a worker killed between the server's 250 and the UPDATE
that marks the row sent will have it sent again after the lease (at-least-once; see
docs/architecture.md#the-outbox). Every copy carries the same X-Milepost-Notification
header, so the duplicate can be recognised.
"""

import os
import signal
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import Message

import pytest
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from config.celery import app as celery_app
from journey.models import EventSource
from journey.services import journey_record_milestone
from notifications.models import Notification, NotificationState
from notifications.services import notification_deliver, outbox_sweep
from notifications.tasks import deliver_notification, sweep_outbox
from tests.factories import make_journey
from tests.notifications.test_worker import AVAILABLE, database_url, start_worker, stop_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.worker,
    pytest.mark.skipif(
        not AVAILABLE, reason="needs REDIS_URL and a PostgreSQL DATABASE_URL (CI sets both)"
    ),
]


class SMTPServer(socketserver.ThreadingTCPServer):
    """Speaks enough SMTP for Django's backend. The first message is taken and never
    answered (the sender is stuck mid-send); later ones are accepted and kept."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.hanging = threading.Event()  # the first message is in, unanswered
        self.release = threading.Event()
        self.unanswered: Message | None = None
        self.accepted: list[Message] = []
        self.lock = threading.Lock()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                self.reply("220 test.example ESMTP")
                while line := self.rfile.readline():
                    verb = line.decode(errors="replace").strip().upper()
                    if verb.startswith(("EHLO", "HELO")):
                        self.reply("250 test.example")
                    elif verb.startswith("DATA"):
                        self.reply("354 go ahead")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        with server.lock:
                            hang = not server.hanging.is_set()
                            if hang:
                                server.unanswered = message_from_bytes(data)
                                server.hanging.set()
                            else:
                                server.accepted.append(message_from_bytes(data))
                        if hang:
                            server.release.wait(120)  # never acknowledged
                            return
                        self.reply("250 accepted")
                    elif verb.startswith("QUIT"):
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def worker_env(transactional_db, smtp) -> Iterator[dict[str, str]]:
    """The environment of this test's workers (their own queue, our SMTP server); this
    process queues to that queue instead of running tasks in-process."""
    queue = f"milepost-killed-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "EMAIL_FILE_PATH"}
    env |= {
        "DATABASE_URL": database_url(),
        "CELERY_QUEUE": queue,
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp.server_address[1]}",
    }
    previous = (celery_app.conf.task_always_eager, celery_app.conf.task_default_queue)
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    try:
        yield env
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = previous


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def sent_copies(smtp: SMTPServer, row: Notification) -> int:
    with smtp.lock:
        return sum(m["X-Milepost-Notification"] == str(row.pk) for m in smtp.accepted)


def due_message_without_task(monkeypatch: pytest.MonkeyPatch) -> Notification:
    """A customer's milestone email, due now, whose delivery task was not queued."""
    journey = make_journey()
    with monkeypatch.context() as patch:
        patch.setattr("notifications.services._queue_delivery", lambda pk: None)
        journey_record_milestone(
            journey=journey,
            stage_key="stage-2",
            occurred_at=timezone.now() - timedelta(hours=1),
            source=EventSource.STAFF,
        )
    return Notification.objects.get(journey=journey, channel="email", kind="milestone_reached")


def test_a_worker_killed_mid_send_leaves_the_message_to_be_sent_once(smtp, worker_env, monkeypatch):
    first = start_worker(worker_env)
    try:
        journey = make_journey()
        # Its delivery is queued when this commits; the worker takes it to the server.
        journey_record_milestone(
            journey=journey,
            stage_key="stage-2",
            occurred_at=timezone.now() - timedelta(hours=1),
            source=EventSource.STAFF,
        )
        assert smtp.hanging.wait(60), "the worker never reached the SMTP server"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        stop_worker(first)
    assert first.returncode == -signal.SIGKILL

    row = Notification.objects.get(pk=smtp.unanswered["X-Milepost-Notification"])
    assert (row.journey, row.kind) == (journey, "milestone_reached")
    assert (row.state, row.attempts, row.sent_at) == (NotificationState.SENDING, 1, None)
    assert smtp.accepted == []
    # Within the lease the row is the dead worker's: neither the sweep nor the task
    # (redelivered) touches it.
    assert outbox_sweep() == 0
    assert notification_deliver(notification_id=row.pk) is None

    # The lease runs out (as if five minutes had passed).
    Notification.objects.filter(pk=row.pk).update(
        claimed_at=F("claimed_at") - settings.OUTBOX_CLAIM_LEASE - timedelta(seconds=1)
    )
    second = start_worker(worker_env)
    try:
        sweep_outbox.delay()  # what beat does every minute
        deliver_notification.delay(row.pk)  # the killed worker's task, back late
        # Queued last, another customer's message: once it is sent, the worker (one
        # process, first in first out) has run everything queued before it.
        marker = due_message_without_task(monkeypatch)
        deliver_notification.delay(marker.pk)
        assert wait_for(lambda: Notification.objects.get(pk=marker.pk).sent_at is not None)
    finally:
        stop_worker(second)

    row.refresh_from_db()
    assert (row.state, row.attempts) == (NotificationState.SENT, 2)
    assert sent_copies(smtp, row) == 1
    assert sent_copies(smtp, marker) == 1
