import pytest

from journey.errors import ApplicationError
from journey.jargon import jargon_check, jargon_found
from journey.models import CustomerTask, JargonTerm
from journey.services import journey_task_create, staff_reply_post

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Sent to the WMS queue", "WMS"),
        ("sent to the wms.", "wms"),
        ("swms is not it", None),
        ("WMSX neither", None),
        ("Team Falcon has it", "Team Falcon"),
        ("", None),
    ],
)
def test_terms_match_whole_words_in_any_case(text, found):
    assert jargon_found(text, terms=["WMS", "team falcon"]) == found


def test_rows_and_settings_both_count(settings):
    settings.JARGON_TERMS = ["SAP"]
    JargonTerm.objects.create(term="QC-7")
    with pytest.raises(ApplicationError) as error:
        jargon_check(title="Fine", description="Waiting for qc-7 and SAP")
    assert error.value.fields == {
        "description": ["“qc-7” is an internal term: customers would not understand it."]
    }
    assert error.value.code == "jargon"


def test_services_used_by_the_api_refuse_jargon(journey, customer, settings):
    settings.JARGON_TERMS = ["Team Falcon"]
    with pytest.raises(ApplicationError) as error:
        journey_task_create(journey=journey, title="Call Team Falcon")
    assert list(error.value.fields) == ["title"]
    with pytest.raises(ApplicationError):
        staff_reply_post(journey=journey, author=customer, body="team falcon says hi")
    assert CustomerTask.objects.count() == 0
    assert journey.messages.count() == 0


def test_a_proposed_changes_reason_is_checked_as_the_customer_reads_it(
    api, journey, customer, settings
):
    """The reason is shown on the customer's page and in their history."""
    from django.urls import reverse

    from accounts.models import ChangeProposal, ProfileChange

    settings.JARGON_TERMS = ["WMS"]
    response = api.post(
        reverse("api:journey-profile-changes", kwargs={"reference": journey.reference}),
        {"field": "phone", "value": "+44 7911 123456", "reason": "From the WMS record"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "jargon"
    assert list(response.json()["error"]["fields"]) == ["reason"]
    assert ChangeProposal.objects.count() == ProfileChange.objects.count() == 0
    customer.profile.refresh_from_db()
    assert customer.profile.phone == ""


def test_a_partner_event_whose_mapping_text_is_jargon_is_a_400_and_nothing_is_written(
    api, journey, partner, settings
):
    from django.urls import reverse
    from django.utils import timezone

    from integrations.models import InboundEvent
    from journey.models import JourneyEvent
    from notifications.models import Notification

    settings.JARGON_TERMS = ["SAP"]
    partner.mappings.filter(code="S2").update(customer_text="Confirmed in SAP")
    response = api.post(
        reverse("api:journey-events", kwargs={"reference": journey.reference}),
        {"event_id": "j1", "code": "S2", "occurred_at": timezone.now().isoformat()},
        format="json",
    )
    assert response.status_code == 400
    assert "SAP" in response.content.decode()
    assert (
        InboundEvent.objects.count(),
        JourneyEvent.objects.count(),
        Notification.objects.count(),
    ) == (0, 0, 0)


def test_the_delay_reason_and_tasks_edited_in_the_admin_refuse_jargon(journey, settings):
    from journey.forms import JourneyAdminForm, TaskForm

    settings.JARGON_TERMS = ["Team Falcon"]
    data = {
        "title": journey.title,
        "template": journey.template_id,
        "owner": journey.owner_id,
        "started_at": journey.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        "promised_date": str(journey.promised_date),
        "delay_reason": "Team Falcon missed the slot",
    }
    form = JourneyAdminForm(data=data, instance=journey)
    assert not form.is_valid()
    assert "Team Falcon" in form.errors["delay_reason"][0]
    journey.refresh_from_db()
    assert journey.delay_reason == ""

    task = TaskForm(data={"title": "Ask team falcon", "description": ""})
    assert not task.is_valid()
    assert "team falcon" in task.errors["title"][0]
    assert CustomerTask.objects.count() == 0
