"""The partner API's status events, and the slice through the spine to the customer."""

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIClient

from integrations.api.auth import journey_read_with_key
from integrations.models import IdempotencyRecord, InboundEvent
from integrations.services import (
    partner_key_authenticate_serving,
    partner_key_create,
    partner_key_revoke,
)
from journey.models import Journey, JourneyEvent, MilestoneState
from notifications.models import Notification, NotificationState
from tests.factories import PASSWORD, PartnerFactory, make_journey

pytestmark = pytest.mark.django_db


def events_url(journey) -> str:
    return reverse("api:journey-events", kwargs={"reference": journey.reference})


def body(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "event_id": "evt-1",
        "code": "S2",
        "occurred_at": (timezone.now() - timedelta(minutes=3)).isoformat(),
        "data": {"plant": "VLC", "line": 4},
    }
    data.update(overrides)
    return data


def nothing_written() -> bool:
    return (
        InboundEvent.objects.count() == 0
        and JourneyEvent.objects.count() == 0
        and Notification.objects.count() == 0
    )


def test_partner_event_reaches_the_customer_by_email_and_on_the_journey_page(
    api, journey, customer, client, django_capture_on_commit_callbacks
):
    """The thin slice: API → spine (event, milestone, outbox row) → task → email → page."""
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(events_url(journey), body(), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["applied"] is True
    assert response.json()["warnings"] == []
    # After commit: the delivery, queued once, and the unit of work's flush check.
    assert len(callbacks) == 2
    milestone = journey.milestones.get(stage__key="stage-2")
    assert milestone.state == MilestoneState.CURRENT
    event = JourneyEvent.objects.get()
    assert event.milestone == milestone
    assert event.payload["data"] == {"plant": "VLC", "line": 4}
    notification = Notification.objects.get(channel="email")
    assert notification.state == NotificationState.SENT
    assert notification.sent_at is not None
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == [customer.email]
    assert email.subject == "Test journey: Stage 2"
    page_url = reverse("journey:detail", kwargs={"reference": journey.reference})
    assert page_url in email.body
    assert email.alternatives[0].mimetype == "text/html"

    client.login(email=customer.email, password=PASSWORD)
    page = client.get(page_url)
    assert page.status_code == 200
    html = page.content.decode()
    assert f'id="m-{milestone.pk}"' in html
    assert 'class="step step--current"' in html
    assert "Stage 2" in html and "step 2 of 4" in html


def test_the_same_event_id_again_changes_nothing(api, journey, django_capture_on_commit_callbacks):
    event = body()
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(events_url(journey), event, format="json")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = api.post(events_url(journey), event, format="json")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["applied"] is True
    assert callbacks == []
    assert InboundEvent.objects.count() == 1
    assert JourneyEvent.objects.count() == 1
    assert Notification.objects.filter(channel="email").count() == 1
    assert len(mail.outbox) == 1


def test_an_event_id_reused_for_another_event_is_a_conflict(api, journey):
    event = body()
    api.post(events_url(journey), event, format="json")
    response = api.post(events_url(journey), {**event, "code": "S3"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "event_id_conflict"
    assert "event_id" in response.json()["error"]["fields"]
    assert journey.milestones.get(stage__key="stage-3").state == MilestoneState.UPCOMING


def test_an_unmapped_code_is_kept_for_staff_and_moves_nothing(api, journey):
    response = api.post(events_url(journey), body(code="WEIRD-42"), format="json")
    assert response.status_code == 202
    assert "WEIRD-42" in response.json()["warnings"][0]
    inbound = InboundEvent.objects.get()
    assert inbound.unmapped is True
    assert JourneyEvent.objects.count() == 0
    assert Notification.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"event_id": None}, "event_id"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": "2026-11-20T10:00:00"}, "occurred_at"),
        ({"code": ["S2"]}, "code"),
        ({"data": "not an object"}, "data"),
    ],
)
def test_bad_fields_get_a_400_naming_the_field_and_nothing_is_written(api, journey, payload, field):
    response = api.post(events_url(journey), body(**payload), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"]
    assert field in error["message"]
    assert nothing_written()


def test_an_event_in_the_future_is_refused_by_the_spine(api, journey):
    future = (timezone.now() + timedelta(days=1)).isoformat()
    response = api.post(events_url(journey), body(occurred_at=future), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"occurred_at": ["In the future."]}
    assert nothing_written()


def test_a_mapping_to_a_stage_the_journey_lacks_is_refused(api, journey, partner):
    partner.mappings.filter(code="S2").update(stage_key="no-such-stage")
    response = api.post(events_url(journey), body(), format="json")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "unknown_stage",
        "message": "Your code 'S2' is mapped to the stage 'no-such-stage', which this "
        "journey does not have.",
        # What the partner sent (its code), not a field it never sent.
        "fields": {"code": ["Mapped to a stage this journey lacks: 'no-such-stage'."]},
    }
    assert nothing_written()


