"""New quiet hours or channels apply to the messages still waiting, and a message that may
go now never waits behind a row held for hours."""

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import Source
from accounts.services import profile_update
from journey.models import Journey
from journey.services import journey_appointment_create, journey_task_create, staff_reply_post
from notifications import services
from notifications.models import Notification, NotificationState
from tests.factories import UserFactory, make_journey

pytestmark = pytest.mark.django_db

# 22:55 in London (GMT in November), inside quiet hours 22:00-07:30.
EVENING = datetime(2026, 11, 20, 22, 55, tzinfo=UTC)
MORNING = datetime(2026, 11, 21, 7, 30, tzinfo=UTC)


@pytest.fixture
def customer():
    return UserFactory(
        profile__time_zone="Europe/London",
        profile__phone="+447911123456",
        profile__channel_sms=True,
        profile__quiet_hours_start=time(22, 0),
        profile__quiet_hours_end=time(7, 30),
    )


def outside(**filters: object) -> dict[str, Notification]:
    rows = Notification.objects.filter(**filters).exclude(channel="inapp")
    return {row.channel: row for row in rows}


def times(rows: dict[str, Notification]) -> dict[str, tuple[int, datetime]]:
    return {channel: (row.pk, row.scheduled_at) for channel, row in rows.items()}


def post_task(journey) -> None:
    journey_task_create(journey=journey, title="Arrange insurance", due_date=None)


def test_clearing_quiet_hours_sends_what_they_held_and_what_comes_next_at_once(
    client, customer, django_capture_on_commit_callbacks
):
    journey = make_journey(owner=customer)
    client.force_login(customer)
    with time_machine.travel(EVENING, tick=False):
        post_task(journey)
        held = outside(kind="task_assigned")
        assert {row.scheduled_at for row in held.values()} == {MORNING}

    with time_machine.travel(EVENING + timedelta(seconds=30), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse("accounts:section", args=["notifications"]),
                {
                    "notifications-channel_email": "on",
                    "notifications-channel_sms": "on",
                    "notifications-quiet_hours_start": "",
                    "notifications-quiet_hours_end": "",
                },
            )
        assert response.status_code == 302
        released = outside(kind="task_assigned")
        assert set(released) == {"email", "sms"}
        assert {row.state for row in released.values()} == {NotificationState.SENT}
        assert len(mail.outbox) == 1

    journey = Journey.objects.get(pk=journey.pk)  # as the next request reads it
    with time_machine.travel(EVENING + timedelta(minutes=1), tick=False):
        journey_appointment_create(
            journey=journey,
            title="Handover",
            starts_at=timezone.now() + timedelta(days=3),
            place_name="Showroom",
        )
        staff_reply_post(journey=journey, author=UserFactory(), body="Your car is ready.")
    # Held as a digest after the message just sent, no longer: not till the morning.
    digest_end = EVENING + timedelta(seconds=30) + timedelta(minutes=3)
    for kind in ("appointment_set", "staff_reply"):
        assert {row.scheduled_at for row in outside(kind=kind).values()} == {digest_end}


@pytest.mark.parametrize(
    ("changes", "released_at"),
    [
        # Shorter quiet hours: released at their new end.
        ({"quiet_hours_end": time(6, 0)}, datetime(2026, 11, 21, 6, 0, tzinfo=UTC)),
        # Madrid's 07:30 is an hour before London's.
        ({"time_zone": "Europe/Madrid"}, datetime(2026, 11, 21, 6, 30, tzinfo=UTC)),
        # Quiet hours that are over by now's clock: at once.
        ({"quiet_hours_start": time(8, 0), "quiet_hours_end": time(20, 0)}, EVENING),
    ],
)
def test_new_quiet_hours_reschedule_the_waiting_messages(customer, changes, released_at):
    journey = make_journey(owner=customer)
    with time_machine.travel(EVENING, tick=False):
        post_task(journey)
        profile_update(
            profile=customer.profile, changes=changes, actor=customer, source=Source.CUSTOMER
        )
    rows = outside(kind="task_assigned")
    assert set(rows) == {"email", "sms"}
    assert {row.scheduled_at for row in rows.values()} == {released_at}
    assert {row.state for row in rows.values()} == {NotificationState.PENDING}


