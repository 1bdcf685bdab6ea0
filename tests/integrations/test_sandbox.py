"""Test mode: sandbox journeys and the play_journey command."""

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core import mail
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.privacy import account_delete
from integrations.models import InboundEvent, PartnerAPIKey
from integrations.sandbox import SANDBOX_DOMAIN, sandbox_journey_create, sandbox_purge
from integrations.tasks import purge_sandbox_journeys
from journey.models import Journey, MilestoneState, Photo
from journey.photos import photo_add
from notifications.models import Notification
from tests.journey.test_views import jpeg

pytestmark = pytest.mark.django_db


def test_a_partner_creates_a_sandbox_journey_and_drives_it_without_notifying_anyone(
    api, journey, partner, django_capture_on_commit_callbacks
):
    response = api.post(
        reverse("api:sandbox-journeys"), {"template": journey.template.key}, format="json"
    )
    assert response.status_code == 201
    sandbox = Journey.objects.get(reference=response.json()["reference"])
    assert sandbox.is_sandbox is True
    assert sandbox.owner.email.startswith(f"{partner.slug}+")
    assert sandbox.owner.email.endswith(f"@{SANDBOX_DOMAIN}")
    assert sandbox.owner.is_active is False
    assert not sandbox.owner.has_usable_password()
    assert list(partner.journeys.order_by("pk")) == [journey, sandbox]

    url = reverse("api:journey-events", kwargs={"reference": sandbox.reference})
    with django_capture_on_commit_callbacks(execute=True):
        event = api.post(
            url,
            {"event_id": "sb-1", "code": "S2", "occurred_at": sandbox.started_at.isoformat()},
            format="json",
        )
    assert event.status_code == 201
    assert sandbox.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT
    assert Notification.objects.count() == 0
    assert mail.outbox == []


