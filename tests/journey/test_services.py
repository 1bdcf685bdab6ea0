import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from journey.errors import ApplicationError
from journey.models import (
    Appointment,
    CustomerTask,
    EventSource,
    Feedback,
    Health,
    Journey,
    JourneyEvent,
    Message,
    MilestoneState,
    RescheduleRequest,
    RescheduleState,
)
from journey.services import (
    appointment_request_reschedule,
    feedback_give,
    journey_record_milestone,
    journeys_lock,
    message_post,
    task_complete,
)
from journey.unit import Writes
from notifications.models import Notification
from tests.factories import UserFactory, make_journey

pytestmark = pytest.mark.django_db


def states(journey) -> list[str]:
    return list(journey.milestones.order_by("position").values_list("state", flat=True))


def test_create_plans_one_milestone_per_stage_in_order(journey):
    milestones = list(journey.milestones.order_by("position"))
    assert [m.stage.key for m in milestones] == ["stage-1", "stage-2", "stage-3", "stage-4"]
    assert states(journey) == ["upcoming"] * 4
    planned = [m.planned_date for m in milestones]
    assert planned == sorted(planned)
    assert planned[1] - planned[0] == timedelta(days=2)


def test_reaching_a_stage_marks_earlier_ones_done_and_notifies_once(journey, customer):
    occurred = timezone.now() - timedelta(hours=2)

    recorded = journey_record_milestone(
        journey=journey, stage_key="stage-2", occurred_at=occurred, source=EventSource.PARTNER
    )

    assert recorded.applied is True
    assert states(journey) == ["done", "current", "upcoming", "upcoming"]
    current = journey.milestones.get(stage__key="stage-2")
    assert current.reached_at == occurred
    assert recorded.event.milestone == current
    journey.refresh_from_db()
    assert journey.last_event_at == occurred
    notification = Notification.objects.get(channel="email")
    assert notification.recipient == customer
    assert notification.kind == "milestone_reached"
    assert notification.context["stage_label"] == "Stage 2"
    assert notification.dedup_key == f"milestone-reached:{current.pk}"


def test_an_older_event_is_logged_but_never_moves_the_journey_back(journey):
    now = timezone.now()
    journey_record_milestone(
        journey=journey, stage_key="stage-3", occurred_at=now, source=EventSource.PARTNER
    )

    late = journey_record_milestone(
        journey=journey,
        stage_key="stage-2",
        occurred_at=now - timedelta(hours=5),
        source=EventSource.PARTNER,
    )

    assert late.applied is False
    assert late.event.applied is False
    assert states(journey) == ["done", "done", "current", "upcoming"]
    # The passed-over stage learns its real time; nothing else changes.
    assert journey.milestones.get(stage__key="stage-2").reached_at == now - timedelta(hours=5)
    assert JourneyEvent.objects.filter(journey=journey).count() == 2
    assert Notification.objects.filter(channel="email").count() == 1


def test_the_same_stage_reached_twice_sends_one_message(journey):
    now = timezone.now()
    for _ in range(2):
        journey_record_milestone(
            journey=journey, stage_key="stage-1", occurred_at=now, source=EventSource.STAFF
        )
    assert Notification.objects.filter(channel="email").count() == 1
    assert JourneyEvent.objects.filter(applied=True).count() == 1


def test_reaching_the_last_stage_finishes_the_journey(journey):
    reached = timezone.now() - timedelta(minutes=1)
    journey_record_milestone(
        journey=journey, stage_key="stage-4", occurred_at=reached, source=EventSource.STAFF
    )
    journey.refresh_from_db()
    assert states(journey) == ["done"] * 4
    assert journey.health == Health.DONE
    assert journey.eta == timezone.localdate(reached)


