"""Channel backends behind one interface: ``send(rows)`` takes the outbox rows of one
delivery (one row, or several for a digest) on one channel and hands them over.

Email is rendered from templates (HTML and plain text, the company's branding, links to the
right place in the portal) with a Reply-To that leads back to the journey's conversation.
SMS and web push go to the backend named by a setting; the defaults log the message.
"""

import hashlib
import hmac
import json
import logging
import smtplib
import urllib.request
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, mailers
from django.core.mail.backends.base import BaseEmailBackend
from django.template import Context
from django.template.loader import get_template, render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.module_loading import import_string
from django.utils.translation import ngettext

from accounts.models import User, field_label
from journey.models import Journey, stage_translated
from notifications.models import Channel, Notification

logger = logging.getLogger(__name__)

REPLY_SALT = b"milepost.reply-to"


def message_context(notification: Notification) -> dict[str, object]:
    """What a message template needs, with times as aware datetimes and a portal link,
    and a stage's words in the active language (the recipient's, as ``render`` calls it)."""
    context: dict[str, object] = dict(notification.context)
    translations = notification.context.get("stage_translations") or {}
    for field, key in (("label", "stage_label"), ("explanation", "explanation")):
        if key in context:
            context[key] = stage_translated(translations, field, context[key])
    if "field_label" in context and "field" in context:
        # A profile field's name in the reader's language, not the proposer's, as a
        # sentence has it ("your phone", "su teléfono").
        label = field_label(str(context["field"]))
        context["field_label"] = label[:1].lower() + label[1:]
    for key, value in notification.context.items():
        if isinstance(value, str) and key.endswith("_at"):
            context[key] = parse_datetime(value)
        elif isinstance(value, str) and (
            key.endswith("_date") or key in {"eta", "told_eta", "ends_on"}
        ):
            context[key] = parse_date(value)
    journey = notification.journey
    context["journey"] = journey
    context["recipient"] = notification.recipient
    context["company_name"] = settings.COMPANY_NAME
    context["site_url"] = settings.SITE_URL
    context["portal_path"] = _portal_path(notification)
    context["portal_url"] = settings.SITE_URL + context["portal_path"]
    return context


# Alerts to the team (STAFF_ALERT_EMAIL), not to a customer: they lead to the admin.
STAFF_ALERTS = frozenset({"staff_customer_message", "staff_reschedule_request"})


def _portal_path(notification: Notification) -> str:
    """Where the message takes its reader on the site: the journey (at the part it is
    about), for staff the admin's page where they act on it, the profile for a change to
    check."""
    journey = notification.journey
    if notification.kind == "staff_reschedule_request":
        request_id = notification.context.get("request_id")
        return reverse("admin:journey_reschedulerequest_change", args=[request_id])
    if journey is not None and notification.kind == "staff_customer_message":
        return reverse("admin:journey_journey_change", args=[journey.pk])
    if journey is not None and notification.kind == "share_accepted":
        return reverse("accounts:sharing", kwargs={"reference": journey.reference})
    if journey is not None:
        anchor = notification.context.get("anchor", "")
        path = reverse("journey:detail", kwargs={"reference": journey.reference})
        return path + (f"#{anchor}" if anchor else "")
    if notification.kind in ("profile_change_proposed", "profile_filled_in"):
        return reverse("accounts:profile")
    return reverse("journey:home")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    url: str  # the whole address, for emails and pushes (SITE_URL)
    path: str  # the same on this site, for its own pages (the notification centre)


def _locale(notification: Notification) -> tuple[str, zoneinfo.ZoneInfo]:
    reader = notification.recipient
    if reader is None and notification.kind == "journey_invitation":
        # An address, not an account: the account it belongs to, if it has one; else the
        # journey's owner's, who invited them. (Staff alerts, to the team's address, keep
        # the site's language.)
        reader = User.objects.filter(email=notification.to_email.lower()).first() or (
            notification.journey.owner if notification.journey_id else None
        )
    profile = getattr(reader, "profile", None) if reader else None
    language = profile.language if profile else settings.LANGUAGE_CODE
    zone = zoneinfo.ZoneInfo(profile.time_zone if profile else settings.TIME_ZONE)
    return language, zone


