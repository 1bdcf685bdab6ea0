import pytest
from django.urls import reverse

from notifications.models import Notification
from tests.factories import UserFactory
from tests.notifications.test_timing import enqueue

pytestmark = pytest.mark.django_db


def test_the_centre_lists_updates_with_an_unread_badge_and_marks_them_read(client, customer):
    enqueue(customer, "one")
    enqueue(customer, "two", stage_label="Assembly")
    client.force_login(customer)
    page = client.get(reverse("notifications:centre")).content.decode()
    assert "Test journey: Paint" in page and "Test journey: Assembly" in page
    assert 'class="badge"' in page and ">2</span>" in page

    one = Notification.objects.get(dedup_key="one", channel="inapp")
    part = client.post(reverse("notifications:read", args=[one.pk]), headers={"HX-Request": "true"})
    assert part.status_code == 200
    assert "<html" not in part.content.decode()
    one.refresh_from_db()
    assert one.read_at is not None
    client.post(reverse("notifications:read-all"))
    assert Notification.objects.filter(channel="inapp", read_at__isnull=True).count() == 0
    assert 'class="badge"' not in client.get(reverse("journey:home")).content.decode()


def test_nobody_reads_or_marks_another_customers_updates(client, customer):
    enqueue(customer, "mine")
    other = UserFactory()
    client.force_login(other)
    assert "Paint" not in client.get(reverse("notifications:centre")).content.decode()
    row = Notification.objects.get(dedup_key="mine", channel="inapp")
    client.post(reverse("notifications:read", args=[row.pk]))
    row.refresh_from_db()
    assert row.read_at is None


def test_the_centres_links_stay_on_this_site(client, customer, settings):
    """Its links are paths on the site it is read on; emails carry SITE_URL's address."""
    from accounts.models import Source
    from accounts.services import profile_propose_change

    settings.SITE_URL = "https://portal.example"
    (row, *_rest) = enqueue(customer, "moved")
    profile_propose_change(
        user=customer,
        field="given_name",
        value="Alexandra",
        reason="The order says so",
        source=Source.STAFF,
    )
    client.force_login(customer)
    page = client.get(reverse("notifications:centre")).content.decode()
    journey_path = reverse("journey:detail", args=[row.journey.reference])
    assert f'href="{journey_path}"' in page
    assert f'href="{reverse("accounts:profile")}"' in page
    assert "portal.example" not in page
    email = Notification.objects.get(dedup_key="moved", channel="email")
    from notifications.channels import render

    assert render(email).url == "https://portal.example" + journey_path
