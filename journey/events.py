"""Factories for timeline events: the only code that makes JourneyEvent rows.

They are written by the spine's unit of work (``journey.unit.Writes``), with the rest of
what recording the event changes."""

from datetime import datetime
from typing import Any

from accounts.models import User
from journey.models import EventKind, EventSource, Journey, JourneyEvent, Milestone


def event_milestone_reached(
    *,
    journey: Journey,
    milestone: Milestone,
    occurred_at: datetime,
    source: EventSource,
    applied: bool,
    actor: User | None = None,
    source_name: str = "",
    message: str = "",
    payload: dict[str, Any] | None = None,
) -> JourneyEvent:
    """The event, not saved yet."""
    return JourneyEvent.new(
        journey=journey,
        milestone=milestone,
        kind=EventKind.MILESTONE_REACHED,
        occurred_at=occurred_at,
        source=source,
        actor=actor,
        source_name=source_name,
        message=message,
        customer_visible=milestone.stage.customer_visible,
        applied=applied,
        payload=payload or {},
    )
