"""Outbound webhooks: fan-out in the caller's transaction, Standard Webhooks signatures,
delivery to a real local receiver, retries with backoff, the attempt log, send again."""

import base64
import hashlib
import hmac
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import time_machine
from django.contrib.admin.sites import site
from django.db import transaction
from django.test import RequestFactory
from django.utils import timezone

from integrations.admin import WebhookDeliveryAdmin
from integrations.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from integrations.webhooks import (
    MAX_ATTEMPTS,
    RETRY_SCHEDULE,
    webhook_deliver,
    webhook_emit,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_redeliver,
    webhook_sign,
    webhook_sweep,
)
from journey.errors import ApplicationError
from tests.factories import PartnerFactory, UserFactory

pytestmark = pytest.mark.django_db

# The Standard Webhooks specification's published test vector.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that answers as told and records what it got."""

    def __init__(self) -> None:
        self.behaviour = "ok"
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.paths.append(self.path)
                if receiver.behaviour == "slow":
                    time.sleep(1.5)  # longer than the test's read timeout
                status = 500 if receiver.behaviour == "error" else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"boom" if status == 500 else b"thanks")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def endpoint(partner, receiver, settings) -> WebhookEndpoint:
    settings.WEBHOOK_TIMEOUT = (0.5, 0.5)
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True  # the receiver is on 127.0.0.1
    return webhook_endpoint_create(
        partner=partner, url=receiver.url, event_types=["task.completed", "message.posted"]
    )


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does (the docs show the same code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(sig.partition(",")[2], expected)
        for sig in headers["webhook-signature"].split()
    )


def test_the_signature_matches_the_standard_webhooks_test_vector():
    signature = webhook_sign(
        secret=VECTOR_SECRET, message_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP, body=VECTOR_BODY
    )
    assert signature == VECTOR_SIGNATURE


def test_emit_writes_one_delivery_per_subscribed_endpoint_in_the_callers_transaction(
    journey, partner, endpoint, django_capture_on_commit_callbacks
):
    webhook_endpoint_create(
        partner=partner, url="https://a.example/x", event_types=["message.posted"]
    )
    stranger = PartnerFactory()  # does not serve the journey
    webhook_endpoint_create(
        partner=stranger, url="https://b.example/x", event_types=["task.completed"]
    )

    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        deliveries = webhook_emit(
            event_type="task.completed", journey=journey, data={"task": {"id": 7}}
        )
    assert [d.endpoint for d in deliveries] == [endpoint]
    assert len(callbacks) == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.payload["type"] == "task.completed"
    assert delivery.payload["data"] == {"journey": journey.reference, "task": {"id": 7}}
    # As documented: "2026-11-26T10:31:02.511Z", as every time inside it.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", delivery.payload["timestamp"])
    assert delivery.state == DeliveryState.PENDING


