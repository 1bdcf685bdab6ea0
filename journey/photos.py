"""Photos of the real item: decoded safely, metadata stripped, stored privately."""

import io
import warnings
from typing import IO

from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image, ImageOps

from journey.errors import ApplicationError
from journey.models import Journey, Milestone, Photo
from notifications.triggers import notify_photos_added

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
THUMBNAIL_SIZE = (480, 360)

# Pillow refuses anything larger outright; we refuse at our own, lower limit first.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def _decode(data: bytes) -> Image.Image:
    """Decode an upload, refusing what is not a whole JPEG, PNG or WebP within limits."""
    if len(data) > MAX_BYTES:
        raise ApplicationError(
            "The photo is larger than 20 MB.",
            code="too_large",
            fields={"file": ["Over 20 MB."]},
            status=413,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            if image.width * image.height > MAX_PIXELS:
                raise ApplicationError(
                    "The photo has more than 50 megapixels.",
                    code="too_many_pixels",
                    fields={"file": ["Over 50 megapixels."]},
                )
            image.load()
    except ApplicationError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ApplicationError(
            "The photo has more than 50 megapixels.",
            code="too_many_pixels",
            fields={"file": ["Over 50 megapixels."]},
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ApplicationError(
            "The file is not a whole JPEG, PNG or WebP image.",
            code="not_an_image",
            fields={"file": ["Not a JPEG, PNG or WebP image."]},
        ) from error
    return image


def _jpeg(image: Image.Image, *, size: tuple[int, int] | None = None) -> bytes:
    # The caller has applied the EXIF orientation (exif_transpose); saving without
    # exif= drops all metadata, GPS included.
    if size is not None:
        image = ImageOps.fit(image, size)
    # Pillow writes image.info's "comment" (a JPEG COM segment) back out on save, and
    # copies info through convert(): an uploaded comment holding HTML or a script
    # would survive the re-encoding. Nothing of the upload's metadata is kept.
    image.info.clear()
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


def photo_add(
    *, journey: Journey, milestone: Milestone | None, file: IO[bytes], caption: str = ""
) -> Photo:
    """Store a photo with its metadata stripped; its thumbnail is made by a task queued
    after commit (pages show the full image until then)."""
    if milestone is not None and milestone.journey_id != journey.pk:
        raise ApplicationError(
            "That milestone belongs to another journey.",
            fields={"milestone": ["Not this journey's."]},
        )
    image = _decode(file.read(MAX_BYTES + 1))
    clean = ImageOps.exif_transpose(image).convert("RGB")
    original = _jpeg(clean)
    from journey.tasks import make_thumbnail

    with transaction.atomic():
        photo = Photo(
            journey=journey,
            milestone=milestone,
            caption=caption,
            width=clean.width,
            height=clean.height,
        )
        photo.image.save("photo.jpg", ContentFile(original), save=False)
        photo.save()
        notify_photos_added(photo)
        make_thumbnail.delay_on_commit(photo.pk)
    return photo


def photo_make_thumbnail(*, photo_id: int) -> bool:
    """Make a photo's thumbnail if it has none yet. Idempotent: returns False when there
    was nothing to do (already made, or the photo is gone)."""
    photo = Photo.objects.filter(pk=photo_id).first()
    if photo is None or photo.thumbnail:
        return False
    with photo.image.open("rb") as source:
        # Our own re-encoded JPEG, already stripped and within limits.
        image = Image.open(source, formats=["JPEG"])
        image.load()
    thumbnail = _jpeg(image.convert("RGB"), size=THUMBNAIL_SIZE)
    name = photo.thumbnail.field.generate_filename(photo, "thumb.jpg")
    stored = photo.thumbnail.storage.save(name, ContentFile(thumbnail))
    with transaction.atomic():
        # A concurrent run may have won: keep its file and remove ours.
        updated = Photo.objects.filter(pk=photo_id, thumbnail="").update(thumbnail=stored)
    if not updated:
        photo.thumbnail.storage.delete(stored)
    return bool(updated)


def photo_validate(file: IO[bytes]) -> None:
    """Check an upload as ``photo_add`` will (for a form error before anything is saved);
    the file is rewound afterwards."""
    _decode(file.read(MAX_BYTES + 1))
    file.seek(0)
