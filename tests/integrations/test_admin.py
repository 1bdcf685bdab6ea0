"""Staff see unmapped status codes, and webhook deliveries with their attempts."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_unmapped_codes_are_flagged_for_staff_and_never_reach_the_customer(
    api, journey, partner, admin_client, client, customer
):
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    occurred = (timezone.now() - timedelta(minutes=2)).isoformat()
    api.post(url, {"event_id": "u1", "code": "WEIRD-42", "occurred_at": occurred}, format="json")

    partners = admin_client.get(reverse("admin:integrations_partner_changelist")).content.decode()
    assert "WEIRD-42" in partners
    flagged = admin_client.get(
        reverse("admin:integrations_inboundevent_changelist") + "?unmapped__exact=1"
    ).content.decode()
    assert "WEIRD-42" in flagged

    client.force_login(customer)
    page = client.get(reverse("journey:detail", kwargs={"reference": journey.reference}))
    assert page.status_code == 200
    assert "WEIRD-42" not in page.content.decode()


def test_the_partner_page_edits_the_mapping_inline(admin_client, partner):
    page = admin_client.get(reverse("admin:integrations_partner_change", args=[partner.pk]))
    assert page.status_code == 200
    assert 'name="mappings-0-code"' in page.content.decode()


def test_a_mapping_to_a_stage_no_template_has_is_a_form_error(journey, partner):
    """The partner page's mapping rows are model forms: Model.full_clean asks this."""
    from django.core.exceptions import ValidationError

    from integrations.models import StatusMapping

    StatusMapping(partner=partner, code="OK", stage_key="stage-2").full_clean()
    with pytest.raises(ValidationError) as refused:
        StatusMapping(partner=partner, code="BOGUS", stage_key="no-such-stage").full_clean()
    assert refused.value.message_dict == {
        "stage_key": ["No journey template has a stage with this key."]
    }
