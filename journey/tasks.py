from celery import shared_task

from journey.photos import photo_make_thumbnail


@shared_task(acks_late=True, ignore_result=True)
def make_thumbnail(photo_id: int) -> None:
    """Make one photo's thumbnail. Safe to run twice: it does nothing the second time."""
    photo_make_thumbnail(photo_id=photo_id)
