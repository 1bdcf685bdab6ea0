"""The reply page says who reads the answer, and goes back where staff came from."""

import datetime

import pytest
from django.urls import reverse

from journey.services import message_post

pytestmark = pytest.mark.django_db


def test_the_reply_page_names_the_readers_language_and_clock(admin_client, journey, customer):
    """A staff review wrote English to Sam, who reads Spanish: nothing said so."""
    customer.profile.language, customer.profile.time_zone = "es", "Europe/Madrid"
    customer.profile.given_name = "Sam"
    customer.profile.save()
    message_post(journey=journey, author=customer, body="¿Alguna novedad?")
    page = admin_client.get(reverse("admin:journey_journey_reply", args=[journey.pk]))
    html = page.content.decode()
    assert "who reads <strong>Spanish</strong> (español)" in html
    assert "Their clock: Europe/Madrid" in html
    assert "is sent as they chose to be told, like any other update." in html


def test_the_reply_page_says_the_email_waits_for_quiet_hours(admin_client, journey, customer):
    """It promised 'told at once' to a customer in quiet hours (a user's walk-through)."""
    customer.profile.quiet_hours_start = datetime.time(22, 0)
    customer.profile.quiet_hours_end = datetime.time(7, 0)
    customer.profile.save()
    html = admin_client.get(reverse("admin:journey_journey_reply", args=[journey.pk]))
    assert "in their quiet hours (22:00\u201307:00, their clock) it waits" in html.content.decode()


def test_a_reply_from_the_dashboard_goes_back_to_it(admin_client, journey, customer):
    message_post(journey=journey, author=customer, body="Any news?")
    dashboard = reverse("admin_dashboard")
    assert f"?next={dashboard}" in admin_client.get(dashboard).content.decode()
    url = reverse("admin:journey_journey_reply", args=[journey.pk])
    back = admin_client.post(f"{url}?next={dashboard}", {"body": "On Monday."})
    assert back.status_code == 302 and back["Location"] == dashboard
    # Not elsewhere: another site is no place to send staff.
    message_post(journey=journey, author=customer, body="And?")
    away = admin_client.post(f"{url}?next=https://evil.example/", {"body": "Tuesday."})
    assert away["Location"] == reverse("admin:journey_journey_change", args=[journey.pk])
