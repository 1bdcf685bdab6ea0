from django.db.models import Prefetch, QuerySet

from integrations.models import Partner
from journey.models import (
    Appointment,
    Checkpoint,
    CustomerTask,
    Journey,
    Milestone,
    Photo,
    ShipmentLeg,
)


def partner_journeys(*, partner: Partner) -> QuerySet[Journey]:
    """The journeys a partner serves, shaped for the API (no query per journey), newest
    first (the list's pages order them by id, which is the order they were created in)."""
    return (
        Journey.objects.filter(partners=partner)
        .select_related("template")
        .prefetch_related(
            Prefetch("milestones", queryset=Milestone.objects.select_related("stage"))
        )
        .order_by("-id")
    )


# What a partner posted to a journey, read back. The journey (or leg) is one the caller
# has found among those the partner serves; each is one query whatever its length.


def journey_legs(*, journey: Journey) -> QuerySet[ShipmentLeg]:
    """A journey's legs, by their sequence (their address)."""
    return ShipmentLeg.objects.filter(journey=journey).order_by("sequence")


def leg_checkpoints(*, leg: ShipmentLeg) -> QuerySet[Checkpoint]:
    """A leg's checkpoints, in the order they were posted (the pages order them by id)."""
    return Checkpoint.objects.filter(leg=leg).order_by("id")


def journey_photos(*, journey: Journey) -> QuerySet[Photo]:
    """A journey's photos, in the order they were posted, each with its milestone's stage
    (its key is shown)."""
    return Photo.objects.filter(journey=journey).select_related("milestone__stage").order_by("id")


def journey_tasks(*, journey: Journey) -> QuerySet[CustomerTask]:
    """A journey's tasks, in the order they were posted (the model's own order puts NULLs
    first or last depending on the database)."""
    return CustomerTask.objects.filter(journey=journey).order_by("id")


def journey_appointments(*, journey: Journey) -> QuerySet[Appointment]:
    """A journey's appointments, in the order they were posted."""
    return (
        Appointment.objects.filter(journey=journey)
        .select_related("milestone__stage")
        .order_by("id")
    )
