"""Export and deletion: everything we hold, and then nothing that identifies the person."""

import io
import json
import zipfile
from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.urls import reverse
from django.utils import timezone

from accounts.mfa import totp_activate
from accounts.models import Address, ProfileChange, Source
from accounts.privacy import account_delete, account_export_data
from accounts.services import journey_share_invite, profile_propose_change, share_link_create
from integrations.services import partner_record_status_event
from journey.models import Journey, Message
from journey.photos import photo_add
from notifications.models import Notification
from tests.factories import UserFactory, make_journey
from tests.journey.test_views import jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture
def rich_customer(customer, journey, partner):
    profile = customer.profile
    profile.given_name, profile.family_name, profile.phone = "Zelda", "Quixote", "+447911123777"
    profile.save()
    Address.objects.create(
        profile=profile,
        label="Home",
        line1="17 Uniqueplace Road",
        city="Bristol",
        postcode="BS9 9ZZ",
    )
    Message.objects.create(journey=journey, author=customer, body="Call me on 07911 123777")
    # Written through the portal's services: a partner webhook and a staff alert carry it.
    from integrations.models import WebhookEndpoint
    from journey.models import Appointment, Feedback
    from journey.services import appointment_request_reschedule, message_post

    WebhookEndpoint.objects.create(
        partner=partner,
        url="https://partner.example/hook",
        event_types=["message.posted", "appointment.reschedule_requested"],
        secret="whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=",
    )
    message_post(journey=journey, author=customer, body="My door code is 4711, Zelda")
    slot = timezone.now() + timedelta(days=5)
    appointment = Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=slot,
        arrive_at=slot,
        place_name="Bristol",
        milestone=journey.milestones.get(position=4),
    )
    appointment_request_reschedule(
        appointment=appointment,
        user=customer,
        first_choice=slot + timedelta(days=1),
        note="Ring Quixote at the gate",
    )
    Feedback.objects.create(
        milestone=journey.milestones.get(position=1),
        customer=customer,
        rating=2,
        comment="Zelda was not told",
    )
    # Someone else invited this customer to follow their journey.
    inviter = UserFactory()
    journey_share_invite(journey=make_journey(owner=inviter), owner=inviter, email=customer.email)
    profile_propose_change(
        user=customer, field="family_name", value="Quixote-Ray", reason="r", source=Source.STAFF
    )
    ProfileChange.objects.create(
        user=customer,
        field="phone",
        old_value="",
        new_value="+447911123777",
        source=Source.CUSTOMER,
    )
    journey_share_invite(journey=journey, owner=customer, email="friend-of-zelda@example.com")
    share_link_create(journey=journey, owner=customer, days=7)
    partner_record_status_event(
        partner=partner,
        journey=journey,
        event_id="e1",
        code="S1",
        occurred_at=timezone.now(),
        payload={"customer_name": "Zelda Quixote", "phone": "+447911123777"},
    )
    photo_add(journey=journey, milestone=None, file=jpeg())
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    totp_activate(user=customer)
    return customer


