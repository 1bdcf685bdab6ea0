"""POST /api/v1/events/batch/: up to 500 events, one result per item."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations.models import InboundEvent
from journey.errors import ApplicationError
from journey.models import JourneyEvent, MilestoneState
from notifications.models import Notification
from tests.factories import MappingFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/events/batch/"


def item(journey, event_id: str, code: str = "S2", minutes_ago: int = 5) -> dict[str, object]:
    return {
        "journey": journey.reference,
        "event_id": event_id,
        "code": code,
        "occurred_at": (timezone.now() - timedelta(minutes=minutes_ago)).isoformat(),
    }


def test_the_url_is_named():
    assert reverse("api:event-batch") == URL


def test_each_item_gets_its_own_result_and_a_bad_item_fails_alone(
    api, journey, other_journey, django_capture_on_commit_callbacks
):
    first = item(journey, "a", "S2", minutes_ago=10)
    events = [
        first,
        item(other_journey, "b"),  # partner B's journey: 404 for this item only
        {**item(journey, "c"), "occurred_at": "yesterday"},
        item(journey, "d", "UNKNOWN"),
        item(journey, "e", "S3", minutes_ago=5),
        {
            **item(journey, "f", "S4"),
            "occurred_at": (timezone.now() + timedelta(days=2)).isoformat(),
        },
        first,  # the same event again
    ]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL, {"events": events}, format="json")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(7))
    assert [r["status"] for r in results] == [201, 404, 400, 202, 201, 400, 200]
    assert results[1]["error"]["fields"] == {"journey": ["Unknown journey."]}
    assert results[1]["event"] is None
    assert "occurred_at" in results[2]["error"]["fields"]
    assert results[5]["error"]["fields"] == {"occurred_at": ["In the future."]}
    assert results[0]["error"] is None and results[0]["event"]["applied"] is True
    assert results[6]["event"]["duplicate"] is True
    assert sorted(InboundEvent.objects.values_list("event_id", flat=True)) == ["a", "d", "e"]
    assert JourneyEvent.objects.count() == 2
    assert journey.milestones.get(stage__key="stage-3").state == MilestoneState.CURRENT
    assert Notification.objects.filter(channel="email").count() == 2
    assert other_journey.inbound_events.count() == 0


def test_more_than_500_events_is_a_400_and_nothing_is_written(api, journey):
    events = [item(journey, f"e{i}") for i in range(501)]
    response = api.post(URL, {"events": events}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "events": ["Ensure this field has no more than 500 elements."]
    }
    assert InboundEvent.objects.count() == 0


def test_500_events_are_accepted(api, journey):
    events = [item(journey, f"e{i}", "UNMAPPED") for i in range(500)]
    response = api.post(URL, {"events": events}, format="json")
    assert response.status_code == 200
    assert {r["status"] for r in response.json()["results"]} == {202}
    assert InboundEvent.objects.filter(unmapped=True).count() == 500


@pytest.mark.parametrize("body", [{}, {"events": []}, {"events": "x"}, {"events": None}])
def test_a_malformed_batch_is_a_400(api, body):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert "events" in response.json()["error"]["fields"]
    assert InboundEvent.objects.count() == 0


def test_an_event_id_refused_in_a_batch_stays_free_for_a_later_item(api, journey, partner):
    """The batch claims its ids up front; a refused item withdraws its claim, so a
    corrected copy later in the batch (or in a later request) is recorded."""
    MappingFactory(partner=partner, code="NOWHERE", stage_key="no-such-stage")
    events = [
        item(journey, "x", "NOWHERE"),  # maps to a stage this journey does not have
        {**item(journey, "y"), "occurred_at": (timezone.now() + timedelta(days=2)).isoformat()},
        item(journey, "y", "S2"),  # the same id, corrected
        item(journey, "z", "S3"),
    ]
    response = api.post(URL, {"events": events}, format="json")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [400, 400, 201, 201]
    assert results[0]["error"]["fields"] == {
        "code": ["Mapped to a stage this journey lacks: 'no-such-stage'."]
    }
    assert sorted(InboundEvent.objects.values_list("event_id", flat=True)) == ["y", "z"]
    assert JourneyEvent.objects.count() == 2
    assert InboundEvent.objects.get(event_id="y").journey_event.milestone.stage.key == "stage-2"
    assert journey.milestones.get(stage__key="stage-3").state == MilestoneState.CURRENT
    retry = api.post(URL, {"events": [item(journey, "x", "S4")]}, format="json")
    assert retry.json()["results"][0]["status"] == 201


def test_a_refusal_after_a_write_fails_the_whole_batch_rather_than_half_apply(
    api, journey, monkeypatch
):
    """Items have no savepoint of their own: the spine refuses before it writes. Were it
    ever to refuse after writing, the batch fails whole (nothing is kept) instead of
    keeping half an item."""
    from journey import events as journey_events

    real = journey_events.event_milestone_reached

    def writes_then_refuses(**kwargs: object) -> object:
        real(**kwargs).save()  # a real row, which must not survive the refusal
        raise ApplicationError("Refused late.")

    monkeypatch.setattr(journey_events, "event_milestone_reached", writes_then_refuses)
    client = api
    client.raise_request_exception = False
    response = client.post(URL, {"events": [item(journey, "a"), item(journey, "b")]}, format="json")

    assert response.status_code == 500
    assert InboundEvent.objects.count() == 0
    assert JourneyEvent.objects.count() == 0


def test_a_batch_is_written_as_one_unit_and_queues_one_delivery_task(
    api, partner, customer, monkeypatch, django_capture_on_commit_callbacks
):
    """Several events of one batch, two of them on the same journey: each sees what the
    one before it did (the second moves the journey on from where the first left it), and
    the customers' messages go to the broker as one task, not one per message."""
    from notifications import tasks
    from tests.factories import make_journey

    queued: list[list[int]] = []
    monkeypatch.setattr(tasks.deliver_notifications, "delay", queued.append)
    journeys = [make_journey(owner=customer) for _ in range(2)]
    partner.journeys.add(*journeys)
    events = [
        item(journeys[0], "a", "S2", minutes_ago=10),
        item(journeys[1], "b", "S2", minutes_ago=10),
        item(journeys[0], "c", "S3", minutes_ago=5),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL, {"events": events}, format="json")

    assert [r["status"] for r in response.json()["results"]] == [201, 201, 201]
    assert [r["event"]["applied"] for r in response.json()["results"]] == [True, True, True]
    first = journeys[0]
    assert first.milestones.get(stage__key="stage-2").state == MilestoneState.DONE
    assert first.milestones.get(stage__key="stage-3").state == MilestoneState.CURRENT
    linked = InboundEvent.objects.filter(journey_event__isnull=False)
    assert sorted(linked.values_list("event_id", flat=True)) == ["a", "b", "c"]
    emails = Notification.objects.filter(channel="email").values_list("pk", flat=True)
    assert len(emails) == 3
    assert [sorted(ids) for ids in queued] == [sorted(emails)]


