"""Status events sent with ``Prefer: respond-async``: stored and answered 202, applied by
the queue's applier (integrations.services.partner_queued_events_drain)."""

import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import (
    InterfaceError,
    OperationalError,
    ProgrammingError,
    connection,
    connections,
)
from django.urls import reverse
from django.utils import timezone

from integrations import services, tasks
from integrations.api import views
from integrations.models import IdempotencyRecord, InboundEvent
from integrations.services import partner_queued_events_drain
from journey.models import Journey, JourneyEvent, MilestoneState
from notifications.models import Notification
from tests.factories import MappingFactory
from tests.integrations.test_api_events import body, events_url, nothing_written

pytestmark = pytest.mark.django_db

ASYNC = {"HTTP_PREFER": "respond-async"}


def event_url(journey, event_id: str) -> str:
    return reverse(
        "api:journey-event", kwargs={"reference": journey.reference, "event_id": event_id}
    )


# One time for every event of a test: the same event sent again must be the same.
SENT = (timezone.now() - timedelta(minutes=3)).isoformat()


def queue(api, journey, *, key: str | None = "", **overrides: object):
    """Post an event with Prefer: respond-async, under a new Idempotency-Key (as partners
    do, and the way written at once on PostgreSQL), or ``key``, or none (None)."""
    headers = dict(ASYNC)
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key or uuid.uuid4().hex
    return api.post(
        events_url(journey), body(**{"occurred_at": SENT, **overrides}), format="json", **headers
    )


def current_stage(journey) -> str:
    return journey.milestones.get(state=MilestoneState.CURRENT).stage.key


def test_a_queued_event_is_answered_202_then_applied_and_told_to_the_customer(
    api, journey, customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = queue(api, journey)

    assert response.status_code == 202, response.content
    answer = response.json()
    assert answer["state"] == "queued"
    assert (answer["applied"], answer["duplicate"], answer["error"]) == (False, False, None)
    assert response["Preference-Applied"] == "respond-async"
    assert response["Location"] == event_url(journey, "evt-1")
    # Stored, not applied: nothing on the timeline, nobody told.
    inbound = InboundEvent.objects.get()
    assert inbound.queued and inbound.journey_event is None
    assert JourneyEvent.objects.count() == 0 and Notification.objects.count() == 0
    assert api.get(response["Location"]).json()["state"] == "queued"

    # After commit the request nudges the applier; without a broker it runs in-process.
    with django_capture_on_commit_callbacks(execute=True):
        for callback in callbacks:
            callback()

    inbound.refresh_from_db()
    assert not inbound.queued and inbound.rejection is None
    assert inbound.journey_event.applied
    assert inbound.journey_event.payload["data"] == {"plant": "VLC", "line": 4}
    assert current_stage(journey) == "stage-2"
    assert [m.to for m in mail.outbox] == [[customer.email]]
    read = api.get(event_url(journey, "evt-1"))
    assert read.status_code == 200
    assert read.json() == answer | {"state": "applied", "applied": True}


def test_the_applier_takes_a_journeys_events_in_the_order_they_were_accepted(api, journey):
    assert queue(api, journey, event_id="a", code="S3").status_code == 202
    assert queue(api, journey, event_id="b", code="S2").status_code == 202

    assert partner_queued_events_drain() == 2

    assert current_stage(journey) == "stage-3"
    states = {e.event_id: e.state for e in InboundEvent.objects.select_related("journey_event")}
    assert states == {"a": "applied", "b": "logged"}
    # Read back, the older one says why it did not move the journey.
    assert api.get(event_url(journey, "b")).json()["warnings"] == [
        "Older than the journey's state: logged, not applied."
    ]
    assert InboundEvent.objects.filter(queued=True).count() == 0
    assert partner_queued_events_drain() == 0


def test_an_event_id_sent_again_answers_as_without_the_queue(api, journey):
    first = queue(api, journey)
    assert first.status_code == 202

    again = queue(api, journey)  # queued, not applied yet
    assert again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["state"] == "queued"
    assert "Preference-Applied" not in again
    other = queue(api, journey, code="S3")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "event_id_conflict"

    partner_queued_events_drain()
    # Sent again without the queue, once applied: the first result.
    plain = api.post(events_url(journey), body(occurred_at=SENT), format="json")
    assert plain.status_code == 200
    assert plain.json()["state"] == "applied" and plain.json()["applied"] is True
    assert JourneyEvent.objects.count() == 1


def test_an_unmapped_code_is_found_when_applied_and_kept_for_staff(api, journey):
    assert queue(api, journey, code="WEIRD").status_code == 202

    partner_queued_events_drain()

    inbound = InboundEvent.objects.get()
    assert (inbound.queued, inbound.unmapped, inbound.journey_event) == (False, True, None)
    read = api.get(event_url(journey, "evt-1")).json()
    assert read["state"] == "unmapped"
    assert read["warnings"] == [
        "Unmapped status code 'WEIRD': kept for staff, not shown to customers."
    ]
    assert JourneyEvent.objects.count() == 0


def test_an_event_the_spine_refuses_is_kept_rejected_with_the_error_it_would_have_had(
    api, journey, partner
):
    MappingFactory(partner=partner, code="GONE", stage_key="no-such-stage")
    assert queue(api, journey, event_id="bad", code="GONE").status_code == 202
    assert queue(api, journey, event_id="good", code="S2").status_code == 202

    assert partner_queued_events_drain() == 2

    read = api.get(event_url(journey, "bad")).json()
    assert read["state"] == "rejected"
    assert read["error"] == {
        "code": "unknown_stage",
        "message": "Your code 'GONE' is mapped to the stage 'no-such-stage', which this "
        "journey does not have.",
        "fields": {"code": ["Mapped to a stage this journey lacks: 'no-such-stage'."]},
    }
    # The other event of the unit is applied; the refused one wrote nothing.
    assert current_stage(journey) == "stage-2"
    assert JourneyEvent.objects.count() == 1
    # Its id stays taken: the same event again is a duplicate, not a second try.
    assert queue(api, journey, event_id="bad", code="GONE").json()["state"] == "rejected"


@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        ({"occurred_at": (timezone.now() + timedelta(hours=1)).isoformat()}, 400, "occurred_at"),
        ({"occurred_at": (timezone.now() - timedelta(days=30)).isoformat()}, 400, "occurred_at"),
        ({"occurred_at": "2026-11-26T09:30:00"}, 400, "occurred_at"),
        ({"code": ""}, 400, "code"),
        ({"event_id": None}, 400, "event_id"),
    ],
)
def test_bad_input_is_refused_before_anything_is_queued(api, journey, overrides, status, field):
    response = queue(api, journey, **overrides)

    assert response.status_code == status, response.content
    assert field in response.json()["error"]["fields"]
    assert nothing_written()


