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
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


def photo_add(
    *, journey: Journey, milestone: Milestone | None, file: IO[bytes], caption: str = ""
) -> Photo:
    if milestone is not None and milestone.journey_id != journey.pk:
        raise ApplicationError(
            "That milestone belongs to another journey.",
            fields={"milestone": ["Not this journey's."]},
        )
    image = _decode(file.read(MAX_BYTES + 1))
    clean = ImageOps.exif_transpose(image).convert("RGB")
    original = _jpeg(clean)
    thumbnail = _jpeg(clean, size=THUMBNAIL_SIZE)
    with transaction.atomic():
        photo = Photo(
            journey=journey,
            milestone=milestone,
            caption=caption,
            width=clean.width,
            height=clean.height,
        )
        photo.image.save("photo.jpg", ContentFile(original), save=False)
        photo.thumbnail.save("thumb.jpg", ContentFile(thumbnail), save=False)
        photo.save()
        notify_photos_added(photo)
    return photo