def render_text(template_name: str, context: dict[str, object]) -> str:
    """A plain-text template (a subject, a text body) rendered without HTML escaping,
    whatever the template says: "Engineer's visit" stays so, not "Engineer&#x27;s
    visit", in a subject line or a text part."""
    template = get_template(template_name).template  # the engine's own Template
    return template.render(Context(context, autoescape=False))


def render(notification: Notification) -> Rendered:
    """The message in the recipient's language and time zone."""
    language, zone = _locale(notification)
    base = f"notifications/email/{notification.kind}"
    with translation.override(language), timezone.override(zone):
        context = message_context(notification)
        subject = " ".join(render_text(f"{base}_subject.txt", context).split())
        text = render_text(f"{base}.txt", context)
        html = render_to_string(f"{base}.html", context)
    return Rendered(
        subject=subject,
        text=text,
        html=html,
        url=str(context["portal_url"]),
        path=str(context["portal_path"]),
    )


# --- Reply-To: every email can be answered ----------------------------------------------


def _reply_signature(journey_id: int, user_id: int) -> str:
    key = hashlib.sha256(REPLY_SALT + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, f"{journey_id}.{user_id}".encode(), hashlib.sha256).hexdigest()[:24]


def reply_address(*, journey_id: int, user_id: int) -> str:
    """reply+<journey>-<user>-<signature>@<REPLY_DOMAIN>: the inbound endpoint finds the
    conversation from it, and nobody can forge one for another journey."""
    token = f"{journey_id}-{user_id}-{_reply_signature(journey_id, user_id)}"
    return f"reply+{token}@{settings.REPLY_DOMAIN}"


def parse_reply_address(address: str) -> tuple[int, int] | None:
    """(journey id, user id) from a reply address, or None when it is not a genuine one."""
    local, _, domain = address.strip().strip("<>").lower().partition("@")
    if domain != settings.REPLY_DOMAIN.lower() or not local.startswith("reply+"):
        return None
    try:
        journey_part, user_part, signature = local[len("reply+") :].split("-")
        journey_id, user_id = int(journey_part), int(user_part)
    except ValueError:
        return None
    if not hmac.compare_digest(signature, _reply_signature(journey_id, user_id)):
        return None
    return journey_id, user_id


# --- Email ----------------------------------------------------------------------------


def _attachments(notification: Notification) -> list[tuple[str, bytes, str]]:
    from journey.calendar import appointment_cancel_ics, appointment_ics
    from journey.models import Appointment

    context = notification.context
    appointment_id = context.get("appointment_id")
    if appointment_id and notification.kind == "appointment_cancelled":
        # The row is gone: the file is made from what the message kept.
        arrive_at = parse_datetime(str(context.get("arrive_at") or ""))
        if arrive_at is None:
            return []
        ics = appointment_cancel_ics(
            appointment_id=appointment_id,
            title=str(context.get("title", "")),
            arrive_at=arrive_at,
            ends_at=parse_datetime(str(context.get("ends_at") or "")),
            time_zone=str(context.get("place_time_zone", "")),
            place_name=str(context.get("place", "")),
            address=str(context.get("address", "")),
            company=settings.COMPANY_NAME,
        )
        return [("appointment.ics", ics, "text/calendar; method=CANCEL")]
    if appointment_id and notification.kind in {
        "appointment_set",
        "appointment_reminder",
        "appointment_changed",
    }:
        # The appointment as it is now (a message held for quiet hours says the latest
        # time); none once it is cancelled, whose own message removes it.
        appointment = Appointment.objects.filter(pk=appointment_id).first()
        if appointment is not None:
            ics = appointment_ics(appointment, company=settings.COMPANY_NAME)
            return [("appointment.ics", ics, "text/calendar")]
    return []