def test_another_partners_journey_is_404_and_nothing_is_queued(api, other_journey):
    response = queue(api, other_journey)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert nothing_written()
    assert api.get(event_url(other_journey, "evt-1")).status_code == 404


def test_only_the_partner_that_sent_an_event_reads_it(api, other_api, journey, other_partner):
    other_partner.journeys.add(journey)
    assert queue(api, journey).status_code == 202

    assert other_api.get(event_url(journey, "evt-1")).status_code == 404
    assert api.get(event_url(journey, "nope")).status_code == 404


def test_an_event_id_with_a_slash_can_be_read_back(api, journey):
    assert queue(api, journey, event_id="mes/2026/17").status_code == 202

    assert api.get(event_url(journey, "mes/2026/17")).json()["event_id"] == "mes/2026/17"


def test_without_an_idempotency_key_the_event_is_queued_all_the_same(api, journey):
    response = queue(api, journey, key=None)

    assert response.status_code == 202
    assert InboundEvent.objects.get().queued
    assert partner_queued_events_drain() == 1


def test_a_key_used_for_another_event_is_409_and_that_event_is_not_kept(api, journey):
    assert queue(api, journey, key="k-1", event_id="first").status_code == 202

    response = queue(api, journey, key="k-1", event_id="second")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert list(InboundEvent.objects.values_list("event_id", flat=True)) == ["first"]


def test_an_event_id_sent_again_under_a_new_key_keeps_that_keys_answer(api, journey):
    assert queue(api, journey, key="k-1").status_code == 202

    again = queue(api, journey, key="k-2")
    replay = queue(api, journey, key="k-2")

    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get(key="k-2").status_code == 200


