import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.mfa import totp_activate
from accounts.models import ChangeProposal, Source
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    totp_activate(user=staff)
    client.force_login(staff)
    return client


def test_staff_propose_a_change_and_cannot_overwrite(staff_client, customer):
    customer.profile.given_name = "Alex"
    customer.profile.save()
    url = reverse("admin:accounts_user_propose", args=[customer.pk])
    response = staff_client.post(
        url, {"field": "given_name", "value": "Alexander", "reason": "As on the contract"}
    )
    assert response.status_code == 302
    customer.profile.refresh_from_db()
    assert customer.profile.given_name == "Alex"
    proposal = ChangeProposal.objects.get()
    assert (proposal.source, proposal.new_value) == (Source.STAFF, "Alexander")
    # The customer reads "our staff" (mid-sentence), not the staff member's address
    # (kept as the actor).
    assert proposal.proposed_by_name == "" and proposal.proposed_by is not None
    staff_email = proposal.proposed_by.email
    customer_client = Client()
    customer_client.force_login(customer)
    shown = customer_client.get(reverse("accounts:profile")).content.decode()
    assert "proposed by our staff" in shown and staff_email not in shown

    # The profile inline is read-only: a change form post cannot overwrite the name.
    page = staff_client.get(reverse("admin:accounts_user_change", args=[customer.pk]))
    assert 'name="profile-0-given_name"' not in page.content.decode()
    assert "Audit trail" in page.content.decode()


def test_a_bad_proposal_is_a_form_error(staff_client, customer):
    url = reverse("admin:accounts_user_propose", args=[customer.pk])
    response = staff_client.post(url, {"field": "phone", "value": "12", "reason": "r"})
    assert response.status_code == 200
    assert "not valid" in response.content.decode()
    assert ChangeProposal.objects.count() == 0


def test_staff_may_name_a_language_and_are_told_the_codes(staff_client, customer):
    """'English' was refused as 'not one of the available choices', the codes never
    shown (a user's walk-through): the form names them, and takes a language's name."""
    url = reverse("admin:accounts_user_propose", args=[customer.pk])
    assert "en (English), es (Spanish)" in staff_client.get(url).content.decode()
    response = staff_client.post(url, {"field": "language", "value": " Español ", "reason": "r"})
    assert response.status_code == 302
    assert ChangeProposal.objects.get().new_value == "es"
    refused = staff_client.post(url, {"field": "language", "value": "Klingon", "reason": "r"})
    assert refused.status_code == 200
    assert "not one of the available choices" in refused.content.decode()


def test_the_admin_index_names_each_section_once(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    sections = re.findall(r"<caption>\s*<a[^>]*>([^<]+)</a>", page)
    assert "Customers" in sections
    assert len(sections) == len(set(sections)), sections