@pytest.mark.parametrize(
    ("stage_key", "offset", "field"),
    [
        ("no-such-stage", timedelta(0), "stage"),
        ("stage-1", timedelta(hours=1), "occurred_at"),
        ("stage-1", -timedelta(days=30), "occurred_at"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(journey, stage_key, offset, field):
    with pytest.raises(ApplicationError) as error:
        journey_record_milestone(
            journey=journey,
            stage_key=stage_key,
            occurred_at=timezone.now() + offset,
            source=EventSource.PARTNER,
        )
    assert field in error.value.fields
    assert JourneyEvent.objects.count() == 0
    assert Notification.objects.count() == 0
    assert states(journey) == ["upcoming"] * 4


def test_notification_is_written_in_the_same_transaction_as_the_event(journey):
    with pytest.raises(RuntimeError), transaction.atomic():
        journey_record_milestone(
            journey=journey,
            stage_key="stage-1",
            occurred_at=timezone.now(),
            source=EventSource.PARTNER,
        )
        raise RuntimeError("the caller fails after the spine ran")
    assert JourneyEvent.objects.count() == 0
    assert Notification.objects.count() == 0
    assert states(journey) == ["upcoming"] * 4


def record_locked(journey, unit: Writes | None = None) -> Writes:
    """One event recorded into a unit of work the caller owns, as a partner's batch does;
    nothing flushed."""
    locked = journeys_lock(pks=[journey.pk], unit=unit)[journey.pk]
    journey_record_milestone(
        journey=journey,
        stage_key="stage-1",
        occurred_at=timezone.now(),
        source=EventSource.PARTNER,
        locked=locked,
    )
    assert locked.unit.pending() > 0
    return locked.unit


def record_in_unit(journey, *, flush: bool) -> None:
    with transaction.atomic():
        unit = record_locked(journey)
        if flush:
            unit.flush()
            assert unit.pending() == 0


def test_a_unit_committed_without_its_flush_is_reported(
    journey, caplog, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        record_in_unit(journey, flush=False)

    assert JourneyEvent.objects.count() == 0  # lost: nobody flushed it
    [record] = [r for r in caplog.records if r.name == "journey.unit"]
    assert record.levelname == "ERROR"
    assert f"(journeys [{journey.pk}])" in record.getMessage()


def test_a_flushed_unit_or_a_rolled_back_one_is_not_reported(
    journey, caplog, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        record_in_unit(journey, flush=True)
        with pytest.raises(RuntimeError), transaction.atomic():
            record_in_unit(journey, flush=False)
            raise RuntimeError("the caller fails: the writes go with the transaction")

    assert JourneyEvent.objects.count() == 1
    assert [r for r in caplog.records if r.name == "journey.unit"] == []


def test_a_unit_locked_again_after_a_rolled_back_savepoint_is_still_checked(
    journey, caplog, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        unit = Writes()
        with pytest.raises(RuntimeError), transaction.atomic():
            journeys_lock(pks=[journey.pk], unit=unit)  # its check goes with the savepoint
            raise RuntimeError("the caller fails")
        record_locked(journey, unit)  # and nobody flushes

    assert [r.levelname for r in caplog.records if r.name == "journey.unit"] == ["ERROR"]


@pytest.mark.parametrize(
    ("promised_in_days", "health"),
    [
        (20, Health.ON_TRACK),
        (9, Health.ON_TRACK),
        (8, Health.AT_RISK),
        (6, Health.AT_RISK),
        (5, Health.DELAYED),
    ],
)
def test_health_follows_the_expected_date_against_the_promise(customer, promised_in_days, health):
    with time_machine.travel("2026-11-02 09:00 +00:00", tick=False):
        today = timezone.now().date()
        journey = make_journey(
            owner=customer, promised_date=today + timedelta(days=promised_in_days)
        )
    # Four stages of two days each, none reached: the last is expected in six days.
    assert journey.eta == today + timedelta(days=6)
    assert journey.health == health


def test_expected_dates_follow_the_current_stage(journey):
    with time_machine.travel(timezone.now(), tick=False):
        now = timezone.now()
        journey_record_milestone(
            journey=journey, stage_key="stage-2", occurred_at=now, source=EventSource.PARTNER
        )
        expected = {
            m.stage.key: m.expected_date
            for m in journey.milestones.filter(state=MilestoneState.UPCOMING)
        }
    assert expected == {
        "stage-3": timezone.localdate(now + timedelta(days=2)),
        "stage-4": timezone.localdate(now + timedelta(days=4)),
    }
    journey.refresh_from_db()
    assert journey.eta == expected["stage-4"]


# The customer's writes from the portal.


def reach(journey, key: str = "stage-2") -> None:
    journey_record_milestone(
        journey=journey,
        stage_key=key,
        occurred_at=timezone.now() - timedelta(hours=1),
        source=EventSource.STAFF,
    )


def make_task(journey) -> CustomerTask:
    return CustomerTask.objects.create(journey=journey, title="Arrange insurance")


def make_appointment(journey) -> Appointment:
    starts = timezone.now() + timedelta(days=5)
    return Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=starts,
        arrive_at=starts - timedelta(minutes=10),
        place_name="Showroom",
    )


def test_the_owner_ticks_a_task_once_and_again_changes_nothing(journey, customer):
    task = make_task(journey)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        first = task_complete(task=task, user=customer).done_at
        traveller.shift(timedelta(minutes=5))
        again = task_complete(task=CustomerTask.objects.get(pk=task.pk), user=customer)
    assert first is not None
    assert again.done_at == first
    assert CustomerTask.objects.get(pk=task.pk).done_at == first


def test_only_the_owner_ticks_a_task(journey):
    task = make_task(journey)
    with pytest.raises(ApplicationError) as error:
        task_complete(task=task, user=UserFactory())
    assert error.value.status == 403
    assert CustomerTask.objects.get(pk=task.pk).done_at is None


def test_reschedule_request_is_saved_with_both_times_and_the_note(journey, customer):
    appointment = make_appointment(journey)
    first = timezone.now() + timedelta(days=7)
    second = first + timedelta(days=1)
    request = appointment_request_reschedule(
        appointment=appointment,
        user=customer,
        first_choice=first,
        second_choice=second,
        note="  Mornings are best.  ",
    )
    request.refresh_from_db()
    assert (request.first_choice, request.second_choice) == (first, second)
    assert request.note == "Mornings are best."
    assert request.state == RescheduleState.OPEN
    assert request.requested_by == customer


@pytest.mark.parametrize(
    ("first_offset", "second_offset", "field", "text"),
    [
        (timedelta(hours=-1), None, "first_choice", "Choose a time in the future."),
        (timedelta(days=2), timedelta(minutes=-5), "second_choice", "Choose a time in the future."),
        (
            timedelta(days=2),
            timedelta(days=2),
            "second_choice",
            "Choose a different second time, or leave it empty.",
        ),
    ],
)
def test_reschedule_in_the_past_or_twice_the_same_is_refused(
    journey, customer, first_offset, second_offset, field, text
):
    appointment = make_appointment(journey)
    now = timezone.now()
    with pytest.raises(ApplicationError) as error:
        appointment_request_reschedule(
            appointment=appointment,
            user=customer,
            first_choice=now + first_offset,
            second_choice=now + second_offset if second_offset is not None else None,
        )
    assert error.value.fields == {field: [text]}
    assert RescheduleRequest.objects.count() == 0


def test_reschedule_needs_an_aware_time_and_the_owner(journey, customer):
    appointment = make_appointment(journey)
    naive = (timezone.now() + timedelta(days=3)).replace(tzinfo=None)
    with pytest.raises(ApplicationError) as error:
        appointment_request_reschedule(appointment=appointment, user=customer, first_choice=naive)
    assert error.value.fields == {"first_choice": ["Give a time with its time zone."]}
    with pytest.raises(ApplicationError) as error:
        appointment_request_reschedule(
            appointment=appointment,
            user=UserFactory(),
            first_choice=timezone.now() + timedelta(days=3),
        )
    assert error.value.status == 403
    assert RescheduleRequest.objects.count() == 0


def test_a_message_can_reply_to_an_update(journey, customer):
    milestone = journey.milestones.get(position=1)
    message = message_post(
        journey=journey, author=customer, body="  Is the colour right?\n", milestone=milestone
    )
    message.refresh_from_db()
    assert message.body == "Is the colour right?"
    assert message.milestone == milestone
    assert message.from_staff is False
    assert message.author == customer


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ("", "body", "Write a message first."),
        ("   \n ", "body", "Write a message first."),
        ("x" * 4001, "body", "Keep it to 4000 characters at most."),
    ],
)
def test_an_empty_or_huge_message_is_refused(journey, customer, body, field, text):
    with pytest.raises(ApplicationError) as error:
        message_post(journey=journey, author=customer, body=body)
    assert error.value.fields == {field: [text]}
    assert Message.objects.count() == 0


def test_a_reply_to_another_journeys_update_is_refused(journey, customer):
    other = make_journey()
    with pytest.raises(ApplicationError) as error:
        message_post(
            journey=journey,
            author=customer,
            body="Hello",
            milestone=other.milestones.get(position=1),
        )
    assert error.value.fields == {"milestone": ["Unknown update."]}
    assert Message.objects.count() == 0


def test_the_database_refuses_an_empty_message(journey):
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(journey=journey, body="")


def test_rating_a_done_stage_and_rating_again_keeps_one_row(journey, customer):
    reach(journey, "stage-3")
    milestone = journey.milestones.get(position=1)
    feedback_give(milestone=milestone, customer=customer, rating=2, comment=" Slow. ")
    feedback_give(milestone=milestone, customer=customer, rating=4)
    rows = list(Feedback.objects.values_list("milestone_id", "customer_id", "rating", "comment"))
    assert rows == [(milestone.pk, customer.pk, 4, "")]


@pytest.mark.parametrize("rating", [0, 6, -1, True])
def test_a_rating_out_of_range_is_refused(journey, customer, rating):
    reach(journey, "stage-3")
    with pytest.raises(ApplicationError) as error:
        feedback_give(
            milestone=journey.milestones.get(position=1), customer=customer, rating=rating
        )
    assert error.value.fields == {"rating": ["Choose from 1 to 5."]}
    assert Feedback.objects.count() == 0


def test_only_a_done_stage_can_be_rated(journey, customer):
    reach(journey, "stage-2")
    for position in (2, 3):  # current, upcoming
        with pytest.raises(ApplicationError) as error:
            feedback_give(
                milestone=journey.milestones.get(position=position), customer=customer, rating=5
            )
        assert error.value.fields == {"milestone": ["This stage is not done yet."]}
    assert Feedback.objects.count() == 0


def test_the_database_refuses_a_rating_out_of_range(journey, customer):
    with pytest.raises(IntegrityError), transaction.atomic():
        Feedback.objects.create(
            milestone=journey.milestones.get(position=1), customer=customer, rating=9
        )


def test_journeys_changed_between_the_read_and_the_lock_are_read_again(monkeypatch):
    """A batch reads its journeys before it locks them; one that another writer changed
    meanwhile (its version moved) is read again under the lock, so the spine never works
    from what the database no longer says."""
    from journey import services

    changed, untouched = make_journey(), make_journey()
    real_load = services._journeys_load
    loads: list[set[int]] = []

    def load_then_another_writer_moves_one(pks, **kwargs):
        loaded = real_load(pks, **kwargs)
        if not loads:  # between the first read and the lock
            changed.milestones.filter(position=1).update(state=MilestoneState.CURRENT)
        loads.append(set(pks))
        return loaded

    monkeypatch.setattr(services, "_journeys_load", load_then_another_writer_moves_one)
    with transaction.atomic():
        locked = services.journeys_lock(pks=[changed.pk, untouched.pk])

    assert loads == [{changed.pk, untouched.pk}, {changed.pk}]
    assert locked[changed.pk].milestones[0].state == MilestoneState.CURRENT
    assert locked[untouched.pk].milestones[0].state == MilestoneState.UPCOMING
    assert locked[changed.pk].unit is locked[untouched.pk].unit


def test_a_journey_the_caller_read_for_the_spine_is_locked_not_read_again(
    django_assert_num_queries,
):
    """The partner API reads the journey by reference with what the spine needs: under
    the lock only its milestones and its version are read, by the statement that locks
    it, and it is the same object."""
    from journey import services

    journey = make_journey()
    read = services.journeys_for_spine().get(pk=journey.pk)
    with transaction.atomic(), django_assert_num_queries(1) as queries:  # milestones, lock
        locked = services.journeys_lock(pks=[journey.pk], journeys={journey.pk: read})
        if connection.features.has_select_for_update:
            assert "FOR NO KEY UPDATE" in queries.captured_queries[0]["sql"]
        assert locked[journey.pk].journey is read
        # What the spine reads with it costs nothing more.
        assert read.owner.profile is not None
        assert read.template.name
        assert [m.position for m in locked[journey.pk].milestones] == [1, 2, 3, 4]
        assert all(m.stage.position == m.position for m in locked[journey.pk].milestones)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="another connection's row lock")
@pytest.mark.django_db(transaction=True)
def test_a_journey_the_caller_read_is_locked_by_the_read_of_its_milestones(
    django_assert_num_queries,
):
    """The statement that reads the milestones locks the journey's row: another writer
    (here another connection, which will not wait) cannot lock it until the spine's
    transaction ends."""
    from journey import services

    journey = make_journey()
    read = services.journeys_for_spine().get(pk=journey.pk)
    outcomes: list[object] = []

    def another_writer() -> None:
        try:
            with transaction.atomic():
                locked = Journey.objects.select_for_update(no_key=True, nowait=True)
                outcomes.append(list(locked.filter(pk=journey.pk).values_list("pk", flat=True)))
        except DatabaseError as error:
            outcomes.append(error)
        finally:
            connection.close()  # this thread's own

    def in_a_thread() -> None:
        thread = threading.Thread(target=another_writer)
        thread.start()
        thread.join()

    with transaction.atomic():
        with django_assert_num_queries(1):  # the milestones' read, the lock with it
            services.journeys_lock(pks=[journey.pk], journeys={journey.pk: read})
        in_a_thread()
    in_a_thread()

    assert isinstance(outcomes[0], DatabaseError)
    assert "could not obtain lock" in str(outcomes[0])
    assert outcomes[1] == [journey.pk]


def test_a_journey_the_caller_read_is_read_again_if_it_moved_before_the_lock():
    from journey import services

    journey = make_journey()
    read = services.journeys_for_spine().get(pk=journey.pk)
    # Another writer, between the caller's read and the lock: the version moves.
    Journey.objects.filter(pk=journey.pk).update(title="Renamed")
    with transaction.atomic():
        locked = services.journeys_lock(pks=[journey.pk], journeys={journey.pk: read})

    assert locked[journey.pk].journey is not read
    assert locked[journey.pk].journey.title == "Renamed"
    assert len(locked[journey.pk].milestones) == 4


def test_a_journey_the_caller_read_is_read_again_if_its_milestones_moved_before_the_lock():
    from journey import services

    journey = make_journey()
    read = services.journeys_for_spine().get(pk=journey.pk)
    journey.milestones.filter(position=1).update(state=MilestoneState.CURRENT)
    with transaction.atomic():
        locked = services.journeys_lock(pks=[journey.pk], journeys={journey.pk: read})

    assert locked[journey.pk].journey.version != read.version
    assert locked[journey.pk].milestones[0].state == MilestoneState.CURRENT


def test_a_journey_the_caller_read_without_milestones_is_still_locked_and_loaded(
    django_assert_num_queries,
):
    """No milestone row to carry the lock and the version: the journey's own lock reads
    it, as for a batch (after reading its milestones once more: a rare case)."""
    from journey import services

    journey = make_journey()
    journey.milestones.all().delete()
    read = services.journeys_for_spine().get(pk=journey.pk)
    with transaction.atomic(), django_assert_num_queries(3):  # none; none again; the lock
        locked = services.journeys_lock(pks=[journey.pk], journeys={journey.pk: read})
    assert locked[journey.pk].journey is read
    assert locked[journey.pk].milestones == []


def test_a_journey_the_caller_read_and_deleted_before_the_lock_is_not_locked():
    from journey import services

    journey = make_journey()
    read = services.journeys_for_spine().get(pk=journey.pk)
    Journey.objects.filter(pk=journey.pk).delete()
    with transaction.atomic():
        assert services.journeys_lock(pks=[journey.pk], journeys={journey.pk: read}) == {}


def test_a_journey_read_without_what_the_spine_reads_is_read_again(django_assert_num_queries):
    """A plain journey (no owner, profile or template with it) would cost a query for
    each of them later: it is read again with them instead."""
    from journey import services

    journey = make_journey()
    plain = Journey.objects.get(pk=journey.pk)
    with transaction.atomic():
        locked = services.journeys_lock(pks=[journey.pk], journeys={journey.pk: plain})
    assert locked[journey.pk].journey is not plain
    with django_assert_num_queries(0):
        assert locked[journey.pk].journey.owner.profile is not None
        assert locked[journey.pk].journey.template.name


# --- A partner's changes to the tasks and appointments it set -----------------------------


def test_a_change_names_only_the_fields_a_task_or_appointment_has(journey):
    from journey.services import journey_appointment_update, journey_task_update

    task, appointment = make_task(journey), make_appointment(journey)
    with pytest.raises(ApplicationError, match=r"Unknown task fields: done_at, journey\."):
        journey_task_update(task=task, done_at=timezone.now(), journey=make_journey())
    with pytest.raises(ApplicationError, match=r"Unknown appointment fields: journey\."):
        journey_appointment_update(appointment=appointment, journey=make_journey())
    assert CustomerTask.objects.get().done_at is None
    assert Appointment.objects.get().journey == journey


@pytest.mark.parametrize("change", ["task_update", "task_withdraw", "update", "cancel"])
def test_a_change_to_what_is_gone_meanwhile_is_a_404(journey, change):
    """Deleted between the partner's read and the change (staff, another request)."""
    from journey import services

    task, appointment = make_task(journey), make_appointment(journey)
    CustomerTask.objects.all().delete()
    Appointment.objects.all().delete()
    calls = {
        "task_update": lambda: services.journey_task_update(task=task, title="X"),
        "task_withdraw": lambda: services.journey_task_withdraw(task=task),
        "update": lambda: services.journey_appointment_update(appointment=appointment, title="X"),
        "cancel": lambda: services.journey_appointment_cancel(appointment=appointment),
    }
    with pytest.raises(ApplicationError) as refused:
        calls[change]()
    assert (refused.value.code, refused.value.status) == ("not_found", 404)
    assert Notification.objects.count() == 0


def test_creating_an_appointment_judges_as_before(journey):
    """The checks create and update share: every field at fault named at once."""
    from journey.services import journey_appointment_create

    start = timezone.now() + timedelta(days=3)
    with pytest.raises(ApplicationError) as refused:
        journey_appointment_create(
            journey=journey,
            title="Visit",
            starts_at=start,
            arrive_at=start + timedelta(minutes=5),
            duration=timedelta(0),
            place_name="Home",
            time_zone="Nowhere/Town",
        )
    assert refused.value.fields == {
        "arrive_at": ["After starts_at."],
        "duration": ["An appointment lasts between 1 minute and 24 hours."],
        "time_zone": ["Unknown time zone 'Nowhere/Town'."],
    }
    assert Appointment.objects.count() == 0
