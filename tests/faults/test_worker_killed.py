"""A worker killed (SIGKILL) in the middle of sending an email: the message is sent once.

The "worker" is a separate Python process delivering the row through
``notification_deliver`` to an SMTP server that takes the message and never answers; it is
killed there, with its claim on the row. The sweep leaves the row alone until the claim's
lease runs out, then delivers it, once.
"""

import os
import signal
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.utils import timezone

from journey.models import EventSource
from journey.services import journey_record_milestone
from notifications.models import Notification, NotificationState
from notifications.services import outbox_sweep
from tests.factories import make_journey

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class HangingSMTP(socketserver.ThreadingTCPServer):
    """Speaks SMTP until the message has been sent, then never answers: the sender is
    stuck mid-send, as when a worker dies while the mail server has the message."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.received = threading.Event()
        self.release = threading.Event()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                self.reply("220 hanging.example ESMTP")
                while line := self.rfile.readline():
                    verb = line.decode(errors="replace").strip().upper()
                    if verb.startswith(("EHLO", "HELO")):
                        self.reply("250 hanging.example")
                    elif verb.startswith("DATA"):
                        self.reply("354 go ahead")
                        while self.rfile.readline() not in (b".\r\n", b""):
                            pass
                        server.received.set()
                        server.release.wait(60)  # never acknowledge the message
                        return
                    elif verb.startswith("QUIT"):
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def hanging_smtp() -> Iterator[HangingSMTP]:
    server = HangingSMTP()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def database_url() -> str:
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    auth = settings_dict["USER"] + (
        f":{settings_dict['PASSWORD']}" if settings_dict["PASSWORD"] else ""
    )
    host = settings_dict["HOST"] or "127.0.0.1"
    return f"postgres://{auth}@{host}:{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"


def test_a_worker_killed_mid_send_leaves_the_message_to_be_sent_once(hanging_smtp, settings):
    journey = make_journey()
    journey_record_milestone(
        journey=journey,
        stage_key="stage-2",
        occurred_at=timezone.now() - timedelta(hours=1),
        source=EventSource.STAFF,
    )
    row = Notification.objects.get(channel="email", kind="milestone_reached")
    # As if its task had not run yet (the test process delivers eagerly on commit).
    Notification.objects.filter(pk=row.pk).update(
        state=NotificationState.PENDING, sent_at=None, attempts=0, scheduled_at=timezone.now()
    )
    mail.outbox.clear()

    env = {
        **{k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "EMAIL_FILE_PATH"}},
        "DATABASE_URL": database_url(),
        "EMAIL_URL": f"smtp://127.0.0.1:{hanging_smtp.server_address[1]}",
    }
    code = (
        "from notifications.services import notification_deliver;"
        f"notification_deliver(notification_id={row.pk})"
    )
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert hanging_smtp.received.wait(60), worker.stderr.read1().decode()
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL

    row.refresh_from_db()
    assert (row.state, row.attempts, row.sent_at) == (NotificationState.SENDING, 1, None)
    # Within the lease the row is the dead worker's: the sweep leaves it alone.
    assert outbox_sweep() == 0
    assert mail.outbox == []
    # After the lease, the sweep delivers it; again, nothing more.
    later = timezone.now() + settings.OUTBOX_CLAIM_LEASE + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        assert outbox_sweep() == 1
        assert outbox_sweep() == 0
    row.refresh_from_db()
    assert (row.state, row.attempts) == (NotificationState.SENT, 2)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [journey.owner.email]
