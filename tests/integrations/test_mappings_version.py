"""Partner.mappings_version: a new value from the database at every change to a
partner's mappings (integrations migration 0007), which the mappings a process keeps are
read under (``integrations.services.partner_mappings``)."""

import importlib

import pytest
from django.db import transaction

from integrations.models import Partner, StatusMapping
from integrations.services import partner_mappings
from tests.factories import MappingFactory, PartnerFactory
from tests.sql import triggers

pytestmark = pytest.mark.django_db


def version(partner: Partner) -> int:
    return Partner.objects.values_list("mappings_version", flat=True).get(pk=partner.pk)


def test_every_change_to_a_partners_mappings_moves_its_version_and_no_other():
    partner, other = PartnerFactory(), PartnerFactory()
    steps = []

    def moved(change) -> None:
        before = version(partner), version(other)
        change()
        after = version(partner), version(other)
        steps.append((after[0] != before[0], after[1] == before[1]))

    moved(lambda: MappingFactory(partner=partner, code="A"))
    mapping = StatusMapping.objects.get(code="A")
    moved(lambda: setattr(mapping, "stage_key", "stage-2") or mapping.save())
    moved(lambda: StatusMapping.objects.filter(partner=partner).update(customer_text="Hi"))
    moved(lambda: StatusMapping.objects.bulk_create([StatusMapping(partner=partner, code="B")]))
    moved(lambda: StatusMapping.objects.filter(code="B").delete())

    assert steps == [(True, True)] * 5
    # A mapping moved to another partner moves both.
    before = version(partner), version(other)
    StatusMapping.objects.filter(code="A").update(partner=other)
    assert version(partner) != before[0] and version(other) != before[1]


def test_a_save_of_a_partner_read_before_a_change_cannot_move_the_version_back():
    partner = PartnerFactory()
    stale = Partner.objects.get(pk=partner.pk)
    MappingFactory(partner=partner, code="A")
    moved = version(partner)

    stale.name = "Renamed"
    stale.save()  # with the version it read

    assert version(partner) not in {moved, stale.mappings_version}
    assert moved != stale.mappings_version


def test_a_process_reads_the_mappings_again_only_for_another_version(
    django_assert_num_queries,
):
    partner = PartnerFactory()
    MappingFactory(partner=partner, code="A", stage_key="stage-1")
    read = Partner.objects.get(pk=partner.pk)
    with django_assert_num_queries(1):
        assert partner_mappings(read)["A"].stage_key == "stage-1"
    again = Partner.objects.get(pk=partner.pk)  # another request's read, the same version
    with django_assert_num_queries(0):
        assert partner_mappings(again)["A"].stage_key == "stage-1"

    StatusMapping.objects.filter(code="A").update(stage_key="stage-2")
    with django_assert_num_queries(0):  # a partner read before the change: as of then
        assert partner_mappings(read)["A"].stage_key == "stage-1"
    fresh = Partner.objects.get(pk=partner.pk)
    with django_assert_num_queries(1):
        assert partner_mappings(fresh)["A"].stage_key == "stage-2"


def test_the_triggers_are_all_there_after_every_migration():
    """A later migration that makes either table again (SQLite) drops their triggers."""
    migration = importlib.import_module("integrations.migrations.0007_partner_mappings_version")
    assert triggers("mp_mappings_version_%") == set(migration.trigger_names().items())


@pytest.mark.django_db(transaction=True)
def test_a_version_a_rolled_back_transaction_read_its_own_mappings_under_is_not_used_again():
    """Inside a transaction its own change is visible, with its version: a process may
    keep those mappings under it. Rolled back, the version must not come again for other
    mappings."""
    partner = PartnerFactory()
    MappingFactory(partner=partner, code="A", stage_key="stage-1")

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack), transaction.atomic():
        StatusMapping.objects.filter(code="A").update(stage_key="stage-9")
        inside = Partner.objects.get(pk=partner.pk)
        assert partner_mappings(inside)["A"].stage_key == "stage-9"
        raise RolledBack
    StatusMapping.objects.filter(code="A").update(stage_key="stage-2")
    after = Partner.objects.get(pk=partner.pk)

    assert after.mappings_version != inside.mappings_version
    assert partner_mappings(after)["A"].stage_key == "stage-2"
