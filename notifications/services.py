"""Writes to the outbox, and delivery of its rows.

A cause writes one row per channel (the portal's notification centre, and each channel the
customer chose and can be reached on), in the caller's transaction, with a dedup key so a
cause is announced once. Timing is decided when the row is written: held to the end of the
customer's quiet hours (unless they allowed that kind at any hour), and held briefly after
a recent message so that a burst of updates goes out as one digest.

Delivery is at-least-once made effectively once: a row is claimed with a conditional UPDATE
(and a claim id shared by the rows of one digest) before it is sent, so two workers (a task
and the sweep, or a redelivered task) never both send it; a worker that dies mid-send leaves
the row claimed until its lease runs out.
"""

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.models import CustomerProfile, User
from journey.cache import redis_client
from journey.compiled import CompiledRead
from journey.db import Together, bulk_create_unless_taken
from notifications import channels
from notifications.kinds import KINDS
from notifications.models import Channel, Notification, NotificationState

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
# Channels that reach the customer outside the portal, in order of preference.
OUTSIDE_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)


def recipient_channels(*, recipient: User | None) -> list[Channel]:
    """Where a message to this person goes: the notification centre, and every channel they
    chose that still works. Email that bounced is skipped; if that leaves no outside
    channel, another one they can be reached on is used."""
    if recipient is None:
        return [Channel.EMAIL]
    profile: CustomerProfile | None = getattr(recipient, "profile", None)
    if profile is None:
        return [Channel.INAPP, Channel.EMAIL]
    email_ok = profile.email_bounced_at is None
    chosen = [
        channel
        for channel, wanted, usable in (
            (Channel.EMAIL, profile.channel_email, email_ok),
            (Channel.SMS, profile.channel_sms, bool(profile.phone)),
            (Channel.PUSH, profile.channel_push, True),
        )
        if wanted and usable
    ]
    if not any(channel != Channel.PUSH for channel in chosen):
        # Fallback: the chosen channel bounced (or has no number); reach them another way.
        # Push alone is no way to reach them: the portal does not register browsers for it
        # yet (docs/notifications.md), so it is kept, and email or a text goes too.
        if profile.phone:
            chosen = [*chosen, Channel.SMS]
        elif email_ok:
            chosen = [*chosen, Channel.EMAIL]
    return [Channel.INAPP, *chosen]


def quiet_hours_end(
    *, profile: CustomerProfile | None, kind: str, now: datetime
) -> datetime | None:
    """When the customer's quiet hours end, if ``now`` is inside them and the kind is held."""
    if profile is None or profile.quiet_hours_start is None or profile.quiet_hours_end is None:
        return None
    if kind in (profile.anytime_kinds or []):
        return None
    local = timezone.localtime(now, profile.zone)
    start, end, clock = profile.quiet_hours_start, profile.quiet_hours_end, local.time()
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=profile.zone)


@dataclass(frozen=True)
class _Cause:
    recipient: User | None
    kind: str
    dedup_key: str
    context: dict[str, Any]
    journey: Any
    occurred_at: datetime | None
    scheduled_at: datetime | None
    to_email: str


# The rows a digest may join: one still waiting, or one sent (or being sent) recently.
_DIGESTIBLE = (NotificationState.PENDING, NotificationState.SENDING, NotificationState.SENT)