def test_a_key_still_in_use_by_another_request_is_409_and_nothing_is_queued(api, journey, partner):
    # A request with this key is running (claimed, not answered yet).
    IdempotencyRecord.objects.create(
        partner=partner,
        key="k-busy",
        method="POST",
        path=events_url(journey),
        fingerprint="f",
        expires_at=timezone.now() + timedelta(hours=1),
    )

    response = queue(api, journey, key="k-busy")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert not InboundEvent.objects.exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the event and its key in one statement"
)
def test_when_the_one_statement_deadlocks_with_a_duplicate_the_usual_way_answers(
    api, journey, monkeypatch
):
    def deadlocked(**kwargs):
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(views, "partner_queue_status_event_at_once", deadlocked)

    response = queue(api, journey, key="k-1")

    assert response.status_code == 202
    assert InboundEvent.objects.get().queued
    assert IdempotencyRecord.objects.get(key="k-1").status_code == 202


def test_the_same_idempotency_key_replays_the_202(api, journey):
    headers = {**ASYNC, "HTTP_IDEMPOTENCY_KEY": "k-1"}
    first = api.post(events_url(journey), body(occurred_at=SENT), format="json", **headers)
    again = api.post(events_url(journey), body(occurred_at=SENT), format="json", **headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    # A client retrying after a timeout needs these as much as the first answer did.
    assert again["Location"] == first["Location"] == event_url(journey, "evt-1")
    assert again["Preference-Applied"] == "respond-async"
    # A retry that leaves Prefer out is the same request (the same key and body): the
    # same answer, with its headers.
    plain = api.post(
        events_url(journey), body(occurred_at=SENT), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert (plain.status_code, plain["Idempotent-Replayed"]) == (202, "true")
    assert plain["Location"] == first["Location"]
    assert plain["Preference-Applied"] == "respond-async"
    assert InboundEvent.objects.count() == 1


def test_a_key_is_looked_at_before_the_body_and_the_journey(api, journey, partner):
    assert queue(api, journey, key="k-1").status_code == 202

    # The same key with a bad body: the key was used for another request.
    reused = queue(api, journey, key="k-1", code="")
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    # The partner no longer serves the journey: the retry still gets its first answer.
    partner.journeys.remove(journey)
    retry = queue(api, journey, key="k-1")
    assert (retry.status_code, retry["Idempotent-Replayed"]) == (202, "true")


def test_prefer_is_read_among_other_preferences_and_unknown_ones_change_nothing(api, journey):
    response = api.post(
        events_url(journey), body(), format="json", HTTP_PREFER="return=minimal, respond-async"
    )
    assert response.status_code == 202

    plain = api.post(
        events_url(journey), body(event_id="e2"), format="json", HTTP_PREFER="return=minimal"
    )
    assert plain.status_code == 201 and plain.json()["state"] == "applied"


def test_events_refused_as_a_unit_for_a_bug_are_applied_one_by_one_and_the_bad_one_rejected(
    api, journey, monkeypatch, caplog
):
    for event_id, code in (("a", "S2"), ("b", "S3"), ("c", "S4")):
        assert queue(api, journey, event_id=event_id, code=code).status_code == 202
    real = services.journey_record_milestone

    def broken_for_s3(**kwargs):
        if kwargs["stage_key"] == "stage-3":
            raise RuntimeError("a bug")
        return real(**kwargs)

    monkeypatch.setattr(services, "journey_record_milestone", broken_for_s3)

    assert partner_queued_events_drain() == 3

    states = {e.event_id: e.state for e in InboundEvent.objects.select_related("journey_event")}
    assert states == {"a": "applied", "b": "rejected", "c": "applied"}
    assert InboundEvent.objects.get(event_id="b").rejection["code"] == "internal_error"
    assert journey.milestones.get(stage__key="stage-4").state != MilestoneState.UPCOMING
    assert "Queued inbound event" in caplog.text


def test_a_journeys_events_from_two_partners_are_applied_in_the_order_accepted(
    api, other_api, journey, other_partner
):
    other_partner.journeys.add(journey)
    MappingFactory(partner=other_partner, code="S3", stage_key="stage-3")
    assert queue(api, journey, event_id="a1", code="S2").status_code == 202
    assert queue(other_api, journey, event_id="b1", code="S3").status_code == 202
    assert queue(api, journey, event_id="a2", code="S4").status_code == 202

    assert partner_queued_events_drain() == 3

    states = {e.event_id: e.state for e in InboundEvent.objects.select_related("journey_event")}
    assert states == {"a1": "applied", "b1": "applied", "a2": "applied"}
    reached = JourneyEvent.objects.filter(applied=True).order_by("pk")
    assert [e.milestone.stage.key for e in reached] == ["stage-2", "stage-3", "stage-4"]


def test_when_every_event_of_a_unit_fails_alone_they_stay_queued(api, journey, monkeypatch, caplog):
    for event_id, code in (("a", "S2"), ("b", "S3")):
        assert queue(api, journey, event_id=event_id, code=code).status_code == 202

    def broken(**kwargs):
        raise RuntimeError("a bug, not the events' fault")

    monkeypatch.setattr(services, "journey_record_milestone", broken)

    with pytest.raises(RuntimeError):
        partner_queued_events_drain()

    assert InboundEvent.objects.filter(queued=True, rejection__isnull=True).count() == 2
    monkeypatch.undo()
    assert partner_queued_events_drain() == 2  # once fixed, they are applied
    assert current_stage(journey) == "stage-3"


@pytest.mark.parametrize(
    "error", [ProgrammingError("cached plan must not change result type"), InterfaceError()]
)
def test_a_database_error_leaves_the_events_queued(api, journey, monkeypatch, error):
    assert queue(api, journey).status_code == 202

    def broken(**kwargs):
        raise error

    monkeypatch.setattr(services, "journey_record_milestone", broken)

    with pytest.raises(type(error)):
        partner_queued_events_drain()
    assert InboundEvent.objects.get().queued


def test_a_nudge_left_while_the_applier_looked_makes_it_look_again(api, journey, monkeypatch):
    """An event that commits just after the applier's last look, while it still holds
    the lock, is not left behind: its nudge is found once the lock is let go."""
    real = services._apply_or_isolate
    looks = []

    def look(limit):
        looks.append(limit)
        if len(looks) == 1:
            # The queue is empty at this look; meanwhile a request queues an event and
            # nudges (its task would find the lock held and leave it to this applier).
            assert queue(api, journey).status_code == 202
            cache.set(services._NUDGE, 1)
            return 0
        return real(limit)

    monkeypatch.setattr(services, "_apply_or_isolate", look)

    assert partner_queued_events_drain() == 1
    assert InboundEvent.objects.get().state == "applied"


def test_a_request_queues_the_applier_once_until_it_has_looked(api, journey, monkeypatch):
    sent = []
    monkeypatch.setattr("integrations.tasks.apply_queued_events.delay", lambda: sent.append(1))

    services._nudge()
    services._nudge()
    assert sent == [1]
    cache.delete(services._NUDGE)  # what the applier does before each look
    services._nudge()
    assert sent == [1, 1]


@contextmanager
def applier_elsewhere():
    """The applier's lock, held as another applier holds it: on PostgreSQL by another
    connection (an advisory lock is the session's, and a session may take its own twice),
    elsewhere by another thread of this process."""
    if connection.vendor != "postgresql":
        with services._LOCAL_APPLIER:
            yield
        return
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [services._APPLIER_LOCK])
            assert cursor.fetchone()[0] is True
        yield
    finally:
        other.close()  # and its lock with it


def test_a_nudge_whose_task_could_not_be_queued_is_cleared(monkeypatch, caplog):
    def broker_down():
        raise ConnectionError("no broker")

    monkeypatch.setattr("integrations.tasks.apply_queued_events.delay", broker_down)

    services._nudge()

    assert cache.get(services._NUDGE) is None  # the next request's nudge tries again
    assert "the sweep will run it" in caplog.text


def test_a_second_applier_leaves_the_queue_to_the_first(api, journey):
    assert queue(api, journey).status_code == 202
    with applier_elsewhere():
        with services._unit() as held:
            assert held is False
        assert partner_queued_events_drain() == 0
        assert InboundEvent.objects.get().queued
    assert partner_queued_events_drain() == 1
    assert InboundEvent.objects.get().state == "applied"


def test_the_applier_runs_on_a_schedule_for_events_whose_task_was_lost(settings):
    schedule = settings.CELERY_BEAT_SCHEDULE["inbound-queue-sweep"]
    assert schedule["task"] == "integrations.tasks.apply_queued_events"
    assert schedule["schedule"] <= timedelta(minutes=1)


@pytest.fixture
def later_looks(settings, monkeypatch):
    """The applier's looks queued for later, recorded instead of sent; the cache's
    markers cleared as the requests' tasks would have found them."""
    settings.INBOUND_QUEUE_GATHER = 0.25
    monkeypatch.setattr(time, "sleep", pytest.fail)  # no waiting in the task
    looks = []

    def apply_async(kwargs, countdown):
        looks.append((kwargs, countdown))

    monkeypatch.setattr(tasks.apply_queued_events, "apply_async", apply_async)
    yield looks
    cache.delete_many([services._NUDGE, services._LATER])


@pytest.mark.parametrize(("events", "later"), [(1, False), (3, False), (4, True)])
def test_the_applier_waits_for_more_only_when_events_come_faster_than_one_a_unit(
    api, journey, later_looks, events, later
):
    """Only once events come faster than a few to a unit; and it waits by queueing its
    next look, not in the task: a worker's process waiting for the queue to fill would
    not be sending the customers' messages meanwhile."""
    for n in range(events):
        assert queue(api, journey, event_id=f"e{n}", code="S2").status_code == 202
    cache.delete(services._NUDGE)

    assert partner_queued_events_drain() == events
    assert later_looks == ([({"scheduled": True}, 0.25)] if later else [])
    assert not InboundEvent.objects.filter(queued=True).exists()
    # The look to come is the nudge's task: requests meanwhile queue no other.
    assert (cache.get(services._NUDGE) == 1) == later


def test_a_look_for_a_nudge_leaves_the_queue_to_the_look_left_for_later(api, journey, later_looks):
    for n in range(4):
        assert queue(api, journey, event_id=f"e{n}", code="S2").status_code == 202
    cache.delete(services._NUDGE)
    assert partner_queued_events_drain() == 4  # and leaves a look for later
    assert queue(api, journey, event_id="e4", code="S3").status_code == 202

    # A request's nudge, or the sweep, meanwhile: the look to come takes the event.
    assert partner_queued_events_drain() == 0
    assert InboundEvent.objects.get(event_id="e4").state == "queued"
    # That look, when it runs, applies it; a unit of one leaves nothing for later.
    assert partner_queued_events_drain(scheduled=True) == 1
    assert InboundEvent.objects.get(event_id="e4").state == "applied"
    assert len(later_looks) == 1


def test_only_one_look_is_left_for_later_however_many_appliers_ask(later_looks):
    assert services._look_again_later() is True
    assert services._look_again_later() is True  # another applier: one is coming
    assert later_looks == [({"scheduled": True}, 0.25)]


def test_when_the_next_look_cannot_be_queued_the_applier_looks_at_once(
    api, journey, later_looks, monkeypatch, caplog
):
    def broker_down(kwargs, countdown):
        raise OSError("connection refused")

    monkeypatch.setattr(tasks.apply_queued_events, "apply_async", broker_down)
    for n in range(4):
        assert queue(api, journey, event_id=f"e{n}", code="S2").status_code == 202
    cache.delete(services._NUDGE)

    assert partner_queued_events_drain() == 4
    assert cache.get(services._NUDGE) is None and cache.get(services._LATER) is None
    assert "Could not queue the applier's next look" in caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "key",
    [
        None,
        pytest.param(
            "k-1",
            marks=pytest.mark.skipif(
                connection.vendor != "postgresql",
                reason="elsewhere the journey is read in the key's transaction, which the "
                "deletion would join",
            ),
        ),
    ],
)
def test_a_journey_deleted_before_its_event_is_queued_answers_404(
    api, journey, monkeypatch, caplog, key
):
    """The journey was deleted (by staff, or a sandbox purge) after the request read it,
    and committed: 404, not its row's foreign key failing at commit (a 500), and
    nothing written. With a key on PostgreSQL it is the at-once way's commit that
    fails."""
    served = views.partner_journey_served

    def then_deleted(**kwargs):
        read = served(**kwargs)
        Journey.objects.filter(pk=journey.pk).delete()
        return read

    monkeypatch.setattr(views, "partner_journey_served", then_deleted)
    response = queue(api, journey, key=key)
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"
    assert nothing_written()
    # A queued event locks nothing: the view's fallback caught it at commit, and said so.
    assert "was deleted while an event for it was recorded" in caplog.text
