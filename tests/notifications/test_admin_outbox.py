"""The outbox in the admin: read, filtered by what a message is, never edited."""

import pytest
from django.urls import reverse

from notifications.models import Notification
from tests.notifications.test_timing import enqueue

pytestmark = pytest.mark.django_db


def test_a_row_reads_as_sent_and_nothing_of_it_can_be_changed(admin_client, customer):
    """A staff review changed a copy's "To email" and sent it again: the copy kept the
    address, the message still went to the customer's. Nothing is editable now."""
    enqueue(customer, "paint", kind="photos_added", stage_label="Paint")
    row = Notification.objects.get(dedup_key="paint", channel="email")
    url = reverse("admin:notifications_notification_change", args=[row.pk])
    page = admin_client.get(url).content.decode()
    assert "Test journey: new photos" in page  # the subject, rendered
    assert "New photos of Paint are on your journey page." in page
    assert 'name="to_email"' not in page and 'name="read_at"' not in page
    assert 'name="digest_size"' not in page
    admin_client.post(url, {"to_email": "someone.else@example.com", "digest_size": 9})
    row.refresh_from_db()
    assert (row.to_email, row.digest_size) == ("", 1)
    # No Save buttons for a page with nothing to save; sending again stays (an action).
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    listing = admin_client.get(reverse("admin:notifications_notification_changelist"))
    assert 'value="resend"' in listing.content.decode()


def test_an_sms_row_reads_as_the_text_message(admin_client, customer):
    """It showed the email's words, which no SMS said (from a staff review)."""
    customer.profile.phone = "+447911123456"
    customer.profile.channel_sms = True
    customer.profile.save()
    enqueue(customer, "paint", kind="photos_added", stage_label="Paint")
    row = Notification.objects.get(dedup_key="paint", channel="sms")
    page = admin_client.get(
        reverse("admin:notifications_notification_change", args=[row.pk])
    ).content.decode()
    assert "Milepost Motors: Test journey: new photos http" in page
    assert "New photos of Paint are on your journey page." not in page


def test_kinds_are_listed_and_filtered_by_what_they_are(admin_client, customer):
    enqueue(customer, "paint", kind="photos_added")
    enqueue(customer, "reached")  # milestone_reached: filtered out below
    listing = admin_client.get(reverse("admin:notifications_notification_changelist"))
    page = listing.content.decode()
    assert "New photos" in page  # the kind's label, in the list and its filter
    assert "?kind=photos_added" in page
    filtered = admin_client.get(
        reverse("admin:notifications_notification_changelist") + "?kind=photos_added"
    )
    assert filtered.status_code == 200
    shown = {row.kind for row in filtered.context["cl"].result_list}
    assert shown == {"photos_added"}
    assert Notification.objects.exclude(kind="photos_added").exists()
