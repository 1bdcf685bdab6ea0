"""The journey page's words and structure for its owner and for everyone else (a user
review): an open reschedule request in full, a viewer and a share link not addressed as the
owner, the side column first in the HTML, and disclosures a poll can find again."""

import re
from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import reverse

from accounts.services import journey_share_accept, journey_share_invite, share_link_create
from journey.models import Message, PromisedItem, RescheduleRequest
from journey.public import share_link_token
from journey.services import feedback_give
from journey.views import POLLED_PARTS
from tests.factories import UserFactory
from tests.journey.test_views import _reschedule, detail_url, fill, make_appointment, reach

pytestmark = pytest.mark.django_db

ASK_AGAIN = "Ask for another time"


@pytest.fixture
def viewer(journey, customer):
    user = UserFactory(email="friend@example.com")
    share = journey_share_invite(journey=journey, owner=customer, email=user.email)
    journey_share_accept(share=share, user=user)
    return user


def page(client, journey) -> str:
    response = client.get(detail_url(journey))
    assert response.status_code == 200
    return response.content.decode()


def appointments_part(html: str) -> str:
    return re.search(r'<section id="appointments".*?</section>', html, re.S).group(0)


@time_machine.travel(datetime(2027, 1, 5, 12, tzinfo=UTC), tick=False)
def test_an_open_request_shows_both_times_and_the_note_and_is_not_offered_again(
    client, journey, customer
):
    client.force_login(customer)
    appointment = make_appointment(journey, zone="Europe/Madrid")
    assert ASK_AGAIN in appointments_part(page(client, journey))

    response = _reschedule(
        client,
        journey,
        appointment,
        "2027-02-10T14:30",
        second_choice="2027-02-11T10:00",
        note="Mornings suit me <b>better</b>.",
    )
    assert response.status_code == 302

    part = appointments_part(page(client, journey))
    # On the place's clock, as they were entered.
    assert (
        "You asked for Wednesday 10 February, 14:30 or Thursday 11 February, 10:00 instead. "
        "We will confirm a new time with you." in part
    )
    assert "Your note:</strong> Mornings suit me &lt;b&gt;better&lt;/b&gt;." in part
    # Not offered again while staff answer this one; the customer is told how to change it.
    assert ASK_AGAIN not in part
    assert f'name="r{appointment.pk}-first_choice"' not in part
    assert "To change this request, write to us in the conversation." in part

    # Once staff have answered, the customer may ask again.
    RescheduleRequest.objects.update(state="handled")
    part = appointments_part(page(client, journey))
    assert ASK_AGAIN in part
    assert "You asked for" not in part


@time_machine.travel(datetime(2027, 1, 5, 12, tzinfo=UTC), tick=False)
def test_a_request_without_a_second_time_or_a_note_says_only_what_was_asked(
    client, journey, customer
):
    client.force_login(customer)
    appointment = make_appointment(journey, zone="Europe/Madrid")
    _reschedule(client, journey, appointment, "2027-02-10T14:30")
    part = appointments_part(page(client, journey))
    assert (
        "You asked for Wednesday 10 February, 14:30 instead. "
        "We will confirm a new time with you." in part
    )
    assert "Your note" not in part


@time_machine.travel(datetime(2027, 1, 5, 12, tzinfo=UTC), tick=False)
def test_a_refused_second_request_is_shown_with_its_error(client, journey, customer):
    """A page opened before the first request (or without JavaScript) can still post one:
    its errors are shown in the form, not hidden with it."""
    client.force_login(customer)
    appointment = make_appointment(journey)
    _reschedule(client, journey, appointment, "2027-02-10T14:30")
    response = _reschedule(client, journey, appointment, "2026-12-01T10:00")
    assert response.status_code == 400
    part = appointments_part(response.content.decode())
    assert "Choose a time in the future." in part
    assert ASK_AGAIN in part
    assert RescheduleRequest.objects.count() == 1


@time_machine.travel(datetime(2027, 1, 5, 12, tzinfo=UTC), tick=False)
def test_a_viewer_is_not_addressed_as_the_owner(client, journey, customer, viewer):
    appointment = make_appointment(journey, zone="Europe/Madrid")
    PromisedItem.objects.create(journey=journey, name="Rubber floor mats")
    RescheduleRequest.objects.create(
        appointment=appointment,
        requested_by=customer,
        first_choice=datetime(2027, 2, 10, 13, 30, tzinfo=UTC),
        second_choice=datetime(2027, 2, 11, 9, tzinfo=UTC),
        note="I am in hospital until the 9th.",
    )
    client.force_login(viewer)
    html = page(client, journey)

    for owners_words in (
        "For you to do",
        "Nothing for you to do right now.",
        "Promised with your order",
        "Please arrive at",
        "<strong>Bring:",
        "You asked for",
        "Your note",
        "I am in hospital",  # the owner's note is theirs
        "Ask us anything about your journey.",
        ASK_AGAIN,
    ):
        assert owners_words not in html, owners_words
    for viewers_words in (
        "For the owner to do",
        "Nothing for the owner to do right now.",
        "Promised with the order",
        "Arrival at 12:50 on Sunday 10 January",
        "<strong>What to bring:",
        "The owner asked for Wednesday 10 February, 14:30 or Thursday 11 February, 10:00 "
        "instead. We will confirm a new time with them.",
        "No messages yet. Ask us anything about this journey.",
    ):
        assert viewers_words in html, viewers_words


