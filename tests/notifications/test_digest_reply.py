"""A digest can be answered like any single email: its Reply-To leads to a conversation,
and its words say which one (or, about no journey, promise no reply)."""

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
import time_machine
from django.core import mail

from journey.models import Message
from notifications import services
from notifications.channels import reply_address
from notifications.inbound import receive
from tests.factories import UserFactory, make_journey

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def staff_reply(user, journey, key: str) -> None:
    services.notification_enqueue(
        recipient=user,
        journey=journey,
        kind="staff_reply",
        dedup_key=key,
        context={"body": f"Message {key}", "anchor": "conversation"},
    )


def change_proposed(user, key: str) -> None:
    services.notification_enqueue(
        recipient=user,
        kind="profile_change_proposed",
        dedup_key=key,
        context={
            "field": "phone",
            "field_label": "Phone",
            "old_value": "",
            "new_value": "+447911123456",
            "reason": "From the dealer",
        },
    )


def digest_of(*writes) -> mail.EmailMessage:
    """The first write goes at once; the others, a moment later, as one digest."""
    first, *others = writes
    with time_machine.travel(START, tick=False):
        first()
        services.outbox_sweep(now=START + timedelta(hours=1))  # the first, sent
    with time_machine.travel(START + timedelta(seconds=20), tick=False):
        for write in others:
            write()
    with time_machine.travel(START + timedelta(minutes=4), tick=False):
        assert services.outbox_sweep() == 1
    assert len(mail.outbox) == 2
    return mail.outbox[1]


def reply(to: str, text: str) -> bytes:
    message = EmailMessage()
    message["From"] = "alex@example.com"
    message["To"] = to
    message["Subject"] = "Re: 2 updates about your journeys"
    message.set_content(f"{text}\n\nOn Fri, 20 Nov 2026 at 10:04, Milepost wrote:\n> earlier")
    return message.as_bytes()


def test_a_digest_of_one_journey_is_answered_in_its_conversation():
    user = UserFactory()
    kitchen = make_journey(owner=user, title="Oak kitchen")
    digest = digest_of(
        lambda: staff_reply(user, kitchen, "kitchen-1"),
        lambda: staff_reply(user, kitchen, "kitchen-2"),
    )
    assert digest.reply_to == [reply_address(journey_id=kitchen.pk, user_id=user.pk)]
    message = receive(reply(digest.reply_to[0], "Can the fitters come on Monday?"))
    assert (message.journey_id, message.author_id, message.from_staff) == (
        kitchen.pk,
        user.pk,
        False,
    )


def test_a_digest_of_several_journeys_asks_to_write_from_the_journeys_page():
    """A reply could be about any of them, and a journey's conversation reaches its
    viewers and partners: no Reply-To (a code review; the first version answered into the
    newest item's journey)."""
    user = UserFactory()
    car = make_journey(owner=user, title="Aurora GT")
    kitchen = make_journey(owner=user, title="Oak kitchen")
    digest = digest_of(
        lambda: staff_reply(user, car, "car-1"),
        lambda: staff_reply(user, car, "car-2"),
        lambda: staff_reply(user, kitchen, "kitchen-1"),
    )
    assert "2 updates about your journeys" in digest.subject
    assert digest.reply_to == []
    assert "reply to this email" not in digest.body
    assert "Questions? Write to us from your journey's page." in digest.body
    assert Message.objects.filter(journey__in=[car, kitchen], from_staff=False).count() == 0


def test_a_digest_with_an_item_about_no_journey_invites_no_reply():
    """A reply about the phone number would land in the car's conversation, which its
    viewers read and its partners receive (a user's review)."""
    user = UserFactory()
    car = make_journey(owner=user, title="Aurora GT")
    digest = digest_of(
        lambda: staff_reply(user, car, "car-1"),
        lambda: change_proposed(user, "change-1"),
        lambda: staff_reply(user, car, "car-2"),
    )
    assert digest.reply_to == []
    assert "reply to this email" not in digest.body
    assert "Questions? Write to us from your journey's page." in digest.body


def test_a_digest_about_no_journey_promises_no_reply():
    user = UserFactory()
    digest = digest_of(
        lambda: change_proposed(user, "change-1"),
        lambda: change_proposed(user, "change-2"),
        lambda: change_proposed(user, "change-3"),
    )
    assert digest.reply_to == []
    assert "reply to this email" not in digest.body
    assert "Questions? Write to us from your journey's page." in digest.body
