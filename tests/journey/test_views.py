import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import icalendar
import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from journey.models import (
    Appointment,
    Checkpoint,
    CustomerTask,
    EventKind,
    EventSource,
    Feedback,
    JourneyEvent,
    Message,
    RescheduleRequest,
    ShipmentLeg,
)
from journey.photos import photo_add
from journey.services import journey_record_milestone
from journey.views import POLLED_PARTS
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
            message=f"Words for stage {milestone.position}",
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
    missing = client.get(detail_url(journey))
    assert missing.status_code == 404
    # The site's own page, in its style, with a way back (not Django's plain one).
    assert "<h1>Not found</h1>" in missing.content.decode()
    assert 'href="/"' in missing.content.decode()
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
    # 300 events on the large journey: 100 stages reached, 200 notes from partners.
    JourneyEvent.objects.bulk_create(
        JourneyEvent(
            journey=large,
            kind=EventKind.NOTE,
            occurred_at=timezone.now() - timedelta(minutes=i),
            source=EventSource.PARTNER,
            message=f"Note {i}",
        )
        for i in range(200)
    )
    assert small.events.count() == 3
    assert large.events.count() == 300
    client.login(email=customer.email, password=PASSWORD)
    client.get(reverse("journey:home"))  # warm the session

    # Rendered (the first view of this version): session, user, profile; the journey's
    # version; the unread badge; then the journey and owner; milestones, photos, the
    # viewer's ratings, the stages' words for the customer; legs, checkpoints; tasks,
    # promised items, appointments, their open reschedule requests; messages with the
    # stage they answer; the ETA history.
    with django_assert_num_queries(18) as small_queries:
        assert client.get(detail_url(small)).status_code == 200
    with django_assert_num_queries(len(small_queries.captured_queries)):
        response = client.get(detail_url(large))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="step ') == 100
    assert html.count('class="message"') == 100
    assert html.count("You rated this") == 99
    assert html.count('class="step__told"') == 100
    # Seen again, unchanged: session, user, profile, the version and the badge.
    for journey in (small, large):
        with django_assert_num_queries(5):
            again = client.get(detail_url(journey))
        assert again.status_code == 200


def test_journey_page_shows_the_route_and_the_company_name(client, customer, settings):
    journey = make_journey(owner=customer)
    fill(journey, count=2)
    client.login(email=customer.email, password=PASSWORD)
    html = client.get(detail_url(journey)).content.decode()
    assert '<svg class="route"' in html
    assert f"{settings.COMPANY_NAME}, with Carrier" in html
    assert "Latest: P0" in html


def test_the_words_that_came_with_a_stage_are_shown_with_it(client, customer):
    """Staff's message to the customer when recording a stage (or a partner mapping's
    customer text) is shown with the stage, once however often it came; an event hidden
    from customers is not, nor one that came late and moved nothing."""
    journey = make_journey(owner=customer, stages=3)
    second = journey.milestones.get(stage__key="stage-2")
    for _ in range(2):
        journey_record_milestone(
            journey=journey,
            stage_key="stage-2",
            occurred_at=timezone.now() - timedelta(hours=1),
            source=EventSource.STAFF,
            message="Your car is at the Bristol showroom.\nAsk for Sam.",
        )
    JourneyEvent.objects.create(
        journey=journey,
        milestone=second,
        kind=EventKind.NOTE,
        occurred_at=timezone.now(),
        source=EventSource.PARTNER,
        message="Internal: bay 14",
        customer_visible=False,
    )
    # Older than the stage's: logged, not applied, so never told (nor does it move the
    # journey's version, which the cached page goes by).
    late = journey_record_milestone(
        journey=journey,
        stage_key="stage-2",
        occurred_at=timezone.now() - timedelta(hours=2),
        source=EventSource.STAFF,
        message="Late words",
    )
    assert not late.applied
    # Other words, then the first ones again (a partner's retry under another id): each
    # said once, in the order first said.
    for minutes, words in (
        (50, "Washed and polished."),
        (40, "Your car is at the Bristol showroom.\nAsk for Sam."),
    ):
        JourneyEvent.objects.create(
            journey=journey,
            milestone=second,
            kind=EventKind.NOTE,
            occurred_at=timezone.now() - timedelta(minutes=minutes),
            source=EventSource.PARTNER,
            message=words,
            applied=True,
        )
    client.login(email=customer.email, password=PASSWORD)
    html = client.get(detail_url(journey)).content.decode()
    step = re.search(rf'<li class="step [^"]*" id="m-{second.pk}">.*?</li>', html, re.S)
    assert step is not None
    assert step.group(0).count('class="step__told"') == 2
    assert step.group(0).index("Ask for Sam.") < step.group(0).index("Washed and polished.")
    assert "bay 14" not in html
    assert "Late words" not in html


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"