class _DigestSlots:
    """The latest message per person and channel, as ``_digest_slot`` reads it: given for
    every pair of an outbox's causes from one query (``Outbox.flush``), then kept
    current in memory as the outbox adds rows, so several causes for one person in one
    unit of work join one digest exactly as they would one at a time."""

    def __init__(self, pairs: set[tuple[int, str]], since: datetime) -> None:
        self.since = since
        self.rows: dict[tuple[int, str], list[tuple[datetime, str, datetime, datetime | None]]]
        self.rows = {pair: [] for pair in pairs}

    def condition(self) -> dict[str, Any]:
        """What to read for these pairs (``_outbox_rows``: nothing if there are none)."""
        return {
            "recipients": sorted({recipient for recipient, _channel in self.rows}),
            "channels": sorted({str(channel) for _recipient, channel in self.rows}),
            "since": self.since,
        }

    def read(
        self,
        recipient: int | None,
        channel: str,
        created_at: datetime,
        state: str,
        scheduled_at: datetime,
        sent_at: datetime | None,
    ) -> None:
        """One row the query returned (it may have matched for another reason)."""
        rows = self.rows.get((recipient, channel)) if recipient is not None else None
        if rows is not None and state in _DIGESTIBLE and created_at >= self.since:
            rows.append((created_at, state, scheduled_at, sent_at))

    def slot(
        self, *, recipient: int, channel: str, not_before: datetime, now: datetime
    ) -> datetime:
        """After a recent message on this channel, hold the next one so a burst goes as one
        digest; join a digest that is already waiting. Records the new row.

        The digest holds a message for one window at most: a waiting row due later than
        that is held for another reason (the end of quiet hours, a retry's backoff) and
        is no digest to join, or a message that may go now (a kind allowed at any hour,
        quiet hours since switched off) would wait behind it for hours."""
        window = settings.NOTIFICATION_DIGEST_WINDOW
        rows = self.rows[(recipient, channel)]
        latest = not_before + window
        recent = max(
            (
                row
                for row in rows
                if row[0] >= not_before - window
                and not (row[1] == NotificationState.PENDING and row[2] > latest)
            ),
            key=lambda row: row[2],
            default=None,
        )
        when = not_before
        if recent is not None:
            _created, state, scheduled_at, sent_at = recent
            if state == NotificationState.PENDING:
                when = max(not_before, scheduled_at)
            else:
                when = max(not_before, (sent_at or scheduled_at) + window)
        rows.append((now, NotificationState.PENDING, when, None))
        return when