def test_every_time_in_a_delivery_is_utc_with_milliseconds(journey, endpoint):
    """A reschedule request's choices went as the place's "2027-01-20T11:00:00+01:00"."""
    from zoneinfo import ZoneInfo

    madrid = datetime(2027, 1, 20, 11, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    [delivery] = webhook_emit(
        event_type="task.completed", journey=journey, data={"at": madrid, "none": None}
    )
    assert delivery.payload["data"]["at"] == "2027-01-20T10:00:00.000Z"
    assert delivery.payload["data"]["none"] is None


def test_emit_is_undone_with_the_callers_transaction(journey, endpoint):
    with pytest.raises(RuntimeError), transaction.atomic():
        webhook_emit(event_type="task.completed", journey=journey, data={})
        raise RuntimeError
    assert WebhookDelivery.objects.count() == 0


def test_an_unknown_event_type_is_refused(journey, endpoint):
    with pytest.raises(ApplicationError):
        webhook_emit(event_type="task.deleted", journey=journey, data={})
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.parametrize(
    ("url", "types"),
    [
        ("ftp://x.example/hook", ["task.completed"]),
        ("javascript:alert(1)", ["task.completed"]),
        ("http://[::1/hook", ["task.completed"]),
        ("http://x.example:99999/hook", ["task.completed"]),
        ("http://./hook", ["task.completed"]),
        ("https://x.example/hook", []),
        ("https://x.example/hook", ["task.completed", "nope"]),
    ],
)
def test_a_bad_endpoint_is_refused(partner, url, types):
    with pytest.raises(ApplicationError):
        webhook_endpoint_create(partner=partner, url=url, event_types=types)
    assert WebhookEndpoint.objects.count() == 0


def test_a_delivery_is_signed_and_logged(
    journey, endpoint, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        webhook_emit(event_type="task.completed", journey=journey, data={"task": {"id": 7}})

    delivery = WebhookDelivery.objects.get()
    assert delivery.state == DeliveryState.DELIVERED
    assert delivery.attempts == 1
    [(headers, body)] = receiver.requests
    assert headers["webhook-id"] == delivery.message_id
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-signature"].startswith("v1,")
    assert verify(endpoint.secret, headers, body)
    assert json.loads(body)["data"]["task"] == {"id": 7}
    attempt = delivery.attempt_log.get()
    assert (attempt.status_code, attempt.response_excerpt, attempt.error) == (200, "thanks", "")


def test_while_rotating_both_secrets_sign(journey, endpoint, receiver):
    old = endpoint.secret
    endpoint = webhook_endpoint_rotate_secret(endpoint=endpoint)
    [delivery] = webhook_emit(event_type="message.posted", journey=journey, data={})
    assert webhook_deliver(delivery_id=delivery.pk) == DeliveryState.DELIVERED

    [(headers, body)] = receiver.requests
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(old, headers, body)
    assert verify(endpoint.secret, headers, body)

    # After the overlap only the new secret signs.
    receiver.requests.clear()
    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        [later] = webhook_emit(event_type="message.posted", journey=journey, data={})
        webhook_deliver(delivery_id=later.pk)
    [(headers, body)] = receiver.requests
    assert len(headers["webhook-signature"].split()) == 1
    assert verify(endpoint.secret, headers, body) and not verify(old, headers, body)


@pytest.mark.parametrize(
    ("behaviour", "status", "error"), [("error", 500, "HTTP 500"), ("slow", None, "ReadTimeout")]
)
def test_a_failing_receiver_is_retried_with_backoff_and_every_attempt_logged(
    journey, endpoint, receiver, behaviour, status, error
):
    receiver.behaviour = behaviour
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})
    now = timezone.now()

    with time_machine.travel(now, tick=False):
        assert webhook_deliver(delivery_id=delivery.pk) == DeliveryState.PENDING
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == now + RETRY_SCHEDULE[0]
    attempt = delivery.attempt_log.get()
    assert attempt.status_code == status
    assert error in attempt.error
    if status == 500:
        assert attempt.response_excerpt == "boom"

    # Not due yet: the sweep leaves it alone.
    with time_machine.travel(now + timedelta(seconds=1), tick=False):
        assert webhook_sweep() == 0
    assert delivery.attempt_log.count() == 1


@pytest.mark.parametrize("behaviour", ["error", "slow"])  # "slow": the receiver times out
def test_retries_span_more_than_24_hours_then_the_delivery_fails(
    journey, endpoint, receiver, behaviour
):
    receiver.behaviour = behaviour
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})
    start = timezone.now()
    moment = start
    for _ in range(MAX_ATTEMPTS):
        with time_machine.travel(moment, tick=False):
            webhook_sweep()
        delivery.refresh_from_db()
        moment = delivery.next_attempt_at
    assert delivery.state == DeliveryState.FAILED
    assert delivery.attempts == MAX_ATTEMPTS == 8
    assert delivery.attempt_log.count() == 8
    if behaviour == "slow":
        assert all("ReadTimeout" in a.error for a in delivery.attempt_log.all())
    last = delivery.attempt_log.order_by("-attempted_at").first().attempted_at
    assert last - start > timedelta(hours=24)


def test_the_sweep_delivers_when_the_receiver_recovers(journey, endpoint, receiver):
    receiver.behaviour = "error"
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})
    webhook_deliver(delivery_id=delivery.pk)
    receiver.behaviour = "ok"
    with time_machine.travel(timezone.now() + timedelta(seconds=6)):
        assert webhook_sweep() == 1
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 200]
    # Delivering again does nothing: the row is no longer pending.
    assert webhook_deliver(delivery_id=delivery.pk) is None
    assert len(receiver.requests) == 2


