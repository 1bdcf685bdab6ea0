"""Channel backends. Email first; every backend takes one outbox row and sends it."""

import zoneinfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.dateparse import parse_date, parse_datetime

from notifications.models import Notification


def message_context(notification: Notification) -> dict[str, object]:
    """What a message template needs, with times as aware datetimes and a portal link."""
    context: dict[str, object] = dict(notification.context)
    for key, value in notification.context.items():
        if isinstance(value, str) and key.endswith("_at"):
            context[key] = parse_datetime(value)
        elif isinstance(value, str) and key in {"eta", "promised_date", "due_date"}:
            context[key] = parse_date(value)
    journey = notification.journey
    context["journey"] = journey
    context["recipient"] = notification.recipient
    context["site_url"] = settings.SITE_URL
    context["company_name"] = settings.COMPANY_NAME
    if journey is not None:
        context["portal_url"] = settings.SITE_URL + reverse(
            "journey:detail", kwargs={"reference": journey.reference}
        )
    return context


def send_email(notification: Notification) -> None:
    """Render the row's message (HTML and plain text) in the recipient's language and
    time zone, and hand it to the mail backend."""
    recipient = notification.recipient
    profile = getattr(recipient, "profile", None) if recipient else None
    language = profile.language if profile else settings.LANGUAGE_CODE
    zone = zoneinfo.ZoneInfo(profile.time_zone if profile else settings.TIME_ZONE)
    context = message_context(notification)
    base = f"notifications/email/{notification.kind}"
    with translation.override(language), timezone.override(zone):
        subject = " ".join(render_to_string(f"{base}_subject.txt", context).split())
        text = render_to_string(f"{base}.txt", context)
        html = render_to_string(f"{base}.html", context)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.to_email or recipient.email],
        headers={"X-Milepost-Notification": str(notification.pk)},
    )
    message.attach_alternative(html, "text/html")
    message.send()
