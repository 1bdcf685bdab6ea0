"""The staff dashboard's numbers, with their exact definitions (docs/staff.md)."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.urls import reverse
from django.utils import timezone

from journey import dashboard
from journey.models import EventSource, Feedback, Health, Journey, Message, MilestoneState
from journey.services import (
    feedback_give,
    journey_record_milestone,
    message_post,
    staff_reply_post,
)
from notifications.models import Notification
from tests.factories import UserFactory, make_journey

pytestmark = pytest.mark.django_db


def test_percentile_is_nearest_rank():
    values = [float(n) for n in range(1, 21)]
    assert dashboard.percentile(values, 0.5) == 10.0
    assert dashboard.percentile(values, 0.95) == 19.0
    assert dashboard.percentile([], 0.5) is None


def test_unanswered_messages_are_those_no_later_staff_message_followed(customer, admin_user):
    now = timezone.now()
    answered = make_journey(owner=customer)
    message_post(journey=answered, author=customer, body="Q1")
    staff_reply_post(journey=answered, author=admin_user, body="A1")
    waiting = make_journey(owner=customer)
    hello = staff_reply_post(journey=waiting, author=admin_user, body="Hello")
    Message.objects.filter(pk=hello.pk).update(created_at=now - timedelta(days=3))
    old = message_post(journey=waiting, author=customer, body="Q2")
    Message.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=2))
    message_post(journey=waiting, author=customer, body="Q3")

    data = dashboard.unanswered_messages(now=now)
    assert data["count"] == 2
    assert [m.body for m in data["messages"]] == ["Q2", "Q3"]
    assert [(bar.label, bar.value) for bar in data["bars"]] == [
        ("under 4 hours", 1),
        ("4 to 24 hours", 0),
        ("1 to 3 days", 1),
        ("3 to 7 days", 0),
        ("over 7 days", 0),
    ]
    assert list(Journey.objects.filter(pk__in=dashboard.unanswered_journey_ids())) == [waiting]


def test_time_to_know_uses_sent_email_rows_of_the_last_30_days(customer):
    now = timezone.now()
    for minutes in (1, 2, 3, 4, 60):
        Notification.objects.create(
            recipient=customer,
            kind="milestone_reached",
            dedup_key=f"m{minutes}",
            channel="email",
            state="sent",
            occurred_at=now - timedelta(minutes=minutes + 5),
            sent_at=now - timedelta(minutes=5),
        )
    # Left out: older than 30 days, not email, not sent, no cause time.
    Notification.objects.create(
        recipient=customer,
        kind="x",
        dedup_key="old",
        channel="email",
        state="sent",
        occurred_at=now - timedelta(days=40),
        sent_at=now - timedelta(days=31),
    )
    Notification.objects.create(
        recipient=customer,
        kind="x",
        dedup_key="sms",
        channel="sms",
        state="sent",
        occurred_at=now - timedelta(days=1),
        sent_at=now,
    )
    Notification.objects.create(
        recipient=customer,
        kind="x",
        dedup_key="pending",
        channel="email",
        occurred_at=now - timedelta(days=1),
    )
    data = dashboard.time_to_know(now=now)
    assert data["count"] == 5
    assert data["p50"] == timedelta(minutes=3)
    assert data["p95"] == timedelta(minutes=60)
    assert [bar.value for bar in data["bars"]] == [0, 4, 0, 1, 0, 0]


def test_contact_rate_counts_journeys_whose_customer_asked_first(customer, admin_user):
    now = timezone.now()
    asked = make_journey(owner=customer)
    message_post(journey=asked, author=customer, body="Where is it?")
    replied_to_us = make_journey(owner=customer)
    staff_reply_post(journey=replied_to_us, author=admin_user, body="It ships Monday.")
    message_post(journey=replied_to_us, author=customer, body="Thanks!")
    replied_to_update = make_journey(owner=customer)
    milestone = replied_to_update.milestones.get(position=1)
    message_post(journey=replied_to_update, author=customer, body="Great", milestone=milestone)
    quiet = make_journey(owner=customer)
    journey_record_milestone(
        journey=quiet,
        stage_key="stage-2",
        occurred_at=now - timedelta(hours=1),
        source=EventSource.STAFF,
    )
    make_journey(owner=customer)  # no activity in the window: not counted

    data = dashboard.contact_rate(now=now)
    assert (data["asked"], data["total"], data["rate"]) == (1, 4, 0.25)


def test_feedback_by_stage_worst_first(customer):
    journey = make_journey(owner=customer)
    first, second = journey.milestones.order_by("position")[:2]
    other = UserFactory()
    others_first = make_journey(owner=other).milestones.order_by("position")[0]
    for milestone, customer_, rating in (
        (first, customer, 5),
        (others_first, other, 4),
        (second, customer, 2),
    ):
        milestone.state = MilestoneState.DONE
        milestone.save()
        feedback_give(milestone=milestone, customer=customer_, rating=rating)
    bars = dashboard.feedback_by_stage()
    assert [(bar.label, bar.value, bar.text) for bar in bars] == [
        ("Stage 2", 2.0, "2.0 (1)"),
        ("Stage 1", 4.5, "4.5 (2)"),
    ]


def test_feedback_by_stage_keeps_the_owners_ratings_apart_from_viewers(customer):
    """A viewer may rate a stage; three of them must not outvote the customer who lived it."""
    journey = make_journey(owner=customer)
    first, second, third = journey.milestones.order_by("position")[:3]
    viewers = UserFactory.create_batch(3)
    ratings = [(first, customer, 2), (second, customer, 4), (third, viewers[0], 3)]
    ratings += [(first, viewer, 5) for viewer in viewers] + [(second, viewers[1], 1)]
    journey.milestones.update(state=MilestoneState.DONE)
    for milestone, who, rating in ratings:
        milestone.state = MilestoneState.DONE
        feedback_give(milestone=milestone, customer=who, rating=rating)
    expected = [
        ("Stage 1", 2.0, "2.0 (1) · viewers 5.0 (3)", ""),
        ("Stage 3", 3.0, "viewers 3.0 (1)", dashboard.VIEWERS_ONLY),
        ("Stage 2", 4.0, "4.0 (1) · viewers 1.0 (1)", ""),
    ]
    bars = dashboard.feedback_by_stage()
    assert [(bar.label, bar.value, bar.text, bar.colour) for bar in bars] == expected
    # Were the journey given to one of the viewers (nothing in the product does; a raw
    # update here), the ratings given stay their givers' (reading the owner as it is now
    # made the customer's count as a viewer's).
    Journey.objects.filter(pk=journey.pk).update(owner=viewers[2])
    bars = dashboard.feedback_by_stage()
    assert [(bar.label, bar.value, bar.text, bar.colour) for bar in bars] == expected


def test_the_migration_takes_the_ratings_so_far_as_their_journeys_owner_has_them(customer):
    migration = importlib.import_module("journey.migrations.0017_feedback_by_owner")
    journey = make_journey(owner=customer)
    first = journey.milestones.order_by("position").first()
    viewer = UserFactory()
    for who in (customer, viewer):
        Feedback.objects.create(milestone=first, customer=who, rating=3)
    migration.by_the_owner_now(django_apps, None)
    assert dict(Feedback.objects.values_list("customer", "by_owner")) == {
        customer.pk: True,
        viewer.pk: False,
    }


def test_at_risk_lists_delayed_first(customer):
    on_track = make_journey(owner=customer)
    risky = make_journey(owner=customer)
    late = make_journey(owner=customer)
    Journey.objects.filter(pk=risky.pk).update(health=Health.AT_RISK)
    Journey.objects.filter(pk=late.pk).update(health=Health.DELAYED)
    data = dashboard.at_risk_journeys()
    assert [j.pk for j in data["journeys"]] == [late.pk, risky.pk]
    assert data["total"] == 2
    assert [(bar.label, bar.value) for bar in data["bars"]] == [
        ("On track", 1),
        ("At risk", 1),
        ("Delayed", 1),
    ]
    assert on_track.pk not in [j.pk for j in data["journeys"]]


def ask_for_another_time(journey, customer) -> None:
    from journey.models import Appointment
    from journey.services import appointment_request_reschedule

    start = timezone.now() + timedelta(days=5)
    appointment = Appointment.objects.create(
        journey=journey, title="Visit", starts_at=start, arrive_at=start, place_name="Home"
    )
    appointment_request_reschedule(
        appointment=appointment, user=customer, first_choice=start + timedelta(days=1)
    )


def test_the_dashboard_page_draws_svg_charts_in_bounded_queries(
    admin_client, customer, admin_user, django_assert_max_num_queries
):
    url = reverse("admin_dashboard")
    admin_client.get(url)  # warm the session
    with django_assert_max_num_queries(15):
        empty = admin_client.get(url)
    for _ in range(5):
        journey = make_journey(owner=customer)
        message_post(journey=journey, author=customer, body="Any news?")
        Journey.objects.filter(pk=journey.pk).update(health=Health.DELAYED)
    for journey in Journey.objects.all()[:3]:
        ask_for_another_time(journey, customer)
    with django_assert_max_num_queries(15):
        response = admin_client.get(url)
    assert empty.status_code == response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg class="dashboard-chart"') == 5
    assert "style=" not in html.split('id="content-main"')[1]
    assert "Unanswered customer messages: 5" in html
    assert "Journeys at risk or delayed: 5" in html
    assert "Customers waiting for a new appointment time: 3" in html
    assert reverse("admin_dashboard") in admin_client.get(reverse("admin:index")).content.decode()
    # The ratings chart says, in words staff see, what a paler bar is (a walk-through
    # found it only in the chart's title); with no ratings, nothing to explain.
    assert "A paler bar: only viewers rated that stage." not in html
    first = journey.milestones.order_by("position").first()
    first.state = MilestoneState.DONE
    first.save()
    feedback_give(milestone=first, customer=customer, rating=4)
    rated = admin_client.get(url).content.decode()
    assert "A paler bar: only viewers rated that stage." in rated


def test_the_dashboard_needs_staff(client, customer):
    client.force_login(customer)
    response = client.get(reverse("admin_dashboard"))
    assert response.status_code == 302
    assert "/admin/login/" in response.url


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (45, "45 s"), (720, "12 min"), (12000, "3 h 20 min"), (187200, "2 d 4 h")],
)
def test_durations_read_as_staff_read_them(seconds, text):
    value = None if seconds is None else timedelta(seconds=seconds)
    assert dashboard.duration_text(value) == text