def test_a_url_the_receiver_cannot_reach_is_logged_as_an_error(journey, partner, settings):
    settings.WEBHOOK_TIMEOUT = (0.5, 0.5)
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    webhook_endpoint_create(
        partner=partner, url="http://127.0.0.1:9/hook", event_types=["task.completed"]
    )
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})
    assert webhook_deliver(delivery_id=delivery.pk) == DeliveryState.PENDING
    attempt = delivery.attempt_log.get()
    assert attempt.status_code is None
    assert attempt.error.startswith("ConnectionError")


def test_send_again_from_the_admin(journey, endpoint, receiver, django_capture_on_commit_callbacks):
    receiver.behaviour = "error"
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})
    webhook_deliver(delivery_id=delivery.pk)
    receiver.behaviour = "ok"
    request = RequestFactory().post("/admin/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    request._messages = type("M", (), {"add": lambda *a, **k: None})()
    admin = WebhookDeliveryAdmin(WebhookDelivery, site)

    with django_capture_on_commit_callbacks(execute=True):
        admin.send_again(request, WebhookDelivery.objects.filter(pk=delivery.pk))

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 200]


def test_redeliver_resends_a_failed_delivery(
    journey, endpoint, receiver, django_capture_on_commit_callbacks
):
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state=DeliveryState.FAILED, attempts=8)
    with django_capture_on_commit_callbacks(execute=True):
        webhook_redeliver(delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    assert len(receiver.requests) == 1


def test_the_admin_pages_render(admin_client, journey, endpoint, receiver):
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})
    webhook_deliver(delivery_id=delivery.pk)
    assert admin_client.get("/admin/integrations/webhookdelivery/").status_code == 200
    page = admin_client.get(f"/admin/integrations/webhookdelivery/{delivery.pk}/change/")
    assert page.status_code == 200
    assert "thanks" in page.content.decode()
    assert admin_client.get("/admin/integrations/webhookendpoint/").status_code == 200


# --- Only public addresses (server-side request forgery) ---------------------------------

PUBLIC_IP = "93.184.215.14"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://127.1:8080/hook", "loopback"),
        ("http://2130706433/hook", "loopback"),  # 127.0.0.1 as one number
        ("http://0x7f.1/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),  # IPv4-mapped IPv6
        ("http://[::ffff:a00:1]/hook", "private"),  # ::ffff:10.0.0.1
        ("http://[64:ff9b::a9fe:a9fe]/hook", "link-local"),  # NAT64 of 169.254.169.254
        ("http://10.0.0.5/hook", "private"),
        ("http://172.16.3.4/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://[fd12:3456::1]/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),  # cloud metadata
        ("http://[fe80::1]/hook", "link-local"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://[ff02::1]/hook", "multicast"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://[::]/hook", "unspecified"),
        ("http://240.0.0.1/hook", "private"),  # reserved (Python files it as private too)
        ("http://100.64.0.1/hook", "non-public"),  # carrier-grade NAT
        ("https://intranet.partner.example/hook", "private"),
        ("https://mixed.partner.example/hook", "loopback"),  # one bad address is enough
    ],
)
def test_an_endpoint_on_a_non_public_address_is_refused(partner, dns, url, reason):
    dns["intranet.partner.example"] = ["10.1.2.3"]
    dns["mixed.partner.example"] = [PUBLIC_IP, "127.0.0.1"]
    with pytest.raises(ApplicationError) as refused:
        webhook_endpoint_create(partner=partner, url=url, event_types=["task.completed"])
    [message] = refused.value.fields["url"]
    assert f" {reason} address" in message
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.partner.example/in",  # resolves to a public address
        f"https://{PUBLIC_IP}:8443/in",  # any port
        "https://[2606:4700::1111]/in",
        "https://[64:ff9b::808:808]/in",  # NAT64 of a public address
        "https://not-yet.partner.example/in",  # no address yet: checked at each send
        "https://bücher.partner.example/in",  # an international name (IDNA)
    ],
)
def test_an_endpoint_on_a_public_address_is_accepted(partner, dns, url):
    dns["hooks.partner.example"] = [PUBLIC_IP, "2606:4700::1111"]
    dns["xn--bcher-kva.partner.example"] = [PUBLIC_IP]
    endpoint = webhook_endpoint_create(partner=partner, url=url, event_types=["task.completed"])
    assert endpoint.url == url