def test_healthz_answers_503_with_retry_after_without_a_database(client, monkeypatch):
    from django.db import OperationalError

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr("journey.views.connection.cursor", unreachable)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.content == b"database unavailable"


# The portal's writes, parts and files.


def make_appointment(journey, *, zone: str = "Europe/Madrid") -> Appointment:
    starts = timezone.now().replace(microsecond=0) + timedelta(days=5)
    return Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=starts,
        arrive_at=starts - timedelta(minutes=10),
        duration=timedelta(hours=1),
        place_name="Showroom",
        address="1 Calle Mayor\nMadrid",
        time_zone=zone,
        what_to_bring="Your licence.",
    )


def reach(journey, key: str) -> None:
    journey_record_milestone(
        journey=journey,
        stage_key=key,
        occurred_at=timezone.now() - timedelta(hours=1),
        source=EventSource.STAFF,
    )


def test_a_url_with_a_nul_answers_the_sites_404(client, customer, journey):
    """PostgreSQL refuses a NUL in a parameter: looked up, it would answer 500."""
    client.login(email=customer.email, password=PASSWORD)
    missing = client.get(f"/journeys/{journey.reference}%00/")
    assert missing.status_code == 404
    assert "<h1>Not found</h1>" in missing.content.decode()


@pytest.fixture
def owner_client(client, customer):
    client.login(email=customer.email, password=PASSWORD)
    return client


def portal_urls(journey, *, task, appointment, milestone) -> list[tuple[str, str]]:
    ref = journey.reference
    return [
        *[("get", reverse("journey:part", args=[ref, name])) for name in sorted(POLLED_PARTS)],
        ("get", reverse("journey:appointment_calendar", args=[ref, appointment.pk])),
        ("post", reverse("journey:task_done", args=[ref, task.pk])),
        ("post", reverse("journey:reschedule", args=[ref, appointment.pk])),
        ("post", reverse("journey:message", args=[ref])),
        ("post", reverse("journey:feedback", args=[ref, milestone.pk])),
    ]


def test_every_portal_url_answers_404_to_another_customer(client, journey):
    reach(journey, "stage-3")
    task = CustomerTask.objects.create(journey=journey, title="Insurance")
    appointment = make_appointment(journey)
    milestone = journey.milestones.get(position=1)
    intruder = UserFactory()
    client.login(email=intruder.email, password=PASSWORD)
    first = (timezone.now() + timedelta(days=9)).strftime("%Y-%m-%dT%H:%M")
    data = {"body": "Hi", "rating": "5", f"r{appointment.pk}-first_choice": first}
    urls = portal_urls(journey, task=task, appointment=appointment, milestone=milestone)
    for method, url in urls:
        for htmx in ({}, {"HTTP_HX_REQUEST": "true"}):
            response = getattr(client, method)(url, data if method == "post" else None, **htmx)
            assert (url, response.status_code) == (url, 404)
    assert CustomerTask.objects.get(pk=task.pk).done_at is None
    assert RescheduleRequest.objects.count() == 0
    assert Message.objects.count() == 0
    assert Feedback.objects.count() == 0


def test_portal_urls_need_a_login(client, journey):
    task = CustomerTask.objects.create(journey=journey, title="Insurance")
    appointment = make_appointment(journey)
    milestone = journey.milestones.get(position=1)
    for method, url in portal_urls(
        journey, task=task, appointment=appointment, milestone=milestone
    ):
        response = getattr(client, method)(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))


