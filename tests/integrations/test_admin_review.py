"""A staff review of the partners' admin: webhook endpoints are checked as the API checks
them (a form error, never a 500), "Send again" needs the change permission, and Managers
apply the events whose codes they have just mapped without editing an event."""

import io
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.mfa import totp_activate
from accounts.roles import AGENTS, MANAGERS
from integrations.models import (
    DeliveryState,
    InboundEvent,
    StatusMapping,
    WebhookDelivery,
    WebhookEndpoint,
)
from integrations.webhooks import webhook_endpoint_create
from tests.factories import PartnerFactory, UserFactory

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.partner.example/milepost"


def staff_in(client, group_name: str):
    call_command("setup_roles", stdout=io.StringIO())
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    totp_activate(user=user)
    client.force_login(user)
    return user


# --- Webhook endpoints -------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_types",
    [
        ["task.done"],  # as the checkboxes would post an unknown one
        '["task.done"]',  # as the old JSON box took it
        [],
    ],
)
def test_adding_an_endpoint_with_unknown_event_types_is_a_form_error(admin_client, event_types):
    partner = PartnerFactory()
    response = admin_client.post(
        reverse("admin:integrations_webhookendpoint_add"),
        {"partner": partner.pk, "url": HOOK, "event_types": event_types, "is_active": "on"},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["event_types"]
    unknown = event_types if isinstance(event_types, str) else "task.done"
    assert errors["event_types"] == (
        [f"{unknown} is not an event type."] if event_types else ["Choose at least one event type."]
    )
    assert WebhookEndpoint.objects.count() == 0


def test_an_endpoint_is_added_with_known_event_types_and_its_secret_shown_once(admin_client):
    partner = PartnerFactory()
    response = admin_client.post(
        reverse("admin:integrations_webhookendpoint_add"),
        {
            "partner": partner.pk,
            "url": HOOK,
            "event_types": ["task.completed", "message.posted"],
            "is_active": "on",
        },
        follow=True,
    )
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.partner, endpoint.url, endpoint.event_types) == (
        partner,
        HOOK,
        ["message.posted", "task.completed"],
    )
    texts = [str(m) for m in response.context["messages"]]
    assert f"The signing secret (shown only now): {endpoint.secret}" in texts


