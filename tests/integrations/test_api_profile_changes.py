import pytest
from django.urls import reverse

from accounts.models import ChangeProposal, ProfileChange, Source
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
