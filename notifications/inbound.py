"""Replies by email: a mail provider's inbound route posts the raw MIME message here.

The POST is signed like the provider's own webhooks: headers ``X-Milepost-Timestamp`` (Unix
seconds) and ``X-Milepost-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with
INBOUND_EMAIL_SECRET. The reply address (reply+<token>@REPLY_DOMAIN) names the journey and
the customer; the quoted part of the email is stripped before it joins the conversation.
"""

import email
import email.policy
import hashlib
import hmac
import re
import time
from email.message import EmailMessage
from email.utils import getaddresses

from django.conf import settings
from django.utils.html import strip_tags

from accounts.models import User
from journey.errors import ApplicationError
from journey.models import Journey, Message
from journey.services import message_post
from notifications.channels import parse_reply_address

MAX_AGE_SECONDS = 300
# Where a reply's quoted history starts, in the mail clients customers use.
QUOTE_STARTS = [
    re.compile(r"^On .{5,200} wrote:\s*$"),
    re.compile(r"^El .{5,200} escribió:\s*$"),
    re.compile(r"^Le .{5,200} a écrit\s*:\s*$"),
    re.compile(r"^Am .{5,200} schrieb .{1,200}:\s*$"),
    re.compile(r"^-{2,}\s*Original Message\s*-{2,}\s*$", re.I),
    re.compile(r"^-{2,}\s*Mensaje original\s*-{2,}\s*$", re.I),
    re.compile(r"^_{10,}\s*$"),
    re.compile(r"^From: .+$"),
    re.compile(r"^De: .+$"),
    re.compile(r"^Sent from my .+$"),
    re.compile(r"^Enviado desde mi .+$"),
]


def sign(body: bytes, timestamp: int, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={digest.hexdigest()}"


def verify(*, body: bytes, timestamp: str, signature: str, now: float | None = None) -> None:
    secret = settings.INBOUND_EMAIL_SECRET
    if not secret:
        raise ApplicationError(
            "Inbound email is not configured.", code="not_configured", status=403
        )
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError) as error:
        raise ApplicationError(
            "Missing or bad timestamp.", code="bad_signature", status=403
        ) from error
    if abs((now or time.time()) - stamp) > MAX_AGE_SECONDS:
        raise ApplicationError("The timestamp is too old.", code="bad_signature", status=403)
    if not signature or not hmac.compare_digest(sign(body, stamp, secret), signature):
        raise ApplicationError("The signature does not match.", code="bad_signature", status=403)


def strip_quoted(text: str) -> str:
    """The new part of a reply: everything before the quoted history and the signature."""
    kept = []
    for line in text.replace("\r\n", "\n").split("\n"):
        stripped = line.strip()
        if stripped == "--" or any(pattern.match(stripped) for pattern in QUOTE_STARTS):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line.rstrip())
    return "\n".join(kept).strip()


def _text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part.get_content()
    if part.get_content_type() == "text/html":
        content = strip_tags(re.sub(r"<(br|/p|/div)\s*/?>", "\n", content, flags=re.I))
    return content


def parse(raw: bytes) -> EmailMessage:
    if not raw.strip():
        raise ApplicationError("The body is empty; send the raw MIME message.", code="not_mime")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    if not message.keys() or message.get("From") is None:
        raise ApplicationError("The body is not a MIME email message.", code="not_mime")
    return message


def receive(raw: bytes) -> Message:
    """Add a reply to its journey's conversation as the customer's message."""
    message = parse(raw)
    addresses = [
        address
        for header in ("Delivered-To", "X-Original-To", "To", "Cc")
        for _name, address in getaddresses(message.get_all(header, []))
    ]
    target = next(filter(None, (parse_reply_address(a) for a in addresses)), None)
    if target is None:
        raise ApplicationError(
            "No genuine reply address among the recipients.", code="unknown_address", status=404
        )
    journey_id, user_id = target
    journey = Journey.objects.filter(pk=journey_id, owner_id=user_id).first()
    author = User.objects.filter(pk=user_id, is_active=True).first()
    if journey is None or author is None:
        raise ApplicationError(
            "That conversation no longer exists.", code="unknown_address", status=404
        )
    body = strip_quoted(_text_of(message))
    if not body:
        raise ApplicationError("The reply has no new text.", code="empty")
    return message_post(journey=journey, author=author, body=body, via="email")
