from django.db.models import Prefetch, QuerySet

from integrations.models import Partner
from journey.models import Journey, Milestone


def partner_journeys(*, partner: Partner) -> QuerySet[Journey]:
    """The journeys a partner serves, shaped for the API (no query per journey)."""
    return (
        Journey.objects.filter(partners=partner)
        .select_related("template")
        .prefetch_related(
            Prefetch("milestones", queryset=Milestone.objects.select_related("stage"))
        )
        .order_by("-created_at")
    )
