"""Staff record milestones in the admin, through the same spine as the API."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from journey.models import (
    Appointment,
    EventSource,
    Feedback,
    JourneyEvent,
    MilestoneState,
    RescheduleRequest,
    RescheduleState,
)
from notifications.models import Notification
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = UserFactory(is_staff=True, is_superuser=True)
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


def test_staff_see_reschedule_requests_and_ratings_and_mark_a_request_answered(
    client, staff, journey, customer
):
    starts = timezone.now() + timedelta(days=5)
    appointment = Appointment.objects.create(
        journey=journey, title="Handover", starts_at=starts, arrive_at=starts, place_name="Here"
    )
    request = RescheduleRequest.objects.create(
        appointment=appointment,
        requested_by=customer,
        first_choice=starts + timedelta(days=1),
        note="Mornings",
    )
    milestone = journey.milestones.get(position=1)
    Feedback.objects.create(milestone=milestone, customer=customer, rating=2, comment="Slow")
    listing = client.get(reverse("admin:journey_reschedulerequest_changelist"))
    assert listing.status_code == 200
    assert "Handover" in listing.content.decode()
    ratings = client.get(reverse("admin:journey_feedback_changelist"))
    assert ratings.status_code == 200
    assert "Slow" in ratings.content.decode()
    url = reverse("admin:journey_reschedulerequest_change", args=[request.pk])
    response = client.post(url, {"state": RescheduleState.HANDLED})
    assert response.status_code == 302
    request.refresh_from_db()
    assert (request.state, request.note) == (RescheduleState.HANDLED, "Mornings")