def _headers(notification: Notification) -> dict[str, str]:
    headers = {"X-Milepost-Notification": str(notification.pk)}
    if notification.kind not in STAFF_ALERTS:
        headers["Auto-Submitted"] = "auto-generated"
    return headers


class MailSession:
    """One connection to the mail backend for several messages (a list's deliveries):
    opened at the first email, kept open for the next ones, closed at the end, and
    dropped after a failure so that the next message starts on a new one. An SMTP
    session costs a round trip or more each for connecting, TLS and logging in, more
    than sending a message; Django opens one per message otherwise. A server may close a
    session it has kept (after so many messages, or idle while an SMS went out): a
    message that finds it closed is sent again once, on a new connection."""

    # What a connection the server has ended looks like: closed under us, or a 421
    # ("closing the connection") at the next command. Sent again, a message may arrive
    # twice if the server took it just before it hung up: the outbox is at least once,
    # and without this the row would go again after its backoff all the same.
    GONE = (smtplib.SMTPServerDisconnected, ConnectionError)

    @classmethod
    def _gone(cls, error: Exception) -> bool:
        return isinstance(error, cls.GONE) or (
            isinstance(error, smtplib.SMTPResponseException) and error.smtp_code == 421
        )

    def __init__(self) -> None:
        self._mailer: BaseEmailBackend | None = None
        self._carried = 0  # messages sent on the connection open now

    def send(self, message: EmailMultiAlternatives) -> None:
        try:
            self._send(message)
        except Exception as error:
            reused = self._carried > 0
            self.close()
            if not (reused and self._gone(error)):
                raise
            # The server ended a connection it had kept: the message goes on a new one.
            try:
                self._send(message)
            except Exception:
                self.close()
                raise

    def _send(self, message: EmailMultiAlternatives) -> None:
        if self._mailer is None:
            self._mailer = mailers.default
            self._carried = 0
            self._mailer.open()
        self._mailer.send_messages([message])
        self._carried += 1

    def close(self) -> None:
        mailer, self._mailer = self._mailer, None
        if mailer is not None:
            try:
                mailer.close()
            except Exception:  # a connection already broken: nothing to keep
                logger.debug("Closing the mail connection failed", exc_info=True)

    def __enter__(self) -> "MailSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hand_over(message: EmailMultiAlternatives, session: MailSession | None) -> None:
    if session is None:
        message.send()
    else:
        session.send(message)


def reply_journey(rows: Sequence[Notification]) -> Journey | None:
    """The journey whose conversation a reply to these rows' email joins: the one every
    row is about. None when the email is not to a customer (a staff alert), or any row is
    about no journey (a change to their details) or about another one: a reply there
    could answer any of them, and a journey's conversation is seen by its viewers and
    partners (message.posted), so it would carry words about something else to them.
    The email then asks the customer to write from the journey's page."""
    if rows[0].recipient_id is None:
        return None
    about = {row.journey_id for row in rows}
    if len(about) != 1 or None in about:
        return None
    return rows[0].journey


def send_email(rows: Sequence[Notification], session: MailSession | None = None) -> None:
    first = rows[0]
    recipient = first.recipient
    to = first.to_email or recipient.email
    replies_to = reply_journey(rows)
    reply_to = []
    if replies_to is not None:
        reply_to = [reply_address(journey_id=replies_to.pk, user_id=recipient.pk)]
    if len(rows) == 1:
        rendered = render(first)
        message = EmailMultiAlternatives(
            subject=rendered.subject,
            body=rendered.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[to],
            reply_to=reply_to,
            headers=_headers(first),
        )
        message.attach_alternative(rendered.html, "text/html")
        for name, content, mimetype in _attachments(first):
            message.attach(name, content, mimetype)
        _hand_over(message, session)
        return
    language, zone = _locale(first)
    items = [render(row) for row in rows]
    journeys = {row.journey_id for row in rows}
    with translation.override(language), timezone.override(zone):
        context = {
            "items": items,
            "recipient": recipient,
            "company_name": settings.COMPANY_NAME,
            "site_url": settings.SITE_URL,
            # Where a reply goes, said in the email when it covers several journeys.
            "reply_journey": replies_to,
        }
        subject = ngettext(
            "%(count)d update about your journey",
            "%(count)d updates about your journeys",
            len(items),
        ) % {"count": len(items)}
        if len(journeys) == 1 and first.journey is not None:
            subject = f"{first.journey.title}: " + ngettext(
                "%(count)d update", "%(count)d updates", len(items)
            ) % {"count": len(items)}
        text = render_text("notifications/email/digest.txt", context)
        html = render_to_string("notifications/email/digest.html", context)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        reply_to=reply_to,
        headers=_headers(first),
    )
    message.attach_alternative(html, "text/html")
    for row in rows:
        for name, content, mimetype in _attachments(row):
            message.attach(name, content, mimetype)
    _hand_over(message, session)


