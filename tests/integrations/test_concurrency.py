"""Requests that race: identical events, events for one journey, overlapping batches;
two retries taking over a dead request's Idempotency-Key: one wins.

On PostgreSQL (CI) the two requests really overlap, each in its own thread and database
connection; SQLite cannot write from two connections at once, so there they run one
after the other, and the test still checks the same outcome.
"""

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from integrations import idempotency
from integrations.idempotency import idempotency_begin, idempotency_finish
from integrations.models import IdempotencyRecord, InboundEvent
from journey import services as journey_services
from journey.errors import ApplicationError
from journey.models import (
    CustomerTask,
    EtaEstimate,
    EventSource,
    Journey,
    JourneyEvent,
    MilestoneState,
)
from notifications.models import Notification
from tests.factories import make_journey

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


def _started(work: Callable[[], object]) -> tuple[threading.Thread, list]:
    """``work`` begun in a thread (and database connection) of its own, not waited for:
    the thread, and the list its outcome goes into once it ends (``in_threads``)."""
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.extend(in_threads(work, count=1)))
    thread.start()
    return thread, outcome


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


def test_two_identical_requests_under_one_key_at_once_apply_once_and_answer_alike(journey, api_key):
    """On PostgreSQL each writes its key's record with its work, last: the second waits
    on the first's event_id, finds the key taken, and answers the first's response."""
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    body = {
        "event_id": "evt-keyed",
        "code": "S2",
        "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
    }
    requests = [
        lambda: _client(api_key).post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    ] * 2
    responses, errors = _at_once(requests)

    assert errors == []
    assert [r.status_code for r in responses] == [201, 201]
    assert sorted(r.get("Idempotent-Replayed", "") for r in responses) == ["", "true"]
    assert responses[0].json() == responses[1].json()
    assert JourneyEvent.objects.count() == 1
    assert InboundEvent.objects.get().journey_event_id == JourneyEvent.objects.get().pk
    assert IdempotencyRecord.objects.get().status_code == 201
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
    none of its work: the task exists once, the retry's.

    The retry's own task waits for the first request's transaction (both write to the
    journey, whose version row they lock), so it finishes after the first has rolled back.
    """
    create = journey_services.journey_task_create
    outcomes: list[object] = []
    taken_over = threading.Event()
    retrying: list[threading.Thread] = []

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
            taken_over.set()
            task = create(journey=journey, title="One")
            idempotency_finish(record=taken, status_code=201, body={"id": task.pk})

    def retry_in_thread() -> None:
        from django.db import connection as thread_connection

        try:
            outcomes.append(retry())
        except BaseException as error:
            outcomes.append(error)
            taken_over.set()
        finally:
            thread_connection.close()

    def slow_create(**kwargs):
        task = create(**kwargs)
        retrying.append(threading.Thread(target=retry_in_thread))
        retrying[0].start()
        assert taken_over.wait(timeout=20)
        return task

    monkeypatch.setattr(journey_services, "journey_task_create", slow_create)
    response = api.post(
        reverse("api:journey-tasks", kwargs={"reference": journey.reference}),
        {"title": "One"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    retrying[0].join(timeout=60)

    assert outcomes == [None]
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    task = CustomerTask.objects.get()
    record = IdempotencyRecord.objects.get()
    assert (record.status_code, record.response_body) == (201, {"id": task.pk})


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


@pytest.mark.skipif(not CONCURRENT, reason="a writer waiting for a lock is PostgreSQL's")
def test_an_event_waiting_for_its_journeys_lock_works_from_what_the_holder_wrote(journey, api_key):
    """A single event's journey is read before its transaction, and its milestones by
    the statement that locks it. Another writer holds the lock and moves the journey
    meanwhile: the event waits, finds the version moved, reads the journey again and
    applies to what the other wrote (its stage keeps the other's time)."""
    reached = timezone.now() - timedelta(minutes=5)

    def move_the_journey() -> None:
        journey_services.journey_record_milestone(
            journey=Journey.objects.get(pk=journey.pk),
            stage_key="stage-2",
            occurred_at=reached,
            source=EventSource.STAFF,
        )

    response = _posted_while_held(move_the_journey, api_key, journey, "waits", "S3")
    assert response.status_code == 201
    assert response.json()["applied"] is True
    second, third = (journey.milestones.get(stage__key=f"stage-{n}") for n in (2, 3))
    assert (second.state, second.reached_at) == (MilestoneState.DONE, reached)
    assert third.state == MilestoneState.CURRENT
    assert JourneyEvent.objects.filter(applied=True).count() == 2


@pytest.mark.skipif(not CONCURRENT, reason="a writer waiting for a lock is PostgreSQL's")
def test_a_journey_deleted_while_its_lock_is_awaited_is_not_locked(journey):
    """The milestones are read from the statement's snapshot, where they still are; the
    lock, once the deleting transaction commits, finds no journey: none is locked."""
    read = journey_services.journeys_for_spine().get(pk=journey.pk)
    holding, release = threading.Event(), threading.Event()

    def delete_and_hold() -> None:
        with transaction.atomic():
            Journey.objects.filter(pk=journey.pk).delete()
            holding.set()
            assert release.wait(timeout=10)

    def lock() -> dict:
        with transaction.atomic():
            return journey_services.journeys_lock(pks=[journey.pk], journeys={journey.pk: read})

    holder, _ = _started(delete_and_hold)
    assert holding.wait(timeout=10)
    locker, outcome = _started(lock)
    _until_one_waits_for_a_lock()
    release.set()
    holder.join()
    locker.join()
    assert outcome == [{}]


@pytest.mark.skipif(not CONCURRENT, reason="a writer waiting for a lock is PostgreSQL's")
@pytest.mark.parametrize("holder", ["commits", "rolls back"])
def test_an_event_whose_id_another_holds_waits_for_it_with_its_journey_unlocked(
    journey, partner, api_key, holder
):
    """A single event's id is claimed by the statement that locks its journey, but before
    the lock: while another transaction holds the same id claimed (a batch, which claims
    first and then locks), the event waits for it holding no lock on the journey, so the
    two cannot deadlock; then it answers as the holder left the id."""
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    occurred_at = timezone.now() - timedelta(minutes=2)
    holding, release = threading.Event(), threading.Event()

    def claim_and_hold() -> None:
        with transaction.atomic():
            InboundEvent.objects.create(
                partner=partner,
                journey=journey,
                event_id="held",
                code="S2",
                occurred_at=occurred_at,
            )
            holding.set()
            assert release.wait(timeout=10)
            transaction.set_rollback(holder == "rolls back")

    holder_thread, held = _started(claim_and_hold)
    assert holding.wait(timeout=10)
    poster, event = _started(
        lambda: _client(api_key).post(
            url,
            {"event_id": "held", "code": "S2", "occurred_at": occurred_at.isoformat()},
            format="json",
            HTTP_IDEMPOTENCY_KEY="held",
        )
    )
    _until_one_waits_for_a_lock()
    try:
        with transaction.atomic():  # raises if the waiting event holds the journey's lock
            locking = Journey.objects.select_for_update(nowait=True, no_key=True)
            assert list(locking.filter(pk=journey.pk))
    finally:
        release.set()
        holder_thread.join()
        poster.join()

    assert held == [None]
    (response,) = event
    inbound = InboundEvent.objects.get()
    if holder == "commits":
        assert (response.status_code, response.json()["duplicate"]) == (200, True)
        assert not JourneyEvent.objects.exists()
    else:
        assert (response.status_code, response.json()["applied"]) == (201, True)
        assert inbound.journey_event == JourneyEvent.objects.get()
        assert journey.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT


@pytest.mark.skipif(not CONCURRENT, reason="a writer waiting for a lock is PostgreSQL's")
@pytest.mark.parametrize("code", ["S2", "NOT-MAPPED"])
def test_an_event_whose_journey_is_deleted_while_its_lock_is_awaited_answers_404(
    journey, api_key, caplog, code
):
    """The event read the journey before the deletion committed; its claim and lock
    wait on the deleting transaction, then find no journey: 404, and its claim (which
    names the journey) is not left to fail the commit, whether its code is mapped or
    not: the refusal is the event's own, not the view's catch at commit."""
    response = _posted_while_held(
        lambda: Journey.objects.filter(pk=journey.pk).delete(), api_key, journey, "gone", code
    )
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"
    assert "was deleted while an event for it was recorded" not in caplog.text


@pytest.mark.skipif(not CONCURRENT, reason="a writer waiting for a lock is PostgreSQL's")
def test_a_journey_deleted_while_an_event_holds_it_is_deleted_after_the_event(journey, partner):
    """An event has claimed its id (its inbound row names the journey) and holds the
    journey's lock when staff delete the journey: the deletion waits for the event to
    commit, then deletes its row with the rest. (Django's own delete reads what refers
    to the journey before it locks it, and failed at commit on the event's row. It
    locks it early only when a row it deletes first moves the journey's version, by
    trigger: an ETA estimate, say. This journey has none.)"""
    EtaEstimate.objects.filter(journey=journey).delete()
    holding, release = threading.Event(), threading.Event()

    def event_holding_the_lock() -> None:
        with transaction.atomic():
            read = journey_services.journeys_for_spine().get(pk=journey.pk)
            InboundEvent.objects.create(
                partner=partner,
                journey=read,
                event_id="holds",
                code="S2",
                occurred_at=timezone.now(),
            )
            journey_services.journeys_lock(pks=[journey.pk], journeys={journey.pk: read})
            holding.set()
            assert release.wait(timeout=10)

    holder, held = _started(event_holding_the_lock)
    assert holding.wait(timeout=10)
    deleter, deleted = _started(lambda: journey_services.journeys_delete(pks=[journey.pk]))
    _until_one_waits_for_a_lock()
    release.set()
    holder.join()
    deleter.join()
    assert held == [None]
    assert deleted == [1]
    assert not Journey.objects.filter(pk=journey.pk).exists()
    assert not InboundEvent.objects.exists()


def _posted_while_held(work: Callable[[], object], api_key: str, journey, event_id, code):
    """``work`` done in a transaction of another thread, held open while an event for
    ``journey`` (under an Idempotency-Key, its id) is posted and waits for a lock; then
    committed: the event's response."""
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            work()
            holding.set()
            assert release.wait(timeout=10)

    holder, _ = _started(hold)
    assert holding.wait(timeout=10)
    poster, event = _started(
        lambda: _client(api_key).post(
            url,
            {"event_id": event_id, "code": code, "occurred_at": timezone.now().isoformat()},
            format="json",
            HTTP_IDEMPOTENCY_KEY=event_id,
        )
    )
    _until_one_waits_for_a_lock()
    release.set()
    holder.join()
    poster.join()
    (response,) = event
    return response


def _until_one_waits_for_a_lock() -> None:
    deadline = time.monotonic() + 10
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        assert time.monotonic() < deadline, "nothing waited for a lock"
        time.sleep(0.02)


@pytest.mark.skipif(not CONCURRENT, reason="the one-statement claim is PostgreSQL's")
def test_a_claim_is_one_statement_seen_at_once_by_others_and_leaves_the_session_synchronous(
    partner, django_assert_num_queries
):
    """Outside a transaction the claim commits on its own, in one round trip, without
    waiting for the WAL to reach the disk; the setting that allows that must not outlive
    it, or the request's own work would commit unsafely too."""
    with django_assert_num_queries(1):
        record = idempotency_begin(
            partner=partner, key="k-1", method="POST", path="/p/", fingerprint="0" * 64
        )
    assert record.pk is not None and record.created_at is not None

    def other_connection_sees_it() -> tuple[str, str, bool]:
        seen = IdempotencyRecord.objects.get(pk=record.pk)
        return seen.key, seen.fingerprint, seen.status_code is None

    assert in_threads(other_connection_sees_it, count=1) == [("k-1", "0" * 64, True)]
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
    # The same key again: not claimed twice; the first claim answers (in flight).
    with pytest.raises(ApplicationError) as error:
        idempotency_begin(
            partner=partner, key="k-1", method="POST", path="/p/", fingerprint="0" * 64
        )
    assert error.value.code == "idempotency_in_progress"
    assert IdempotencyRecord.objects.count() == 1
