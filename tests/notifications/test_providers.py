"""SMS and push pointed at a provider by settings: a local HTTP server plays the provider."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from notifications import services
from notifications.models import NotificationState
from tests.factories import UserFactory
from tests.notifications.test_timing import by_channel, enqueue

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider():
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        status = 202

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(
                {"auth": self.headers["Authorization"], "body": json.loads(self.rfile.read(length))}
            )
            self.send_response(Handler.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/send", received, Handler
    server.shutdown()


def test_sms_and_push_reach_the_configured_providers(settings, provider):
    url, received, _handler = provider
    settings.SMS_BACKEND = "notifications.channels.HTTPSMSBackend"
    settings.SMS_PROVIDER_URL, settings.SMS_PROVIDER_TOKEN = url, "sms-token"
    settings.PUSH_BACKEND = "notifications.channels.HTTPPushBackend"
    settings.PUSH_PROVIDER_URL, settings.PUSH_PROVIDER_TOKEN = url, "push-token"
    user = UserFactory(
        profile__phone="+447911123456",
        profile__channel_sms=True,
        profile__channel_push=True,
        profile__channel_email=False,
    )
    rows = by_channel(enqueue(user, "p"))
    for channel in ("sms", "push"):
        assert services.notification_deliver(notification_id=rows[channel].pk) == "sent"
    sms, push = received
    assert sms["auth"] == "Bearer sms-token"
    assert sms["body"]["to"] == "+447911123456" and "Paint" in sms["body"]["text"]
    assert push["auth"] == "Bearer push-token"
    assert push["body"]["user"] == user.pk and "Paint" in push["body"]["body"]


def test_a_provider_error_is_retried_later(settings, provider):
    url, _received, handler = provider
    handler.status = 500
    settings.SMS_BACKEND = "notifications.channels.HTTPSMSBackend"
    settings.SMS_PROVIDER_URL = url
    user = UserFactory(
        profile__phone="+447911123456", profile__channel_sms=True, profile__channel_email=False
    )
    sms = by_channel(enqueue(user, "e"))["sms"]
    assert services.notification_deliver(notification_id=sms.pk) == NotificationState.PENDING
    sms.refresh_from_db()
    assert "500" in sms.last_error


def test_push_alone_is_no_way_to_reach_a_customer():
    """The portal registers no browser for push yet: a customer who had chosen only push
    heard nothing outside the portal. Email goes too (or a text, with a number)."""
    from notifications.models import Channel

    user = UserFactory(profile__channel_push=True, profile__channel_email=False)
    assert services.recipient_channels(recipient=user) == [
        Channel.INAPP,
        Channel.PUSH,
        Channel.EMAIL,
    ]
    user.profile.phone = "+447911123456"
    assert services.recipient_channels(recipient=user) == [
        Channel.INAPP,
        Channel.PUSH,
        Channel.SMS,
    ]
