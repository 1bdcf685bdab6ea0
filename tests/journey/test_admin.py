"""Staff record milestones in the admin, through the same spine as the API."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.mfa import totp_activate
from journey.models import EventSource, JourneyEvent, MilestoneState
from notifications.models import Notification
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    totp_activate(user=user)  # staff use the admin only with two-factor authentication
    client.force_login(user)
    return user


def change_url(milestone) -> str:
    return reverse("admin:journey_milestone_change", args=[milestone.pk])


def form(milestone, **fields: str) -> dict[str, str]:
    data = {"planned_date": milestone.planned_date.isoformat()}
    data.update(fields)
    return data


def test_staff_saving_a_milestone_records_it_through_the_spine(
    client, staff, journey, customer, django_capture_on_commit_callbacks
):
    milestone = journey.milestones.get(stage__key="stage-2")
    reached = timezone.localtime() - timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            change_url(milestone),
            form(
                milestone,
                record_reached_at=reached.strftime("%Y-%m-%d %H:%M:%S"),
                record_message="Ahead of plan!",
            ),
        )

    assert response.status_code == 302, response.content.decode()[:2000]
    milestone.refresh_from_db()
    assert milestone.state == MilestoneState.CURRENT
    event = JourneyEvent.objects.get()
    assert event.source == EventSource.STAFF
    assert event.actor == staff
    assert event.message == "Ahead of plan!"
    notification = Notification.objects.get()
    assert notification.recipient == customer
    assert notification.dedup_key == f"milestone-reached:{milestone.pk}"
    assert len(mail.outbox) == 1
    assert "Ahead of plan!" in mail.outbox[0].body


def test_a_milestone_in_the_future_is_a_form_error_and_nothing_is_saved(client, staff, journey):
    milestone = journey.milestones.get(stage__key="stage-2")
    future = timezone.localtime() + timedelta(days=2)
    response = client.post(
        change_url(milestone),
        form(milestone, record_reached_at=future.strftime("%Y-%m-%d %H:%M:%S")),
    )
    assert response.status_code == 200
    assert "cannot be reached in the future" in response.content.decode()
    assert JourneyEvent.objects.count() == 0
    assert Notification.objects.count() == 0


def test_the_journey_admin_shows_milestones_and_events(client, staff, journey):
    response = client.get(reverse("admin:journey_journey_change", args=[journey.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Stage 1" in html and "Record…" in html


def test_customers_cannot_reach_the_admin(client, customer, journey):
    client.force_login(customer)
    response = client.get(reverse("admin:journey_journey_change", args=[journey.pk]))
    assert response.status_code == 302
