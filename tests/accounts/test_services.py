"""The customer owns the record: proposals never change it until the customer accepts."""

import pytest
from django.core import mail

from accounts.models import ChangeProposal, ProfileChange, ProposalState, Source
from accounts.services import profile_propose_change, profile_update, proposal_decide
from journey.errors import ApplicationError
from notifications.channels import render
from notifications.models import Notification
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return UserFactory(is_staff=True)


def test_a_proposal_never_changes_the_record_until_the_customer_accepts(customer, staff):
    customer.profile.phone = "+447911123456"
    customer.profile.save()

    proposal = profile_propose_change(
        user=customer,
        field="phone",
        value="07911 123457",
        reason="The dealer has a newer number on file.",
        source=Source.STAFF,
        actor=staff,
        actor_name=staff.email,
    )

    customer.profile.refresh_from_db()
    assert customer.profile.phone == "+447911123456"
    assert proposal.state == ProposalState.PENDING
    assert proposal.new_value == "+447911123457"  # validated and normalised when proposed
    assert ProfileChange.objects.count() == 0
    notification = Notification.objects.get(channel="email")
    assert notification.recipient == customer
    assert notification.kind == "profile_change_proposed"

    proposal_decide(proposal=proposal, user=customer, accept=True)

    customer.profile.refresh_from_db()
    assert customer.profile.phone == "+447911123457"
    change = ProfileChange.objects.get()
    assert (change.field, change.old_value, change.new_value) == (
        "phone",
        "+447911123456",
        "+447911123457",
    )
    assert change.source == Source.CUSTOMER
    assert "Accepted a proposal from" in change.note


def test_a_declined_proposal_changes_nothing(customer, staff):
    # Pinned: the factory's Faker surname is sometimes "Smith", which the service refuses
    # as unchanged.
    customer.profile.family_name = original = "Jones"
    customer.profile.save()
    proposal = profile_propose_change(
        user=customer,
        field="family_name",
        value="Smith",
        reason="Typo?",
        source=Source.STAFF,
        actor=staff,
    )
    proposal_decide(proposal=proposal, user=customer, accept=False)
    customer.profile.refresh_from_db()
    assert customer.profile.family_name == original
    assert ChangeProposal.objects.get().state == ProposalState.DECLINED
    assert ProfileChange.objects.count() == 0
    with pytest.raises(ApplicationError, match="already answered"):
        proposal_decide(proposal=proposal, user=customer, accept=True)


def test_an_empty_field_is_filled_directly_and_marked_with_its_source(customer):
    assert customer.profile.phone == ""
    result = profile_propose_change(
        user=customer,
        field="phone",
        value="+34 612 345 678",
        reason="From the order form",
        source=Source.PARTNER,
        actor_name="Iberia Motor Works",
    )
    assert result is None
    customer.profile.refresh_from_db()
    assert customer.profile.phone == "+34612345678"
    assert customer.profile.field_sources == {"phone": "partner:Iberia Motor Works"}
    change = ProfileChange.objects.get()
    assert change.source == Source.PARTNER and change.actor_name == "Iberia Motor Works"
    # Their record, filled in by someone else: they are told (it was silent before).
    told = Notification.objects.filter(recipient=customer, kind="profile_filled_in")
    assert {row.channel for row in told} == {"email", "inapp"}
    assert told.first().context["new_value"] == "+34612345678"
    email = render(told.get(channel="email"))
    assert email.subject == "We filled in your details: phone"
    assert "Your phone was empty, so we filled it in: +34612345678" in email.text
    assert "Why: From the order form" in email.text

    # Once the customer edits it, it is theirs: the mark goes.
    profile_update(
        profile=customer.profile,
        changes={"phone": "+34612000111"},
        actor=customer,
        source=Source.CUSTOMER,
    )
    customer.profile.refresh_from_db()
    assert customer.profile.field_sources == {}


def test_a_newer_proposal_for_the_same_field_withdraws_the_older(customer, staff):
    customer.profile.given_name = "Alex"  # pinned: Faker's name could equal a proposed one
    customer.profile.save()
    first = profile_propose_change(
        user=customer, field="given_name", value="Alexandra", reason="a", source=Source.STAFF
    )
    second = profile_propose_change(
        user=customer, field="given_name", value="Alexa", reason="b", source=Source.STAFF
    )
    first.refresh_from_db()
    assert first.state == ProposalState.WITHDRAWN
    assert second.state == ProposalState.PENDING


def test_the_same_proposal_again_is_the_one_waiting_and_tells_nobody_twice(customer):
    customer.profile.given_name = "Alex"
    customer.profile.save()
    first, again = (
        profile_propose_change(
            user=customer, field="given_name", value="Alexandra", reason="a", source=Source.PARTNER
        )
        for _ in range(2)
    )
    assert again == first
    first.refresh_from_db()
    assert first.state == ProposalState.PENDING
    assert ChangeProposal.objects.count() == 1
    told = Notification.objects.filter(kind="profile_change_proposed", channel="inapp")
    assert told.count() == 1
    # Another partner proposing the same: the one waiting (the answer goes to every
    # partner of the customer's journeys), nobody told again.
    other = profile_propose_change(
        user=customer,
        field="given_name",
        value="Alexandra",
        reason="a",
        source=Source.PARTNER,
        actor_name="Another partner",
    )
    assert other == first
    assert told.count() == 1