# --- SMS and web push -------------------------------------------------------------------


class LoggingSMSBackend:
    """The default: log the text (and keep it for tests). Point SMS_BACKEND at a provider."""

    sent: list[dict[str, str]] = []

    def send(self, *, to: str, text: str) -> None:
        logger.info("SMS to %s: %s", to, text)
        self.sent.append({"to": to, "text": text})


class LoggingPushBackend:
    sent: list[dict[str, str]] = []

    def send(self, *, user_id: int, title: str, body: str, url: str) -> None:
        logger.info("Push to user %s: %s — %s", user_id, title, body)
        self.sent.append({"user_id": str(user_id), "title": title, "body": body, "url": url})


class HTTPSMSBackend:
    """A provider's HTTP API: POST {"to", "text"} as JSON with a bearer token."""

    def send(self, *, to: str, text: str) -> None:
        _post_json(settings.SMS_PROVIDER_URL, settings.SMS_PROVIDER_TOKEN, {"to": to, "text": text})


class HTTPPushBackend:
    """A push gateway's HTTP API: POST {"user", "title", "body", "url"} as JSON with a bearer
    token; the gateway holds the browsers' subscriptions."""

    def send(self, *, user_id: int, title: str, body: str, url: str) -> None:
        payload = {"user": user_id, "title": title, "body": body, "url": url}
        _post_json(settings.PUSH_PROVIDER_URL, settings.PUSH_PROVIDER_TOKEN, payload)


def _post_json(url: str, token: str, payload: dict[str, object]) -> None:
    request = urllib.request.Request(  # noqa: S310 - the URL comes from settings
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        if response.status >= 300:
            raise ConnectionError(f"The provider answered {response.status}")


def _short(rows: Sequence[Notification]) -> tuple[str, str]:
    rendered = [render(row) for row in rows]
    if len(rendered) == 1:
        return rendered[0].subject, rendered[0].url
    return " · ".join(r.subject for r in rendered), rendered[0].url


def sms_text(rows: Sequence[Notification]) -> str:
    """What an SMS of these rows says: the company, the subjects, the link."""
    text, url = _short(rows)
    return f"{settings.COMPANY_NAME}: {text} {url}"


def send_sms(rows: Sequence[Notification], session: Any = None) -> None:
    backend = import_string(settings.SMS_BACKEND)()
    backend.send(to=rows[0].recipient.profile.phone, text=sms_text(rows))


def send_push(rows: Sequence[Notification], session: Any = None) -> None:
    title, url = _short(rows)
    backend = import_string(settings.PUSH_BACKEND)()
    backend.send(user_id=rows[0].recipient_id, title=settings.COMPANY_NAME, body=title, url=url)


SENDERS = {Channel.EMAIL: send_email, Channel.SMS: send_sms, Channel.PUSH: send_push}


def send(rows: Sequence[Notification], *, session: MailSession | None = None) -> None:
    """Hand one delivery (rows on one channel, for one person) to its channel; an email
    over ``session``'s connection when given, else over one of its own."""
    SENDERS[Channel(rows[0].channel)](rows, session)
