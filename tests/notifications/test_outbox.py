import smtplib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends import locmem
from django.db.models import F
from django.utils import timezone

from notifications import services
from notifications.models import Notification, NotificationState
from tests.factories import UserFactory, make_journey

pytestmark = pytest.mark.django_db


def enqueue(**overrides: object) -> Notification:
    journey = make_journey()
    kwargs: dict[str, object] = {
        "recipient": journey.owner,
        "journey": journey,
        "kind": "milestone_reached",
        "dedup_key": "test:1",
        "context": {
            "stage_label": "Paint",
            "explanation": "",
            "message": "",
            "occurred_at": timezone.now().isoformat(),
            "position": 2,
            "stage_count": 4,
            "eta": None,
        },
    }
    kwargs.update(overrides)
    rows = services.notification_enqueue(**kwargs)
    # The notification centre's row is written too, already "sent" (nothing to send).
    assert sorted(row.channel for row in rows) == ["email", "inapp"]
    return next(row for row in rows if row.channel == "email")


def test_a_dedup_key_is_written_once():
    user = UserFactory()
    enqueue(recipient=user)
    again = services.notification_enqueue(
        recipient=user, kind="milestone_reached", dedup_key="test:1", context={}
    )
    assert again == []
    assert Notification.objects.filter(channel="email").count() == 1


def test_a_message_to_an_address_alone_is_written_once():
    # No recipient: no digest to read for anyone, only the dedup key.
    def send() -> list[Notification]:
        return services.notification_enqueue(
            recipient=None,
            to_email="someone@example.com",
            kind="milestone_reached",
            dedup_key="test:address",
            context={},
        )

    [row] = send()
    assert (row.channel, row.to_email) == ("email", "someone@example.com")
    assert send() == []
    assert Notification.objects.filter(dedup_key="test:address").count() == 1


def test_delivery_is_claimed_so_a_second_run_sends_nothing():
    notification = enqueue()
    assert services.notification_deliver(notification_id=notification.pk) == NotificationState.SENT
    assert services.notification_deliver(notification_id=notification.pk) is None
    assert len(mail.outbox) == 1
    notification.refresh_from_db()
    assert notification.attempts == 1


def test_the_sweep_delivers_rows_whose_task_never_ran():
    notification = enqueue()  # on_commit never fires inside the test transaction
    assert services.outbox_sweep() == 0  # not yet overdue: its task may still come
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.outbox_sweep() == 1
        assert services.outbox_sweep() == 0
    notification.refresh_from_db()
    assert notification.state == NotificationState.SENT
    assert len(mail.outbox) == 1


def test_the_sweep_makes_one_delivery_per_person_and_channel(django_assert_num_queries):
    first = enqueue(dedup_key="test:a")
    for key in ("test:b", "test:c"):
        services.notification_enqueue(
            recipient=first.recipient,
            journey=first.journey,
            kind="milestone_reached",
            dedup_key=key,
            context=first.context,
        )
    other = enqueue(dedup_key="test:d")
    later = timezone.now() + timedelta(minutes=2)
    due = services.outbox_due_ids(now=later)
    # The person's first due row stands for their three; the other person's for theirs.
    assert len(due) == 2
    assert other.pk in due
    # Finding what is due; reading the chunk of both (with the digest's other rows); then
    # per message, claiming its rows and marking them sent.
    with time_machine.travel(later), django_assert_num_queries(1 + 1 + 2 * 2):
        assert services.outbox_sweep() == 2
    assert Notification.objects.filter(channel="email", state=NotificationState.SENT).count() == 4
    assert len(mail.outbox) == 2  # a digest of three, and one message


def test_a_row_left_claimed_by_a_dead_worker_is_sent_after_its_lease(settings):
    notification = enqueue()
    Notification.objects.filter(pk=notification.pk).update(
        state=NotificationState.SENDING, claimed_at=timezone.now()
    )
    assert services.outbox_sweep() == 0
    with time_machine.travel(timezone.now() + settings.OUTBOX_CLAIM_LEASE + timedelta(seconds=1)):
        assert services.outbox_sweep() == 1
    assert len(mail.outbox) == 1