@pytest.mark.parametrize(
    ("field", "value", "reason", "message"),
    [
        ("phone", "not a number", "r", "not a phone number"),
        ("time_zone", "Mars/Olympus", "r", "Invalid value for time_zone"),
        ("language", "xx", "r", "Invalid value for language"),
        ("email", "x@example.com", "r", "cannot be changed this way"),
        ("phone", "+447911123456", "  ", "Give a reason"),
        ("given_name", " ", "r", "Tell us what to call you"),
    ],
)
def test_bad_proposals_are_refused_and_nothing_is_written(customer, field, value, reason, message):
    with pytest.raises(ApplicationError, match=message):
        profile_propose_change(
            user=customer, field=field, value=value, reason=reason, source=Source.STAFF
        )
    assert ChangeProposal.objects.count() == 0
    assert ProfileChange.objects.count() == 0
    assert Notification.objects.count() == 0


def test_only_the_customer_decides_their_proposals(customer, staff):
    customer.profile.given_name = "Alex"  # pinned: Faker's name could equal the proposed one
    customer.profile.save()
    proposal = profile_propose_change(
        user=customer, field="given_name", value="Al", reason="r", source=Source.STAFF
    )
    with pytest.raises(ApplicationError):
        proposal_decide(proposal=proposal, user=UserFactory(), accept=True)
    proposal.refresh_from_db()
    assert proposal.state == ProposalState.PENDING


def test_the_proposal_email_says_what_and_why(customer, django_capture_on_commit_callbacks):
    customer.profile.given_name = "Alex"
    customer.profile.save()
    with django_capture_on_commit_callbacks(execute=True):
        profile_propose_change(
            user=customer,
            field="given_name",
            value="Alexander",
            reason="As on your passport",
            source=Source.STAFF,
        )
    body = mail.outbox[0].body
    assert 'from "Alex" to "Alexander"' in body
    assert "As on your passport" in body
    assert "/account/#proposals" in body


def test_a_proposal_tells_a_spanish_customer_in_spanish_whoever_proposed_it(customer):
    """Staff propose in English; the field's name is chosen when the message is written,
    in the customer's language, and the message says which language it is in."""
    from django.utils import translation

    from notifications.channels import render

    customer.profile.phone, customer.profile.language = "+447911123456", "es"
    customer.profile.save()
    with translation.override("en"):
        profile_propose_change(
            user=customer, field="phone", value="+447911123457", reason="r", source=Source.STAFF
        )
    rendered = render(Notification.objects.get(channel="email"))
    assert "teléfono" in rendered.subject.lower() and "phone" not in rendered.subject.lower()
    assert "cambiar su teléfono" in rendered.text  # as a sentence has it, not "su Teléfono"
    assert '<html lang="es">' in rendered.html


@pytest.fixture
def noon():
    from datetime import UTC, datetime

    import time_machine

    with time_machine.travel(datetime(2026, 11, 20, 12, 0, tzinfo=UTC), tick=False):
        yield


def test_an_answered_proposal_is_no_longer_asked_about_by_what_still_waits(customer, noon):
    """A user's review: a digest sent minutes after the customer had declined still said
    "Please check a change to your details". What had not gone yet is dropped."""
    from datetime import time as clock

    from django.utils import timezone

    customer.profile.given_name = "Alex"
    customer.profile.quiet_hours_start, customer.profile.quiet_hours_end = clock(0), clock(23, 59)
    customer.profile.save()
    for field, value in (("given_name", "Alexandra"), ("family_name", "Morgan")):
        if field == "family_name":
            customer.profile.family_name = "Smith"
            customer.profile.save()
        profile_propose_change(
            user=customer, field=field, value=value, reason="r", source=Source.STAFF
        )
    given, family = ChangeProposal.objects.order_by("pk")
    held = Notification.objects.filter(kind="profile_change_proposed", channel="email")
    assert held.count() == 2 and all(row.scheduled_at > timezone.now() for row in held)

    proposal_decide(proposal=given, user=customer, accept=False)

    left = Notification.objects.filter(kind="profile_change_proposed")
    assert set(left.filter(channel="email").values_list("dedup_key", flat=True)) == {
        f"proposal:{family.pk}"
    }
    centre = left.get(channel="inapp", dedup_key=f"proposal:{given.pk}")
    assert centre.read_at is not None
    # A proposal replaced by a newer one is settled the same way.
    profile_propose_change(
        user=customer, field="family_name", value="Lee", reason="r", source=Source.STAFF
    )
    assert not left.filter(channel="email", dedup_key=f"proposal:{family.pk}").exists()
