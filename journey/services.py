"""Writes to journeys. The spine: every change to a journey goes through here."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from journey import events
from journey.errors import ApplicationError
from journey.eta import ETA_FIELDS, eta_refresh
from journey.models import (
    EtaCause,
    EventSource,
    Journey,
    JourneyEvent,
    JourneyTemplate,
    Message,
    Milestone,
    MilestoneState,
)
from notifications.services import notification_enqueue

# Partners' and staff clocks drift: an event a few minutes "in the future" is accepted.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class RecordedEvent:
    event: JourneyEvent
    applied: bool


def journey_create(
    *,
    template: JourneyTemplate,
    owner: User,
    title: str,
    started_at: datetime | None = None,
    promised_date: date | None = None,
) -> Journey:
    """Create a journey with one milestone per stage of its template, planned in order."""
    started_at = started_at or timezone.now()
    stages = list(template.stages.order_by("position"))
    if not stages:
        raise ApplicationError(
            f"The template {template.name!r} has no stages.", fields={"template": ["No stages."]}
        )
    with transaction.atomic():
        journey = Journey.objects.create(
            template=template,
            owner=owner,
            title=title,
            started_at=started_at,
            promised_date=promised_date,
        )
        planned = started_at
        milestones = []
        for stage in stages:
            # A stage's duration runs from reaching it to reaching the next one.
            milestones.append(
                Milestone(
                    journey=journey,
                    stage=stage,
                    position=stage.position,
                    planned_date=timezone.localdate(planned),
                )
            )
            planned += stage.expected_duration
        # A journey created after it started is forecast from now, not from its start.
        eta_refresh(
            journey=journey,
            milestones=milestones,
            now=max(started_at, timezone.now()),
            cause=EtaCause.CREATED,
        )
        Milestone.objects.bulk_create(milestones)
        journey.save(update_fields=[*ETA_FIELDS, "updated_at"])
    return journey


def journey_record_milestone(
    *,
    journey: Journey,
    stage_key: str,
    occurred_at: datetime,
    source: EventSource,
    actor: User | None = None,
    source_name: str = "",
    message: str = "",
    payload: dict[str, Any] | None = None,
) -> RecordedEvent:
    """Record that a journey reached a stage.

    In one transaction: appends the event to the timeline, moves the milestones
    forward (never backwards: an event older than the journey's current state is kept
    in the log but changes nothing), recomputes ETA and health, and writes the
    customer's notification to the outbox. Delivery is queued after commit.
    """
    now = timezone.now()
    if timezone.is_naive(occurred_at):
        raise ApplicationError(
            "occurred_at needs a time zone offset.", fields={"occurred_at": ["No time zone."]}
        )
    if occurred_at > now + CLOCK_SKEW:
        raise ApplicationError(
            "occurred_at is in the future.", fields={"occurred_at": ["In the future."]}
        )
    if occurred_at < journey.started_at - timedelta(days=1):
        raise ApplicationError(
            "occurred_at is before the journey started.",
            fields={"occurred_at": ["Before the journey started."]},
        )

    with transaction.atomic():
        # One writer per journey at a time: concurrent events are applied in turn.
        journey = Journey.objects.select_for_update().select_related("owner").get(pk=journey.pk)
        milestones = list(journey.milestones.select_related("stage").order_by("position"))
        target = next((m for m in milestones if m.stage.key == stage_key), None)
        if target is None:
            raise ApplicationError(
                f"This journey has no stage {stage_key!r}.",
                code="unknown_stage",
                fields={"stage": [f"Unknown stage {stage_key!r}."]},
            )
        reached = [m for m in milestones if m.state != MilestoneState.UPCOMING]
        latest = reached[-1] if reached else None
        applied = latest is None or target.position > latest.position

        event = events.event_milestone_reached(
            journey=journey,
            milestone=target,
            occurred_at=occurred_at,
            source=source,
            applied=applied,
            actor=actor,
            source_name=source_name,
            message=message,
            payload=payload,
        )
        if applied:
            _advance(milestones=milestones, target=target, occurred_at=occurred_at)
            journey.last_event_at = max(filter(None, [journey.last_event_at, occurred_at]))
            eta_refresh(journey=journey, milestones=milestones, now=now, cause=EtaCause.EVENT)
            journey.save(update_fields=["last_event_at", *ETA_FIELDS, "updated_at"])
            if target.stage.customer_visible and target.stage.notify_customer:
                notification_enqueue(
                    recipient=journey.owner,
                    journey=journey,
                    kind="milestone_reached",
                    dedup_key=f"milestone-reached:{target.pk}",
                    context={
                        "stage_label": target.stage.label,
                        "explanation": target.stage.explanation,
                        "message": message,
                        "occurred_at": occurred_at.isoformat(),
                        "position": target.position,
                        "stage_count": len(milestones),
                        "eta": journey.eta.isoformat() if journey.eta else None,
                    },
                    occurred_at=occurred_at,
                )
        elif target.state == MilestoneState.DONE and target.reached_at is None:
            # A stage passed over earlier now has its own time; state is unchanged.
            target.reached_at = occurred_at
            target.save(update_fields=["reached_at"])
    return RecordedEvent(event=event, applied=applied)


def _advance(*, milestones: list[Milestone], target: Milestone, occurred_at: datetime) -> None:
    last = milestones[-1]
    changed = []
    for milestone in milestones:
        if milestone.position < target.position and milestone.state != MilestoneState.DONE:
            # A stage passed over without its own event is done all the same.
            milestone.state = MilestoneState.DONE
            changed.append(milestone)
    target.state = MilestoneState.DONE if target is last else MilestoneState.CURRENT
    target.reached_at = occurred_at
    changed.append(target)
    Milestone.objects.bulk_update(changed, ["state", "reached_at"])


MESSAGE_MAX_LENGTH = 5000


def journey_message_post(
    *, journey: Journey, author: User, body: str, from_staff: bool = False, private: bool = False
) -> Message:
    """Add a message to a journey's conversation (the customer's, or a staff answer)."""
    body = body.strip()
    if not body:
        raise ApplicationError("Write a message first.", code="empty", fields={"body": ["Empty."]})
    if len(body) > MESSAGE_MAX_LENGTH:
        raise ApplicationError(
            f"A message can be at most {MESSAGE_MAX_LENGTH} characters.",
            fields={"body": ["Too long."]},
        )
    return Message.objects.create(
        journey=journey, author=author, body=body, from_staff=from_staff, private=private
    )
