"""A staff message says "we answered your message" only when it answers one."""

import pytest

from journey.services import message_post, staff_reply_post
from notifications.channels import render
from notifications.models import Notification
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def told(message) -> tuple[str, str]:
    """The subject and the HTML of the email telling the customer of a staff message."""
    row = Notification.objects.get(dedup_key=f"staff-reply:{message.pk}", channel="email")
    rendered = render(row)
    return rendered.subject, rendered.html


def test_a_message_staff_start_is_not_called_an_answer(journey):
    staff = UserFactory()
    subject, html = told(staff_reply_post(journey=journey, author=staff, body="Good news."))
    assert subject == "Test journey: a message from us"
    assert "A message from us" in html and "answered" not in html


def test_an_answer_to_the_customer_says_so_and_the_next_message_does_not(journey, customer):
    staff = UserFactory()
    message_post(journey=journey, author=customer, body="When is the handover?")
    answer = staff_reply_post(journey=journey, author=staff, body="On Friday.")
    later = staff_reply_post(journey=journey, author=staff, body="Bring your licence.")

    subject, html = told(answer)
    assert subject == "Test journey: we answered your message"
    assert "We answered your message" in html
    assert told(later)[0] == "Test journey: a message from us"