def test_export_holds_profile_journeys_events_messages_audit_and_photos(
    client, rich_customer, journey
):
    client.force_login(rich_customer)
    response = client.post(reverse("accounts:export"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    data = json.loads(archive.read("data.json"))
    assert data["profile"]["family_name"] == "Quixote"
    assert data["addresses"][0]["line1"] == "17 Uniqueplace Road"
    (exported,) = data["journeys"]
    assert exported["reference"] == journey.reference
    assert exported["messages"][0]["body"] == "Call me on 07911 123777"
    assert [e["milestone__stage__label"] for e in exported["events"]] == ["Stage 1"]
    # The stage an appointment is booked for.
    assert [(a["title"], a["milestone__stage__label"]) for a in exported["appointments"]] == [
        ("Handover", "Stage 4")
    ]
    assert data["audit_trail"][0]["new"] == "+447911123777"
    assert [name for name in archive.namelist() if name.startswith("photos/")] == [
        f"photos/{journey.reference}/{journey.photos.get().pk}.jpg"
    ]


def test_export_holds_what_a_viewer_wrote_on_a_journey_they_follow(rich_customer):
    """The followed journey's own data is its owner's; the viewer's messages and ratings
    there are theirs, and in their export (a journey they stopped following included)."""
    from accounts.models import JourneyShare
    from journey.models import Feedback

    share = JourneyShare.objects.get(email=rich_customer.email)
    followed = share.journey
    # Followed once, revoked, invited again and following now.
    first = timezone.now() - timedelta(days=30)
    share.viewer, share.accepted_at, share.revoked_at = rich_customer, first, first + timedelta(1)
    share.save()
    again = JourneyShare.objects.create(
        journey=followed,
        email=rich_customer.email,
        invited_by=followed.owner,
        viewer=rich_customer,
        accepted_at=timezone.now(),
    )
    Message.objects.create(journey=followed, author=followed.owner, body="The owner's words")
    Message.objects.create(journey=followed, author=rich_customer, body="Looks great!")
    Feedback.objects.create(
        milestone=followed.milestones.get(position=1),
        customer=rich_customer,
        rating=5,
        comment="Quick",
    )
    gone = make_journey(owner=UserFactory())
    Message.objects.create(journey=gone, author=rich_customer, body="Before it was revoked")
    # Written as staff (a customer who is also on the staff): the company's, not theirs.
    answered = make_journey(owner=UserFactory())
    Message.objects.create(
        journey=answered, author=rich_customer, body="Staff answer", from_staff=True
    )

    data = json.loads(json.dumps(account_export_data(user=rich_customer), cls=DjangoJSONEncoder))
    assert [j["reference"] for j in data["journeys"]] == [rich_customer.journeys.get().reference]
    by_reference = {j["reference"]: j for j in data["followed_journeys"]}
    assert set(by_reference) == {followed.reference, gone.reference}
    mine = by_reference[followed.reference]
    stamp = DjangoJSONEncoder().default
    assert mine["followed"] == [
        {"since": stamp(share.accepted_at), "until": stamp(share.revoked_at)},
        {"since": stamp(again.accepted_at), "until": None},
    ]
    assert [m["body"] for m in mine["your_messages"]] == ["Looks great!"]
    assert [(r["rating"], r["comment"]) for r in mine["your_ratings"]] == [(5, "Quick")]
    assert [m["body"] for m in by_reference[gone.reference]["your_messages"]] == [
        "Before it was revoked"
    ]
    assert by_reference[gone.reference]["followed"] == []
    assert "The owner's words" not in json.dumps(data)
    assert "Staff answer" not in json.dumps(data)


def text_values(instance: models.Model) -> str:
    parts = []
    for field in instance._meta.concrete_fields:
        if isinstance(field, (models.CharField, models.TextField, models.JSONField)):
            parts.append(json.dumps(getattr(instance, field.attname), default=str))
    return " ".join(parts)


def test_after_deletion_no_table_holds_the_customers_personal_data(rich_customer, journey):
    email = rich_customer.email
    secrets = [
        email,
        "Zelda",
        "Quixote",
        "7911123777",
        "07911 123777",
        "Uniqueplace",
        "BS9 9ZZ",
        "friend-of-zelda@example.com",
        "4711",
        "Ring Quixote",
    ]
    other = UserFactory()  # someone else's data is untouched

    account_delete(user=rich_customer)

    found = []
    for model in apps.get_models():
        for row in model.objects.all():
            text = text_values(row)
            found += [(model.__name__, s) for s in secrets if s in text]
    assert found == []
    rich_customer.refresh_from_db()
    assert rich_customer.is_active is False
    assert not rich_customer.has_usable_password()
    # The order record is kept, anonymously.
    assert Journey.objects.filter(pk=journey.pk, owner=rich_customer).exists()
    assert journey.photos.count() == 1
    other.refresh_from_db()
    assert other.profile.given_name != ""


def test_deletion_needs_confirmation_and_explains_what_is_kept(client, customer):
    client.force_login(customer)
    page = client.get(reverse("accounts:delete")).content.decode()
    assert "What we keep, and why" in page
    wrong = client.post(reverse("accounts:delete"), {"confirm_email": "someone@example.com"})
    assert wrong.status_code == 422
    customer.refresh_from_db()
    assert customer.is_active
    assert "write to us on your journey page" in page
    done = client.post(reverse("accounts:delete"), {"confirm_email": customer.email.upper()})
    assert done.status_code == 200
    # Nobody to write to any more: the footer's invitation is for people signed in.
    assert "write to us on your journey page" not in done.content.decode()
    customer.refresh_from_db()
    assert not customer.is_active
    assert client.get(reverse("journey:home")).status_code == 302  # logged out


def test_deletion_names_what_the_customer_would_stop_hearing_about(client, customer):
    """A customer deleted the account with an install and an engineer's visit still to
    come, and nothing said those updates would stop (a customer's review)."""
    from journey.models import Appointment, Health

    under_way = make_journey(owner=customer, title="Full-fibre broadband")
    visit = timezone.now() + timedelta(days=4)
    Appointment.objects.create(
        journey=under_way,
        title="Engineer's visit",
        starts_at=visit,
        arrive_at=visit,
        place_name="Home",
    )
    finished = make_journey(owner=customer, title="An old kitchen")
    Journey.objects.filter(pk=finished.pk).update(health=Health.DONE)
    client.force_login(customer)
    page = client.get(reverse("accounts:delete")).content.decode()
    assert "You would stop hearing about what is still under way" in page
    assert "Full-fibre broadband</a> (1 appointment still ahead)" in page
    assert "An old kitchen" not in page
    assert 'class="button button--danger"' in page


def test_after_deletion_nothing_refills_or_writes_to_the_account(rich_customer, journey, api):
    from django.urls import reverse

    account_delete(user=rich_customer)
    response = api.post(
        reverse("api:journey-profile-changes", kwargs={"reference": journey.reference}),
        {"field": "phone", "value": "+447911123456", "reason": "From the order"},
        format="json",
    )
    assert response.status_code == 404
    rich_customer.profile.refresh_from_db()
    assert rich_customer.profile.phone == ""
    before = Notification.objects.count()
    from journey.services import journey_record_milestone

    journey_record_milestone(
        journey=journey, stage_key="stage-3", occurred_at=timezone.now(), source="staff"
    )
    assert Notification.objects.count() == before  # nobody left to tell
