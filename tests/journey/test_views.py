import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from journey.models import (
    Appointment,
    Checkpoint,
    CustomerTask,
    EventSource,
    Feedback,
    Message,
    RescheduleRequest,
    ShipmentLeg,
)
from journey.photos import photo_add
from journey.services import journey_record_milestone
from tests.factories import PASSWORD, UserFactory, make_journey

pytestmark = pytest.mark.django_db


def jpeg() -> io.BytesIO:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, format="JPEG")
    out.seek(0)
    return out


def detail_url(journey) -> str:
    return reverse("journey:detail", kwargs={"reference": journey.reference})


def fill(journey, *, count: int) -> None:
    """``count`` photos and checkpoints, and every stage reached."""
    milestones = list(journey.milestones.order_by("position"))
    for milestone in milestones:
        journey_record_milestone(
            journey=journey,
            stage_key=milestone.stage.key,
            occurred_at=timezone.now() - timedelta(hours=len(milestones) - milestone.position),
            source=EventSource.PARTNER,
        )
    leg = ShipmentLeg.objects.create(
        journey=journey,
        sequence=1,
        mode="ship",
        carrier="Carrier",
        origin_name="A",
        origin_lat=Decimal(43),
        origin_lon=Decimal(-3),
        destination_name="B",
        destination_lat=Decimal(51),
        destination_lon=Decimal(-2),
        departed_at=timezone.now() - timedelta(days=1),
    )
    Checkpoint.objects.bulk_create(
        Checkpoint(
            leg=leg, occurred_at=timezone.now() - timedelta(minutes=i), location_name=f"P{i}"
        )
        for i in range(count)
    )
    for i in range(count):
        photo_add(journey=journey, milestone=milestones[i % len(milestones)], file=jpeg())
    CustomerTask.objects.bulk_create(
        CustomerTask(journey=journey, title=f"Task {i}", done_at=None if i % 2 else timezone.now())
        for i in range(count)
    )
    appointment = Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=timezone.now() + timedelta(days=3),
        arrive_at=timezone.now() + timedelta(days=3) - timedelta(minutes=10),
        place_name="Showroom",
    )
    RescheduleRequest.objects.bulk_create(
        RescheduleRequest(
            appointment=appointment,
            requested_by=journey.owner,
            first_choice=timezone.now() + timedelta(days=4, minutes=i),
        )
        for i in range(count)
    )
    Message.objects.bulk_create(
        Message(journey=journey, body=f"Message {i}", milestone=milestones[i % len(milestones)])
        for i in range(count)
    )
    Feedback.objects.bulk_create(
        Feedback(milestone=m, customer=journey.owner, rating=1 + m.position % 5)
        for m in milestones[:-1]
    )


def test_home_lists_only_the_customers_own_journeys(client, customer):
    mine = make_journey(owner=customer, title="Mine")
    theirs = make_journey(title="Someone else's")
    client.login(email=customer.email, password=PASSWORD)
    response = client.get(reverse("journey:home"))
    assert response.status_code == 200
    html = response.content.decode()
    assert mine.reference in html
    assert theirs.reference not in html and "Someone else" not in html


def test_pages_need_a_login(client, journey):
    response = client.get(detail_url(journey))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_another_customers_journey_and_photos_answer_404(client, journey):
    photo = photo_add(journey=journey, milestone=None, file=jpeg())
    intruder = UserFactory()
    client.login(email=intruder.email, password=PASSWORD)
    assert client.get(detail_url(journey)).status_code == 404
    for variant in ("full", "thumb"):
        url = reverse("journey:photo", args=[journey.reference, photo.pk, variant])
        assert client.get(url).status_code == 404


def test_the_owner_gets_photos_as_jpeg_privately(client, journey, customer):
    photo = photo_add(journey=journey, milestone=None, file=jpeg())
    client.login(email=customer.email, password=PASSWORD)
    response = client.get(reverse("journey:photo", args=[journey.reference, photo.pk, "thumb"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "private, max-age=3600"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content)[:2] == b"\xff\xd8"
    bad = reverse("journey:photo", args=[journey.reference, photo.pk, "huge"])
    assert client.get(bad).status_code == 404


def test_journey_page_queries_do_not_grow_with_its_content(
    client, customer, django_assert_num_queries
):
    small = make_journey(owner=customer, stages=3)
    fill(small, count=3)
    large = make_journey(owner=customer, stages=100)
    fill(large, count=100)
    client.login(email=customer.email, password=PASSWORD)
    client.get(detail_url(small))  # warm the session

    # session, user, profile; the journey and owner; milestones, photos, the viewer's
    # ratings; legs, checkpoints; tasks, promised items, appointments, their open
    # reschedule requests; messages with the stage they answer
    with django_assert_num_queries(14) as small_queries:
        assert client.get(detail_url(small)).status_code == 200
    with django_assert_num_queries(len(small_queries.captured_queries)):
        response = client.get(detail_url(large))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="step ') == 100
    assert html.count('class="message"') == 100
    assert html.count("You rated this") == 99


def test_journey_page_shows_the_route_and_the_company_name(client, customer, settings):
    journey = make_journey(owner=customer)
    fill(journey, count=2)
    client.login(email=customer.email, password=PASSWORD)
    html = client.get(detail_url(journey)).content.decode()
    assert '<svg class="route"' in html
    assert f"{settings.COMPANY_NAME}, with Carrier" in html
    assert "Latest: P0" in html


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"