class Outbox:
    """The notifications of one unit of work (a partner's batch, one event), written
    together at ``flush()`` in the caller's transaction: two statements for any number
    of causes (one read of the rows already written for these causes and of the recent
    messages digests join; the insert), and a broker message per ``DELIVERY_CHUNK`` rows
    due now."""

    def __init__(self) -> None:
        self._causes: list[_Cause] = []

    def pending(self) -> int:
        """How many causes wait for ``flush()``."""
        return len(self._causes)

    def withdraw(self, *, journey: Any, kind: str) -> bool:
        """Drop the causes of ``kind`` for ``journey`` not flushed yet (undone within the
        unit that caused them: nobody will have heard of them); whether there were any."""
        kept = [
            c
            for c in self._causes
            if not (c.kind == kind and c.journey is not None and c.journey.pk == journey.pk)
        ]
        withdrawn = len(kept) != len(self._causes)
        self._causes = kept
        return withdrawn

    def holds(self, *, journey: Any, kinds: Iterable[str]) -> bool:
        """Whether a cause of one of ``kinds`` for ``journey`` waits for ``flush()``."""
        kinds = set(kinds)
        return any(
            c.kind in kinds and c.journey is not None and c.journey.pk == journey.pk
            for c in self._causes
        )

    def add(
        self,
        *,
        recipient: User | None,
        kind: str,
        dedup_key: str,
        context: dict[str, Any],
        journey: Any = None,
        occurred_at: datetime | None = None,
        scheduled_at: datetime | None = None,
        to_email: str = "",
    ) -> None:
        """One cause. A kind switched off for the journey's template, a partner's test
        journey and a deactivated recipient write nothing."""
        if kind not in KINDS:
            raise ValueError(f"Unknown notification kind {kind!r}")
        if journey is not None and kind in (journey.template.disabled_notifications or []):
            return
        if journey is not None and journey.is_sandbox:
            return  # a partner's test journey never notifies anyone
        if recipient is not None and not recipient.is_active:
            return  # a deleted (or deactivated) account is not written to
        self._causes.append(
            _Cause(
                recipient=recipient,
                kind=kind,
                dedup_key=dedup_key,
                context=context,
                journey=journey,
                occurred_at=occurred_at,
                scheduled_at=scheduled_at,
                to_email=to_email,
            )
        )

    def flush(self, together: Together | None = None) -> list[Notification]:
        """Write the rows of the causes added since the last flush; returns those written.

        A cause already in the outbox (same dedup key and channel, written before or by a
        concurrent writer) is not written again. Rows due now are queued for delivery
        after commit; held rows are delivered by the sweep when due.

        With ``together``, the outbox is read now and its insert is queued there, to go
        with the unit's other writes (``journey.unit``): it then returns nothing, and the
        rows are queued for delivery when ``together`` is sent."""
        now = timezone.now()
        rows = self._planned(now)
        # The unique (dedup key, channel) skips what a concurrent writer of a cause got in
        # first: one statement, no savepoint.
        if together is not None:
            together.insert_unless_taken(
                rows, key=("dedup_key", "channel"), then=lambda written: _due(written, now)
            )
            return []
        return _due(bulk_create_unless_taken(rows, key=("dedup_key", "channel")), now)

    def _planned(self, now: datetime) -> list[Notification]:
        """The rows of the causes added since the last flush that the outbox does not
        hold yet (one read)."""
        causes, self._causes = self._causes, []
        if not causes:
            return []
        window = settings.NOTIFICATION_DIGEST_WINDOW
        routes = [
            (cause, recipient_channels(recipient=cause.recipient), _held_until(cause, now))
            for cause in causes
        ]
        # Everything the outbox already holds that matters here, in one read: the rows of
        # these causes (re-run jobs, such as the reminders, meet the same causes again:
        # this skips them cheaply), and the recent messages of these people that a new
        # one joins as a digest (read from a little earlier than needed: their own
        # times decide, in slot()).
        slots = _DigestSlots(
            {
                (cause.recipient.pk, channel)
                for cause, channels_, _held in routes
                if cause.recipient is not None
                for channel in channels_
                if channel != Channel.INAPP
            },
            since=min((cause.scheduled_at or now for cause in causes), default=now) - window,
        )
        written: dict[str, set[str]] = {cause.dedup_key: set() for cause in causes}
        rows = _OUTBOX_ROWS.list(keys=sorted(written), **slots.condition())
        for key, recipient, channel, *digest in rows:
            if key in written:
                written[key].add(channel)
            slots.read(recipient, channel, *digest)
        plans = []
        for cause, channels_, held_until in routes:
            for channel in channels_:
                if channel in written[cause.dedup_key]:
                    continue  # already in the outbox: one message per cause
                written[cause.dedup_key].add(channel)
                when = cause.scheduled_at or now
                if channel != Channel.INAPP:
                    when = max(when, held_until or when)
                plans.append((cause, channel, when))
        rows = []
        for cause, channel, when in plans:
            state, sent_at = NotificationState.PENDING, None
            if channel == Channel.INAPP:
                # The notification centre shows it at once; nothing to send, nobody woken.
                state, sent_at = NotificationState.SENT, now
            elif cause.recipient is not None:
                when = slots.slot(
                    recipient=cause.recipient.pk, channel=channel, not_before=when, now=now
                )
            rows.append(
                Notification.new(
                    recipient=cause.recipient,
                    to_email=cause.to_email,
                    journey=cause.journey,
                    kind=cause.kind,
                    channel=channel,
                    context=cause.context,
                    dedup_key=cause.dedup_key,
                    occurred_at=cause.occurred_at,
                    scheduled_at=when,
                    state=state,
                    sent_at=sent_at,
                )
            )
        return rows


def _due(rows: list[Notification], now: datetime) -> list[Notification]:
    """Queue the written rows that are due ``now`` for delivery once the transaction
    commits (held rows wait for the sweep); returns the rows."""
    due = [
        row.pk for row in rows if row.state == NotificationState.PENDING and row.scheduled_at <= now
    ]
    if due:
        transaction.on_commit(lambda: _queue_delivery(due))
    return rows


def _outbox_rows(
    keys: list[str], recipients: list[int], channels: list[str], since: datetime
) -> QuerySet[Notification]:
    """The outbox's rows of these dedup keys, and the digestible rows since ``since`` of
    these people on these channels (``_DigestSlots``)."""
    columns = ("dedup_key", "recipient_id", "channel", "created_at", "state")
    columns += ("scheduled_at", "sent_at")
    # Two SELECTs in one statement (UNION drops a row both find): PostgreSQL planned the
    # two conditions joined by OR, each with a list per cause, in 3.1-3.8 ms for a batch
    # of a hundred causes (longer than it ran), and plans the UNION in 0.3.
    recent = Notification.objects.filter(
        recipient_id__one_of=recipients,
        channel__one_of=channels,
        state__in=_DIGESTIBLE,
        created_at__gte=since,
    )
    return (
        Notification.objects.filter(dedup_key__one_of=keys)
        .order_by()
        .values_list(*columns)
        .union(recent.order_by().values_list(*columns))
        # Newest first, as the digest rule has always read them: between two recent
        # messages held to the same time, slot() keeps the first, the newer one.
        .order_by("-created_at")
    )