def test_editing_an_endpoint_checks_its_event_types_and_url(admin_client):
    endpoint = webhook_endpoint_create(
        partner=PartnerFactory(), url=HOOK, event_types=["task.completed"]
    )
    url = reverse("admin:integrations_webhookendpoint_change", args=[endpoint.pk])
    base = {"partner": endpoint.partner_id, "url": HOOK, "is_active": "on"}
    page = admin_client.get(url).content.decode()
    assert 'type="checkbox" name="event_types" value="task.completed"' in page

    for event_types in (["task.done", "task.completed"], '["task.done","anything"]'):
        response = admin_client.post(url, {**base, "event_types": event_types})
        assert response.status_code == 200
        assert "event_types" in response.context["adminform"].form.errors
    # A private address is refused with its reason, as the API refuses it.
    response = admin_client.post(
        url, {**base, "url": "http://127.0.0.1:8080/hook", "event_types": ["task.completed"]}
    )
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["url"]
    assert error.startswith("This webhook URL cannot be used: ")
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.event_types) == (HOOK, ["task.completed"])
    assert LogEntry.objects.count() == 0

    response = admin_client.post(
        url, {**base, "event_types": ["profile_change.answered", "task.completed"]}
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.event_types == ["profile_change.answered", "task.completed"]


def test_a_refusal_while_creating_an_endpoint_saves_nothing(admin_client, monkeypatch):
    """The URL's host may resolve elsewhere between the form's check and the service's:
    the service's refusal is said, not a 500."""
    from journey.errors import ApplicationError

    def refused(**kwargs: object) -> None:
        raise ApplicationError("This webhook URL cannot be used: a private address.")

    monkeypatch.setattr("integrations.admin.webhook_endpoint_create", refused)
    response = admin_client.post(
        reverse("admin:integrations_webhookendpoint_add"),
        {
            "partner": PartnerFactory().pk,
            "url": HOOK,
            "event_types": ["task.completed"],
            "is_active": "on",
        },
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "Nothing was saved: This webhook URL cannot be used: a private address."
    ]
    assert (WebhookEndpoint.objects.count(), LogEntry.objects.count()) == (0, 0)


# --- Webhook deliveries: "Send again" ----------------------------------------------------


@pytest.fixture
def failed_delivery(journey, monkeypatch) -> WebhookDelivery:
    queued: list[int] = []
    monkeypatch.setattr("integrations.webhooks._queue", queued.append)
    endpoint = webhook_endpoint_create(
        partner=PartnerFactory(), url=HOOK, event_types=["task.completed"]
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        journey=journey,
        message_id="msg_1",
        event_type="task.completed",
        payload={"type": "task.completed"},
        state=DeliveryState.FAILED,
        attempts=8,
        next_attempt_at=timezone.now() - timedelta(days=1),
    )
    delivery.queued = queued
    return delivery


def send_again(client, delivery: WebhookDelivery):
    return client.post(
        reverse("admin:integrations_webhookdelivery_changelist"),
        {"action": "send_again", "_selected_action": [str(delivery.pk)]},
        follow=True,
    )


def test_an_agent_cannot_send_a_webhook_again(client, failed_delivery):
    staff_in(client, AGENTS)
    listing = client.get(reverse("admin:integrations_webhookdelivery_changelist"))
    assert listing.status_code == 200  # Agents view deliveries
    assert "send_again" not in listing.content.decode()

    send_again(client, failed_delivery)

    failed_delivery.refresh_from_db()
    assert (failed_delivery.state, failed_delivery.attempts) == (DeliveryState.FAILED, 8)
    assert failed_delivery.queued == []


def test_a_manager_sends_a_webhook_again_but_does_not_edit_a_delivery(
    client, failed_delivery, django_capture_on_commit_callbacks
):
    staff_in(client, MANAGERS)
    with django_capture_on_commit_callbacks(execute=True):
        response = send_again(client, failed_delivery)
    assert "Queued 1 deliveries to be sent again." in [str(m) for m in response.context["messages"]]
    failed_delivery.refresh_from_db()
    assert (failed_delivery.state, failed_delivery.attempts) == (DeliveryState.PENDING, 0)
    assert failed_delivery.queued == [failed_delivery.pk]
    url = reverse("admin:integrations_webhookdelivery_change", args=[failed_delivery.pk])
    assert client.get(url).context["has_change_permission"] is False
    assert client.post(url, {"state": "delivered"}).status_code == 403


# --- Inbound events: Managers apply them once mapped -------------------------------------


@pytest.fixture
def unmapped_event(api, journey, partner) -> InboundEvent:
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    occurred = (timezone.now() - timedelta(minutes=2)).isoformat()
    body = {"event_id": "u1", "code": "LATE-MAP", "occurred_at": occurred}
    assert api.post(url, body, format="json").json()["state"] == "unmapped"
    StatusMapping.objects.create(partner=partner, code="LATE-MAP", stage_key="stage-3")
    return InboundEvent.objects.get(event_id="u1")


def apply_mapped(client, event: InboundEvent):
    return client.post(
        reverse("admin:integrations_inboundevent_changelist"),
        {"action": "apply_with_current_mappings", "_selected_action": [str(event.pk)]},
        follow=True,
    )


def test_a_manager_applies_the_events_whose_codes_they_mapped(
    client, journey, unmapped_event, django_capture_on_commit_callbacks
):
    staff_in(client, MANAGERS)
    with django_capture_on_commit_callbacks(execute=True):
        response = apply_mapped(client, unmapped_event)
    assert [str(m) for m in response.context["messages"]] == [
        "1 applied; 0 logged as older than their journey's state (on its timeline, moving "
        "nothing); 0 refused (see their rejection); 0 left as they were (applied already, "
        "still unmapped, refused for another reason, or of a journey the partner no longer "
        "serves)."
    ]
    unmapped_event.refresh_from_db()
    assert unmapped_event.state == "applied"
    assert journey.milestones.get(stage__key="stage-3").state == "current"


def test_a_manager_cannot_edit_an_inbound_event(client, unmapped_event):
    staff_in(client, MANAGERS)
    url = reverse("admin:integrations_inboundevent_change", args=[unmapped_event.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert 'name="code"' not in page.content.decode()
    response = client.post(url, {"code": "FORGED", "unmapped": "", "event_id": "u1"})
    assert response.status_code == 403
    unmapped_event.refresh_from_db()
    assert (unmapped_event.code, unmapped_event.unmapped) == ("LATE-MAP", True)


def test_an_agent_cannot_apply_inbound_events(client, unmapped_event):
    staff_in(client, AGENTS)
    listing = client.get(reverse("admin:integrations_inboundevent_changelist"))
    assert listing.status_code == 200
    assert "apply_with_current_mappings" not in listing.content.decode()

    apply_mapped(client, unmapped_event)

    unmapped_event.refresh_from_db()
    assert (unmapped_event.state, unmapped_event.unmapped) == ("unmapped", True)