def test_objects_of_another_journey_answer_404_under_ones_own(owner_client, journey):
    other = make_journey()
    task = CustomerTask.objects.create(journey=other, title="Theirs")
    appointment = make_appointment(other)
    ref = journey.reference
    assert owner_client.post(reverse("journey:task_done", args=[ref, task.pk])).status_code == 404
    url = reverse("journey:appointment_calendar", args=[ref, appointment.pk])
    assert owner_client.get(url).status_code == 404
    url = reverse("journey:feedback", args=[ref, other.milestones.get(position=1).pk])
    assert owner_client.post(url, {"rating": "5"}).status_code == 404
    assert CustomerTask.objects.get(pk=task.pk).done_at is None
    assert Feedback.objects.count() == 0


def test_ticking_a_task_with_htmx_returns_the_todo_part(owner_client, journey):
    task = CustomerTask.objects.create(journey=journey, title="Arrange insurance")
    url = reverse("journey:task_done", args=[journey.reference, task.pk])
    replying = f"http://testserver{detail_url(journey)}?reply=5"
    response = owner_client.post(url, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=replying)
    assert response.status_code == 200
    assert "HX-Replace-Url" not in response  # a reply being written stays in the address
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="todo"')
    assert "<html" not in html
    assert "Mark as done" not in html
    assert "✓</span> Arrange insurance" in html
    assert CustomerTask.objects.get(pk=task.pk).done_at is not None


def test_ticking_a_task_without_javascript_redirects_back(owner_client, journey):
    task = CustomerTask.objects.create(journey=journey, title="Arrange insurance")
    response = owner_client.post(reverse("journey:task_done", args=[journey.reference, task.pk]))
    assert response.status_code == 302
    assert response["Location"] == detail_url(journey) + "#todo"
    assert CustomerTask.objects.get(pk=task.pk).done_at is not None