def test_failures_are_retried_with_backoff_then_marked_failed(monkeypatch):
    notification = enqueue()

    def refuse(rows: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(services.channels, "send", refuse)
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        state = services.notification_deliver(notification_id=notification.pk)
    assert state == NotificationState.PENDING
    notification.refresh_from_db()
    assert notification.scheduled_at == now + timedelta(seconds=30)
    assert "smtp down" in notification.last_error

    for _ in range(services.MAX_ATTEMPTS - 1):
        with time_machine.travel(notification.scheduled_at + timedelta(seconds=1)):
            services.notification_deliver(notification_id=notification.pk)
        notification.refresh_from_db()
    assert notification.state == NotificationState.FAILED
    assert notification.attempts == services.MAX_ATTEMPTS
    assert len(mail.outbox) == 0


def test_backoff_doubles_and_is_capped():
    assert [services.backoff(n).total_seconds() for n in (1, 2, 3, 10)] == [30, 60, 120, 3600]


def test_email_is_in_the_recipients_language_and_time_zone():
    user = UserFactory(profile__time_zone="America/New_York")
    occurred = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    notification = enqueue(
        recipient=user,
        context={
            "stage_label": "Paint",
            "explanation": "",
            "message": "",
            "position": 2,
            "stage_count": 4,
            "eta": "2026-12-01",
            "occurred_at": occurred.isoformat(),
        },
    )
    services.notification_deliver(notification_id=notification.pk)
    assert "Friday 20 November, 10:00" in mail.outbox[0].body  # 15:00 UTC in New York
    assert "Expected: 1 December 2026." in mail.outbox[0].body


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_send_each_message_once(monkeypatch):
    """Two sweeps at once (two beat schedulers, or a sweep and a late task) share the rows:
    each row is claimed by one of them. Truly concurrent on PostgreSQL."""
    import threading

    from django.db import connection

    # The delivery tasks are lost (the broker was down): only the sweeps will send.
    monkeypatch.setattr(services, "_queue_delivery", lambda pk: None)

    users = [UserFactory() for _ in range(6)]
    for index, user in enumerate(users):
        enqueue(recipient=user, dedup_key=f"c:{index}")
    later = timezone.now() + timedelta(minutes=2)
    results: list[int] = []

    def sweep() -> None:
        try:
            results.append(services.outbox_sweep(now=later))
        finally:
            connection.close()

    with time_machine.travel(later, tick=False):
        threads = [threading.Thread(target=sweep) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(results) == 6
    assert len(mail.outbox) == 6
    assert sorted(m.to[0] for m in mail.outbox) == sorted(u.email for u in users)


def test_causes_written_together_join_one_digest_as_they_would_one_at_a_time(settings):
    """An outbox of several causes (a partner's batch) times its rows exactly as writing
    them one after the other would: after a message just sent, the next one is held for
    the digest window and the one after joins it, so the person gets one digest, not a
    burst; a cause already in the outbox is skipped."""
    journey = make_journey()
    owner = journey.owner
    services.notification_enqueue(
        recipient=owner, journey=journey, kind="task_assigned", dedup_key="before", context={}
    )
    first = Notification.objects.get(dedup_key="before", channel="email")
    assert services.notification_deliver(notification_id=first.pk) == NotificationState.SENT
    first.refresh_from_db()
    outbox = services.Outbox()
    for key in ("before", "one", "two"):
        outbox.add(
            recipient=owner, journey=journey, kind="task_assigned", dedup_key=key, context={}
        )
    rows = outbox.flush()

    assert sorted((row.dedup_key, row.channel) for row in rows) == [
        ("one", "email"),
        ("one", "inapp"),
        ("two", "email"),
        ("two", "inapp"),
    ]
    emails = {row.dedup_key: row for row in rows if row.channel == "email"}
    held = first.sent_at + settings.NOTIFICATION_DIGEST_WINDOW
    assert emails["one"].scheduled_at == held
    assert emails["two"].scheduled_at == held
    with time_machine.travel(held + timedelta(seconds=1)):
        assert services.outbox_sweep() == 1
    assert len(mail.outbox) == 2  # the first message, then one digest of two
    assert Notification.objects.get(pk=emails["two"].pk).digest_size == 2


def test_a_cause_joins_the_digest_an_earlier_cause_of_the_same_outbox_waits_for():
    """The outbox keeps what it has added in mind: a message held for later (within the
    digest window) makes the next one for the same person wait and go with it, as the
    database would have said had the first been written on its own."""
    owner = UserFactory()
    later = timezone.now() + timedelta(minutes=2)
    outbox = services.Outbox()
    outbox.add(
        recipient=owner, kind="task_assigned", dedup_key="one", context={}, scheduled_at=later
    )
    outbox.add(recipient=owner, kind="task_assigned", dedup_key="two", context={})
    emails = {row.dedup_key: row for row in outbox.flush() if row.channel == "email"}

    assert emails["one"].scheduled_at == later
    assert emails["two"].scheduled_at == later


def test_an_outbox_queues_its_rows_in_a_few_broker_messages(
    monkeypatch, django_capture_on_commit_callbacks
):
    from notifications import tasks

    sent: list[list[int]] = []
    monkeypatch.setattr(tasks.deliver_notifications, "delay", sent.append)
    monkeypatch.setattr(services, "DELIVERY_CHUNK", 2)
    users = [UserFactory() for _ in range(3)]
    outbox = services.Outbox()
    for n, user in enumerate(users):
        outbox.add(recipient=user, kind="task_assigned", dedup_key=f"k{n}", context={})
    with django_capture_on_commit_callbacks(execute=True):
        rows = outbox.flush()

    emails = sorted(row.pk for row in rows if row.channel == "email")
    assert [len(ids) for ids in sent] == [2, 1]  # chunks, each one task
    assert sorted(pk for ids in sent for pk in ids) == emails


def test_delivering_a_list_goes_on_after_a_message_that_fails(monkeypatch):
    from notifications import tasks

    good, bad = enqueue(dedup_key="good"), enqueue(dedup_key="bad")
    real = services.channels.send

    def send(rows: list[Notification], **kwargs: object) -> None:
        if rows[0].pk == bad.pk:
            raise ConnectionRefusedError("The provider broke.")
        real(rows, **kwargs)

    monkeypatch.setattr(services.channels, "send", send)
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        tasks.deliver_notifications(notification_ids=[bad.pk, good.pk])

    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.state == NotificationState.SENT
    assert [m.to for m in mail.outbox] == [[good.recipient.email]]
    assert (bad.state, bad.scheduled_at, bad.claim_id) == (
        NotificationState.PENDING,
        now + timedelta(seconds=30),
        None,
    )
    assert "The provider broke." in bad.last_error


def test_delivering_a_list_goes_on_after_one_that_cannot_be_delivered(monkeypatch):
    """Anything else failing for one message (here, before it is even claimed) is
    logged, and the list's other messages are still sent."""
    from notifications import tasks

    good, bad = enqueue(dedup_key="good"), enqueue(dedup_key="bad")
    real = services._deliver

    def deliver(rows: list[Notification], **kwargs: object) -> services.Delivery | None:
        if rows[0].pk == bad.pk:
            raise RuntimeError("The database broke.")
        return real(rows, **kwargs)

    monkeypatch.setattr(services, "_deliver", deliver)
    tasks.deliver_notifications(notification_ids=[bad.pk, good.pk])

    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.state == NotificationState.SENT
    assert bad.state == NotificationState.PENDING  # for the sweep
    assert len(mail.outbox) == 1


def test_a_list_is_read_once_and_each_message_claimed_as_it_is_sent(
    django_assert_num_queries,
):
    """Each person's due rows go as one message; the list's rows and the same people's
    other due rows are read in one statement, then each message is claimed and marked
    sent: for six people, thirteen statements, not thirty."""
    listed = [enqueue(dedup_key=f"list:{n}") for n in range(6)]
    joined = services.notification_enqueue(
        recipient=listed[0].recipient,
        journey=listed[0].journey,
        kind="milestone_reached",
        dedup_key="list:joined",
        context=listed[0].context,
    )
    with django_assert_num_queries(1 + 2 * 6):
        deliveries = services.notifications_deliver(notification_ids=[row.pk for row in listed])

    assert all(delivery.sent for delivery in deliveries)
    assert sorted(len(delivery.rows) for delivery in deliveries) == [1, 1, 1, 1, 1, 2]
    assert len(mail.outbox) == 6
    joined_email = next(row for row in joined if row.channel == "email")
    joined_email.refresh_from_db()
    assert (joined_email.state, joined_email.digest_size) == (NotificationState.SENT, 2)
    # Claimed once: a second run finds nothing to do.
    assert services.notifications_deliver(notification_ids=[row.pk for row in listed]) == []


def test_a_worker_dying_mid_list_holds_only_the_message_it_was_sending(monkeypatch):
    """The rows after it are not claimed yet: the task, redelivered, sends them at once;
    only the message being sent waits for its lease."""
    first, second, third = (enqueue(dedup_key=f"dies:{n}") for n in range(3))
    real = services.channels.send

    class Killed(BaseException):  # as a worker's hard time limit or a signal ends it
        pass

    def send(rows: list[Notification], **kwargs: object) -> None:
        if rows[0].pk == second.pk:
            raise Killed
        real(rows, **kwargs)

    monkeypatch.setattr(services.channels, "send", send)
    ids = [first.pk, second.pk, third.pk]
    with pytest.raises(Killed):
        services.notifications_deliver(notification_ids=ids)
    states = dict(Notification.objects.filter(pk__in=ids).values_list("pk", "state"))
    assert states == {
        first.pk: NotificationState.SENT,
        second.pk: NotificationState.SENDING,
        third.pk: NotificationState.PENDING,
    }

    monkeypatch.setattr(services.channels, "send", real)
    [delivery] = services.notifications_deliver(notification_ids=ids)  # redelivered
    assert [row.pk for row in delivery.rows] == [third.pk]
    assert len(mail.outbox) == 2


def test_a_failed_message_waits_its_backoff_from_when_it_failed(monkeypatch):
    """Not from when the list began: a message that fails late in a slow list still
    waits its full backoff."""
    slow, failing = enqueue(dedup_key="slow"), enqueue(dedup_key="failing")
    real = services.channels.send
    started = timezone.now()
    with time_machine.travel(started, tick=False) as clock:

        def send(rows: list[Notification], **kwargs: object) -> None:
            clock.shift(timedelta(seconds=40))  # a slow provider
            if rows[0].pk == failing.pk:
                raise ConnectionRefusedError("smtp down")
            real(rows, **kwargs)

        monkeypatch.setattr(services.channels, "send", send)
        services.notifications_deliver(notification_ids=[slow.pk, failing.pk])

    failing.refresh_from_db()
    assert failing.state == NotificationState.PENDING
    assert failing.scheduled_at == started + timedelta(seconds=80 + 30)


class CountingBackend(locmem.EmailBackend):
    """The test mail backend, counting its connections; refusing some addresses, and
    hanging up after so many messages on one connection."""

    opened = 0
    closed = 0
    refused: frozenset[str] = frozenset()
    carries: int | None = None
    hang_up: Exception = smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

    def open(self) -> bool:
        type(self).opened += 1
        self.carried = 0
        return True

    def close(self) -> None:
        type(self).closed += 1

    def send_messages(self, messages: list) -> int:
        if any(to in self.refused for message in messages for to in message.to):
            raise smtplib.SMTPRecipientsRefused({})
        if self.carries is not None and self.carried >= self.carries:
            raise self.hang_up
        self.carried += len(messages)
        return super().send_messages(messages)


@pytest.fixture
def counting_mailer(settings, monkeypatch):
    monkeypatch.setattr(CountingBackend, "opened", 0)
    monkeypatch.setattr(CountingBackend, "closed", 0)
    settings.MAILERS = {"default": {"BACKEND": f"{__name__}.CountingBackend"}}
    return CountingBackend


def test_a_lists_emails_share_one_connection_to_the_mail_server(counting_mailer):
    listed = [enqueue(dedup_key=f"session:{n}") for n in range(3)]
    services.notifications_deliver(notification_ids=[row.pk for row in listed])

    assert (counting_mailer.opened, counting_mailer.closed) == (1, 1)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(r.recipient.email for r in listed)


def test_after_a_failed_email_the_next_starts_on_a_new_connection(counting_mailer, monkeypatch):
    listed = [enqueue(dedup_key=f"session:{n}") for n in range(3)]
    monkeypatch.setattr(counting_mailer, "refused", frozenset({listed[0].recipient.email}))
    deliveries = services.notifications_deliver(notification_ids=[row.pk for row in listed])

    assert [delivery.sent for delivery in deliveries] == [False, True, True]
    assert (counting_mailer.opened, counting_mailer.closed) == (2, 2)
    assert len(mail.outbox) == 2
    listed[0].refresh_from_db()
    assert listed[0].state == NotificationState.PENDING
    assert "SMTPRecipientsRefused" in listed[0].last_error


def test_a_connection_the_server_closed_is_replaced_for_the_message_that_found_it(
    counting_mailer, monkeypatch
):
    """A server that ends its sessions after two messages: the third message finds the
    connection closed, and goes out on a new one, not back to the outbox."""
    monkeypatch.setattr(counting_mailer, "carries", 2)
    listed = [enqueue(dedup_key=f"session:{n}") for n in range(5)]
    deliveries = services.notifications_deliver(notification_ids=[row.pk for row in listed])

    assert all(delivery.sent for delivery in deliveries)
    assert len(mail.outbox) == 5
    assert (counting_mailer.opened, counting_mailer.closed) == (3, 3)


@pytest.mark.parametrize(
    ("reply", "sent", "opened"),
    [
        # Postfix and Exim end a kept session with a 421 at the next command: the
        # message goes on a new connection.
        (smtplib.SMTPSenderRefused(421, b"Too many messages", "x"), [True, True], 2),
        # Any other refusal is the message's, not the connection's: not sent again.
        (smtplib.SMTPSenderRefused(550, b"Not allowed", "x"), [True, False], 1),
    ],
)
def test_a_reply_at_the_next_command_is_a_hang_up_only_if_it_is_421(
    counting_mailer, monkeypatch, reply, sent, opened
):
    monkeypatch.setattr(counting_mailer, "carries", 1)
    monkeypatch.setattr(counting_mailer, "hang_up", reply)
    listed = [enqueue(dedup_key=f"session:{n}") for n in range(2)]
    deliveries = services.notifications_deliver(notification_ids=[row.pk for row in listed])

    assert [delivery.sent for delivery in deliveries] == sent
    assert counting_mailer.opened == opened


def _meanwhile(monkeypatch, change) -> None:
    """Run ``change(rows)`` as another worker would, between the list's read and the
    claim of each of its messages."""
    real = services._deliver

    def deliver(rows: list[Notification], **kwargs: object) -> services.Delivery | None:
        change(rows)
        return real(rows, **kwargs)

    monkeypatch.setattr(services, "_deliver", deliver)


def test_rows_another_worker_claimed_since_the_read_are_left_to_it(monkeypatch):
    first = enqueue(dedup_key="taken:a")
    [other] = [
        row
        for row in services.notification_enqueue(
            recipient=first.recipient,
            journey=first.journey,
            kind="milestone_reached",
            dedup_key="taken:b",
            context=first.context,
        )
        if row.channel == "email"
    ]

    def take(rows: list[Notification]) -> None:
        Notification.objects.filter(pk=other.pk).update(
            state=NotificationState.SENDING, claimed_at=timezone.now(), claim_id=uuid.uuid4()
        )

    _meanwhile(monkeypatch, take)
    [delivery] = services.notifications_deliver(notification_ids=[first.pk])

    assert [row.pk for row in delivery.rows] == [first.pk]
    first.refresh_from_db()
    other.refresh_from_db()
    assert (first.state, first.digest_size) == (NotificationState.SENT, 1)
    assert other.state == NotificationState.SENDING  # the other worker's
    assert len(mail.outbox) == 1


def test_a_message_another_worker_took_whole_is_not_sent(monkeypatch):
    row = enqueue(dedup_key="taken:whole")

    def take(rows: list[Notification]) -> None:
        Notification.objects.filter(pk__in=[r.pk for r in rows]).update(
            state=NotificationState.SENDING, claimed_at=timezone.now(), claim_id=uuid.uuid4()
        )

    _meanwhile(monkeypatch, take)
    assert services.notification_deliver(notification_id=row.pk) is None
    assert mail.outbox == []


def test_a_failure_counts_the_attempts_the_claim_made(monkeypatch):
    """Another worker's failed attempt between the list's read and its claim counts: the
    row's last attempt marks it failed, not pending for a ninth."""
    row = enqueue(dedup_key="attempts")
    Notification.objects.filter(pk=row.pk).update(attempts=services.MAX_ATTEMPTS - 2)

    def tried_meanwhile(rows: list[Notification]) -> None:
        Notification.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1)

    def refuse(rows: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("smtp down")

    _meanwhile(monkeypatch, tried_meanwhile)
    monkeypatch.setattr(services.channels, "send", refuse)
    assert services.notification_deliver(notification_id=row.pk) == NotificationState.FAILED
    row.refresh_from_db()
    assert (row.state, row.attempts) == (NotificationState.FAILED, services.MAX_ATTEMPTS)
