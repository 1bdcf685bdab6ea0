"""A journey shown through a share link: progress, dates, photos and route; nothing personal."""

from django.core import signing
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.models import ShareLink
from journey import selectors
from journey.models import Photo
from journey.route import route_schematic

SALT = "milepost.share-link"


def share_link_token(link: ShareLink) -> str:
    """Deterministic (no timestamp): a link's URL never changes; expiry and revocation
    live on the ShareLink row."""
    return signing.Signer(salt=SALT).sign_object(link.pk)


def _active_link(token: str) -> ShareLink:
    """The link behind a token, or 404 when the token is forged, revoked or expired."""
    try:
        link_id = signing.Signer(salt=SALT).unsign_object(token)
    except signing.BadSignature as error:
        raise Http404("No such link.") from error
    link = ShareLink.objects.filter(pk=link_id).first()
    if link is None or not link.is_active():
        raise Http404("This link has expired or was revoked.")
    return link


@require_GET
def public_journey(request: HttpRequest, token: str) -> HttpResponse:
    link = _active_link(token)
    journey = selectors.journey_public(journey_id=link.journey_id)
    legs = list(journey.legs.all())
    response = render(
        request,
        "journey/public.html",
        {
            "journey": journey,
            "token": token,
            "progress": selectors.journey_progress(journey),
            "milestones": selectors.visible_milestones(journey),
            "legs": legs,
            "route": route_schematic(legs),
            "link": link,
        },
    )
    # A shared page must not be cached by proxies or indexed.
    response["Cache-Control"] = "private, no-store"
    response["X-Robots-Tag"] = "noindex"
    return response


@require_GET
def public_photo(request: HttpRequest, token: str, photo_id: int, variant: str) -> FileResponse:
    link = _active_link(token)
    if variant not in {"full", "thumb"}:
        raise Http404("No such photo size.")
    photo = (
        Photo.objects.filter(pk=photo_id, journey_id=link.journey_id)
        .exclude(milestone__stage__customer_visible=False)
        .first()
    )
    if photo is None:
        raise Http404("No such photo.")
    field = photo.thumbnail if variant == "thumb" and photo.thumbnail else photo.image
    response = FileResponse(field.open("rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, no-store"
    return response
