import json

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from journey.errors import ApplicationError
from notifications import inbound, services
from notifications.channels import render as render_message
from notifications.models import Channel, Notification

MAX_INBOUND_BYTES = 10 * 1024 * 1024


def _error(error: ApplicationError) -> JsonResponse:
    body = {"error": {"code": error.code, "message": error.message, "fields": error.fields}}
    return JsonResponse(body, status=error.status)


def _verified_body(request: HttpRequest) -> bytes:
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_INBOUND_BYTES:
        raise ApplicationError("The message is larger than 10 MB.", code="too_large", status=413)
    body = request.body
    inbound.verify(
        body=body,
        timestamp=request.headers.get("X-Milepost-Timestamp", ""),
        signature=request.headers.get("X-Milepost-Signature", ""),
    )
    return body


@csrf_exempt  # a signed server-to-server POST, not a browser form
@require_POST
def inbound_email(request: HttpRequest) -> JsonResponse:
    """A reply to one of our emails, as raw MIME, from the mail provider's inbound route."""
    try:
        message = inbound.receive(_verified_body(request))
    except ApplicationError as error:
        return _error(error)
    return JsonResponse(
        {"message_id": message.pk, "journey": message.journey.reference}, status=201
    )


@csrf_exempt  # a signed server-to-server POST
@require_POST
def inbound_bounce(request: HttpRequest) -> JsonResponse:
    """A hard bounce reported by the mail provider: {"email": ..., "notification_id": ...}."""
    try:
        body = _verified_body(request)
        try:
            data = json.loads(body)
        except ValueError as error:
            raise ApplicationError("The body is not JSON.", code="parse_error") from error
        if not isinstance(data, dict) or not isinstance(data.get("email"), str):
            raise ApplicationError("Give the bounced address.", fields={"email": ["Required."]})
        notification_id = data.get("notification_id")
        if notification_id is not None and not isinstance(notification_id, int):
            raise ApplicationError(
                "notification_id must be a number.", fields={"notification_id": ["Not a number."]}
            )
        if not services.email_bounced(email=data["email"], notification_id=notification_id):
            raise ApplicationError("No customer has that address.", code="not_found", status=404)
    except ApplicationError as error:
        return _error(error)
    return JsonResponse({"email": data["email"], "email_disabled": True})


@login_required
@require_GET
def centre(request: HttpRequest) -> HttpResponse:
    """The portal's notification centre: the newest first, unread marked."""
    return _centre(request)


def _centre(request: HttpRequest) -> HttpResponse:
    rows = list(
        Notification.objects.filter(recipient=request.user, channel=Channel.INAPP)
        .select_related("journey", "journey__template", "recipient__profile")
        .order_by("-created_at", "-id")[:100]
    )
    messages = [render_message(row) for row in rows]
    items = [(row, m, _preview(m.text)) for row, m in zip(rows, messages, strict=True)]
    template = "notifications/centre.html#list" if request.htmx else "notifications/centre.html"
    return render(request, template, {"items": items})


# Long enough for a message's first paragraph whole, as a promise moved says it ("… it
# is now 20 January 2027, instead of 16 December 2026. We expect it on 12 December 2026."):
# cut at 160, it lost the date that mattered.
PREVIEW_LENGTH = 320


def _preview(text: str) -> str:
    """The message's first line after its greeting, as the email says it: the subject
    alone ("Your car: new photos", four times over) does not say which."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    body = paragraphs[1:] if len(paragraphs) > 1 else paragraphs
    first = body[0].splitlines()[0] if body else ""
    if len(first) <= PREVIEW_LENGTH:
        return first
    # At a word's end, not in the middle of a date.
    return first[: PREVIEW_LENGTH - 1].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"


@login_required
@require_GET
def open_notification(request: HttpRequest, notification_id: int) -> HttpResponse:
    """Follow an update to what it is about, and it is read: the badge counted it still
    after the customer had gone and looked."""
    row = get_object_or_404(
        Notification.objects.select_related("journey", "journey__template", "recipient__profile"),
        pk=notification_id,
        recipient=request.user,
        channel=Channel.INAPP,
    )
    # Followed by the customer, not fetched for them: a browser's prefetch (Sec-Purpose)
    # or another site's <img> (Sec-Fetch-Site) goes on without marking it read.
    prefetched = "prefetch" in request.headers.get("Sec-Purpose", "")
    elsewhere = request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none")
    if not (prefetched or elsewhere):
        services.notification_mark_read(user=request.user, notification_id=row.pk)
    return redirect(render_message(row).path)


@login_required
@require_POST
def mark_read(request: HttpRequest, notification_id: int | None = None) -> HttpResponse:
    services.notification_mark_read(user=request.user, notification_id=notification_id)
    if request.htmx:
        return _centre(request)  # the list again, with the new state
    return redirect("notifications:centre")
