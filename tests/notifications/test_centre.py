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
    # In place, the header's count comes with the list, to be swapped out of band.
    assert 'id="updates-link" hx-swap-oob="true"' in part.content.decode()
    assert ">1</span>" in part.content.decode()
    everything = client.post(reverse("notifications:read-all"), headers={"HX-Request": "true"})
    assert 'id="updates-link" hx-swap-oob="true"' in everything.content.decode()
    assert 'class="badge"' not in everything.content.decode()
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
    client.post(reverse("notifications:read-all"))  # read: they link straight to their pages
    page = client.get(reverse("notifications:centre")).content.decode()
    journey_path = reverse("journey:detail", args=[row.journey.reference])
    assert f'href="{journey_path}"' in page
    assert f'href="{reverse("accounts:profile")}"' in page
    assert "portal.example" not in page
    email = Notification.objects.get(dedup_key="moved", channel="email")
    from notifications.channels import render

    assert render(email).url == "https://portal.example" + journey_path


def test_following_an_update_marks_it_read_and_each_says_what_it_is(client, customer):
    """Four rows read 'Test journey: new photos' alike, and the badge kept counting one
    after the customer had followed it (a customer's review)."""
    enqueue(customer, "photos", kind="photos_added", stage_label="Assembly")
    client.force_login(customer)
    row = Notification.objects.get(dedup_key="photos", channel="inapp")
    page = client.get(reverse("notifications:centre")).content.decode()
    opened = reverse("notifications:open", args=[row.pk])
    assert f'href="{opened}"' in page
    line = page.split(opened)[1].split("</li>")[0]  # the row's own
    assert "Test journey: new photos" in line
    assert "New photos of Assembly are on your journey page." in line

    response = client.get(opened)
    assert response.status_code == 302
    assert response["Location"] == reverse("journey:detail", args=[row.journey.reference])
    row.refresh_from_db()
    assert row.read_at is not None
    # Read, it links straight to what it is about.
    page = client.get(reverse("notifications:centre")).content.decode()
    assert opened not in page


@pytest.mark.parametrize("headers", [{"Sec-Purpose": "prefetch"}, {"Sec-Fetch-Site": "cross-site"}])
def test_a_prefetch_or_another_site_does_not_mark_an_update_read(client, customer, headers):
    """A GET that marks read (a code review): only the customer following it does."""
    enqueue(customer, "mine")
    row = Notification.objects.get(dedup_key="mine", channel="inapp")
    client.force_login(customer)
    response = client.get(reverse("notifications:open", args=[row.pk]), headers=headers)
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.read_at is None


def test_nobody_opens_another_customers_update(client, customer):
    enqueue(customer, "mine")
    row = Notification.objects.get(dedup_key="mine", channel="inapp")
    client.force_login(UserFactory())
    assert client.get(reverse("notifications:open", args=[row.pk])).status_code == 404
    row.refresh_from_db()
    assert row.read_at is None


def test_a_preview_is_its_paragraph_whole_or_cut_at_a_words_end():
    """From a walk-through: cut at 160 characters, a promise moved read "…We expect it
    on 12 December 2…"."""
    from notifications.views import PREVIEW_LENGTH, _preview

    sentence = (
        "We have changed the date we promise for Your Aurora GT, Deep Ocean Blue: it is now "
        "20 January 2027, instead of 16 December 2026. We expect it on 12 December 2026."
    )
    assert _preview(f"Hello Alex,\n\n{sentence}\n\nMore.") == sentence
    long = " ".join(["word"] * 100)
    cut = _preview(f"Hello,\n\n{long}")
    assert len(cut) <= PREVIEW_LENGTH and cut.endswith("word…")
