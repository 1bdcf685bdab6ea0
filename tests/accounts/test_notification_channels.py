"""Web push is not offered until the portal registers browsers for it (docs/notifications.md):
a customer who chose it would hear nothing. What customers chose before is kept."""

import pytest
from django.urls import reverse

from accounts.forms import SECTIONS, section_form
from accounts.models import CustomerProfile

pytestmark = pytest.mark.django_db

URL = reverse("accounts:section", args=["notifications"])


@pytest.fixture
def logged_in(client, customer):
    client.force_login(customer)
    return client


def test_the_settings_do_not_offer_web_push(logged_in, customer):
    for response in (
        logged_in.get(reverse("accounts:profile") + "?edit=notifications"),
        logged_in.get(URL + "?edit=1", headers={"HX-Request": "true"}),
    ):
        html = response.content.decode()
        assert response.status_code == 200
        assert 'name="notifications-channel_email"' in html
        assert 'name="notifications-channel_sms"' in html
        assert "channel_push" not in html
        assert "web push" not in html.lower()
    assert "channel_push" not in section_form("notifications", instance=customer.profile).fields
    assert "channel_push" not in [name for fields in SECTIONS.values() for name in fields]


@pytest.mark.parametrize("chosen", [True, False])
def test_saving_the_settings_keeps_the_earlier_web_push_choice(logged_in, customer, chosen):
    CustomerProfile.objects.filter(user=customer).update(channel_push=chosen)
    # A crafted post cannot change it either way.
    data = {"notifications-channel_email": "on", "notifications-quiet_hours_start": "22:00"}
    data["notifications-quiet_hours_end"] = "07:00"
    if not chosen:
        data["notifications-channel_push"] = "on"
    response = logged_in.post(URL, data, headers={"HX-Request": "true"})
    assert response.status_code == 200
    profile = CustomerProfile.objects.get(user=customer)
    assert (profile.channel_email, profile.channel_push) == (True, chosen)
    assert profile.quiet_hours_start.strftime("%H:%M") == "22:00"


def test_web_push_alone_is_no_way_to_reach_the_customer(logged_in, customer):
    """Unticking email and SMS is refused even with web push on: it reaches no one."""
    CustomerProfile.objects.filter(user=customer).update(channel_push=True, channel_email=True)
    response = logged_in.post(URL, {}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert "Keep at least one way for us to reach you." in response.content.decode()
    profile = CustomerProfile.objects.get(user=customer)
    assert (profile.channel_email, profile.channel_push) == (True, True)


def test_the_profile_does_not_list_web_push_as_a_channel(logged_in, customer):
    CustomerProfile.objects.filter(user=customer).update(channel_push=True, channel_email=True)
    html = logged_in.get(reverse("accounts:profile")).content.decode()
    assert "Web push" not in html
    CustomerProfile.objects.filter(user=customer).update(channel_email=False)
    html = logged_in.get(reverse("accounts:profile")).content.decode()
    assert "<dt>Channels</dt><dd>—</dd>" in html