def test_channels_switched_off_and_on_apply_to_the_waiting_messages(customer):
    journey = make_journey(owner=customer)
    with time_machine.travel(EVENING, tick=False):
        post_task(journey)
        centre = Notification.objects.get(kind="task_assigned", channel="inapp")
        email = outside(kind="task_assigned")["email"]

        def switch(**changes: object) -> dict[str, Notification]:
            profile_update(
                profile=customer.profile, changes=changes, actor=customer, source=Source.CUSTOMER
            )
            return outside(kind="task_assigned")

        assert set(switch(channel_email=False)) == {"sms"}  # no email left to send
        rows = switch(channel_email=True)
    assert set(rows) == {"email", "sms"}
    assert {row.scheduled_at for row in rows.values()} == {MORNING}  # still quiet hours
    assert (rows["email"].occurred_at, rows["email"].context) == (email.occurred_at, email.context)
    # The centre's row, already shown, is left as it was.
    assert Notification.objects.get(kind="task_assigned", channel="inapp").pk == centre.pk


def test_a_phone_filled_in_by_a_partner_reaches_the_waiting_messages_too():
    """Only the customer's own edits rescheduled (a code review): a phone a partner
    fills in is a new way to reach them for what still waits, as one they type is."""
    from accounts.services import profile_propose_change

    customer = UserFactory(
        profile__time_zone="Europe/London",
        profile__channel_sms=True,
        profile__quiet_hours_start=time(22, 0),
        profile__quiet_hours_end=time(7, 30),
    )
    journey = make_journey(owner=customer)
    with time_machine.travel(EVENING, tick=False):
        post_task(journey)
        assert set(outside(kind="task_assigned")) == {"email"}  # no number: no text yet
        profile_propose_change(
            user=customer,
            field="phone",
            value="+44 7911 123456",
            reason="The order form",
            source=Source.PARTNER,
            actor_name="Iberia Motor Works",
        )
    rows = outside(kind="task_assigned")
    assert set(rows) == {"email", "sms"}
    assert {row.scheduled_at for row in rows.values()} == {MORNING}


def test_other_changes_and_retries_keep_their_times(customer):
    journey = make_journey(owner=customer)
    with time_machine.travel(EVENING, tick=False):
        post_task(journey)
        before = times(outside(kind="task_assigned"))
        retry = outside(kind="task_assigned")["sms"]
        Notification.objects.filter(pk=retry.pk).update(attempts=1)
        profile_update(
            profile=customer.profile,
            changes={"given_name": "Alex"},
            actor=customer,
            source=Source.CUSTOMER,
        )
        assert times(outside(kind="task_assigned")) == before  # the same rows, untouched
        profile_update(
            profile=customer.profile,
            changes={"quiet_hours_start": None, "quiet_hours_end": None},
            actor=customer,
            source=Source.CUSTOMER,
        )
    after = outside(kind="task_assigned")
    assert after["email"].scheduled_at == EVENING  # released
    # A retry waits for its backoff whatever the quiet hours say.
    assert (after["sms"].pk, after["sms"].scheduled_at) == (retry.pk, MORNING)


def test_a_kind_allowed_at_any_hour_does_not_wait_behind_a_held_message(customer):
    customer.profile.anytime_kinds = ["appointment_set"]
    customer.profile.save()
    journey = make_journey(owner=customer)
    with time_machine.travel(EVENING, tick=False):
        post_task(journey)
    with time_machine.travel(EVENING + timedelta(minutes=1), tick=False):
        journey_appointment_create(
            journey=journey,
            title="Handover",
            starts_at=timezone.now() + timedelta(days=3),
            place_name="Showroom",
        )
        # A kind the quiet hours hold still joins the held messages in the morning.
        staff_reply_post(journey=journey, author=UserFactory(), body="See you soon.")
    appointment = outside(kind="appointment_set")
    assert {row.scheduled_at for row in appointment.values()} == {EVENING + timedelta(minutes=1)}
    assert {row.scheduled_at for row in outside(kind="staff_reply").values()} == {MORNING}


def test_in_one_unit_of_work_too_a_kind_allowed_at_any_hour_goes_at_once(customer):
    customer.profile.anytime_kinds = ["journey_delayed"]
    customer.profile.save()
    journey = make_journey(owner=customer)
    with time_machine.travel(EVENING, tick=False):
        outbox = services.Outbox()  # a partner's batch: held first, then the urgent one
        for kind, key in (("milestone_reached", "m"), ("journey_delayed", "d")):
            outbox.add(recipient=customer, journey=journey, kind=kind, dedup_key=key, context={})
        rows = {(row.dedup_key, row.channel): row.scheduled_at for row in outbox.flush()}
    assert rows[("m", "email")] == rows[("m", "sms")] == MORNING
    assert rows[("d", "email")] == rows[("d", "sms")] == EVENING
