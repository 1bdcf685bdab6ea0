"""Photo upload: multipart, checked, stripped; the thumbnail made by a task after commit."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from journey.models import Photo
from journey.photos import photo_make_thumbnail
from notifications.models import Notification

pytestmark = pytest.mark.django_db


def photos_url(journey) -> str:
    return reverse("api:journey-photos", kwargs={"reference": journey.reference})


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (640, 480), gps: bool = True) -> bytes:
    image = Image.new("RGB", size, (180, 40, 40))
    out = io.BytesIO()
    if gps:
        exif = Image.Exif()
        exif[0x010F] = "CamCo"
        exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}
        image.save(out, format=fmt, exif=exif)
    else:
        image.save(out, format=fmt)
    return out.getvalue()


def upload(name: str, data: bytes, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_photo_is_stored_stripped_and_its_thumbnail_made_after_commit(
    api, journey, fmt, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(
            photos_url(journey),
            {"file": upload("p", image_bytes(fmt)), "milestone": "stage-2", "caption": "Paint"},
            format="multipart",
        )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["milestone"], body["caption"], body["width"], body["height"]) == (
        "stage-2",
        "Paint",
        640,
        480,
    )
    assert body["thumbnail_ready"] is False  # made after the response's transaction
    # After commit: the thumbnail task, and the customer's "new photos" message.
    assert len(callbacks) == 2
    assert Notification.objects.get(channel="email").kind == "photos_added"
    photo = Photo.objects.get()
    assert photo.milestone == journey.milestones.get(stage__key="stage-2")
    assert photo.thumbnail  # the task ran on commit
    with photo.image.open("rb") as stored:
        image = Image.open(stored)
        assert image.format == "JPEG"
        assert dict(image.getexif()) == {}
    with photo.thumbnail.open("rb") as stored:
        assert Image.open(stored).size == (480, 360)


def test_the_thumbnail_task_is_idempotent(api, journey, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        api.post(photos_url(journey), {"file": upload("p", image_bytes())}, format="multipart")
    photo = Photo.objects.get()
    first = photo.thumbnail.name

    assert photo_make_thumbnail(photo_id=photo.pk) is False
    photo.refresh_from_db()
    assert photo.thumbnail.name == first
    assert photo_make_thumbnail(photo_id=photo.pk + 999) is False


def test_the_page_shows_the_full_image_until_the_thumbnail_is_made(api, journey, customer, client):
    # No on-commit callbacks run here: the thumbnail task never ran.
    api.post(photos_url(journey), {"file": upload("p", image_bytes())}, format="multipart")
    photo = Photo.objects.get()
    assert not photo.thumbnail
    client.force_login(customer)
    response = client.get(reverse("journey:photo", args=[journey.reference, photo.pk, "thumb"]))
    assert response.status_code == 200
    with photo.image.open("rb") as full:
        assert b"".join(response.streaming_content) == full.read()


def _bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (10_000, 6_000)).save(out, format="PNG", optimize=True)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "code", "status"),
    [
        (b"just some text, not an image", "not_an_image", 400),
        (image_bytes()[:2000], "not_an_image", 400),  # truncated
        (b"%PDF-1.4\n" + image_bytes(), "not_an_image", 400),  # a polyglot
        (_bomb(), "too_many_pixels", 400),  # 60 megapixels in a few kB
        (b"GIF89a" + b"\0" * 100, "not_an_image", 400),
        (b"\xff" * (20 * 1024 * 1024 + 1), "too_large", 413),
    ],
)
def test_a_bad_file_is_refused_naming_the_problem_and_nothing_is_written(
    api, journey, data, code, status, settings
):
    response = api.post(photos_url(journey), {"file": upload("p.jpg", data)}, format="multipart")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert list(response.json()["error"]["fields"]) == ["file"]
    assert Photo.objects.count() == 0
    media = settings.MEDIA_ROOT
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def test_an_unknown_stage_is_refused(api, journey):
    response = api.post(
        photos_url(journey),
        {"file": upload("p", image_bytes()), "milestone": "nope"},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"milestone": ["Unknown stage."]}
    assert Photo.objects.count() == 0


def test_json_is_refused_with_415(api, journey):
    response = api.post(photos_url(journey), {"file": "x"}, format="json")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_a_missing_file_is_a_400(api, journey):
    response = api.post(photos_url(journey), {"caption": "x"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["error"]["fields"]


def test_partner_b_cannot_upload_to_partner_a_journey(other_api, journey):
    response = other_api.post(
        photos_url(journey), {"file": upload("p", image_bytes())}, format="multipart"
    )
    assert response.status_code == 404
    assert Photo.objects.count() == 0
