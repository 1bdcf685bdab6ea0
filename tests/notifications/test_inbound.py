"""Replies by email join the journey's conversation; forged or foreign mail is refused."""

import time
from email.message import EmailMessage

import pytest
from django.core import mail
from django.urls import reverse

from journey.models import Message
from notifications.channels import parse_reply_address, reply_address
from notifications.inbound import sign, strip_quoted
from notifications.models import Notification

pytestmark = pytest.mark.django_db
SECRET = "inbound-test-secret"


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.INBOUND_EMAIL_SECRET = SECRET


def raw_reply(to: str, text: str, *, sender: str = "alex@example.com") -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Re: Your Aurora GT: Paint"
    message.set_content(text)
    return message.as_bytes()


def post(
    client,
    body: bytes,
    *,
    secret: str = SECRET,
    stamp: int | None = None,
    path: str = "inbound-email",
):
    stamp = stamp or int(time.time())
    return client.post(
        reverse(f"notifications:{path}"),
        body,
        content_type="message/rfc822",
        headers={
            "X-Milepost-Timestamp": str(stamp),
            "X-Milepost-Signature": sign(body, stamp, secret),
        },
    )


def test_the_reply_address_is_signed_and_parsed(journey, customer):
    address = reply_address(journey_id=journey.pk, user_id=customer.pk)
    assert parse_reply_address(address) == (journey.pk, customer.pk)
    forged = address.replace(f"+{journey.pk}-", f"+{journey.pk + 1}-")
    assert parse_reply_address(forged) is None


def test_a_reply_joins_the_conversation_without_the_quoted_part(
    client, journey, customer, django_capture_on_commit_callbacks, settings
):
    to = reply_address(journey_id=journey.pk, user_id=customer.pk)
    body = raw_reply(
        f"Milepost <{to}>",
        "Great news, thank you!\nCan I bring my own mats?\n\n"
        "On Thu, 26 Nov 2026 at 09:40, Milepost Motors <updates@milepost.example> wrote:\n"
        "> Your Aurora GT reached a new stage: Paint\n",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, body)
    assert response.status_code == 201, response.content
    message = Message.objects.get()
    assert (message.journey, message.author, message.from_staff) == (journey, customer, False)
    assert message.body == "Great news, thank you!\nCan I bring my own mats?"
    alert = Notification.objects.get(kind="staff_customer_message")
    assert alert.to_email == settings.STAFF_ALERT_EMAIL
    assert mail.outbox[-1].to == [settings.STAFF_ALERT_EMAIL]
    assert "Can I bring my own mats?" in mail.outbox[-1].body
    # Written to the team, not in the customer's words.
    staff_mail = mail.outbox[-1]
    html = staff_mail.alternatives[0][0]
    for text in (staff_mail.body, html):
        assert "See your journey" not in text and "Just reply to this email" not in text
        assert "the customer waits for your answer" in text
    assert f"/admin/journey/journey/{journey.pk}/change/" in staff_mail.body


def test_staff_are_alerted_in_the_sites_language_whatever_the_customers(
    client, journey, customer, django_capture_on_commit_callbacks, settings
):
    """The team's address has no account: its alert is not written in the language of
    the customer it is about (as an invitation, also sent to an address, is)."""
    customer.profile.language = "es"
    customer.profile.save()
    to = reply_address(journey_id=journey.pk, user_id=customer.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, raw_reply(f"Milepost <{to}>", "Hola")).status_code == 201
    assert mail.outbox[-1].to == [settings.STAFF_ALERT_EMAIL]
    assert "the customer waits for your answer" in mail.outbox[-1].body


@pytest.mark.parametrize(
    ("tamper", "status", "code"),
    [
        ("forged", 403, "bad_signature"),
        ("missing", 403, "bad_signature"),
        ("old", 403, "bad_signature"),
    ],
)
def test_a_forged_missing_or_old_signature_is_refused(
    client, journey, customer, tamper, status, code
):
    body = raw_reply(reply_address(journey_id=journey.pk, user_id=customer.pk), "Hello")
    if tamper == "forged":
        response = post(client, body, secret="not-the-secret")
    elif tamper == "old":
        response = post(client, body, stamp=int(time.time()) - 3600)
    else:
        response = client.post(
            reverse("notifications:inbound-email"), body, content_type="message/rfc822"
        )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert Message.objects.count() == 0


def test_an_unknown_address_or_a_non_mime_body_is_refused(client, journey, customer):
    unknown = post(client, raw_reply("reply+1-1-0000@reply.milepost.example", "Hi"))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_address"
    not_mime = post(client, b"just some text, not an email")
    assert not_mime.status_code == 400
    assert not_mime.json()["error"]["code"] == "not_mime"
    empty = post(
        client,
        raw_reply(
            reply_address(journey_id=journey.pk, user_id=customer.pk), "> only quoted text\n"
        ),
    )
    assert empty.status_code == 400
    assert Message.objects.count() == 0


def test_emails_carry_a_reply_to_of_their_conversation(
    api, journey, customer, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    with django_capture_on_commit_callbacks(execute=True):
        api.post(
            reverse("api:journey-events", kwargs={"reference": journey.reference}),
            {"event_id": "r1", "code": "S1", "occurred_at": timezone.now().isoformat()},
            format="json",
        )
    assert mail.outbox[0].reply_to == [reply_address(journey_id=journey.pk, user_id=customer.pk)]


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Yes please\n\nEl jue, 26 nov 2026 a las 9:40, Milepost escribió:\n> hola", "Yes please"),
        ("Fine\n-----Original Message-----\nFrom: x", "Fine"),
        ("Thanks\n-- \nAlex\nSent from my phone", "Thanks"),
        ("> quoted\nMy answer", "My answer"),
    ],
)
def test_strip_quoted(text, kept):
    assert strip_quoted(text) == kept


def test_a_bounce_report_disables_email(client, customer):
    import json

    body = json.dumps({"email": customer.email}).encode()
    response = post(client, body, path="inbound-bounce")
    assert response.status_code == 200
    customer.profile.refresh_from_db()
    assert customer.profile.email_bounced_at is not None
    unknown = post(
        client, json.dumps({"email": "nobody@example.com"}).encode(), path="inbound-bounce"
    )
    assert unknown.status_code == 404
    forged = post(client, body, secret="wrong", path="inbound-bounce")
    assert forged.status_code == 403
