"""Reads for the portal: each returns everything a page needs in a fixed number of queries."""

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from accounts.models import JourneyShare, User, invitations_made_since
from journey.models import (
    Appointment,
    Checkpoint,
    Feedback,
    Journey,
    JourneyEvent,
    Message,
    Milestone,
    MilestoneState,
    Photo,
    RescheduleRequest,
    RescheduleState,
    ShipmentLeg,
)


def journeys_visible_to(*, user: User) -> QuerySet[Journey]:
    """Every journey the user may see: their own, and those they accepted an invitation to
    follow (until the owner revokes it). The one place that decides it."""
    if not user.is_authenticated:
        return Journey.objects.none()
    # A subquery, not a join: a join would repeat rows and skew counts annotated later.
    shared = JourneyShare.objects.filter(viewer=user, revoked_at__isnull=True)
    return Journey.objects.filter(Q(owner=user) | Q(pk__in=shared.values("journey_id")))


def invitations_waiting(*, user: User) -> list[JourneyShare]:
    """Invitations to the user's address not yet accepted, withdrawn or past their age:
    the portal offers them, so that an invitee who lost the email's link on the way
    (signed up, confirmed their address in another browser) still finds them."""
    if not user.is_authenticated:
        return []
    return list(
        JourneyShare.objects.filter(
            email=user.email.lower(),  # stored lower-cased (journey_share_invite)
            viewer__isnull=True,
            revoked_at__isnull=True,
            created_at__gt=invitations_made_since(),
        )
        .exclude(journey__owner=user)
        .select_related("journey", "invited_by__profile")
        .order_by("-created_at", "-pk")
    )


def journeys_owned_by(*, user: User) -> QuerySet[Journey]:
    """Journeys the user owns: only the owner shares, exports or acts on a journey."""
    if not user.is_authenticated:
        return Journey.objects.none()
    return Journey.objects.filter(owner=user)


def journey_list(*, user: User) -> list[Journey]:
    """The customer's journeys with their milestones and open task counts."""
    return list(
        journeys_visible_to(user=user)
        .select_related("template")
        .annotate(open_tasks=Count("tasks", filter=Q(tasks__done_at__isnull=True)))
        .prefetch_related(
            Prefetch("milestones", queryset=Milestone.objects.select_related("stage"))
        )
    )


@dataclass(frozen=True)
class JourneyStamp:
    pk: int
    reference: str
    version: int


def journey_stamp(*, user: User, reference: str) -> JourneyStamp:
    """Which journey, at which version, or 404 for anyone who may not see it: one query,
    enough to find the cached page (journey/page_cache.py)."""
    row = (
        journeys_visible_to(user=user)
        .filter(reference=reference)
        .values_list("pk", "reference", "version")
        .first()
    )
    if row is None:
        raise Http404("No such journey.")
    return JourneyStamp(*row)


def journey_detail(*, user: User, reference: str) -> Journey:
    """One journey shaped for its page, or 404 for anyone who may not see it."""
    queryset = journeys_visible_to(user=user).select_related("template", "owner__profile")
    queryset = queryset.prefetch_related(
        Prefetch(
            "milestones",
            queryset=Milestone.objects.select_related("stage").prefetch_related(
                Prefetch("photos", queryset=Photo.objects.order_by("created_at", "id")),
                # Only this viewer's own rating of each stage.
                Prefetch(
                    "feedback",
                    queryset=Feedback.objects.filter(customer_id=user.pk),
                    to_attr="my_feedback",
                ),
                # The words for the customer that came with the stage (staff's, or a
                # partner mapping's customer text), without the partner's payload. Only
                # of events that moved the journey: those were told (and moved its
                # version, which the cached page goes by); a late one's were not.
                Prefetch(
                    "events",
                    queryset=JourneyEvent.objects.filter(customer_visible=True, applied=True)
                    .exclude(message="")
                    .only("milestone_id", "occurred_at", "message")
                    .order_by("occurred_at", "id"),
                    to_attr="told",
                ),
            ),
        ),
        Prefetch(
            "legs",
            queryset=ShipmentLeg.objects.prefetch_related(
                Prefetch("checkpoints", queryset=Checkpoint.objects.order_by("occurred_at"))
            ),
        ),
        "tasks",
        "promised_items",
        Prefetch(
            "appointments",
            queryset=Appointment.objects.prefetch_related(
                Prefetch(
                    "reschedule_requests",
                    queryset=RescheduleRequest.objects.filter(state=RescheduleState.OPEN),
                    to_attr="open_requests",
                )
            ),
        ),
        Prefetch(
            "messages",
            queryset=Message.objects.select_related("milestone__stage").order_by(
                "created_at", "id"
            ),
        ),
        "eta_estimates",
    )
    journey = queryset.filter(reference=reference).first()
    if journey is None:
        raise Http404("No such journey.")
    return journey


