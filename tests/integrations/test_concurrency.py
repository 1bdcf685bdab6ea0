"""Requests that race: identical events, events for one journey, overlapping batches.

On PostgreSQL (CI) the two requests really overlap, each in its own thread and database
connection; SQLite cannot write from two connections at once, so there they run one
after the other, and the test still checks the same outcome.
"""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.models import InboundEvent
from journey.models import JourneyEvent, MilestoneState
from notifications.models import Notification
from tests.factories import make_journey

pytestmark = pytest.mark.django_db(transaction=True)

URL_BATCH = "/api/v1/events/batch/"


def _at_once(requests: list) -> tuple[list, list[BaseException]]:
    """Run each ``request()`` in its own thread (and database connection), started together
    on PostgreSQL; one after the other on SQLite. Returns the responses, in order."""
    concurrent = connection.vendor == "postgresql"
    barrier = threading.Barrier(len(requests))
    responses: list = [None] * len(requests)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        from django.db import connection as thread_connection

        try:
            if concurrent:
                barrier.wait(timeout=10)
            responses[index] = requests[index]()
        except BaseException as error:
            errors.append(error)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
        if not concurrent:
            thread.join()
    for thread in threads:
        thread.join()
    return responses, errors


def _client(api_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    return client


def test_two_identical_events_at_once_change_the_journey_once(journey, api_key):
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    body = {
        "event_id": "evt-concurrent",
        "code": "S2",
        "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
    }
    requests = [lambda: _client(api_key).post(url, body, format="json")] * 2
    responses, errors = _at_once(requests)
    statuses = [r.status_code for r in responses]

    assert errors == []
    assert sorted(statuses) == [200, 201]
    assert InboundEvent.objects.count() == 1
    assert JourneyEvent.objects.count() == 1
    assert journey.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT
    assert Notification.objects.filter(channel="email").count() == 1


def test_overlapping_batches_at_once_all_succeed(journey, partner, api_key):
    """Batches that share journeys, each in another order: each used to lock its journeys
    in its items' order, so two of them deadlocked ("deadlock detected", a 500)."""
    journeys = [journey, *(make_journey() for _ in range(5))]
    partner.journeys.add(*journeys[1:])
    when = (timezone.now() - timedelta(minutes=1)).isoformat()
    orders = [journeys, journeys[::-1], journeys[3:] + journeys[:3], journeys[1::2] + journeys[::2]]

    def batch(n: int, order: list) -> dict:
        return {
            "events": [
                {"journey": j.reference, "event_id": f"b{n}-{k}", "code": code, "occurred_at": when}
                for k, (j, code) in enumerate((j, c) for c in ("S1", "S3") for j in order)
            ]
        }

    requests = [
        (lambda n=n, order=order: _client(api_key).post(URL_BATCH, batch(n, order), format="json"))
        for n, order in enumerate(orders)
    ]
    responses, errors = _at_once(requests)

    assert errors == []
    assert [r.status_code for r in responses] == [200] * len(orders)
    statuses = {item["status"] for r in responses for item in r.json()["results"]}
    assert statuses == {201}
    assert InboundEvent.objects.count() == len(orders) * 2 * len(journeys)
    assert JourneyEvent.objects.count() == len(orders) * 2 * len(journeys)
    for each in journeys:
        # Whatever the order they were applied in, stage 3 was reached and stays reached.
        assert each.milestones.get(stage__key="stage-3").state == MilestoneState.CURRENT
        # One message per stage reached: two causes at most, however many events.
        assert Notification.objects.filter(journey=each, channel="email").count() <= 2


def test_different_events_for_one_journey_at_once_are_applied_in_turn(journey, api_key):
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    when = (timezone.now() - timedelta(minutes=1)).isoformat()
    codes = ["S1", "S2", "S3", "S1"]
    requests = [
        (
            lambda n=n, code=code: _client(api_key).post(
                url, {"event_id": f"e{n}", "code": code, "occurred_at": when}, format="json"
            )
        )
        for n, code in enumerate(codes)
    ]
    responses, errors = _at_once(requests)

    assert errors == []
    assert [r.status_code for r in responses] == [201] * len(codes)
    assert InboundEvent.objects.count() == len(codes)
    assert JourneyEvent.objects.count() == len(codes)
    assert journey.milestones.get(stage__key="stage-3").state == MilestoneState.CURRENT
