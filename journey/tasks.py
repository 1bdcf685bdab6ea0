"""Periodic and after-commit work on journeys' ETAs. Tasks take ids and are idempotent."""

from celery import shared_task

from journey import eta
from journey.models import JourneyTemplate
from journey.photos import photo_make_thumbnail


@shared_task(ignore_result=True)
def eta_recompute_template(template_id: int) -> None:
    """Relearn one template's statistics (queued when one of its journeys finishes)."""
    template = JourneyTemplate.objects.filter(pk=template_id).first()
    if template is not None:
        eta.eta_stats_recompute(template=template)


@shared_task(ignore_result=True)
def eta_recompute_nightly() -> int:
    """Relearn every template and recompute every open journey's ETA."""
    return eta.eta_recompute_all()


@shared_task(ignore_result=True)
def eta_check_stalled() -> int:
    """Flag journeys whose current stage has run longer than 95% of similar ones."""
    return len(eta.eta_check_stalled())


@shared_task(acks_late=True, ignore_result=True)
def make_thumbnail(photo_id: int) -> None:
    """Make one photo's thumbnail. Safe to run twice: it does nothing the second time."""
    photo_make_thumbnail(photo_id=photo_id)
