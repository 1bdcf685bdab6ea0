"""The Idempotency-Key header, with Stripe's semantics, on the API's POSTs."""

from datetime import timedelta

import pytest
import time_machine
from django.db import OperationalError, connection
from django.urls import reverse
from django.utils import timezone

from integrations.idempotency import (
    idempotency_begin,
    idempotency_finish,
    idempotency_purge,
)
from integrations.models import IdempotencyRecord, InboundEvent
from journey import services as journey_services
from journey.errors import ApplicationError
from journey.models import CustomerTask, JourneyEvent
from notifications.models import Notification

pytestmark = pytest.mark.django_db


def tasks_url(journey) -> str:
    return reverse("api:journey-tasks", kwargs={"reference": journey.reference})


def events_url(journey) -> str:
    return reverse("api:journey-events", kwargs={"reference": journey.reference})


def event(**overrides: object) -> dict[str, object]:
    return {
        "event_id": "evt-1",
        "code": "S2",
        "occurred_at": (timezone.now() - timedelta(minutes=3)).isoformat(),
        **overrides,
    }


def test_the_same_key_and_body_replays_the_first_response(api, journey):
    body = {"title": "Send the insurance certificate"}
    first = api.post(tasks_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(tasks_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == 201
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert CustomerTask.objects.count() == 1


def test_the_same_key_with_another_body_is_a_conflict_and_writes_nothing(api, journey):
    api.post(tasks_url(journey), {"title": "One"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = api.post(
        tasks_url(journey), {"title": "Two"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert list(CustomerTask.objects.values_list("title", flat=True)) == ["One"]


def test_the_same_key_on_another_endpoint_is_a_conflict(api, journey):
    api.post(tasks_url(journey), {"title": "One"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = api.post(events_url(journey), event(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 409
    assert InboundEvent.objects.count() == 0


def test_a_duplicate_while_the_first_is_in_flight_is_a_conflict(api, journey, partner):
    # The first request has claimed the key but has no response yet.
    idempotency_begin(
        partner=partner,
        key="k-1",
        method="POST",
        path=tasks_url(journey),
        fingerprint="0" * 64,
    )
    response = api.post(
        tasks_url(journey), {"title": "One"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert CustomerTask.objects.count() == 0


def test_a_refused_request_keeps_no_record_so_it_can_be_corrected(api, journey):
    bad = api.post(tasks_url(journey), {"title": ""}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    good = api.post(
        tasks_url(journey), {"title": "Fixed"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert bad.status_code == 400
    assert good.status_code == 201
    assert CustomerTask.objects.get().title == "Fixed"


def test_keys_are_per_partner(api, other_api, journey, other_journey):
    api.post(tasks_url(journey), {"title": "A"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = other_api.post(
        tasks_url(other_journey), {"title": "B"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert response.status_code == 201
    assert CustomerTask.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 2


def test_a_replayed_event_does_not_notify_twice(api, journey, django_capture_on_commit_callbacks):
    body = event()
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(events_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = api.post(events_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert callbacks == []
    assert JourneyEvent.objects.count() == 1
    assert Notification.objects.filter(channel="email").count() == 1


def test_records_expire_after_24_hours(api, journey):
    api.post(tasks_url(journey), {"title": "One"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    with time_machine.travel(timezone.now() + timedelta(hours=24, seconds=1)):
        response = api.post(
            tasks_url(journey), {"title": "Two"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
        )
        assert response.status_code == 201
        assert CustomerTask.objects.count() == 2
        assert idempotency_purge() == 0  # the expired record was replaced by the new one
    with time_machine.travel(timezone.now() + timedelta(hours=49)):
        assert idempotency_purge() == 1
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.parametrize("key", ["", " ", "x" * 256])
def test_a_malformed_key_is_refused(api, journey, key):
    response = api.post(
        tasks_url(journey), {"title": "One"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["fields"]
    assert CustomerTask.objects.count() == 0


def claim(partner, journey, *, age: timedelta) -> IdempotencyRecord:
    """A request that claimed "k-1" ``age`` ago and has not answered (or died)."""
    record = idempotency_begin(
        partner=partner, key="k-1", method="POST", path=tasks_url(journey), fingerprint="0" * 64
    )
    IdempotencyRecord.objects.filter(pk=record.pk).update(locked_at=timezone.now() - age)
    return record


def test_a_claim_within_its_lease_is_still_in_progress(api, journey, partner, settings):
    claim(partner, journey, age=settings.API_IDEMPOTENCY_LEASE - timedelta(seconds=1))
    response = api.post(
        tasks_url(journey), {"title": "One"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert CustomerTask.objects.count() == 0
    assert IdempotencyRecord.objects.get().status_code is None


def test_a_claim_older_than_its_lease_is_taken_over_by_a_retry(api, journey, partner, settings):
    # The first request died after claiming the key (its work rolled back with it).
    claim(partner, journey, age=settings.API_IDEMPOTENCY_LEASE + timedelta(seconds=1))
    body = {"title": "Send the insurance certificate"}
    retry = api.post(tasks_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(tasks_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry
    assert (again.status_code, again["Idempotent-Replayed"]) == (201, "true")
    assert again.json() == retry.json()
    assert CustomerTask.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert (record.status_code, record.response_body) == (201, retry.json())


def test_a_crash_releases_the_key_and_keeps_nothing(api, journey, monkeypatch):
    def crash(**kwargs):
        journey_services_create(**kwargs)
        raise RuntimeError("boom")

    journey_services_create = journey_services.journey_task_create
    monkeypatch.setattr(journey_services, "journey_task_create", crash)
    api.raise_request_exception = False
    crashed = api.post(
        tasks_url(journey), {"title": "One"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert crashed.status_code == 500
    assert CustomerTask.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0

    monkeypatch.undo()
    retry = api.post(
        tasks_url(journey), {"title": "One"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert retry.status_code == 201
    assert CustomerTask.objects.count() == 1


def test_when_the_key_cannot_be_released_the_lease_frees_it(api, journey, monkeypatch, settings):
    """The database fails during the request and again when the key is released: the
    claim stays, refused as in progress until its lease runs out, then a retry runs."""

    def unreachable(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(journey_services, "journey_task_create", unreachable)
    monkeypatch.setattr(
        "integrations.api.idempotency.idempotency_abandon", lambda **kwargs: unreachable()
    )
    api.raise_request_exception = False
    body = {"title": "One"}
    failed = api.post(tasks_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert failed.status_code == 503
    monkeypatch.undo()

    early = api.post(tasks_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert early.status_code == 409
    with time_machine.travel(timezone.now() + settings.API_IDEMPOTENCY_LEASE):
        late = api.post(tasks_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert late.status_code == 201
    assert CustomerTask.objects.count() == 1


def test_a_taken_over_claim_cannot_be_finished_by_its_first_holder(partner, journey, settings):
    first = claim(partner, journey, age=settings.API_IDEMPOTENCY_LEASE + timedelta(seconds=1))
    second = idempotency_begin(
        partner=partner, key="k-1", method="POST", path=tasks_url(journey), fingerprint="1" * 64
    )
    assert second.pk == first.pk
    with pytest.raises(ApplicationError) as refused:
        idempotency_finish(record=first, status_code=201, body={"first": True})
    assert refused.value.status == 409
    idempotency_finish(record=second, status_code=201, body={"second": True})
    assert IdempotencyRecord.objects.get().response_body == {"second": True}


def test_a_stored_response_is_the_one_the_orm_would_store(partner, journey):
    """idempotency_finish writes its UPDATE by hand: what it stores, and what it matches,
    must be what the queryset's update would."""
    body = {
        "event_id": "évt-%s-'1'",
        "applied": True,
        "warnings": ['Ünmapped "code" %(x)s', None],
        "nested": {"n": 1.5, "list": [1, {"deep": "ü"}]},
    }
    records = [
        idempotency_begin(
            partner=partner, key=f"k-{n}", method="POST", path="/p", fingerprint=str(n) * 64
        )
        for n in (1, 2)
    ]
    idempotency_finish(record=records[0], status_code=201, body=body)
    IdempotencyRecord.objects.filter(
        pk=records[1].pk, status_code__isnull=True, locked_at=records[1].locked_at
    ).update(status_code=201, response_body=body)
    stored = {
        r.key: (r.status_code, r.response_body)
        for r in IdempotencyRecord.objects.filter(pk__in=[r.pk for r in records])
    }
    assert stored["k-1"] == stored["k-2"] == (201, body)
    # Stored once: the claim's fencing matches an unanswered claim only.
    with pytest.raises(ApplicationError):
        idempotency_finish(record=records[0], status_code=200, body={})
    assert IdempotencyRecord.objects.get(pk=records[0].pk).response_body == body


# --- An event applied at once under a key ----------------------------------------------
#
# On PostgreSQL the key's record is written with the event's work, in its last statement
# (views.JourneyEventCreate._at_once); elsewhere, or when that way finds anything
# unusual, the key is claimed first. Either way a partner sees the same answers.


@pytest.fixture
def at_once(monkeypatch) -> list:
    """What each call of the answered event's one-statement way returned (its record, or
    None when the usual way answered instead)."""
    from integrations.api import views

    returned: list = []
    record_at_once = views.partner_record_status_event_at_once

    def spy(**kwargs):
        returned.append(record_at_once(**kwargs))
        return returned[-1]

    monkeypatch.setattr(views, "partner_record_status_event_at_once", spy)
    return returned


def test_an_events_answer_is_stored_with_its_work_and_replayed(api, journey, at_once):
    body = event()
    first = api.post(events_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    again = api.post(events_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="e-1")

    # On PostgreSQL the first is written in one statement with its key; the replay
    # finds the key taken and is answered the usual way. Elsewhere always the usual way.
    if connection.vendor == "postgresql":
        assert [type(r) for r in at_once] == [IdempotencyRecord, type(None)]
    else:
        assert at_once == []
    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    record = IdempotencyRecord.objects.get()
    assert (record.key, record.status_code, record.response_body) == ("e-1", 201, first.json())
    assert (record.method, record.path) == ("POST", events_url(journey))
    inbound, made = InboundEvent.objects.get(), JourneyEvent.objects.get()
    assert inbound.journey_event_id == made.pk
    assert made.applied


def test_an_events_key_used_for_another_event_is_409_and_that_event_is_not_kept(api, journey):
    api.post(events_url(journey), event(), format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    other = event(event_id="evt-2", code="S3")
    response = api.post(events_url(journey), other, format="json", HTTP_IDEMPOTENCY_KEY="e-1")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert list(InboundEvent.objects.values_list("event_id", flat=True)) == ["evt-1"]
    assert JourneyEvent.objects.count() == 1
    assert journey.milestones.get(stage__key="stage-3").state == "upcoming"


def test_an_event_id_received_before_under_a_new_key_stores_the_duplicates_answer(api, journey):
    body = event()
    api.post(events_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    response = api.post(events_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="e-2")

    assert response.status_code == 200
    assert response.json()["duplicate"] is True
    record = IdempotencyRecord.objects.get(key="e-2")
    assert (record.status_code, record.response_body) == (200, response.json())
    assert JourneyEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"occurred_at": "2099-01-01T00:00:00Z"}, "occurred_at"),  # refused by the spine
        ({"code": ""}, "code"),  # refused by the serializer
    ],
)
def test_a_refused_event_keeps_nothing_and_its_key_takes_the_corrected_one(
    api, journey, overrides, field
):
    bad = api.post(
        events_url(journey), event(**overrides), format="json", HTTP_IDEMPOTENCY_KEY="e-1"
    )
    assert bad.status_code == 400
    assert field in bad.json()["error"]["fields"]
    assert not IdempotencyRecord.objects.exists()
    assert not InboundEvent.objects.exists()

    good = api.post(events_url(journey), event(), format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    assert good.status_code == 201
    assert IdempotencyRecord.objects.get().status_code == 201


def test_an_events_key_in_flight_is_409_and_nothing_is_written(api, journey, partner):
    idempotency_begin(
        partner=partner, key="e-1", method="POST", path=events_url(journey), fingerprint="0" * 64
    )
    response = api.post(events_url(journey), event(), format="json", HTTP_IDEMPOTENCY_KEY="e-1")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert not InboundEvent.objects.exists()
    assert not JourneyEvent.objects.exists()


def test_an_events_key_is_looked_at_before_its_body_and_journey(api, journey, partner):
    body = event()
    first = api.post(events_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    assert first.status_code == 201
    reused = api.post(
        events_url(journey), event(code=""), format="json", HTTP_IDEMPOTENCY_KEY="e-1"
    )
    assert (reused.status_code, reused.json()["error"]["code"]) == (409, "idempotency_key_reused")
    unreadable = api.generic(
        "POST",
        events_url(journey),
        '{"event_id": ',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="e-1",
    )
    assert unreadable.status_code == 409
    assert unreadable.json()["error"]["code"] == "idempotency_key_reused"
    # The same bytes under another media type: the same request, answered as first.
    again = api.generic(
        "POST",
        events_url(journey),
        first.wsgi_request.body,
        content_type="text/plain",
        HTTP_IDEMPOTENCY_KEY="e-1",
    )
    assert (again.status_code, again["Idempotent-Replayed"]) == (201, "true")
    # The partner no longer serves the journey: the retry still gets its first answer.
    partner.journeys.remove(journey)
    retry = api.post(events_url(journey), body, format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    assert (retry.status_code, retry["Idempotent-Replayed"]) == (201, "true")


def test_a_crash_applying_an_event_keeps_nothing_and_frees_its_key(api, journey, monkeypatch):
    from integrations import services

    def crash(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "journey_record_milestone", crash)
    api.raise_request_exception = False
    crashed = api.post(events_url(journey), event(), format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    assert crashed.status_code == 500
    assert not InboundEvent.objects.exists()
    assert not IdempotencyRecord.objects.exists()

    monkeypatch.undo()
    retry = api.post(events_url(journey), event(), format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    assert retry.status_code == 201
    assert InboundEvent.objects.get().journey_event_id == JourneyEvent.objects.get().pk


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the event's work and its key in one statement"
)
def test_when_the_one_statement_deadlocks_the_usual_way_answers(api, journey, monkeypatch):
    from integrations.api import views

    tried = []

    def deadlocked(**kwargs):
        tried.append(kwargs["event_id"])
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(views, "partner_record_status_event_at_once", deadlocked)
    response = api.post(events_url(journey), event(), format="json", HTTP_IDEMPOTENCY_KEY="e-1")

    assert tried == ["evt-1"]
    assert response.status_code == 201
    assert IdempotencyRecord.objects.get(key="e-1").status_code == 201
    assert InboundEvent.objects.get().journey_event_id == JourneyEvent.objects.get().pk
