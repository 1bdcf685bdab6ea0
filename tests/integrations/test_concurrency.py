"""Requests that race: two identical events sent at the same moment change the journey
once; two retries taking over a dead request's Idempotency-Key: one wins.

On PostgreSQL (CI) the two requests really overlap, each in its own thread and database
connection; SQLite cannot write from two connections at once, so there they run one
after the other, and the test still checks the same outcome.
"""

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from integrations import idempotency
from integrations.idempotency import idempotency_begin, idempotency_finish
from integrations.models import IdempotencyRecord, InboundEvent
from journey import services as journey_services
from journey.errors import ApplicationError
from journey.models import CustomerTask, JourneyEvent, MilestoneState
from notifications.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENT = connection.vendor == "postgresql"


def in_threads[T](work: Callable[[], T], *, count: int = 2) -> list[T | BaseException]:
    """Run ``work`` in ``count`` threads, each with its own database connection: at once
    on PostgreSQL, one after the other on SQLite. Returns each result or exception."""
    outcomes: list[T | BaseException] = []

    def run() -> None:
        from django.db import connection as thread_connection

        try:
            outcomes.append(work())
        except BaseException as error:
            outcomes.append(error)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
        if not CONCURRENT:
            thread.join()
    for thread in threads:
        thread.join()
    return outcomes


def test_two_identical_events_at_once_change_the_journey_once(journey, api_key):
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    body = {
        "event_id": "evt-concurrent",
        "code": "S2",
        "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
    }
    barrier = threading.Barrier(2)

    def send() -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
        if CONCURRENT:
            barrier.wait(timeout=10)
        return client.post(url, body, format="json").status_code

    statuses = in_threads(send)

    assert sorted(statuses) == [200, 201]
    assert InboundEvent.objects.count() == 1
    assert JourneyEvent.objects.count() == 1
    assert journey.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT
    assert Notification.objects.filter(channel="email").count() == 1


def test_two_retries_taking_over_a_dead_claim_at_once_make_one_winner(
    partner, journey, settings, monkeypatch
):
    path = reverse("api:journey-tasks", kwargs={"reference": journey.reference})
    dead = idempotency_begin(
        partner=partner, key="k-1", method="POST", path=path, fingerprint="0" * 64
    )
    stale = timezone.now() - settings.API_IDEMPOTENCY_LEASE - timedelta(seconds=1)
    IdempotencyRecord.objects.filter(pk=dead.pk).update(locked_at=stale)
    # Both retries have read the stale claim before either tries to take it over.
    barrier = threading.Barrier(2)
    lease = idempotency._lease

    def lease_after_both_read() -> timedelta:
        if CONCURRENT:
            barrier.wait(timeout=10)
        return lease()

    monkeypatch.setattr(idempotency, "_lease", lease_after_both_read)

    def retry() -> IdempotencyRecord:
        return idempotency_begin(
            partner=partner, key="k-1", method="POST", path=path, fingerprint="1" * 64
        )

    outcomes = in_threads(retry)

    winners = [o for o in outcomes if isinstance(o, IdempotencyRecord)]
    refused = [o.code for o in outcomes if isinstance(o, ApplicationError)]
    assert (len(winners), refused) == (1, ["idempotency_in_progress"])
    record = IdempotencyRecord.objects.get()
    assert (record.locked_at, record.fingerprint) == (winners[0].locked_at, "1" * 64)
    assert record.locked_at > stale


@pytest.mark.skipif(
    not CONCURRENT, reason="needs a second connection writing while the first holds its transaction"
)
def test_a_request_that_outlives_its_lease_keeps_nothing_and_the_retry_stands(
    api, journey, partner, monkeypatch
):
    """While the first request is still running, a retry (another connection, past the
    lease) takes its key over and answers. The first must then store nothing and keep
    none of its work: the task exists once, the retry's."""
    create = journey_services.journey_task_create
    outcomes: list[object] = []

    def retry() -> None:
        record = IdempotencyRecord.objects.get()
        with time_machine.travel(record.locked_at + timedelta(minutes=5)):
            taken = idempotency_begin(
                partner=partner,
                key="k-1",
                method=record.method,
                path=record.path,
                fingerprint=record.fingerprint,
            )
            task = create(journey=journey, title="One")
            idempotency_finish(record=taken, status_code=201, body={"id": task.pk})

    def slow_create(**kwargs):
        task = create(**kwargs)
        outcomes.extend(in_threads(retry, count=1))
        return task

    monkeypatch.setattr(journey_services, "journey_task_create", slow_create)
    response = api.post(
        reverse("api:journey-tasks", kwargs={"reference": journey.reference}),
        {"title": "One"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )

    assert outcomes == [None]
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    task = CustomerTask.objects.get()
    record = IdempotencyRecord.objects.get()
    assert (record.status_code, record.response_body) == (201, {"id": task.pk})