def test_the_real_resolver_is_used_for_names(partner, monkeypatch):
    """localhost is refused through the system's resolver, not only the tests' table."""
    monkeypatch.setattr(
        "integrations.egress._getaddrinfo",
        lambda host, port: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM),
    )
    with pytest.raises(ApplicationError) as refused:
        webhook_endpoint_create(
            partner=partner, url="http://localhost:8000/hook", event_types=["task.completed"]
        )
    assert "loopback" in refused.value.fields["url"][0]


def test_a_name_rebound_to_a_private_address_is_refused_at_send_and_fails_at_once(
    journey, partner, receiver, dns, settings
):
    """DNS rebinding: public when registered, 127.0.0.1 when sent. Nothing reaches the
    address, the delivery fails at once with the reason, and is not retried."""
    port = receiver.server.server_address[1]
    dns["rebind.partner.example"] = [PUBLIC_IP]
    webhook_endpoint_create(
        partner=partner,
        url=f"http://rebind.partner.example:{port}/hook",
        event_types=["task.completed"],
    )
    dns["rebind.partner.example"] = ["127.0.0.1"]
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})

    assert webhook_deliver(delivery_id=delivery.pk) == DeliveryState.FAILED
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 1)
    attempt = delivery.attempt_log.get()
    assert attempt.status_code is None
    assert attempt.error == (
        "Refused: rebind.partner.example (127.0.0.1) is a loopback address; "
        "webhooks go to public addresses only."
    )
    assert receiver.requests == []
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        assert webhook_sweep() == 0
    assert delivery.attempt_log.count() == 1


def test_the_request_goes_to_the_address_that_was_checked(
    journey, partner, receiver, dns, settings
):
    """Only the check resolves the name (the tests' table knows it, the system's resolver
    does not): the connection is made to the checked address, with the name as Host."""
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    port = receiver.server.server_address[1]
    dns["pinned.partner.example"] = ["127.0.0.1"]
    webhook_endpoint_create(
        partner=partner,
        url=f"http://user:p%40ss@pinned.partner.example:{port}/hook?via=milepost",
        event_types=["task.completed"],
    )
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})

    assert webhook_deliver(delivery_id=delivery.pk) == DeliveryState.DELIVERED
    [(headers, _body)] = receiver.requests
    assert headers["host"] == f"pinned.partner.example:{port}"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert receiver.paths == ["/hook?via=milepost"]


def test_a_name_that_does_not_resolve_is_retried(journey, partner, settings):
    webhook_endpoint_create(
        partner=partner, url="https://gone.partner.example/hook", event_types=["task.completed"]
    )
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})
    assert webhook_deliver(delivery_id=delivery.pk) == DeliveryState.PENDING
    assert delivery.attempt_log.get().error.startswith(
        "DNS: could not resolve gone.partner.example"
    )


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` and its key, the certificate being its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = timezone.now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.mark.parametrize(
    ("certificate_name", "state"),
    [("secure.partner.example", DeliveryState.DELIVERED), ("other.example", DeliveryState.PENDING)],
)
def test_https_checks_the_certificate_against_the_name_not_the_address(
    journey, partner, receiver, dns, settings, tmp_path, monkeypatch, certificate_name, state
):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    settings.WEBHOOK_TIMEOUT = (0.5, 0.5)
    cert_file, key_file = self_signed(tmp_path, certificate_name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    monkeypatch.setattr("integrations.egress.certifi.where", lambda: str(cert_file))
    dns["secure.partner.example"] = ["127.0.0.1"]
    port = receiver.server.server_address[1]
    webhook_endpoint_create(
        partner=partner,
        url=f"https://secure.partner.example:{port}/hook",
        event_types=["task.completed"],
    )
    [delivery] = webhook_emit(event_type="task.completed", journey=journey, data={})

    assert webhook_deliver(delivery_id=delivery.pk) == state
    attempt = delivery.attempt_log.get()
    if state == DeliveryState.DELIVERED:
        assert (attempt.status_code, attempt.error) == (200, "")
    else:
        assert attempt.error.startswith("SSLError")
        assert "secure.partner.example" in attempt.error
        assert receiver.requests == []


def test_staff_cannot_point_an_endpoint_at_a_private_address(admin_client, partner):
    response = admin_client.post(
        "/admin/integrations/webhookendpoint/add/",
        {
            "partner": partner.pk,
            "url": "http://169.254.169.254/latest/meta-data/",
            "event_types": '["task.completed"]',
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "link-local address" in response.content.decode()
    assert WebhookEndpoint.objects.count() == 0
