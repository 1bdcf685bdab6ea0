"""The staff dashboard's numbers (reads only): whether customers are kept informed.

Every metric is a bounded number of queries whatever the data's size; the exact
definitions are in docs/staff.md.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Avg, Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from journey.models import (
    Feedback,
    Health,
    Journey,
    JourneyEvent,
    Message,
    RescheduleRequest,
    RescheduleState,
)
from notifications.models import Channel, Notification, NotificationState

WINDOW = timedelta(days=30)
# A customer message with no staff message in this long before it opened a new question.
FOLLOW_UP_GAP = timedelta(days=7)
AT_RISK_LIMIT = 20

AGE_BUCKETS: list[tuple[str, timedelta | None]] = [
    ("under 4 hours", timedelta(hours=4)),
    ("4 to 24 hours", timedelta(hours=24)),
    ("1 to 3 days", timedelta(days=3)),
    ("3 to 7 days", timedelta(days=7)),
    ("over 7 days", None),
]
DELAY_BUCKETS: list[tuple[str, timedelta | None]] = [
    ("under 1 min", timedelta(minutes=1)),
    ("1 to 15 min", timedelta(minutes=15)),
    ("15 to 60 min", timedelta(hours=1)),
    ("1 to 8 hours", timedelta(hours=8)),
    ("8 to 24 hours", timedelta(hours=24)),
    ("over 24 hours", None),
]


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str
    colour: str = ""


def _unanswered() -> QuerySet[Message]:
    later_staff = Message.objects.filter(
        journey=OuterRef("journey"), from_staff=True, created_at__gt=OuterRef("created_at")
    )
    return Message.objects.filter(from_staff=False, journey__is_sandbox=False).filter(
        ~Exists(later_staff)
    )


def unanswered_journey_ids() -> QuerySet:
    """Journeys with a customer message that no later staff message followed."""
    return _unanswered().values("journey_id")


def _bucket(value: timedelta, buckets: list[tuple[str, timedelta | None]]) -> str:
    for label, limit in buckets:
        if limit is None or value < limit:
            return label
    return buckets[-1][0]


def _bars(counts: dict[str, int], buckets: list[tuple[str, timedelta | None]]) -> list[Bar]:
    return [Bar(label, counts.get(label, 0), str(counts.get(label, 0))) for label, _ in buckets]


def at_risk_journeys() -> dict:
    """Journeys at risk or delayed (worst first), and how many journeys are in each health."""
    counts = dict(
        Journey.objects.filter(is_sandbox=False)
        .values_list("health")
        .annotate(n=Count("id"))
        .values_list("health", "n")
    )
    journeys = list(
        Journey.objects.filter(is_sandbox=False, health__in=[Health.DELAYED, Health.AT_RISK])
        .select_related("owner")
        .order_by("-health", "eta", "pk")[:AT_RISK_LIMIT]
    )
    # "delayed" sorts before "at_risk" descending: the worst first.
    colours = {Health.ON_TRACK: "#447e36", Health.AT_RISK: "#c86400", Health.DELAYED: "#ba2121"}
    bars = [
        Bar(str(label), counts.get(value, 0), str(counts.get(value, 0)), colours[value])
        for value, label in Health.choices
        if value in colours
    ]
    return {
        "journeys": journeys,
        "bars": bars,
        "total": counts.get(Health.AT_RISK, 0) + counts.get(Health.DELAYED, 0),
    }


def unanswered_messages(*, now: datetime) -> dict:
    """Customer messages no staff message followed, by age, oldest first."""
    rows = list(
        _unanswered()
        .select_related("journey", "author")
        .order_by("created_at", "pk")
        .only("pk", "created_at", "body", "journey__reference", "journey__id", "author__email")
    )
    counts: dict[str, int] = {}
    for message in rows:
        label = _bucket(now - message.created_at, AGE_BUCKETS)
        counts[label] = counts.get(label, 0) + 1
    return {"messages": rows[:20], "count": len(rows), "bars": _bars(counts, AGE_BUCKETS)}


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (p50, p95) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def duration_text(value: timedelta | None) -> str:
    """A duration as staff read it: "45 s", "12 min", "3 h 20 min", "2 d 4 h"."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def time_to_know(*, now: datetime) -> dict:
    """From the cause (occurred_at) to the email handed over (sent_at), last 30 days."""
    pairs = Notification.objects.filter(
        channel=Channel.EMAIL,
        state=NotificationState.SENT,
        occurred_at__isnull=False,
        sent_at__gte=now - WINDOW,
        recipient__isnull=False,
    ).values_list("occurred_at", "sent_at")
    delays = [max(sent - occurred, timedelta(0)) for occurred, sent in pairs]
    seconds = [d.total_seconds() for d in delays]
    counts: dict[str, int] = {}
    for delay in delays:
        label = _bucket(delay, DELAY_BUCKETS)
        counts[label] = counts.get(label, 0) + 1
    p50, p95 = percentile(seconds, 0.5), percentile(seconds, 0.95)
    return {
        "count": len(seconds),
        "p50": None if p50 is None else timedelta(seconds=round(p50)),
        "p95": None if p95 is None else timedelta(seconds=round(p95)),
        "p50_text": duration_text(None if p50 is None else timedelta(seconds=round(p50))),
        "p95_text": duration_text(None if p95 is None else timedelta(seconds=round(p95))),
        "bars": _bars(counts, DELAY_BUCKETS),
    }