def test_an_event_for_a_journey_without_milestones_is_refused_and_its_id_stays_free(
    api, journey, partner
):
    """Its journey's milestones gone, the statement that claims an event's id and locks
    its journey returns nothing (PostgreSQL), as for an id received already: the key the
    claim drew tells this request's own claim from a receipt. Refused, its claim is
    withdrawn, so the same id sent again is refused again, not answered as received."""
    journey.milestones.all().delete()
    for attempt in range(2):
        response = api.post(
            events_url(journey), body(), format="json", HTTP_IDEMPOTENCY_KEY=f"key-{attempt}"
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "unknown_stage"
    assert nothing_written()


def test_malformed_json_is_a_400(api, journey):
    response = api.generic(
        "POST", events_url(journey), "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert nothing_written()


def test_a_body_that_is_a_list_is_a_400(api, journey):
    response = api.post(events_url(journey), [body()], format="json")
    assert response.status_code == 400
    assert nothing_written()


def test_another_partners_journey_answers_404(api, customer):
    other = make_journey(owner=customer)
    PartnerFactory().journeys.add(other)
    response = api.post(events_url(other), body(), format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert nothing_written()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("idempotency_key", [None, "k-1"])
@pytest.mark.parametrize("code", ["S2", "NOT-MAPPED"])
def test_a_journey_deleted_while_its_event_is_recorded_answers_404(
    api, journey, monkeypatch, caplog, idempotency_key, code
):
    """The journey was deleted (by staff, or a sandbox purge) after the request read it
    with the key, before its lock, and committed: 404 in the API's shape, not a 500 (a
    KeyError, a receipt not found, or the claim's foreign key at commit), and nothing
    written; an unmapped code too, whose claim names the journey as well. Refused by
    the service (its field names the journey), not caught at commit by the view. With
    an Idempotency-Key on PostgreSQL the event goes the at-once way first, whose
    refusal the usual way answers after reading the journey again (no field)."""
    from integrations.api import auth

    serving = auth.partner_key_authenticate_serving

    def then_deleted(raw, reference):
        read = serving(raw, reference)
        Journey.objects.filter(pk=journey.pk).delete()
        return read

    monkeypatch.setattr(auth, "partner_key_authenticate_serving", then_deleted)
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}
    response = api.post(events_url(journey), body(code=code), format="json", **headers)
    assert response.status_code == 404, response.content
    error = response.json()["error"]
    assert error["code"] == "not_found"
    if idempotency_key is None or connection.vendor != "postgresql":
        assert error["fields"] == {"journey": ["Deleted."]}
    assert "was deleted while an event for it was recorded" not in caplog.text
    assert nothing_written()
    assert not IdempotencyRecord.objects.exists()


def test_an_unknown_journey_answers_404(api):
    response = api.post("/api/v1/journeys/MP-NOPE99/events/", body(), format="json")
    assert response.status_code == 404


@pytest.mark.parametrize("header", [None, "Api-Key mp_nope.nope", "Bearer something", "Api-Key "])
def test_missing_or_wrong_keys_get_401(journey, partner, header):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post(events_url(journey), body(), format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert "error" in response.json()
    assert nothing_written()


def test_a_keys_prefix_with_a_wrong_secret_gets_401_though_its_journey_is_read_with_it(
    journey, partner, api_key
):
    """The key's read brings the journey its partner serves (one statement): the secret
    is still checked, and nothing is done with the journey."""
    prefix = api_key.partition(".")[0]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {prefix}.not-its-secret")
    response = client.post(events_url(journey), body(), format="json")
    assert response.status_code == 401
    assert nothing_written()


def test_the_key_brings_the_journey_only_when_usable_and_its_partner_serves_it(
    journey, partner, api_key, customer, django_assert_num_queries
):
    other = make_journey(owner=customer)
    PartnerFactory().journeys.add(other)
    key, journey_read = partner_key_authenticate_serving(api_key, journey.reference)
    assert (key.partner, journey_read) == (partner, journey)
    with django_assert_num_queries(0):  # read for the spine, with the journey
        assert journey_read.owner.profile == journey.owner.profile
        assert journey_read.template == journey.template
    assert partner_key_authenticate_serving(api_key, other.reference) == (key, None)
    assert partner_key_authenticate_serving(api_key, "MP-NOPE99") == (key, None)
    prefix = api_key.partition(".")[0]
    wrong = partner_key_authenticate_serving(f"{prefix}.not-its-secret", journey.reference)
    assert wrong == (None, None)
    partner_key_revoke(key=key)
    assert partner_key_authenticate_serving(api_key, journey.reference) == (None, None)
    expired, expired_plain = partner_key_create(
        partner=partner, expires_at=timezone.now() + timedelta(seconds=30)
    )
    type(expired).objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert partner_key_authenticate_serving(expired_plain, journey.reference) == (None, None)


@pytest.mark.parametrize("authorization", ["Api-Key mp_nope.nope", None])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/journeys/MP-%00X/events/"),
        ("get", "/api/v1/journeys/MP-%00X/"),
        ("get", "/api/v1/journeys/MP-X/events/e%001/"),
    ],
)
def test_a_url_with_a_nul_answers_404_with_any_key(api_key, authorization, method, path):
    """Nothing has one, and PostgreSQL refuses it in a parameter: a lookup of what the
    URL names (the journey, read with the key before the key is checked, among them)
    would answer 500."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization or f"Api-Key {api_key}")
    response = getattr(client, method)(path, body(), format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert nothing_written()


def test_the_journey_read_with_the_key_serves_one_read_only(journey):
    """After an attempt that may have written to it in memory (refused, rolled back),
    the journey is read again from the database."""
    request = Request(HttpRequest())
    request.journey_read_with_key = journey
    assert journey_read_with_key(request, "MP-OTHER1") is None  # another journey's
    request.journey_read_with_key = journey
    assert journey_read_with_key(request, journey.reference) is journey
    assert journey_read_with_key(request, journey.reference) is None


def test_a_revoked_or_expired_key_is_refused(journey, partner):
    key, plain = partner_key_create(partner=partner)
    partner_key_revoke(key=key)
    expired, expired_plain = partner_key_create(
        partner=partner, expires_at=timezone.now() + timedelta(seconds=30)
    )
    type(expired).objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    for secret in (plain, expired_plain):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
        assert client.get(reverse("api:journey-list")).status_code == 401


@pytest.mark.parametrize("scheme", ["Api-Key", "api-key", "API-KEY"])
def test_the_schemes_name_is_read_in_any_case(partner, scheme):
    _key, plain = partner_key_create(partner=partner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {plain}")
    assert client.get(reverse("api:journey-list")).status_code == 200


def test_keys_are_stored_hashed(partner):
    key, plain = partner_key_create(partner=partner)
    assert plain.startswith(f"mp_{key.prefix}.")
    assert plain.split(".", 1)[1] not in key.hashed_secret
    assert len(key.hashed_secret) == 64


def test_list_and_read_only_the_partners_journeys(
    api, journey, customer, django_assert_num_queries
):
    other = make_journey(owner=customer)
    for _ in range(3):
        PartnerFactory().journeys.add(make_journey(owner=customer))
    # the key, its last-used touch, the journeys, their milestones
    with django_assert_num_queries(4):
        listing = api.get(reverse("api:journey-list"))
    assert listing.status_code == 200
    references = [item["reference"] for item in listing.json()["results"]]
    assert references == [journey.reference]
    assert other.reference not in references
    detail = api.get(reverse("api:journey-detail", kwargs={"reference": journey.reference}))
    assert detail.status_code == 200
    assert [m["stage"] for m in detail.json()["milestones"]] == [
        "stage-1",
        "stage-2",
        "stage-3",
        "stage-4",
    ]
    assert (
        api.get(reverse("api:journey-detail", kwargs={"reference": other.reference})).status_code
        == 404
    )


def test_raw_payload_is_kept_for_audit(api, journey):
    api.post(events_url(journey), body(), format="json")
    inbound = InboundEvent.objects.get()
    assert json.loads(json.dumps(inbound.payload))["data"]["plant"] == "VLC"


def test_a_nul_character_anywhere_in_the_body_is_refused(api, journey):
    response = api.post(events_url(journey), body(data={"note": "a\x00b"}), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"data": ["NUL characters are not allowed."]}
    assert nothing_written()


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"a": 1e400}', "the number 1e400 is too large"),
        ('{"a": -1e400}', "the number -1e400 is too large"),
        ('{"a": NaN}', "NaN is not valid JSON"),
        ('{"a": Infinity}', "Infinity is not valid JSON"),
        ('{"a": ' + "[" * 70 + "]" * 70 + "}", "nested more than 64 levels"),
        ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested more than 64 levels"),
    ],
)
def test_json_no_column_can_hold_is_refused_whole(api, journey, raw, problem):
    """Numbers too large for a float (read as infinity), NaN and nesting past any real
    body: 400 naming the problem, for the single event, the queued one and the batch."""
    sent = body()
    event = json.dumps(sent)[:-1] + ', "data": ' + raw + "}"
    item = event[:-1] + f', "journey": "{journey.reference}"}}'
    for url, data, headers in (
        (events_url(journey), event, {}),
        (events_url(journey), event, {"HTTP_PREFER": "respond-async"}),
        (reverse("api:event-batch"), '{"events": [' + item + "]}", {}),
    ):
        response = api.post(url, data, content_type="application/json", **headers)
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "parse_error"
        assert problem in response.json()["error"]["message"]
    assert nothing_written()


@pytest.mark.parametrize("event_id", [".", "..", "mes/../17", "./17"])
def test_an_event_id_that_cannot_be_read_back_is_refused(api, journey, event_id):
    response = api.post(events_url(journey), body(event_id=event_id), format="json")
    assert response.status_code == 400
    assert "Not usable in a URL path" in response.json()["error"]["fields"]["event_id"][0]
    assert nothing_written()


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        (
            "event_id",
            "nl\nid",
            "No control or invisible characters (a newline, a tab, a zero-width space).",
        ),
        (
            "event_id",
            "tab\tid",
            "No control or invisible characters (a newline, a tab, a zero-width space).",
        ),
        (
            "code",
            "S2\r",
            "No control or invisible characters (a newline, a tab, a zero-width space).",
        ),
        (
            "event_id",
            "ls\u2028x",
            "No control or invisible characters (a newline, a tab, a zero-width space).",
        ),
        (
            "event_id",
            "zw\u200bx",
            "No control or invisible characters (a newline, a tab, a zero-width space).",
        ),
        ("event_id", " sp-1 ", "No spaces at either end."),
        ("code", "S2 ", "No spaces at either end."),
    ],
)
@pytest.mark.parametrize("prefer", [None, "respond-async"])
def test_an_id_or_code_with_what_cannot_be_seen_is_refused(
    api, journey, field, value, problem, prefer
):
    """Taken exactly, never trimmed: " sp-1 " was stored as "sp-1", and a newline in a
    queued event's id was stored and applied, then answered 500 (its Location has no
    URL)."""
    headers = {} if prefer is None else {"HTTP_PREFER": prefer}
    response = api.post(events_url(journey), body(**{field: value}), format="json", **headers)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {field: [problem]}
    assert nothing_written()


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "a\\udc00b"])
def test_a_lone_surrogate_anywhere_is_refused(api, journey, escape):
    """No text has one and PostgreSQL's JSON refuses it: 400, not a 500 at the insert."""
    raw = json.dumps(body())[:-1] + ', "data": {"k": "' + escape + '"}}'
    for url, headers in (
        (events_url(journey), {}),
        (events_url(journey), {"HTTP_PREFER": "respond-async"}),
    ):
        response = api.post(url, raw, content_type="application/json", **headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "parse_error"
        assert "lone surrogate" in response.json()["error"]["message"]
    keyed = json.dumps(body())[:-1] + ', "data": {"' + escape + '": 1}}'
    assert api.post(events_url(journey), keyed, content_type="application/json").status_code == 400
    assert nothing_written()


def test_a_surrogate_pair_is_a_character_and_kept(api, journey):
    raw = json.dumps(body())[:-1] + ', "data": {"k": "\\ud83d\\ude9a"}}'
    response = api.post(events_url(journey), raw, content_type="application/json")
    assert response.status_code == 201
    assert InboundEvent.objects.get().payload["data"]["k"] == "\U0001f69a"


def test_a_time_in_lower_case_is_read_as_rfc_3339_allows(api, journey):
    when = (timezone.now() - timedelta(minutes=5)).strftime("%Y-%m-%dt%H:%M:%Sz")
    response = api.post(events_url(journey), body(occurred_at=when), format="json")
    assert response.status_code == 201, response.content
    assert InboundEvent.objects.get().occurred_at.tzinfo is not None


def test_json_nested_as_deep_as_allowed_is_kept(api, journey):
    nested = json.loads("[" * 62 + "]" * 62)
    response = api.post(events_url(journey), body(data={"a": nested}), format="json")
    assert response.status_code == 201
    assert InboundEvent.objects.get().payload["data"]["a"] == nested


def test_an_older_event_is_logged_but_never_moves_the_journey_back(api, journey):
    now = timezone.now()
    later = body(event_id="late", code="S3", occurred_at=(now - timedelta(minutes=1)).isoformat())
    earlier = body(event_id="early", code="S2", occurred_at=(now - timedelta(hours=1)).isoformat())
    assert api.post(events_url(journey), later, format="json").status_code == 201

    response = api.post(events_url(journey), earlier, format="json")

    assert response.status_code == 201
    assert response.json()["applied"] is False
    assert response.json()["warnings"] == ["Older than the journey's state: logged, not applied."]
    assert journey.milestones.get(stage__key="stage-3").state == MilestoneState.CURRENT
    assert journey.milestones.get(stage__key="stage-2").state == MilestoneState.DONE
    assert InboundEvent.objects.count() == 2
    assert JourneyEvent.objects.filter(applied=False).count() == 1
    assert Notification.objects.filter(channel="email").count() == 1
    # Sent again: the first result, its warning included.
    again = api.post(events_url(journey), earlier, format="json")
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert again.json()["warnings"] == response.json()["warnings"]


def test_partner_b_key_on_partner_a_journey_is_404_and_writes_nothing(other_api, journey):
    detail = reverse("api:journey-detail", kwargs={"reference": journey.reference})
    assert other_api.get(detail).status_code == 404
    response = other_api.post(events_url(journey), body(), format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert nothing_written()
    listed = other_api.get(reverse("api:journey-list")).json()["results"]
    assert journey.reference not in [j["reference"] for j in listed]


def test_the_event_body_is_what_its_documented_serializer_would_write(api, journey):
    """The view builds the body without the serializer's per-item machinery; the OpenAPI
    schema still documents StatusEventOutSerializer, so the two must not drift apart."""
    from integrations.api.serializers import StatusEventOutSerializer

    # A time with an offset (+01:00), relative to now: an event before the journey
    # started is refused.
    sent = (timezone.now() - timedelta(hours=2)).astimezone(timezone.get_fixed_timezone(60))
    response = api.post(
        reverse("api:journey-events", kwargs={"reference": journey.reference}),
        {"event_id": "e1", "code": "S2", "occurred_at": sent.isoformat()},
        format="json",
    )
    inbound = InboundEvent.objects.get(event_id="e1")
    documented = StatusEventOutSerializer(
        {
            "event_id": inbound.event_id,
            "journey": journey.reference,
            "code": inbound.code,
            "occurred_at": inbound.occurred_at,
            "received_at": inbound.received_at,
            "applied": True,
            "duplicate": False,
            "state": "applied",
            "error": None,
            "warnings": [],
        }
    ).data
    assert response.json() == documented
    assert response.json()["occurred_at"].endswith("Z")


def test_the_command_revokes_a_key_once_and_says_so_again(partner):
    import io

    from django.core.management import call_command

    key, _plain = partner_key_create(partner=partner)
    out = io.StringIO()
    call_command("partner_key", "revoke", key.prefix, stdout=out)
    assert out.getvalue().startswith(f"Revoked {key.prefix}")
    key.refresh_from_db()
    first = key.revoked_at
    out = io.StringIO()
    call_command("partner_key", "revoke", key.prefix, stdout=out)
    assert "was revoked already, at" in out.getvalue()
    key.refresh_from_db()
    assert key.revoked_at == first


@pytest.mark.parametrize("given", ["{prefix}", "mp_{prefix}", "{plain}"])
def test_the_command_revokes_a_key_by_its_prefix_as_the_partner_has_it(partner, given):
    from django.core.management import call_command

    key, plain = partner_key_create(partner=partner)
    call_command("partner_key", "revoke", given.format(prefix=key.prefix, plain=plain))
    key.refresh_from_db()
    assert key.revoked_at is not None
