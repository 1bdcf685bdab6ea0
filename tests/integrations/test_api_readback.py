"""Reading back what a partner posted: a journey's legs, one leg, a leg's checkpoints, its
photos, tasks and appointments, as the POSTs answered them."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from journey.models import Appointment, Checkpoint, CustomerTask, Photo, ShipmentLeg
from tests.integrations.test_api_legs import leg as posted_leg

pytestmark = pytest.mark.django_db

NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}


def url(name: str, journey, **kwargs: object) -> str:
    return reverse(f"api:{name}", kwargs={"reference": journey.reference, **kwargs})


def leg(sequence: int = 1, **overrides: object) -> dict[str, object]:
    """The legs tests' body, departed two days ago (within the journey's dates)."""
    departed = (timezone.now() - timedelta(days=2)).isoformat()
    return posted_leg(**{"sequence": sequence, "departed_at": departed, **overrides})


def checkpoint(hours_ago: int) -> dict[str, object]:
    seen = timezone.now() - timedelta(hours=hours_ago)
    return {"occurred_at": seen.isoformat(), "location_name": f"{hours_ago} h ago"}


def appointment(days: int) -> dict[str, object]:
    starts = (timezone.now() + timedelta(days=days)).replace(microsecond=0)
    return {"title": f"Visit in {days} days", "starts_at": starts.isoformat(), "place_name": "X"}


def jpeg() -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(out, format="JPEG")
    return SimpleUploadedFile("p.jpg", out.getvalue(), content_type="image/jpeg")


def post(api, path: str, body: dict[str, object], fmt: str = "json") -> dict[str, object]:
    response = api.post(path, body, format=fmt)
    assert response.status_code == 201, response.json()
    return response.json()


def test_legs_are_read_back_in_sequence_as_posted(api, journey):
    second = post(api, url("journey-legs", journey), leg(2, carrier="Road"))
    first = post(api, url("journey-legs", journey), leg(1))
    response = api.get(url("journey-legs", journey))
    assert response.status_code == 200
    assert response.json() == [first, second]  # a list: a journey has a few legs


def test_one_leg_is_read_back_as_posted_and_as_patched(api, journey):
    posted = post(api, url("journey-legs", journey), leg(1))
    response = api.get(url("journey-leg", journey, sequence=1))
    assert response.status_code == 200
    assert response.json() == posted
    patched = api.patch(
        url("journey-leg", journey, sequence=1), {"carrier": "Other"}, format="json"
    )
    assert api.get(url("journey-leg", journey, sequence=1)).json() == patched.json()
    missing = api.get(url("journey-leg", journey, sequence=2))
    assert (missing.status_code, missing.json()) == (404, NOT_FOUND)


def test_checkpoints_are_read_back_in_pages_in_the_order_posted(api, journey):
    post(api, url("journey-legs", journey), leg(1))
    posted = [
        post(api, url("leg-checkpoints", journey, sequence=1), checkpoint(hours))
        for hours in (30, 40, 10)  # not posted in the order they happened
    ]
    first = api.get(url("leg-checkpoints", journey, sequence=1), {"page_size": 2})
    assert first.status_code == 200
    assert first.json()["results"] == posted[:2]
    assert first.json()["previous"] is None
    last = api.get(first.json()["next"])
    assert last.json()["results"] == posted[2:]
    assert last.json()["next"] is None
    unknown_leg = api.get(url("leg-checkpoints", journey, sequence=9))
    assert (unknown_leg.status_code, unknown_leg.json()) == (404, NOT_FOUND)


def test_photos_are_read_back_in_pages_in_the_order_posted(api, journey):
    path = url("journey-photos", journey)
    posted = [
        post(api, path, {"file": jpeg(), "milestone": "stage-2", "caption": "Paint"}, "multipart"),
        post(api, path, {"file": jpeg()}, "multipart"),
    ]
    response = api.get(path)
    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": posted}
    assert [p["milestone"] for p in posted] == ["stage-2", None]


def test_tasks_are_read_back_in_the_order_posted(api, journey):
    today = timezone.localdate()
    posted = [
        post(api, url("journey-tasks", journey), {"title": title, "due_date": str(due)})
        for title, due in (
            ("Insurance", today + timedelta(days=15)),
            ("Finance papers", today + timedelta(days=2)),  # sooner, posted later
        )
    ]
    response = api.get(url("journey-tasks", journey))
    assert response.status_code == 200
    assert response.json() == posted


def test_appointments_are_read_back_in_the_order_posted(api, journey):
    posted = [
        post(api, url("journey-appointments", journey), appointment(days)) for days in (20, 10)
    ]
    response = api.get(url("journey-appointments", journey))
    assert response.status_code == 200
    assert response.json() == posted
    assert [a["duration_minutes"] for a in response.json()] == [60, 60]


READ_BACK = [
    ("journey-legs", {}),
    ("journey-leg", {"sequence": 1}),
    ("leg-checkpoints", {"sequence": 1}),
    ("journey-photos", {}),
    ("journey-tasks", {}),
    ("journey-appointments", {}),
]


@pytest.mark.parametrize(("name", "kwargs"), READ_BACK)
def test_another_partners_journey_answers_404_as_the_writes_do(
    api, other_api, journey, name, kwargs
):
    post(api, url("journey-legs", journey), leg(1))
    post(api, url("leg-checkpoints", journey, sequence=1), checkpoint(5))
    post(api, url("journey-tasks", journey), {"title": "Insurance"})
    path = url(name, journey, **kwargs)
    read = other_api.get(path)
    assert (read.status_code, read.json()) == (404, NOT_FOUND)
    if name != "journey-leg":  # PATCH-only before: its write is a PATCH
        write = other_api.post(path, {}, format="json")
        assert (write.status_code, write.json()) == (404, NOT_FOUND)
    unknown = api.get(reverse(f"api:{name}", kwargs={"reference": "MP-NOPE99", **kwargs}))
    assert (unknown.status_code, unknown.json()) == (404, NOT_FOUND)


def fill(journey, count: int) -> None:
    """``count`` of each thing a journey has, the photos on a milestone (its stage is read
    with them), written directly: the reads are what is counted."""
    now = timezone.now()
    milestone = journey.milestones.get(stage__key="stage-2")
    legs = ShipmentLeg.objects.bulk_create(
        ShipmentLeg(
            journey=journey,
            sequence=n,
            mode="truck",
            origin_name="A",
            origin_lat=Decimal(1),
            origin_lon=Decimal(1),
            destination_name="B",
            destination_lat=Decimal(2),
            destination_lon=Decimal(2),
        )
        for n in range(1, count + 1)
    )
    Checkpoint.objects.bulk_create(
        Checkpoint(leg=legs[0], occurred_at=now, location_name=f"C{n}") for n in range(count)
    )
    Photo.objects.bulk_create(
        Photo(journey=journey, milestone=milestone, image=f"photos/{n}.jpg") for n in range(count)
    )
    CustomerTask.objects.bulk_create(
        CustomerTask(journey=journey, title=f"T{n}") for n in range(count)
    )
    Appointment.objects.bulk_create(
        Appointment(journey=journey, title="A", starts_at=now, arrive_at=now, place_name="P")
        for _ in range(count)
    )


@pytest.mark.parametrize(("name", "kwargs"), READ_BACK)
@pytest.mark.parametrize("count", [1, 6])
def test_a_read_back_costs_the_same_whatever_it_holds(
    api, journey, name, kwargs, count, django_assert_num_queries
):
    fill(journey, count)
    assert api.get(reverse("api:journey-list")).status_code == 200  # the key's last use
    # The key; the journey (404 otherwise); the leg, for what is a leg's; the items, with
    # what they show (a photo's stage).
    leg_read = 1 if "sequence" in kwargs else 0
    with django_assert_num_queries(3 + leg_read - (name == "journey-leg")):
        response = api.get(url(name, journey, **kwargs))
    assert response.status_code == 200
    body = response.json()
    if name != "journey-leg":
        items = body["results"] if isinstance(body, dict) else body
        assert len(items) == count