def contact_rate(*, now: datetime) -> dict:
    """The share of active journeys whose customer had to ask (see docs/staff.md).

    Active: a non-sandbox journey with a milestone event or a message in the last 30 days.
    Had to ask: in that window the customer wrote a message that does not reply to a
    timeline update and that no staff message preceded within the 7 days before it.
    """
    since = now - WINDOW
    active = Journey.objects.filter(is_sandbox=False).filter(
        Exists(JourneyEvent.objects.filter(journey=OuterRef("pk"), occurred_at__gte=since))
        | Exists(Message.objects.filter(journey=OuterRef("pk"), created_at__gte=since))
    )
    recent_staff = Message.objects.filter(
        journey=OuterRef("journey"),
        from_staff=True,
        created_at__lt=OuterRef("created_at"),
        created_at__gte=OuterRef("created_at") - FOLLOW_UP_GAP,
    )
    asking = Message.objects.filter(
        journey=OuterRef("pk"),
        from_staff=False,
        milestone__isnull=True,
        created_at__gte=since,
    ).filter(~Exists(recent_staff))
    result = active.aggregate(
        total=Count("pk"),
        asked=Count("pk", filter=Exists(asking)),
    )
    total, asked = result["total"], result["asked"]
    rate = asked / total if total else None
    bars = [
        Bar("customer asked first", asked, str(asked)),
        Bar("kept informed", total - asked, str(total - asked)),
    ]
    return {"total": total, "asked": asked, "rate": rate, "bars": bars}


VIEWERS_ONLY = "#a9bcd6"


def feedback_by_stage() -> list[Bar]:
    """Average rating and count per stage label, worst first: the owners' (who bought it
    and lived the stage), with the viewers' a journey was shared with beside them, apart
    (a viewer may rate too, and a family of viewers must not outvote the customer);
    whose a rating is, is as it was given (``Feedback.by_owner``). A stage only viewers
    rated is ranked by their average."""
    by_owner = Q(by_owner=True)
    rows = (
        Feedback.objects.values("milestone__stage__label")
        .annotate(
            owners=Avg("rating", filter=by_owner),
            owner_count=Count("pk", filter=by_owner),
            viewers=Avg("rating", filter=~by_owner),
            viewer_count=Count("pk", filter=~by_owner),
        )
        .annotate(ranked=Coalesce("owners", "viewers"))
        .order_by("ranked", "-owner_count", "milestone__stage__label")
    )
    bars = []
    for row in rows:
        parts = []
        if row["owner_count"]:
            parts.append(f"{row['owners']:.1f} ({row['owner_count']})")
        if row["viewer_count"]:
            parts.append(f"viewers {row['viewers']:.1f} ({row['viewer_count']})")
        # A stage only viewers rated: their bar, paler, as the caption says.
        colour = "" if row["owner_count"] else VIEWERS_ONLY
        bars.append(
            Bar(row["milestone__stage__label"], float(row["ranked"]), " · ".join(parts), colour)
        )
    return bars


def open_reschedule_requests() -> dict:
    """Customers waiting to hear whether their appointment moves, oldest first."""
    rows = list(
        RescheduleRequest.objects.filter(state=RescheduleState.OPEN)
        .select_related("appointment__journey")
        .order_by("created_at", "pk")[:21]
    )
    return {"requests": rows[:20], "more": len(rows) > 20}


def dashboard(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    return {
        "at_risk": at_risk_journeys(),
        "unanswered": unanswered_messages(now=now),
        "reschedules": open_reschedule_requests(),
        "time_to_know": time_to_know(now=now),
        "contact": contact_rate(now=now),
        "feedback": feedback_by_stage(),
    }