@pytest.mark.parametrize("bad", ["x", None, 5, [1], True])
def test_an_item_that_is_not_an_object_fails_alone(api, journey, bad):
    good = item(journey, "good", "S2")
    response = api.post(URL, {"events": [bad, good]}, format="json")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [400, 201]
    assert results[0]["error"] == {
        "code": "invalid",
        "message": "Invalid input: item.",
        "fields": {"item": ["Expected a JSON object."]},
    }
    assert list(InboundEvent.objects.values_list("event_id", flat=True)) == ["good"]


def test_a_misnamed_field_is_named_with_the_one_missing(api):
    """'evts' for 'events' was answered only 'evts: Not a field of this request.'; the
    answer now says that 'events' is missing too (a user's walk-through)."""
    response = api.post(URL, {"evts": []}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "events": ["This field is required."],
        "evts": ["Not a field of this request."],
    }


def test_an_items_journey_is_taken_exactly_whatever_the_other_items_name(api, journey):
    """A padded reference was refused alone, but taken beside an exact one (the lookup
    used it as sent, the item its trimmed self): each item now stands on its own."""
    exact = item(journey, "exact", "S2")
    padded = {**item(journey, "padded", "S3"), "journey": f"{journey.reference} "}
    response = api.post(URL, {"events": [exact, padded]}, format="json")
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400]
    assert results[1]["error"]["fields"] == {"journey": ["No spaces at either end."]}
    assert list(InboundEvent.objects.values_list("event_id", flat=True)) == ["exact"]


def test_an_item_whose_journey_was_deleted_after_the_batch_read_it_fails_alone(
    api, journey, partner, monkeypatch
):
    """Deleted (by staff, or a sandbox purge) between the batch's read of its journeys
    and their lock: its items, mapped or not, answer 404 and keep nothing; the others
    are applied."""
    from integrations.api import views
    from journey.models import Journey
    from tests.factories import make_journey

    other = make_journey(owner=journey.owner)
    partner.journeys.add(other)
    prepare = views.partner_status_events_prepare

    def deleting_first(**kwargs):
        Journey.objects.filter(pk=journey.pk).delete()
        return prepare(**kwargs)

    monkeypatch.setattr(views, "partner_status_events_prepare", deleting_first)
    events = [item(journey, "a"), item(journey, "b", "NOT-MAPPED"), item(other, "c")]
    response = api.post(URL, {"events": events}, format="json")

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [404, 404, 201]
    assert results[0]["error"]["code"] == "not_found"
    assert results[0]["error"]["fields"] == {"journey": ["Deleted."]}
    assert list(InboundEvent.objects.values_list("event_id", flat=True)) == ["c"]