@time_machine.travel(datetime(2027, 1, 5, 12, tzinfo=UTC), tick=False)
def test_the_owner_keeps_the_owners_words(client, journey, customer):
    make_appointment(journey, zone="Europe/Madrid")
    PromisedItem.objects.create(journey=journey, name="Rubber floor mats")
    client.force_login(customer)
    html = page(client, journey)
    for owners_words in (
        "For you to do",
        "Nothing for you to do right now.",
        "Promised with your order",
        "Please arrive at 12:50 on Sunday 10 January",
        "<strong>Bring:",
        "No messages yet. Ask us anything about your journey.",
    ):
        assert owners_words in html, owners_words
    assert "the owner" not in html.lower()


def test_a_share_link_addresses_no_one_in_particular(client, journey, customer):
    link = share_link_create(journey=journey, owner=customer, days=7)
    response = client.get(reverse("public-journey", args=[share_link_token(link)]))
    html = response.content.decode()
    assert "Shared with you" not in html
    assert re.search(r"Shared link, valid until \d+ \w{3} \d{4}", html)


def test_the_side_column_comes_before_the_timeline_in_the_html(client, journey, customer):
    """A phone shows "For you to do" first; a screen reader and the tab key follow the HTML."""
    client.force_login(customer)
    make_appointment(journey)
    fill(journey, count=1)
    html = page(client, journey)
    order = [html.index(f'id="{part}"') for part in ("now", "todo", "appointments")]
    order += [html.index(f'id="{part}"') for part in ("conversation", "timeline", "route")]
    assert order == sorted(order)
    assert html.index('class="col-side"') < html.index('class="col-main"')


def test_every_disclosure_in_a_polled_part_has_an_id_that_stays(client, journey, customer):
    """portal.js keeps a <details> open across a poll by finding it again by its id."""
    client.force_login(customer)
    fill(journey, count=2)  # every stage done: ratings, and an ETA with a history
    reach(journey, "stage-4")
    Message.objects.create(journey=journey, from_staff=True, body="Hello")
    client.get(detail_url(journey))
    seen: dict[str, list[str]] = {}
    for name in sorted(POLLED_PARTS):
        url = reverse("journey:part", args=[journey.reference, name])
        html = client.get(url, HTTP_HX_REQUEST="true").content.decode()
        details = re.findall(r"<details\b[^>]*>", html)
        assert all(re.search(r'\bid="[^"]+"', tag) for tag in details), details
        seen[name] = re.findall(r'<details\b[^>]*\bid="([^"]+)"', html)
    assert seen["timeline"] and len(seen["timeline"]) == len(set(seen["timeline"]))
    # The same ids after a change that re-renders every part.
    Message.objects.create(journey=journey, from_staff=True, body="Again")
    journey.refresh_from_db()
    for name in sorted(POLLED_PARTS):
        url = reverse("journey:part", args=[journey.reference, name])
        html = client.get(url, HTTP_HX_REQUEST="true").content.decode()
        assert re.findall(r'<details\b[^>]*\bid="([^"]+)"', html) == seen[name]


def test_an_eta_with_a_history_has_its_disclosure_keyed_by_the_journey(client, journey, customer):
    client.force_login(customer)
    fill(journey, count=1)
    html = client.get(
        reverse("journey:part", args=[journey.reference, "header"]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert f'<details class="eta-history" id="eta-history-{journey.reference}">' in html


def test_controls_repeated_per_item_say_which_item(client, journey, customer):
    client.force_login(customer)
    make_appointment(journey)
    fill(journey, count=1)
    for milestone in journey.milestones.all():
        feedback_give(milestone=milestone, customer=customer, rating=4, comment="")
    html = page(client, journey)
    for stage in range(1, 5):
        assert f'<span class="visually-hidden">Change your rating: Stage {stage}</span>' in html
    assert '<span class="visually-hidden">Add to my calendar (.ics): Handover</span>' in html
