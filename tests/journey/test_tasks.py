"""The ETA's Celery tasks take ids and are safe to run again."""

import pytest

from journey.models import TemplateEtaStats
from journey.tasks import eta_recompute_template
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


def test_relearning_a_template_twice_keeps_one_row():
    template = TemplateFactory(stages=3)
    eta_recompute_template(template.pk)
    eta_recompute_template(template.pk)
    stats = TemplateEtaStats.objects.get()
    assert (stats.template, stats.journey_count) == (template, 0)
    assert stats.data == {"keys": ["_start", "stage-1", "stage-2"], "journeys": []}


def test_a_deleted_template_is_skipped():
    template = TemplateFactory(stages=1)
    template_id = template.pk
    template.delete()
    eta_recompute_template(template_id)
    assert TemplateEtaStats.objects.count() == 0