def journey_messages(*, journey: Journey, user: User) -> list[Message]:
    """The conversation as this user may see it: viewers do not see private messages.
    Uses the prefetched messages when the journey came from journey_detail.

    Each message gets ``sender``, the name a customer's message is shown under (the
    template shows the company's under the company's name). The owner and the viewers
    they invited share the conversation, so a message is "You" only to its author, and
    "The owner" or "A viewer" to the others: what the author is to the journey, never
    their email address, and nothing but the journey's rows and who is looking, which
    the page cache's key holds (a given name would not be: changing it moves no
    journey's version)."""
    is_owner = journey.owner_id == user.pk
    shown = [m for m in journey.messages.all() if is_owner or not m.private]
    for message in shown:
        message.sender = _sender(message, journey=journey, user=user)
    return shown


def _sender(message: Message, *, journey: Journey, user: User) -> str:
    if message.from_staff:
        return ""
    if message.author_id == user.pk:
        return _("You")
    if message.author_id is not None and message.author_id == journey.owner_id:
        return _("The owner")
    return _("A viewer")


def journey_public(*, journey_id: int) -> Journey:
    """What a share link shows: progress, dates, photos, route. No owner, tasks, messages."""
    return (
        Journey.objects.select_related("template")
        .prefetch_related(
            Prefetch(
                "milestones",
                queryset=Milestone.objects.select_related("stage").prefetch_related(
                    Prefetch("photos", queryset=Photo.objects.order_by("created_at", "id"))
                ),
            ),
            Prefetch(
                "legs",
                queryset=ShipmentLeg.objects.prefetch_related(
                    Prefetch("checkpoints", queryset=Checkpoint.objects.order_by("occurred_at"))
                ),
            ),
        )
        .get(pk=journey_id)
    )


def photo_for_viewer(*, user: User, reference: str, photo_id: int) -> Photo:
    photo = (
        Photo.objects.filter(pk=photo_id, journey__in=journeys_visible_to(user=user))
        .filter(journey__reference=reference)
        # A photo of a stage customers do not see is not served either.
        .exclude(milestone__stage__customer_visible=False)
        .first()
    )
    if photo is None:
        raise Http404("No such photo.")
    return photo


@dataclass(frozen=True)
class Progress:
    current: Milestone | None
    upcoming: Milestone | None
    position: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.position / self.total) if self.total else 0


def visible_milestones(journey: Journey) -> list[Milestone]:
    """The (prefetched) milestones the customer sees, in order: no query of its own."""
    return [m for m in journey.milestones.all() if m.stage.customer_visible]


def stage_bookings(journeys: list[Journey]) -> dict[int, list[Appointment]]:
    """The appointments booked for a stage, by journey, in order of their start: one
    query for all the journeys (the journeys list), none for no journey."""
    booked: dict[int, list[Appointment]] = defaultdict(list)
    if journeys:
        for appointment in Appointment.objects.filter(
            journey__in=journeys, milestone__isnull=False
        ).order_by("starts_at", "pk"):
            booked[appointment.journey_id].append(appointment)
    return booked


def journey_progress(journey: Journey) -> Progress:
    """Where the journey is, from its (prefetched) milestones: no query of its own."""
    milestones = visible_milestones(journey)
    reached = [m for m in milestones if m.state != MilestoneState.UPCOMING]
    current = reached[-1] if reached else None
    upcoming = next((m for m in milestones if m.state == MilestoneState.UPCOMING), None)
    return Progress(
        current=current, upcoming=upcoming, position=len(reached), total=len(milestones)
    )
