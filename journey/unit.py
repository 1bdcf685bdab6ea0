"""A unit of work for the spine: what recording events writes, held until ``flush()``.

Recording one event writes its timeline row, the milestones it moved, the journey's ETA
fields, a row of ETA history and the customer's notifications, and reads what the ETA
needs (the carrier's ETA of open legs, the template's history). One at a time that is a
dozen statements per event; a partner's batch of a hundred events would be a thousand.
The spine writes into a ``Writes`` instead, and the unit flushes them with one write per
table, whatever the number of events (all of them one statement on PostgreSQL:
``journey.db.Together``), after reading what the ETA needs once for all its journeys.
Everything is in the caller's transaction, with the journeys locked
(``journey.services.journeys_lock``), so what the unit holds in memory is what the
database would say.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F, Model, QuerySet, Subquery
from django.utils import timezone

from journey.compiled import CompiledRead
from journey.db import Together
from journey.models import EtaEstimate, Journey, JourneyEvent, Milestone, ShipmentLeg
from notifications.services import Outbox

if TYPE_CHECKING:
    from journey.eta import Learned

logger = logging.getLogger(__name__)

# The fields of Journey the ETA sets (journey.eta); callers save them.
ETA_FIELDS = [
    "eta",
    "eta_low",
    "eta_high",
    "eta_basis",
    "health",
    "stalled_since",
    "delay_told_eta",
]
# What the spine saves of a journey when it records an event.
JOURNEY_FIELDS = ["last_event_at", *ETA_FIELDS, "updated_at"]
MILESTONE_FIELDS = ["state", "reached_at", "expected_date"]


def _open_leg_etas(journeys: list[int]) -> QuerySet[ShipmentLeg]:
    return (
        ShipmentLeg.objects.filter(
            journey_id__one_of=journeys, arrived_at__isnull=True, eta__isnull=False
        )
        .order_by()
        .values_list("journey_id", "eta", "journey__started_at")
    )


# Read for every event that moves a journey: compiled once (journey.compiled).
_OPEN_LEG_ETAS = CompiledRead(_open_leg_etas, whole=("journeys",))


def open_leg_end(journey: int) -> Subquery:
    """What ``Writes.leg_end`` reads for one journey (the carrier's ETA for its last open
    leg, none before the journey started), as a subquery for a statement that reads the
    journey's other rows: by the key given, so PostgreSQL runs it once (an InitPlan)."""
    return Subquery(
        ShipmentLeg.objects.filter(
            journey_id=journey,
            arrived_at__isnull=True,
            eta__isnull=False,
            eta__gte=F("journey__started_at"),
        )
        .order_by("-eta")
        .values("eta")[:1]
    )


@dataclass
class Writes:
    """The writes of one unit of work, and what its ETA computations read once."""

    outbox: Outbox = field(default_factory=Outbox)
    events: list[JourneyEvent] = field(default_factory=list)
    milestones: dict[int, Milestone] = field(default_factory=dict)
    journeys: dict[int, Journey] = field(default_factory=dict)
    estimates: list[EtaEstimate] = field(default_factory=list)
    # The journeys locked for this unit: what is read for one is read for all of them.
    locked: set[int] = field(default_factory=set)
    _leg_ends: dict[int, datetime | None] = field(default_factory=dict)
    # What each template learned (journey.eta), read once per unit.
    learned: dict[int, Learned | None] = field(default_factory=dict)

    _reported: bool = field(default=False, repr=False)

    def lock(self, journeys: Iterable[int]) -> None:
        """Journeys locked for this unit (``journeys_lock``): its writes may now go to
        them, and whoever made the unit flushes it before the transaction commits. One
        never flushed would lose its writes without an error: this says so, loudly,
        once the transaction commits (a rollback drops the check with the writes).
        Registered at every lock, not once: a check registered in a savepoint that
        rolled back is gone, and the unit may lock and write again after it."""
        self.locked.update(journeys)
        transaction.on_commit(self._check_flushed)

    def pending(self) -> int:
        """How many writes the unit holds that are not flushed yet."""
        return (
            len(self.events)
            + len(self.milestones)
            + len(self.journeys)
            + len(self.estimates)
            + self.outbox.pending()
        )

    def _check_flushed(self) -> None:
        if (count := self.pending()) and not self._reported:
            self._reported = True  # once per unit, however many locks registered it
            logger.error(
                "A unit of work's transaction committed with %d writes never flushed "
                "(journeys %s): they are lost.",
                count,
                sorted(self.locked | set(self.journeys)),
            )

    # --- what the ETA reads ------------------------------------------------------------

    def leg_end_read(self, journey: int, end: datetime | None) -> None:
        """``leg_end`` for the journey, read with its other rows (``open_leg_end``), in
        the statement that locked it or after."""
        self._leg_ends.setdefault(journey, end)

    def leg_end(self, journey: Journey) -> datetime | None:
        """The carrier's ETA for the journey's last open leg; ETAs before the journey
        started are typos and never move a prediction. Read for all the unit's
        journeys at once."""
        if journey.pk not in self._leg_ends:
            pks = (self.locked - set(self._leg_ends)) | {journey.pk}
            self._leg_ends.update(dict.fromkeys(pks))
            # The open legs' ETAs, compared and reduced here: a GROUP BY with the F()
            # comparison in SQL cost Django 0.52 ms to build and read, this 0.31.
            for journey_id, eta, started_at in _OPEN_LEG_ETAS.list(journeys=sorted(pks)):
                end = self._leg_ends[journey_id]
                if eta >= started_at and (end is None or eta > end):
                    self._leg_ends[journey_id] = eta
        return self._leg_ends[journey.pk]

    # --- writes ------------------------------------------------------------------------

    def save_milestones(self, milestones: list[Milestone]) -> None:
        for milestone in milestones:
            self.milestones[milestone.pk] = milestone

    def flush(
        self,
        together: Together | None = None,
        *,
        linked: tuple[Sequence[Model], list[str], str] | None = None,
    ) -> None:
        """Write what the unit holds: one write per table, sent together as one statement
        on PostgreSQL (``journey.db.Together``), after the one read of the outbox. The
        events get their primary keys; the customer's notifications are queued after
        commit.

        ``together`` may hold writes of the caller's own (to other tables), sent with
        the unit's. ``linked`` is ``(objs, fields, field)``: rows of another table whose
        ``field`` is one of this unit's events (or None), saved with ``fields``
        (``Together.update``'s ``linked``), in the same statement."""
        together = Together() if together is None else together
        events, self.events = self.events, []
        together.insert(events)
        if linked is not None:
            objs, fields, field = linked
            together.update(objs, fields, linked=field)
        milestones, self.milestones = list(self.milestones.values()), {}
        together.update(milestones, MILESTONE_FIELDS)
        estimates, self.estimates = self.estimates, []
        together.insert(estimates)
        journeys, self.journeys = list(self.journeys.values()), {}
        now = timezone.now()
        for journey in journeys:
            journey.updated_at = now
        together.update(journeys, JOURNEY_FIELDS)
        self.outbox.flush(together)
        together.send()
