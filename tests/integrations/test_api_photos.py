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


# Hostile files that are valid images, and how the stored files are served.

HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


def _jpeg_with_comment(comment: bytes) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(out, format="JPEG", comment=comment)
    return out.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        image_bytes() + HTML,  # HTML after the JPEG's end marker
        _jpeg_with_comment(HTML),  # HTML inside a JPEG comment segment
    ],
    ids=["appended", "comment"],
)
def test_an_image_html_polyglot_is_stored_as_a_plain_jpeg(
    api, journey, customer, client, data, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            photos_url(journey), {"file": upload("p.jpg", data)}, format="multipart"
        )
    assert response.status_code == 201, response.content
    photo = Photo.objects.get()
    with photo.image.open("rb") as stored:
        raw = stored.read()
    # Re-encoded from the pixels: nothing of the upload's bytes beyond the image survives.
    assert b"<script" not in raw
    assert b"<html" not in raw
    client.force_login(customer)
    served = client.get(reverse("journey:photo", args=[journey.reference, photo.pk, "full"]))
    assert b"<script" not in b"".join(served.streaming_content)


def test_html_named_like_a_jpeg_is_refused(api, journey):
    response = api.post(
        photos_url(journey), {"file": upload("photo.jpg", HTML)}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_an_image"
    assert Photo.objects.count() == 0


def test_the_bomb_is_small_on_the_wire():
    """The decompression bomb above really is a small file that decodes to > 50 MP."""
    data = _bomb()
    assert len(data) < 100_000
    with pytest.warns(Image.DecompressionBombWarning):
        image = Image.open(io.BytesIO(data))
    assert image.width * image.height > 50_000_000


def _served_photo_responses(journey, customer, client) -> list:
    from accounts.services import share_link_create
    from journey.public import share_link_token

    photo = Photo.objects.get()
    client.force_login(customer)
    token = share_link_token(share_link_create(journey=journey, owner=customer, days=1))
    return [
        client.get(reverse("journey:photo", args=[journey.reference, photo.pk, variant]))
        for variant in ("full", "thumb")
    ] + [
        client.get(reverse("public-photo", args=[token, photo.pk, variant]))
        for variant in ("full", "thumb")
    ]


def test_gps_is_gone_from_what_is_served_through_the_portal_and_share_links(
    api, journey, customer, client, django_capture_on_commit_callbacks
):
    original = image_bytes(gps=True)
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)  # it had GPS
    with django_capture_on_commit_callbacks(execute=True):
        api.post(photos_url(journey), {"file": upload("p.jpg", original)}, format="multipart")
    for response in _served_photo_responses(journey, customer, client):
        assert response.status_code == 200
        image = Image.open(io.BytesIO(b"".join(response.streaming_content)))
        assert image.format == "JPEG"
        assert dict(image.getexif()) == {}
        assert image.getexif().get_ifd(0x8825) == {}
        assert "exif" not in image.info


def test_photos_are_never_served_as_something_a_browser_would_run(
    api, journey, customer, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        api.post(
            photos_url(journey),
            {"file": upload("p.html", image_bytes(), content_type="text/html")},
            format="multipart",
        )
    for response in _served_photo_responses(journey, customer, client):
        assert response.status_code == 200
        assert response["Content-Type"] == "image/jpeg"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "attachment" not in response.get("Content-Disposition", "")


@pytest.mark.parametrize("key", [None, "photo-1"])
def test_two_files_in_one_upload_are_refused_and_nothing_is_written(api, journey, key, settings):
    from integrations.models import IdempotencyRecord

    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    response = api.post(
        photos_url(journey),
        {"file": [upload("a.jpg", image_bytes()), upload("b.jpg", image_bytes(fmt="PNG"))]},
        format="multipart",
        **headers,
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "Invalid input: file.",
            "fields": {"file": ["Send one file per request."]},
        }
    }
    assert Photo.objects.count() == 0
    assert Notification.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0  # the key is free for the corrected upload
    media = settings.MEDIA_ROOT
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


@pytest.mark.parametrize("field", ["milestone", "caption"])
def test_a_form_field_sent_twice_is_refused(api, journey, field):
    response = api.post(
        photos_url(journey),
        {"file": upload("a.jpg", image_bytes()), field: ["stage-1", "stage-2"]},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {field: ["Send it once."]}
    assert Photo.objects.count() == 0


def test_a_photo_under_another_part_name_is_refused_not_dropped(api, journey):
    response = api.post(
        photos_url(journey),
        {"file": upload("a.jpg", image_bytes()), "file2": upload("b.jpg", image_bytes())},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "file2": ["One photo per request, in the part named file."]
    }
    assert Photo.objects.count() == 0


def test_any_other_part_is_refused_a_file_without_its_filename_included(api, journey):
    """A part sent without a filename arrives as text: it is refused too, not dropped."""
    response = api.post(
        photos_url(journey),
        {"file": upload("a.jpg", image_bytes()), "file2": "raw bytes, no filename"},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "file2": ["Unknown part: send file, milestone and caption only."]
    }
    assert Photo.objects.count() == 0