# Read by every unit of work that notifies anyone: compiled once (journey.compiled).
_OUTBOX_ROWS = CompiledRead(_outbox_rows, whole=("keys", "recipients", "channels"))


def _held_until(cause: _Cause, now: datetime) -> datetime | None:
    profile = getattr(cause.recipient, "profile", None) if cause.recipient else None
    return quiet_hours_end(profile=profile, kind=cause.kind, now=now)


def notification_enqueue(
    *, recipient: User | None, kind: str, dedup_key: str, context: dict[str, Any], **details: Any
) -> list[Notification]:
    """Write the outbox rows for one cause, inside the caller's transaction: an ``Outbox``
    of one (``details``: journey, occurred_at, scheduled_at, to_email, as ``Outbox.add``).

    A cause already in the outbox (same dedup key) is not written again; a kind switched off
    for the journey's template is not written at all. Delivery of rows due now is queued
    after commit; held rows are delivered by the sweep when due.
    """
    outbox = Outbox()
    outbox.add(recipient=recipient, kind=kind, dedup_key=dedup_key, context=context, **details)
    return outbox.flush()


# The profile's fields that decide when and where a message goes (``recipient_channels``,
# ``quiet_hours_end``).
DELIVERY_SETTINGS = frozenset(
    {
        "quiet_hours_start",
        "quiet_hours_end",
        "anytime_kinds",
        "time_zone",
        "channel_email",
        "channel_sms",
        "channel_push",
        "phone",
    }
)


def notifications_reschedule(*, recipient: User, changed: Iterable[str]) -> list[Notification]:
    """The customer changed the profile fields ``changed``: if one of them decides when or
    where a message goes (quiet hours, time zone, channels), the messages still waiting
    for them go as the new settings say. In the caller's transaction; returns the rows
    written again.

    Waiting: pending, never tried, and due later (held to the end of quiet hours, or for
    a digest). Their causes are written again as the outbox writes a cause now: at once
    (as one digest) when nothing holds them any more, at the new end of quiet hours
    otherwise, and on the channels chosen now (a channel switched off loses its row, one
    switched on gets one). A retry keeps its backoff, and a row due now goes as it is.
    """
    if not DELIVERY_SETTINGS.intersection(changed):
        return []
    now = timezone.now()
    waiting = list(
        Notification.objects.select_for_update(of=("self",))
        .filter(
            recipient=recipient,
            state=NotificationState.PENDING,
            attempts=0,
            scheduled_at__gt=now,
        )
        .exclude(channel=Channel.INAPP)
        .select_related("journey__template")
        .order_by("created_at", "id")
    )
    if not waiting:
        return []
    # The settings as they were just saved (the caller's instance may predate them).
    recipient = User.objects.select_related("profile").get(pk=recipient.pk)
    # Never sent, so never seen: the row goes, and its cause is written as new. The
    # centre's row (sent at once) stays, so the cause keeps its place there.
    Notification.objects.filter(pk__in=[row.pk for row in waiting]).delete()
    outbox = Outbox()
    causes: dict[str, Notification] = {}
    for row in waiting:
        causes.setdefault(row.dedup_key, row)
    for row in causes.values():
        outbox.add(
            recipient=recipient,
            kind=row.kind,
            dedup_key=row.dedup_key,
            context=row.context,
            journey=row.journey,
            occurred_at=row.occurred_at,
        )
    return outbox.flush()


# Rows per delivery task: a partner's batch of a hundred events is four broker messages,
# not a hundred (each publish costs about a millisecond), and still spread over the
# workers, so the last customer of a large batch is not told minutes after the first.
DELIVERY_CHUNK = 25