def test_reschedule_takes_times_on_the_places_clock(owner_client, journey):
    appointment = make_appointment(journey, zone="Europe/Madrid")
    url = reverse("journey:reschedule", args=[journey.reference, appointment.pk])
    year = timezone.now().year + 1
    response = owner_client.post(
        url,
        {
            f"r{appointment.pk}-first_choice": f"{year}-01-10T10:00",
            f"r{appointment.pk}-note": "Mornings",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == detail_url(journey) + "#appointments"
    request = RescheduleRequest.objects.get()
    # 10:00 in Madrid in January is 09:00 UTC, whatever the customer's own zone.
    assert request.first_choice == datetime(year, 1, 10, 9, 0, tzinfo=UTC)
    assert request.second_choice is None
    assert request.note == "Mornings"
    html = owner_client.get(detail_url(journey)).content.decode()
    assert "We will confirm a new time with you." in html


def _reschedule(client, journey, appointment, first: str, **more: str):
    url = reverse("journey:reschedule", args=[journey.reference, appointment.pk])
    data = {f"r{appointment.pk}-first_choice": first}
    data.update({f"r{appointment.pk}-{name}": value for name, value in more.items()})
    return client.post(url, data)


@time_machine.travel(datetime(2027, 1, 5, 12, tzinfo=UTC), tick=False)
def test_reschedule_reads_the_time_on_the_places_clock_across_clock_changes(
    client, journey, customer
):
    owner_client = client
    owner_client.force_login(customer)  # on the travelled clock: a session of today's expires
    customer.profile.time_zone = "America/New_York"
    customer.profile.save()
    appointment = make_appointment(journey, zone="Europe/London")
    # New York's clocks skip 02:00-03:00 on 14 March 2027; London's do not.
    response = _reschedule(owner_client, journey, appointment, "2027-03-14T02:30")
    assert response.status_code == 302
    assert RescheduleRequest.objects.get().first_choice == datetime(2027, 3, 14, 2, 30, tzinfo=UTC)
    # London's clocks skip 01:00-02:00 on 28 March, and repeat 01:00-02:00 on 31 October:
    # refused, not moved by an hour.
    for skipped_or_twice in ("2027-03-28T01:30", "2027-10-31T01:30"):
        response = _reschedule(owner_client, journey, appointment, skipped_or_twice)
        assert response.status_code == 400
        assert (
            "The clocks change at that time in Europe/London, so it does not exist or "
            "happens twice there: choose another time." in response.content.decode()
        )
        response = _reschedule(
            owner_client, journey, appointment, "2027-04-01T10:00", second_choice=skipped_or_twice
        )
        assert response.status_code == 400
    assert RescheduleRequest.objects.count() == 1


@time_machine.travel(datetime(2027, 1, 5, 12, tzinfo=UTC), tick=False)
def test_reschedule_within_a_year_and_once(client, journey, customer):
    owner_client = client
    owner_client.force_login(customer)
    appointment = make_appointment(journey)
    day = timezone.localdate()
    later = f"{day + timedelta(days=400):%Y-%m-%d}T10:00"
    response = _reschedule(owner_client, journey, appointment, later)
    assert response.status_code == 400
    assert "Choose a time within the next year." in response.content.decode()
    assert RescheduleRequest.objects.count() == 0
    # The same request sent twice (a double click, a reload) is one request.
    soon = f"{day + timedelta(days=60):%Y-%m-%d}T10:00"
    for _ in range(2):
        response = _reschedule(owner_client, journey, appointment, soon, note="Am")
        assert response.status_code == 302
    assert RescheduleRequest.objects.count() == 1
    # Other times while it waits (a stale tab): refused, saying where to change it.
    other = f"{day + timedelta(days=61):%Y-%m-%d}T10:00"
    response = _reschedule(owner_client, journey, appointment, other, note="Am")
    assert response.status_code == 400
    assert "A request is already waiting for an answer." in response.content.decode()
    assert RescheduleRequest.objects.count() == 1


def test_reschedule_in_the_past_shows_the_error_and_saves_nothing(owner_client, journey):
    appointment = make_appointment(journey)
    url = reverse("journey:reschedule", args=[journey.reference, appointment.pk])
    past = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    data = {f"r{appointment.pk}-first_choice": past}
    response = owner_client.post(url, data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="appointments"')
    assert "Choose a time in the future." in html
    response = owner_client.post(url, data)
    assert response.status_code == 400
    assert "Choose a time in the future." in response.content.decode()
    response = owner_client.post(url, {f"r{appointment.pk}-first_choice": "soon"})
    assert response.status_code == 400
    assert "Enter a valid date/time." in response.content.decode()
    assert RescheduleRequest.objects.count() == 0


def test_replying_to_an_update(owner_client, journey):
    reach(journey, "stage-2")
    milestone = journey.milestones.get(position=2)
    page = owner_client.get(detail_url(journey) + f"?reply={milestone.pk}").content.decode()
    assert "Replying to “Stage 2”" in page
    assert f'name="milestone" value="{milestone.pk}"' in page
    assert "Write a new message instead" in page
    response = owner_client.post(
        reverse("journey:message", args=[journey.reference]),
        {"body": "Can I see a photo?", "milestone": str(milestone.pk)},
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=f"http://testserver{detail_url(journey)}?reply={milestone.pk}",
    )
    assert response.status_code == 200
    # Reloading the page afterwards does not open the reply again.
    assert response["HX-Replace-Url"] == detail_url(journey) + "#conversation"
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="conversation"')
    assert "Can I see a photo?" in html
    assert "about “Stage 2”" in html
    message = Message.objects.get()
    assert (message.body, message.milestone, message.from_staff) == (
        "Can I see a photo?",
        milestone,
        False,
    )


@pytest.mark.parametrize("body", ["", "   "])
def test_an_empty_reply_shows_the_error_and_saves_nothing(owner_client, journey, body):
    url = reverse("journey:message", args=[journey.reference])
    response = owner_client.post(url, {"body": body}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Write a message first." in response.content.decode()
    response = owner_client.post(url, {"body": body})
    assert response.status_code == 400
    assert "Write a message first." in response.content.decode()
    assert Message.objects.count() == 0


def test_a_reply_to_another_journeys_update_is_refused(owner_client, journey):
    other = make_journey()
    url = reverse("journey:message", args=[journey.reference])
    data = {"body": "Hi", "milestone": str(other.milestones.get(position=1).pk)}
    response = owner_client.post(url, data)
    assert response.status_code == 400
    assert "That update is not part of this journey." in response.content.decode()
    assert Message.objects.count() == 0


def test_rating_a_done_stage(owner_client, journey, customer):
    reach(journey, "stage-3")
    milestone = journey.milestones.get(position=1)
    url = reverse("journey:feedback", args=[journey.reference, milestone.pk])
    response = owner_client.post(url, {"rating": "4", "comment": "Quick"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "You rated this 4 out of 5. Thank you." in response.content.decode()
    assert list(Feedback.objects.values_list("rating", "comment", "customer_id")) == [
        (4, "Quick", customer.pk)
    ]
    # The rating can be changed, from the same place: the new one replaces it.
    html = response.content.decode()
    assert "Change your rating" in html and f'action="{url}"' in html
    page = owner_client.get(detail_url(journey)).content.decode()
    assert "Change your rating" in page
    # The comment given comes back in the form: a new rating does not lose it.
    assert 'name="comment" rows="2" maxlength="2000">Quick</textarea>' in page
    response = owner_client.post(url, {"rating": "2", "comment": "Quick"}, HTTP_HX_REQUEST="true")
    assert "You rated this 2 out of 5. Thank you." in response.content.decode()
    assert list(Feedback.objects.values_list("rating", "comment")) == [(2, "Quick")]


@pytest.mark.parametrize("rating", ["0", "6", "", "five"])
def test_a_rating_out_of_range_shows_the_error_and_saves_nothing(owner_client, journey, rating):
    reach(journey, "stage-3")
    milestone = journey.milestones.get(position=1)
    url = reverse("journey:feedback", args=[journey.reference, milestone.pk])
    response = owner_client.post(url, {"rating": rating}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Choose a rating from 1 to 5." in response.content.decode()
    response = owner_client.post(url, {"rating": rating})
    assert response.status_code == 400
    assert Feedback.objects.count() == 0


def test_an_upcoming_stage_cannot_be_rated(owner_client, journey):
    reach(journey, "stage-2")
    milestone = journey.milestones.get(position=3)
    url = reverse("journey:feedback", args=[journey.reference, milestone.pk])
    response = owner_client.post(url, {"rating": "5"})
    assert response.status_code == 400
    assert "This stage is not done yet." in response.content.decode()
    assert Feedback.objects.count() == 0


def test_polled_parts_answer_304_until_they_change(owner_client, journey, customer):
    url = reverse("journey:part", args=[journey.reference, "messages"])
    first = owner_client.get(url, HTTP_HX_REQUEST="true")
    assert first.status_code == 200
    assert first["Cache-Control"] == "private, no-cache"
    etag = first["ETag"]
    again = owner_client.get(url, HTTP_IF_NONE_MATCH=etag, HTTP_HX_REQUEST="true")
    assert again.status_code == 304
    assert again.content == b""
    Message.objects.create(journey=journey, from_staff=True, body="Your car has landed.")
    changed = owner_client.get(url, HTTP_IF_NONE_MATCH=etag, HTTP_HX_REQUEST="true")
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    assert "Your car has landed." in changed.content.decode()


def test_every_polled_part_is_a_fragment_that_keeps_polling(owner_client, journey):
    fill(journey, count=2)
    for name in sorted(POLLED_PARTS):
        url = reverse("journey:part", args=[journey.reference, name])
        response = owner_client.get(url, HTTP_HX_REQUEST="true")
        html = response.content.decode()
        assert response.status_code == 200
        assert "<html" not in html
        assert f'hx-get="{url}" hx-trigger="every 30s"' in html
        # The parts it replaces never hold a form the customer types into, except the
        # ratings, which the page's script protects while they are being filled in.
        assert ("<textarea" in html) == (name == "timeline")
    assert (
        owner_client.get(reverse("journey:part", args=[journey.reference, "x"])).status_code == 404
    )


def test_the_calendar_file_starts_at_the_arrival_time_on_the_places_clock(owner_client, journey):
    appointment = make_appointment(journey, zone="Europe/Madrid")
    url = reverse("journey:appointment_calendar", args=[journey.reference, appointment.pk])
    response = owner_client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    calendar = icalendar.Calendar.from_ical(response.content)
    event = calendar.walk("VEVENT")[0]
    start = event.decoded("dtstart")
    assert start == appointment.arrive_at
    assert str(start.tzinfo) == "Europe/Madrid"
    assert event.decoded("dtend") == appointment.starts_at + timedelta(hours=1)
    assert str(event["location"]) == "Showroom, 1 Calle Mayor, Madrid"
    assert str(event["description"]) == "Your licence."
    assert str(event["summary"]) == "Handover"
    assert [tz["tzid"] for tz in calendar.walk("VTIMEZONE")] == ["Europe/Madrid"]


def test_the_page_speaks_the_customers_language(owner_client, journey, customer):
    fill(journey, count=2)
    customer.profile.language = "es"
    customer.profile.save()
    html = owner_client.get(detail_url(journey)).content.decode()
    assert '<html lang="es">' in html
    assert "Cronología" in html
    assert "Tareas pendientes" in html
    assert "Milepost Motors, con Carrier" in html
    promised = journey.promised_date
    months = ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto"]
    months += ["septiembre", "octubre", "noviembre", "diciembre"]
    assert f"{promised.day} de {months[promised.month - 1]} de {promised.year}" in html
    # Short months are lower case in Spanish ("23 nov", not "23 Nov").
    short = "ene|feb|mar|abr|may|jun|jul|ago|sep|oct|nov|dic"
    assert re.search(rf"\b\d{{1,2}} ({short})\b", html)
    assert not re.search(rf"\b\d{{1,2}} ({short.title()})\b", html)
    assert_svg_numbers_have_points(html)


def assert_svg_numbers_have_points(html: str) -> None:
    """Numbers in the route's SVG keep their decimal point in every language: "12,5" is
    no coordinate."""
    svg = html[html.index('<svg class="route"') : html.index("</svg>", html.index('class="route"'))]
    coordinates = re.findall(r'\b(?:x1|y1|x2|y2|cx|cy|x|y)="([^"]*)"', svg)
    assert coordinates
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", value) for value in coordinates), coordinates
    # The labels' lines are placed in em, with a point too.
    offsets = re.findall(r'\bdy="([^"]*)"', svg)
    assert offsets
    assert all(re.fullmatch(r"-?\d+\.\d+em", value) for value in offsets), offsets


def test_a_tile_map_is_drawn_only_when_configured(owner_client, journey, settings):
    fill(journey, count=1)
    html = owner_client.get(detail_url(journey)).content.decode()
    assert "<image " not in html
    settings.MAP_TILE_URL = "https://tiles.example/{z}/{x}/{y}.png"
    settings.MAP_TILE_ATTRIBUTION = "© Example map contributors"
    html = owner_client.get(detail_url(journey)).content.decode()
    assert html.count('<image href="https://tiles.example/') >= 1
    assert "© Example map contributors" in html


# The database unreachable: 503 with Retry-After, wherever the error surfaces.


def test_a_lost_database_answers_503_with_retry_after(customer, monkeypatch):
    from django.db import OperationalError
    from django.test import Client

    from journey import selectors

    def unreachable(**kwargs: object) -> None:
        raise OperationalError("connection to server failed: Connection refused")

    client = Client(raise_request_exception=False)
    client.force_login(customer)
    monkeypatch.setattr(selectors, "journey_list", unreachable)
    response = client.get(reverse("journey:home"))
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert "Back in a moment" in response.content.decode()


def test_a_lost_database_in_the_session_middleware_answers_503(customer, monkeypatch):
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import InterfaceError
    from django.test import Client

    client = Client(raise_request_exception=False)
    client.force_login(customer)

    def unreachable(self: SessionStore) -> dict:
        raise InterfaceError("connection already closed")

    monkeypatch.setattr(SessionStore, "load", unreachable)
    response = client.get(reverse("journey:home"))
    assert response.status_code == 503
    assert response["Retry-After"] == "30"


def test_a_lost_database_answers_the_api_in_its_error_shape(monkeypatch):
    from django.db import OperationalError
    from django.test import Client

    from integrations.api import auth

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(auth, "partner_key_authenticate", unreachable)
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/journeys/", HTTP_AUTHORIZATION="Api-Key mp_abc.def")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json()["error"]["code"] == "service_unavailable"


def test_other_errors_stay_500(customer, monkeypatch):
    from django.test import Client

    from journey import selectors

    def broken(**kwargs: object) -> None:
        raise RuntimeError("a bug")

    client = Client(raise_request_exception=False)
    client.force_login(customer)
    monkeypatch.setattr(selectors, "journey_list", broken)
    response = client.get(reverse("journey:home"))
    assert response.status_code == 500
    assert "Retry-After" not in response


def test_an_error_page_renders_without_a_static_manifest(client, settings):
    """Production's manifest storage raises for a file it has no entry for (collectstatic
    not run): the error pages link their stylesheet plainly then, and still render."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
    settings.STATIC_ROOT = "/nonexistent-static-root"
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "<h1>Not found</h1>" in html
    assert f'href="{settings.STATIC_URL}css/milepost.css"' in html