def test_an_unknown_template_is_refused(api, partner):
    response = api.post(reverse("api:sandbox-journeys"), {"template": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"template": ["Unknown template."]}
    assert Journey.objects.filter(is_sandbox=True).count() == 0


def test_play_journey_plays_every_mapped_stage_through_the_api(
    journey, partner, django_capture_on_commit_callbacks
):
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("play_journey", partner.slug, stdout=out)

    sandbox = Journey.objects.get(is_sandbox=True)
    assert [m.state for m in sandbox.milestones.order_by("position")] == [MilestoneState.DONE] * 4
    assert InboundEvent.objects.filter(journey=sandbox).count() == 4
    assert "stage-4 (S4): HTTP 201 (applied)" in out.getvalue()
    assert Notification.objects.count() == 0
    # The temporary key it used is revoked.
    assert PartnerAPIKey.objects.get(name="play_journey (temporary)").revoked_at is not None


def test_play_journey_refuses_a_real_journey(journey, partner):
    with pytest.raises(CommandError, match="real journey"):
        call_command("play_journey", partner.slug, "--reference", journey.reference)
    assert InboundEvent.objects.count() == 0


def test_play_journey_on_an_existing_sandbox_journey(journey, partner):
    out = StringIO()
    call_command("play_journey", partner.slug, stdout=out)
    sandbox = Journey.objects.get(is_sandbox=True)
    call_command("play_journey", partner.slug, "--reference", sandbox.reference, stdout=out)
    # Played again, each stage is older than the state: logged, nothing moves back.
    assert "stage-4 (S4): HTTP 201 (logged)" in out.getvalue()
    assert InboundEvent.objects.filter(journey=sandbox).count() == 8
    assert sandbox.milestones.filter(state=MilestoneState.DONE).count() == 4


def test_play_journey_names_the_templates_when_given_an_unknown_one(journey, partner):
    with pytest.raises(
        CommandError, match=f"No journey template 'nope'. Templates: {journey.template.key}."
    ):
        call_command("play_journey", partner.slug, "--template", "nope")
    assert not Journey.objects.filter(is_sandbox=True).exists()


def test_play_journey_needs_a_known_partner():
    with pytest.raises(CommandError, match="No partner"):
        call_command("play_journey", "nobody")


def test_a_sandbox_journey_takes_profile_changes_as_a_customers_would_and_tells_nobody(
    api, journey, partner, django_capture_on_commit_callbacks
):
    """The sandbox owner is inactive by design; a proposal to it answers as one to a
    customer would (filled in, then pending), where it answered 404 as a deleted account."""
    created = api.post(
        reverse("api:sandbox-journeys"), {"template": journey.template.key}, format="json"
    )
    url = reverse("api:journey-profile-changes", kwargs={"reference": created.json()["reference"]})
    body = {"field": "phone", "value": "+44 7911 123456", "reason": "From the order"}
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(url, body, format="json")
        second = api.post(url, {**body, "value": "+44 7911 123457"}, format="json")
    assert (first.status_code, first.json()) == (201, {"field": "phone", "state": "applied"})
    assert (second.status_code, second.json()) == (201, {"field": "phone", "state": "pending"})
    owner = Journey.objects.get(reference=created.json()["reference"]).owner
    owner.profile.refresh_from_db()
    assert owner.profile.phone == "+447911123456"
    assert Notification.objects.count() == 0
    assert mail.outbox == []
    # A new sandbox journey has an owner of its own: the same test passes again.
    again = api.post(
        reverse("api:sandbox-journeys"), {"template": journey.template.key}, format="json"
    )
    url = reverse("api:journey-profile-changes", kwargs={"reference": again.json()["reference"]})
    assert api.post(url, body, format="json").json() == {"field": "phone", "state": "applied"}


def test_a_deleted_customers_journey_is_never_taken_for_a_sandbox_one(api, journey, partner):
    """Whether an inactive owner may still be proposed to is told by the journeys it owns,
    not by the caller: a deleted customer who owns a sandbox journey too stays erased."""
    sandbox = sandbox_journey_create(partner=partner, template=journey.template.key)
    account_delete(user=journey.owner)
    Journey.objects.filter(pk=sandbox.pk).update(owner=journey.owner)
    response = api.post(
        reverse("api:journey-profile-changes", kwargs={"reference": sandbox.reference}),
        {"field": "phone", "value": "+44 7911 123456", "reason": "From the order"},
        format="json",
    )
    assert response.status_code == 404
    journey.owner.profile.refresh_from_db()
    assert journey.owner.profile.phone == ""


def sandbox_made(partner, template, *, days_ago: int) -> Journey:
    with time_machine.travel(timezone.now() - timedelta(days=days_ago)):
        return sandbox_journey_create(partner=partner, template=template)


def test_old_sandbox_journeys_go_with_their_owners_and_photos(
    api, journey, partner, settings, django_capture_on_commit_callbacks
):
    settings.SANDBOX_RETENTION = timedelta(days=30)
    key = journey.template.key
    old = sandbox_made(partner, key, days_ago=31)
    with (
        time_machine.travel(timezone.now() - timedelta(days=31)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        photo = photo_add(journey=old, milestone=None, file=jpeg(), caption="Test shot")
    photo.refresh_from_db()
    files = [photo.image.name, photo.thumbnail.name]
    assert all(files) and all(default_storage.exists(name) for name in files)
    fresh = sandbox_made(partner, key, days_ago=29)
    # Made long ago and sent an event today: it goes all the same (by age alone: a leg or
    # an appointment leaves no time of its own to tell "in use" by).
    still_used = sandbox_made(partner, key, days_ago=60)
    sent = api.post(
        reverse("api:journey-events", kwargs={"reference": still_used.reference}),
        {"event_id": "sb-used", "code": "S2", "occurred_at": timezone.now().isoformat()},
        format="json",
    )
    assert sent.status_code == 201
    # An owner shared with a fresh journey (as before each journey had its own) stays.
    shared = sandbox_made(partner, key, days_ago=45)
    Journey.objects.filter(pk=fresh.pk).update(owner=shared.owner)
    # Real journeys are never purged, however old and quiet.
    Journey.objects.filter(pk=journey.pk).update(created_at=timezone.now() - timedelta(days=400))

    with django_capture_on_commit_callbacks(execute=True):
        assert sandbox_purge() == 3
    remaining = set(Journey.objects.values_list("pk", flat=True))
    assert remaining == {journey.pk, fresh.pk}
    assert not User.objects.filter(pk=old.owner_id).exists()
    assert User.objects.filter(pk=shared.owner_id).exists()
    assert User.objects.filter(pk=journey.owner_id).exists()
    assert not Photo.objects.filter(pk=photo.pk).exists()
    assert not any(default_storage.exists(name) for name in files)
    # Nothing left to do: the task (run by beat) finds nothing more.
    assert purge_sandbox_journeys() == 0


def test_the_purge_keeps_an_inactive_owner_that_is_not_a_sandbox_one(journey, partner, settings):
    """A deleted customer is inactive too: only the sandbox's own addresses go."""
    settings.SANDBOX_RETENTION = timedelta(days=30)
    old = sandbox_made(partner, journey.template.key, days_ago=31)
    account_delete(user=journey.owner)
    Journey.objects.filter(pk=old.pk).update(owner=journey.owner)
    Journey.objects.filter(pk=journey.pk).delete()
    assert sandbox_purge() == 1
    assert User.objects.filter(pk=journey.owner_id, is_active=False).exists()