# On Redis, the rows due now wait in a list (their ids), and a broker message wakes a
# worker to take them: one message per wake-up, not one per transaction, however many
# rows come meanwhile (a publish is most of a millisecond of the request's CPU; pushing an
# id and setting the flag, one round trip, a tenth of that). A worker deletes the flag as
# it takes a chunk of the list and, if rows are left, wakes the next before it delivers
# its own, so that every free worker process has a chunk to take.
_DUE = "notifications:due"
_WAKE = "notifications:due:wake"
# A wake-up whose message was lost (a web process killed between setting the flag and
# publishing, a worker older than deliver_due that drops the message) expires: the next
# row due wakes a worker again; the sweep delivers the rows meanwhile.
_WAKE_SECONDS = 30
# A commit that finds the list long (a partner's batch of a hundred) wakes a worker per
# chunk, up to this many at once, as its chunks were queued at once before: each goes on
# to wake the next, so they take the list side by side, not one hop through the queue
# after another.
_WAKE_AT_ONCE = 4
# The list keeps its newest ids only (workers stopped for hours): the rows it drops stay
# pending, and the sweep delivers them.
_DUE_KEEP = 100_000


def _queue_delivery(notification_ids: list[int]) -> None:
    """Queue the rows a transaction made due for delivery. On Redis (not when tasks run
    in-process), onto the list of due rows, waking workers unless one is woken already;
    otherwise one task for one row, a list task for each chunk of several."""
    from notifications.tasks import deliver_due, deliver_notification, deliver_notifications

    cache = caches["default"]
    try:
        if isinstance(cache, RedisCache) and not deliver_due.app.conf.task_always_eager:
            due = cache.make_and_validate_key(_DUE)
            wake = cache.make_and_validate_key(_WAKE)
            client = redis_client(cache)
            pipe = client.pipeline(transaction=False)
            pipe.rpush(due, *notification_ids)
            pipe.ltrim(due, -_DUE_KEEP, -1)
            pipe.set(wake, 1, nx=True, ex=_WAKE_SECONDS)
            length, _, woken = pipe.execute()
            if woken:
                chunks = -(-min(length, _DUE_KEEP) // DELIVERY_CHUNK)
                _wake(client, due, wake, min(chunks, _WAKE_AT_ONCE))
            return
        if len(notification_ids) == 1:
            deliver_notification.delay(notification_ids[0])
            return
        for start in range(0, len(notification_ids), DELIVERY_CHUNK):
            deliver_notifications.delay(notification_ids[start : start + DELIVERY_CHUNK])
    except Exception:
        # Redis or the broker is down: the rows stay pending and the sweep delivers them.
        logger.warning(
            "Could not queue notifications %s; the sweep will deliver them.",
            notification_ids,
            exc_info=True,
        )


def _wake(client: Any, due: str, wake: str, workers: int = 1) -> None:
    """Send the messages that wake ``workers`` workers to take the list ``due``, whose
    flag ``wake`` the caller set. The message names both keys: the worker takes what the
    request's cache (its key prefix) wrote."""
    from notifications.tasks import deliver_due

    try:
        for _ in range(workers):
            deliver_due.delay(due, wake)
    except Exception:
        # No worker is coming (or fewer): let the next row due wake one.
        client.delete(wake)
        raise


def notifications_deliver_due(*, due: str, wake: str) -> list["Delivery"]:
    """Take a chunk of the rows due now from the list ``due`` (``_queue_delivery``) and
    deliver them as ``notifications_deliver`` does, waking the next worker first if rows
    are left. The flag ``wake`` is deleted in the transaction (``MULTI``) that takes the
    chunk, so a row pushed after it wakes a worker of its own, and a row pushed before it
    is in this chunk or in what is left.

    A worker that dies after taking its chunk loses those ids, not the rows: they stay
    pending and the sweep delivers them (the task, back after the worker is lost, finds
    other ids or none)."""
    client = redis_client(caches["default"])
    pipe = client.pipeline(transaction=True)
    pipe.delete(wake)
    pipe.lpop(due, DELIVERY_CHUNK)
    pipe.llen(due)
    _, taken, left = pipe.execute()
    if left and client.set(wake, 1, nx=True, ex=_WAKE_SECONDS):
        try:
            _wake(client, due, wake)
        except Exception:
            logger.warning(
                "Could not wake another worker; the sweep delivers the rest.", exc_info=True
            )
    return notifications_deliver(notification_ids=[int(pk) for pk in taken or ()])


def _claimable(now: datetime, stale: datetime) -> Q:
    """Due and pending, or claimed before ``stale`` (a lease ago): a worker that died
    mid-send. ``stale`` is given, not read from the settings here, so that a compiled
    read (``_deliverable``) does not freeze the lease into its SQL."""
    return Q(state=NotificationState.PENDING, scheduled_at__lte=now) | Q(
        state=NotificationState.SENDING, claimed_at__lt=stale
    )


def _deliverable(ids: list[int], now: datetime, stale: datetime) -> QuerySet[Notification]:
    """The listed rows that may be claimed, and the same people's other due rows on the
    same channel, with what rendering them reads."""
    listed = Notification.objects.filter(_claimable(now, stale), pk__in=ids).exclude(
        channel=Channel.INAPP
    )
    joined = Exists(
        listed.filter(recipient_id=OuterRef("recipient_id"), channel=OuterRef("channel"))
    )
    return (
        Notification.objects.filter(
            Q(_claimable(now, stale), pk__in=ids)
            | (Q(state=NotificationState.PENDING, scheduled_at__lte=now) & joined)
        )
        .exclude(channel=Channel.INAPP)
        .select_related("recipient", "recipient__profile", "journey", "journey__template")
        .order_by("created_at", "id")
    )


# Read by every delivery: compiled once (journey.compiled).
_DELIVERABLE = CompiledRead(_deliverable)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at one hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


@dataclass(frozen=True)
class Delivery:
    """One message handed to a channel: the outbox rows it carried (one, or a digest's
    several for one person), and whether the channel took it."""

    rows: list[Notification]
    sent: bool

    def state_of(self, row: Notification) -> NotificationState:
        """The row's new state: sent; or, refused, pending for its retry, or failed after
        its last attempt."""
        if self.sent:
            return NotificationState.SENT
        return (
            NotificationState.FAILED if row.attempts >= MAX_ATTEMPTS else NotificationState.PENDING
        )


def notifications_deliver(*, notification_ids: list[int]) -> list[Delivery]:
    """Send the listed outbox rows that are due and nobody else has, each together with
    the other due rows for the same person and channel (one digest, not a burst).

    One read for them all: the listed rows that may be claimed, and the same people's
    other due rows on the same channel. Then two statements a message (a person's rows on
    one channel), where each row alone took five: its rows claimed with a conditional
    UPDATE right before it is handed over, and marked sent right after. Claimed one
    message at a time, a list holds nothing it is not sending: a worker that dies in the
    middle, or a list slowed down by its provider, leaves only the message it was sending
    claimed until the lease runs out, and a redelivered task sends the rest at once. A
    message its channel refuses is retried with backoff; anything else failing for one
    message is logged, and the rest of the list goes on.
    """
    if not notification_ids:
        return []
    now = timezone.now()
    messages: dict[tuple[object, str], list[Notification]] = {}
    for row in _DELIVERABLE.list(
        ids=list(notification_ids), now=now, stale=now - settings.OUTBOX_CLAIM_LEASE
    ):
        # A row without a recipient (an address alone) is a message of its own.
        messages.setdefault((row.recipient_id or f"row {row.pk}", row.channel), []).append(row)
    deliveries = []
    # The list's emails share one connection to the mail server.
    with channels.MailSession() as session:
        for rows in messages.values():
            try:
                delivery = _deliver(rows, session=session)
            except Exception:
                logger.exception(
                    "Delivering notifications %s failed; the sweep retries them.",
                    [row.pk for row in rows],
                )
                # A broken connection would fail every message after it: drop it, so the
                # next starts on a new one (never inside a caller's transaction).
                if not transaction.get_connection().in_atomic_block:
                    close_old_connections()
                continue
            if delivery is not None:
                deliveries.append(delivery)
    return deliveries


def _deliver(rows: list[Notification], *, session: channels.MailSession) -> Delivery | None:
    """Claim one person's rows on one channel, hand them over as one message, and record
    what became of them. None when another worker had claimed them all meanwhile."""
    now = timezone.now()
    claim = uuid.uuid4()
    pks = [row.pk for row in rows]
    stale = now - settings.OUTBOX_CLAIM_LEASE
    claimed = Notification.objects.filter(_claimable(now, stale), pk__in=pks).update(
        state=NotificationState.SENDING,
        claimed_at=now,
        claim_id=claim,
        attempts=F("attempts") + 1,
    )
    if claimed != len(rows):
        if not claimed:
            return None
        # Another worker claimed some of them since the read: send the others.
        mine = set(
            Notification.objects.filter(claim_id=claim, pk__in=pks).values_list("pk", flat=True)
        )
        rows = [row for row in rows if row.pk in mine]
        pks = [row.pk for row in rows]
    for row in rows:
        row.attempts += 1  # as the claim counted it, unless another worker tried meanwhile
    try:
        channels.send(rows, session=session)
    except Exception as error:
        logger.exception("Sending notifications %s failed", pks)
        failed_at = timezone.now()
        # The attempts as the claim left them: another worker may have tried a row
        # between this list's read and its claim.
        attempts = dict(Notification.objects.filter(claim_id=claim).values_list("pk", "attempts"))
        for row in rows:
            row.attempts = attempts.get(row.pk, row.attempts)
            Notification.objects.filter(pk=row.pk, claim_id=claim).update(
                state=(
                    NotificationState.FAILED
                    if row.attempts >= MAX_ATTEMPTS
                    else NotificationState.PENDING
                ),
                scheduled_at=failed_at + backoff(row.attempts),
                claimed_at=None,
                claim_id=None,
                last_error=f"{type(error).__name__}: {error}"[:2000],
            )
        return Delivery(rows=rows, sent=False)
    marked = Notification.objects.filter(pk__in=pks, claim_id=claim).update(
        state=NotificationState.SENT,
        sent_at=timezone.now(),
        claimed_at=None,
        last_error="",
        digest_size=len(rows),
    )
    if marked != len(rows):
        # The send outlasted the lease and another worker took the rows: they may go twice.
        logger.warning(
            "Notifications %s were sent after their claim's lease ran out; %d of %d "
            "marked sent here.",
            pks,
            marked,
            len(rows),
        )
    return Delivery(rows=rows, sent=True)


def notification_deliver(*, notification_id: int) -> NotificationState | None:
    """Send one outbox row if it is due and nobody else has it, together with any other
    due rows for the same person and channel (then as one digest). Returns the row's new
    state, or None when there was nothing to do."""
    for delivery in notifications_deliver(notification_ids=[notification_id]):
        for row in delivery.rows:
            if row.pk == notification_id:
                return delivery.state_of(row)
    return None


def outbox_due_ids(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """What the sweep sends: rows whose task never ran (broker down, worker died), retries
    that are due, and rows that were held (quiet hours, digest) and are now due.

    One id per person and channel among the pending rows: delivering it takes that
    person's other due rows along, as one digest, so the rest need no delivery of their
    own (each would only find its row already claimed)."""
    now = now or timezone.now()
    lost = Q(state=NotificationState.PENDING, scheduled_at__lte=now - settings.OUTBOX_SWEEP_GRACE)
    held = Q(
        state=NotificationState.PENDING,
        scheduled_at__lte=now,
        scheduled_at__gt=F("created_at") + timedelta(seconds=1),
    )
    abandoned = Q(state=NotificationState.SENDING, claimed_at__lt=now - settings.OUTBOX_CLAIM_LEASE)
    rows = (
        Notification.objects.filter(lost | held | abandoned)
        .order_by("scheduled_at")
        .values_list("pk", "recipient_id", "channel", "state")[:limit]
    )
    heads: list[int] = []
    seen: set[tuple[int, str]] = set()
    for pk, recipient_id, channel, state in rows:
        group = (recipient_id, channel)
        if state == NotificationState.PENDING and recipient_id is not None:
            if group in seen:
                continue
            seen.add(group)
        heads.append(pk)
    return heads


def outbox_sweep(*, now: datetime | None = None) -> int:
    """Deliver every overdue row; returns how many messages were sent. A chunk of rows
    at a time, as their tasks would: one read per chunk, each message claimed as it is
    sent."""
    heads = outbox_due_ids(now=now)
    sent = 0
    for start in range(0, len(heads), DELIVERY_CHUNK):
        for delivery in notifications_deliver(
            notification_ids=heads[start : start + DELIVERY_CHUNK]
        ):
            sent += delivery.sent
    return sent


def notification_settle(*, recipient: User, dedup_key: str) -> int:
    """The cause of a message is settled before it went out (a proposal the customer
    answered, one replaced): what still waits to be sent of it is dropped, so no email or
    text asks about it any more, and its row in the centre is read. Rows already being
    sent, sent or failed stay as the record of what was. Returns the rows dropped."""
    rows = Notification.objects.filter(recipient=recipient, dedup_key=dedup_key)
    dropped, _ = (
        rows.exclude(channel=Channel.INAPP)
        .filter(state=NotificationState.PENDING, attempts=0)
        .delete()
    )
    rows.filter(channel=Channel.INAPP, read_at=None).update(read_at=timezone.now())
    return dropped


def notification_mark_read(*, user: User, notification_id: int | None = None) -> int:
    """Mark one (or, with no id, every) notification in the user's centre as read."""
    rows = Notification.objects.filter(recipient=user, channel=Channel.INAPP, read_at=None)
    if notification_id is not None:
        rows = rows.filter(pk=notification_id)
    return rows.update(read_at=timezone.now())


def email_bounced(*, email: str, notification_id: int | None = None) -> bool:
    """A hard bounce: email stops for this customer, and the bounced message is sent again
    on another channel they allowed. Returns False for an unknown address."""
    profile = (
        CustomerProfile.objects.select_related("user").filter(user__email=email.lower()).first()
    )
    if profile is None:
        return False
    with transaction.atomic():
        profile.email_bounced_at = timezone.now()
        profile.save(update_fields=["email_bounced_at"])
        if notification_id is not None:
            bounced = Notification.objects.filter(
                pk=notification_id, recipient=profile.user, channel=Channel.EMAIL
            ).first()
            if bounced is not None:
                Notification.objects.filter(pk=bounced.pk).update(
                    state=NotificationState.FAILED, last_error="Bounced"
                )
                for channel in recipient_channels(recipient=profile.user):
                    if channel in (Channel.INAPP, Channel.EMAIL):
                        continue
                    try:
                        with transaction.atomic():
                            fallback = Notification.objects.create(
                                recipient=profile.user,
                                journey=bounced.journey,
                                kind=bounced.kind,
                                channel=channel,
                                context=bounced.context,
                                dedup_key=bounced.dedup_key,
                                occurred_at=bounced.occurred_at,
                            )
                    except IntegrityError:
                        continue
                    transaction.on_commit(lambda pk=fallback.pk: _queue_delivery([pk]))
    return True


def unread_count(*, user: User) -> int:
    return Notification.objects.filter(
        recipient=user, channel=Channel.INAPP, read_at__isnull=True
    ).count()


def notification_resend(*, notification: Notification) -> Notification:
    """Send a message again at staff's request, always through the outbox.

    A failed row is reset to pending (attempts from zero) and delivered again: it is the
    same message that never arrived. A sent row gets a new row, a copy with its own dedup
    key (``<key>:resend:<n>``), so the history keeps both deliveries. Rows still pending
    or being sent, and the portal's notification centre, are refused.
    """
    from journey.errors import ApplicationError

    if notification.channel == Channel.INAPP:
        raise ApplicationError(
            "Messages in the portal's notification centre are not sent.",
            fields={"channel": ["In the portal."]},
        )
    now = timezone.now()
    with transaction.atomic():
        row = Notification.objects.select_for_update().get(pk=notification.pk)
        if row.state == NotificationState.FAILED:
            row.state = NotificationState.PENDING
            row.attempts = 0
            row.scheduled_at = now
            row.claimed_at = None
            row.claim_id = None
            row.last_error = ""
            row.save(
                update_fields=[
                    "state",
                    "attempts",
                    "scheduled_at",
                    "claimed_at",
                    "claim_id",
                    "last_error",
                ]
            )
        elif row.state == NotificationState.SENT:
            copies = Notification.objects.filter(
                dedup_key__startswith=f"{row.dedup_key}:resend:", channel=row.channel
            ).count()
            row = Notification.objects.create(
                recipient=row.recipient,
                to_email=row.to_email,
                journey=row.journey,
                kind=row.kind,
                channel=row.channel,
                context=row.context,
                dedup_key=f"{row.dedup_key}:resend:{copies + 1}",
                # Not a new cause: left out of "time to know" (the first send counts).
                occurred_at=None,
                scheduled_at=now,
            )
        else:
            raise ApplicationError(
                "This message is still waiting to be sent.",
                code="conflict",
                fields={"state": ["Pending."]},
                status=409,
            )
        transaction.on_commit(lambda pk=row.pk: _queue_delivery([pk]))
    return row
