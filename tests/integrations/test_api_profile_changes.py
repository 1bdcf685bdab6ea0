import pytest
from django.urls import reverse

from accounts.models import ChangeProposal, ProfileChange, Source
from accounts.services import profile_propose_change, proposal_decide
from integrations.models import WebhookDelivery
from integrations.webhooks import webhook_endpoint_create
from tests.factories import PartnerFactory, make_journey

pytestmark = pytest.mark.django_db


def url(journey) -> str:
    return reverse("api:journey-profile-changes", kwargs={"reference": journey.reference})


def test_a_partner_proposes_and_the_customer_decides(api, journey, customer):
    customer.profile.phone = "+447911123456"
    customer.profile.save()
    response = api.post(
        url(journey),
        {"field": "phone", "value": "+44 7911 123458", "reason": "Updated at the dealer"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json() == {"field": "phone", "state": "pending"}
    customer.profile.refresh_from_db()
    assert customer.profile.phone == "+447911123456"
    proposal = ChangeProposal.objects.get()
    assert proposal.source == Source.PARTNER


def test_an_empty_field_is_filled_and_marked(api, journey, customer, partner):
    response = api.post(
        url(journey),
        {"field": "phone", "value": "+34612345678", "reason": "Order form"},
        format="json",
    )
    assert response.json()["state"] == "applied"
    customer.profile.refresh_from_db()
    assert customer.profile.field_sources == {"phone": f"partner:{partner.name}"}
    assert ProfileChange.objects.get().source == Source.PARTNER


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"field": "email", "value": "x@example.com", "reason": "r"}, "field"),
        ({"field": "phone", "value": "12", "reason": "r"}, "value"),
        ({"field": "phone", "value": "+34612345678"}, "reason"),
    ],
)
def test_bad_proposals_get_a_400_naming_the_field(api, journey, body, field):
    response = api.post(url(journey), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert ChangeProposal.objects.count() == 0 and ProfileChange.objects.count() == 0


def test_another_partners_journey_answers_404(api, customer):
    other = make_journey(owner=customer)
    PartnerFactory().journeys.add(other)
    response = api.post(
        url(other), {"field": "phone", "value": "+34612345678", "reason": "r"}, format="json"
    )
    assert response.status_code == 404
    assert ProfileChange.objects.count() == 0


def answers(partner) -> list[dict]:
    return [
        delivery.payload["data"]
        for delivery in WebhookDelivery.objects.filter(
            endpoint__partner=partner, event_type="profile_change.answered"
        ).order_by("pk")
    ]


def test_only_the_proposing_partner_hears_the_answer(
    api, journey, customer, partner, other_partner, other_api
):
    """The answer went to every partner serving any of the customer's journeys: one
    partner heard what the customer decided of another's proposal."""
    customer.profile.phone = "+447911123456"
    customer.profile.save()
    second = make_journey(owner=customer)
    other_partner.journeys.add(journey, second)
    for each in (partner, other_partner):
        webhook_endpoint_create(
            partner=each, url="https://hooks.example/x", event_types=["profile_change.answered"]
        )
    body = {"field": "phone", "value": "+44 7911 123458", "reason": "Updated at the dealer"}
    assert api.post(url(journey), body, format="json").json()["state"] == "pending"

    proposal_decide(proposal=ChangeProposal.objects.get(), user=customer, accept=False)

    [answer] = answers(partner)
    assert answer == {
        "journey": journey.reference,
        "field": "phone",
        "value": "+447911123458",
        "state": "declined",
        "decided_at": answer["decided_at"],
    }
    assert answers(other_partner) == []


def test_a_replaced_proposal_is_told_withdrawn_and_staffs_are_told_to_nobody(
    api, journey, customer, partner, other_partner, other_api
):
    customer.profile.phone = "+447911123456"
    customer.profile.save()
    other_partner.journeys.add(journey)
    for each in (partner, other_partner):
        webhook_endpoint_create(
            partner=each, url="https://hooks.example/x", event_types=["profile_change.answered"]
        )
    body = {"field": "phone", "value": "+44 7911 123458", "reason": "Updated at the dealer"}
    api.post(url(journey), body, format="json")
    # The same change from another partner is its own proposal: the first is withdrawn.
    other_api.post(url(journey), body, format="json")
    assert [a["state"] for a in answers(partner)] == ["withdrawn"]
    proposal_decide(
        proposal=ChangeProposal.objects.get(state="pending"), user=customer, accept=True
    )
    assert [a["state"] for a in answers(other_partner)] == ["accepted"]
    assert len(answers(partner)) == 1
    profile_propose_change(
        user=customer, field="phone", value="+447911000000", reason="r", source=Source.STAFF
    )
    proposal_decide(
        proposal=ChangeProposal.objects.get(state="pending"), user=customer, accept=True
    )
    assert len(answers(partner)) == 1 and len(answers(other_partner)) == 1


def test_the_same_value_with_its_reason_reworded_is_the_same_proposal(
    api, journey, customer, partner
):
    """A partner heard 'withdrawn' for the value still waiting, and the customer was told
    twice, when a retry reworded its reason."""
    customer.profile.family_name = "Morgan"
    customer.profile.save()
    webhook_endpoint_create(
        partner=partner, url="https://hooks.example/x", event_types=["profile_change.answered"]
    )
    body = {"field": "family_name", "value": "Morgan-Lee", "reason": "Order form"}
    api.post(url(journey), body, format="json")
    again = api.post(url(journey), {**body, "reason": "Order form, page 2"}, format="json")
    assert again.json() == {"field": "family_name", "state": "pending"}
    assert ChangeProposal.objects.count() == 1
    assert answers(partner) == []
