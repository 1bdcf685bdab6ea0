"""What a body must be: a JSON object (else 400 naming ``body``), whose identifiers and
codes are JSON strings (a number or a boolean is refused, never turned into a string)."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import ChangeProposal, ProfileChange
from integrations.models import IdempotencyRecord, InboundEvent, WebhookEndpoint
from journey.models import (
    Appointment,
    Checkpoint,
    CustomerTask,
    Journey,
    JourneyEvent,
    ShipmentLeg,
)
from notifications.models import Notification

pytestmark = pytest.mark.django_db

NOT_A_STRING = ["Must be a string."]


def state() -> dict[str, object]:
    """Everything a refused body might have written."""
    return {
        "inbound": InboundEvent.objects.count(),
        "events": JourneyEvent.objects.count(),
        "notifications": Notification.objects.count(),
        "legs": list(ShipmentLeg.objects.values_list("pk", "carrier", "eta")),
        "checkpoints": Checkpoint.objects.count(),
        "tasks": CustomerTask.objects.count(),
        "appointments": Appointment.objects.count(),
        "proposals": ChangeProposal.objects.count(),
        "profile_changes": ProfileChange.objects.count(),
        "webhooks": WebhookEndpoint.objects.count(),
        "journeys": Journey.objects.count(),
        "idempotency": IdempotencyRecord.objects.count(),
    }


def when(minutes: int = 3) -> str:
    return (timezone.now() - timedelta(minutes=minutes)).isoformat()


def event(**overrides: object) -> dict[str, object]:
    return {"event_id": "evt-1", "code": "S2", "occurred_at": when(), **overrides}


ENDPOINTS = [
    ("POST", "api:journey-events", {}),
    ("POST", "api:journey-profile-changes", {}),
    ("POST", "api:event-batch", None),
    ("POST", "api:journey-legs", {}),
    ("PATCH", "api:journey-leg", {"sequence": 1}),
    ("POST", "api:leg-checkpoints", {"sequence": 1}),
    ("POST", "api:journey-tasks", {}),
    ("POST", "api:journey-appointments", {}),
    ("POST", "api:webhook-list", None),
    ("POST", "api:sandbox-journeys", None),
]


@pytest.mark.parametrize("raw", ["[1, 2]", '"x"', "null", "7", "true", "[]"])
@pytest.mark.parametrize(("method", "name", "kwargs"), ENDPOINTS)
@pytest.mark.parametrize("key", [None, "retry-me"])
def test_a_body_that_is_not_an_object_is_a_400_naming_body(
    api, journey_with_leg, method, name, kwargs, raw, key
):
    journey = journey_with_leg
    path = reverse(
        name, kwargs=None if kwargs is None else {"reference": journey.reference, **kwargs}
    )
    before = state()
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    response = api.generic(method, path, raw, content_type="application/json", **headers)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "Invalid input: body.",
            "fields": {"body": ["Expected a JSON object."]},
        }
    }
    assert state() == before


def test_a_queued_event_that_is_not_an_object_is_a_400_naming_body(api, journey):
    response = api.generic(
        "POST",
        reverse("api:journey-events", kwargs={"reference": journey.reference}),
        json.dumps([event()]),
        content_type="application/json",
        HTTP_PREFER="respond-async",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"body": ["Expected a JSON object."]}
    assert InboundEvent.objects.count() == 0


def test_other_errors_keep_their_fields(api, journey):
    """Only a body that is not an object is reported under ``body``."""
    response = api.post(
        reverse("api:journey-events", kwargs={"reference": journey.reference}),
        {"code": "S2", "occurred_at": when()},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": "Invalid input: event_id.",
        "fields": {"event_id": ["This field is required."]},
    }


NOT_STRINGS = [123, 12.5, 0, True, False, {"id": "x"}, ["x"]]


@pytest.mark.parametrize("value", NOT_STRINGS)
@pytest.mark.parametrize("field", ["event_id", "code"])
@pytest.mark.parametrize("prefer", [None, "respond-async"])
def test_an_event_id_or_code_that_is_not_a_string_is_refused(api, journey, field, value, prefer):
    headers = {} if prefer is None else {"HTTP_PREFER": prefer}
    response = api.post(
        reverse("api:journey-events", kwargs={"reference": journey.reference}),
        event(**{field: value}),
        format="json",
        **headers,
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": f"Invalid input: {field}.",
        "fields": {field: NOT_A_STRING},
    }
    assert InboundEvent.objects.count() == 0
    assert JourneyEvent.objects.count() == 0


@pytest.mark.parametrize("value", NOT_STRINGS)
@pytest.mark.parametrize("field", ["event_id", "code", "journey"])
def test_a_batch_item_whose_identifier_is_not_a_string_fails_alone(api, journey, field, value):
    good = {**event(event_id="good"), "journey": journey.reference}
    bad = {**event(event_id="bad"), "journey": journey.reference, field: value}
    response = api.post(reverse("api:event-batch"), {"events": [bad, good]}, format="json")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [400, 201]
    assert results[0]["error"] == {
        "code": "invalid",
        "message": f"Invalid input: {field}.",
        "fields": {field: NOT_A_STRING},
    }
    assert list(InboundEvent.objects.values_list("event_id", flat=True)) == ["good"]


def test_a_numeric_event_id_is_not_read_as_its_string(api, journey):
    """The string "123" and the number 123 were one id: now only the string is one."""
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    assert api.post(url, event(event_id=123), format="json").status_code == 400
    assert api.post(url, event(event_id="123"), format="json").status_code == 201
    assert list(InboundEvent.objects.values_list("event_id", flat=True)) == ["123"]


@pytest.mark.parametrize("value", [7911123456, True, 44.0])
def test_a_proposed_value_that_is_not_a_string_is_refused(api, journey, customer, value):
    response = api.post(
        reverse("api:journey-profile-changes", kwargs={"reference": journey.reference}),
        {"field": "phone", "value": value, "reason": "The order form"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"value": NOT_A_STRING}
    customer.profile.refresh_from_db()
    assert customer.profile.phone == ""
    assert ChangeProposal.objects.count() == ProfileChange.objects.count() == 0


def test_an_appointments_time_zone_that_is_not_a_string_is_refused(api, journey):
    starts = (timezone.now() + timedelta(days=3)).isoformat()
    response = api.post(
        reverse("api:journey-appointments", kwargs={"reference": journey.reference}),
        {"title": "Visit", "starts_at": starts, "place_name": "X", "time_zone": 1},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"time_zone": NOT_A_STRING}
    assert Appointment.objects.count() == 0


def test_a_sandbox_template_that_is_not_a_string_is_refused(api, partner):
    response = api.post(reverse("api:sandbox-journeys"), {"template": 5}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"template": NOT_A_STRING}
    assert Journey.objects.filter(is_sandbox=True).count() == 0


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        ("api:journey-tasks", {"title": 5}, "title"),
        ("api:journey-tasks", {"title": "Sign", "description": True}, "description"),
        (
            "api:journey-legs",
            {"sequence": 2, "mode": "truck", "origin_name": 7, "destination_name": "B"},
            "origin_name",
        ),
        (
            "api:journey-profile-changes",
            {"field": "phone", "value": "+44 7911 123456", "reason": 5},
            "reason",
        ),
    ],
)
def test_text_that_is_not_a_string_is_refused_and_nothing_is_written(
    api, journey, endpoint, body, field
):
    """Free text too: the number 5 is no reason for a change, nor a task's title."""
    before = state()
    response = api.post(
        reverse(endpoint, kwargs={"reference": journey.reference}), body, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"][field] == NOT_A_STRING
    assert state() == before


@pytest.mark.parametrize("value", [1, True, 2.5])
@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        (
            "api:journey-profile-changes",
            {"value": "+44 7911 123456", "reason": "The order form"},
            "field",
        ),
        (
            "api:journey-legs",
            {
                "sequence": 2,
                "origin_name": "A",
                "origin_lat": "51.5",
                "origin_lon": "-2.7",
                "destination_name": "B",
                "destination_lat": "52.4",
                "destination_lon": "-1.5",
            },
            "mode",
        ),
    ],
)
def test_a_choice_that_is_not_a_string_is_refused_as_text_is(
    api, journey, endpoint, body, field, value
):
    """A choice says what every other text field says of a number ("Must be a string."),
    not that 1 is "not a valid choice", which suggests another number might be."""
    before = state()
    response = api.post(
        reverse(endpoint, kwargs={"reference": journey.reference}),
        {**body, field: value},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {field: NOT_A_STRING}
    assert state() == before


def test_a_webhooks_event_type_that_is_not_a_string_is_refused(api, partner):
    response = api.post(
        reverse("api:webhook-list"),
        {"url": "https://partner.example/hook", "event_types": ["task.completed", 3]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"event_types": {"1": NOT_A_STRING}}
    assert WebhookEndpoint.objects.count() == 0


def test_a_choice_given_as_a_string_is_still_checked_against_the_choices(api, journey):
    response = api.post(
        reverse("api:journey-profile-changes", kwargs={"reference": journey.reference}),
        {"field": "shoe_size", "value": "9", "reason": "The order form"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"field": ['"shoe_size" is not a valid choice.']}


@pytest.mark.parametrize(
    ("method", "name", "kwargs", "body", "said"),
    [
        ("PATCH", "api:journey-leg", {"sequence": 1}, {"sequence": 6}, "Not a field"),
        ("POST", "api:journey-tasks", {}, {"title": "Sign", "done_at": when()}, "Read back only"),
        ("POST", "api:journey-tasks", {}, {"title": "Sign", "id": 9}, "Read back only"),
        ("POST", "api:journey-tasks", {}, {"title": "Sign", "due": "2027-01-01"}, "Not a field"),
        (
            "POST",
            "api:journey-profile-changes",
            {},
            {"field": "phone", "value": "+44 7911 123456", "reason": "r", "notify": False},
            "Not a field",
        ),
        (
            "POST",
            "api:webhook-list",
            None,
            {"url": "https://p.example/h", "event_types": ["task.completed"], "active": False},
            "Not a field",
        ),
    ],
)
def test_a_key_the_request_cannot_set_is_refused_by_name(
    api, journey_with_leg, method, name, kwargs, body, said
):
    """DRF drops them: the leg's sequence stayed 1 and the client believed it was 6."""
    journey = journey_with_leg
    path = reverse(
        name, kwargs=None if kwargs is None else {"reference": journey.reference, **kwargs}
    )
    before = state()
    response = api.generic(method, path, json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    [(key, [problem])] = fields.items()
    assert key in body and problem.startswith(said)
    assert state() == before


def test_an_event_keeps_its_other_keys_as_sent(api, journey):
    response = api.post(
        reverse("api:journey-events", kwargs={"reference": journey.reference}),
        event(plant="VLC"),
        format="json",
    )
    assert response.status_code == 201
    assert InboundEvent.objects.get().payload["plant"] == "VLC"
