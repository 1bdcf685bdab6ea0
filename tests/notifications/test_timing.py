"""Channels, quiet hours across time zones, and the digest."""

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from notifications import services
from notifications.channels import LoggingSMSBackend
from notifications.models import Notification, NotificationState
from tests.factories import UserFactory, make_journey

pytestmark = pytest.mark.django_db


def enqueue(user, key: str, kind: str = "milestone_reached", **context: object) -> list:
    journey = make_journey(owner=user)
    base = {
        "stage_label": "Paint",
        "explanation": "",
        "message": "",
        "position": 2,
        "stage_count": 4,
        "eta": None,
        "occurred_at": timezone.now().isoformat(),
    }
    return services.notification_enqueue(
        recipient=user, journey=journey, kind=kind, dedup_key=key, context={**base, **context}
    )


def by_channel(rows: list) -> dict[str, Notification]:
    return {row.channel: row for row in rows}


def test_channels_follow_the_profile_and_the_centre_always_gets_one():
    user = UserFactory(profile__phone="+447911123456", profile__channel_sms=True)
    rows = by_channel(enqueue(user, "a"))
    assert set(rows) == {"inapp", "email", "sms"}
    assert rows["inapp"].state == NotificationState.SENT  # shown in the portal at once


@pytest.mark.parametrize(
    ("zone", "utc_now", "held_until_utc"),
    [
        # 23:30 in Madrid (22:30 UTC), quiet 22:00-07:00: held to 07:00 Madrid = 06:00 UTC.
        ("Europe/Madrid", "2026-11-20 22:30", "2026-11-21 06:00"),
        # 06:00 in New York (11:00 UTC): still quiet until 07:00 there = 12:00 UTC.
        ("America/New_York", "2026-11-20 11:00", "2026-11-20 12:00"),
        # 10:00 in London: not quiet, sent now.
        ("Europe/London", "2026-11-20 10:00", None),
    ],
)
def test_quiet_hours_hold_messages_in_the_customers_time_zone(zone, utc_now, held_until_utc):
    user = UserFactory(
        profile__time_zone=zone,
        profile__quiet_hours_start=time(22, 0),
        profile__quiet_hours_end=time(7, 0),
    )
    now = datetime.fromisoformat(utc_now).replace(tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        email = by_channel(enqueue(user, "q"))["email"]
        expected = (
            datetime.fromisoformat(held_until_utc).replace(tzinfo=UTC) if held_until_utc else now
        )
        assert email.scheduled_at == expected
        # Held or not, nothing is overdue yet (an unheld row goes by its own task).
        assert services.outbox_sweep() == 0
    if held_until_utc:
        with time_machine.travel(expected + timedelta(seconds=5), tick=False):
            assert services.outbox_sweep() == 1  # the sweep sends it when quiet hours end
        assert len(mail.outbox) == 1


def test_a_kind_allowed_at_any_hour_is_not_held():
    user = UserFactory(
        profile__time_zone="Europe/London",
        profile__quiet_hours_start=time(22, 0),
        profile__quiet_hours_end=time(7, 0),
        profile__anytime_kinds=["journey_delayed"],
    )
    with time_machine.travel(datetime(2026, 11, 20, 23, 0, tzinfo=UTC), tick=False):
        delayed = by_channel(
            enqueue(
                user,
                "d",
                kind="journey_delayed",
                promised_date="2026-12-01",
                reason="",
                eta="2026-12-03",
            )
        )["email"]
        milestone = by_channel(enqueue(user, "m"))["email"]
        assert delayed.scheduled_at == timezone.now()
        assert milestone.scheduled_at > timezone.now()


def test_a_burst_of_updates_goes_out_as_one_digest(settings):
    user = UserFactory()
    start = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        first = by_channel(enqueue(user, "1"))["email"]
        assert services.notification_deliver(notification_id=first.pk) == NotificationState.SENT
    with time_machine.travel(start + timedelta(seconds=20), tick=False):
        second = by_channel(enqueue(user, "2"))["email"]
        third = by_channel(enqueue(user, "3", stage_label="Assembly"))["email"]
    window = settings.NOTIFICATION_DIGEST_WINDOW
    assert second.scheduled_at == third.scheduled_at == start + window
    with time_machine.travel(start + window + timedelta(seconds=1), tick=False):
        assert services.outbox_sweep() == 1
    assert len(mail.outbox) == 2
    digest = mail.outbox[1]
    assert "2 updates" in digest.subject
    assert "Paint" in digest.body and "Assembly" in digest.body
    assert set(Notification.objects.filter(channel="email").values_list("state", flat=True)) == {
        "sent"
    }
    assert Notification.objects.get(pk=third.pk).digest_size == 2


def test_a_template_can_switch_a_kind_off():
    user = UserFactory()
    journey = make_journey(owner=user)
    journey.template.disabled_notifications = ["photos_added"]
    journey.template.save()
    rows = services.notification_enqueue(
        recipient=user, journey=journey, kind="photos_added", dedup_key="p", context={}
    )
    assert rows == []
    assert Notification.objects.count() == 0


def test_sms_and_push_go_to_their_backends():
    LoggingSMSBackend.sent.clear()
    user = UserFactory(
        profile__phone="+447911123456", profile__channel_sms=True, profile__channel_email=False
    )
    sms = by_channel(enqueue(user, "s"))["sms"]
    assert services.notification_deliver(notification_id=sms.pk) == NotificationState.SENT
    assert LoggingSMSBackend.sent[-1]["to"] == "+447911123456"
    assert "Paint" in LoggingSMSBackend.sent[-1]["text"]
    assert len(mail.outbox) == 0


def test_a_bounce_stops_email_and_falls_back_to_another_channel(django_capture_on_commit_callbacks):
    user = UserFactory(profile__phone="+447911123456")
    email = by_channel(enqueue(user, "b"))["email"]
    services.notification_deliver(notification_id=email.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.email_bounced(email=user.email, notification_id=email.pk) is True
    email.refresh_from_db()
    assert email.state == NotificationState.FAILED
    fallback = Notification.objects.get(dedup_key="b", channel="sms")
    assert fallback.state == NotificationState.SENT
    # From now on this customer gets no email, but is still reached.
    user.profile.refresh_from_db()
    later = by_channel(enqueue(user, "c"))
    assert set(later) == {"inapp", "sms"}


def test_sandbox_journeys_and_deleted_accounts_get_nothing():
    user = UserFactory()
    journey = make_journey(owner=user)
    type(journey).objects.filter(pk=journey.pk).update(is_sandbox=True)
    journey.refresh_from_db()
    assert (
        services.notification_enqueue(
            recipient=user, journey=journey, kind="photos_added", dedup_key="s", context={}
        )
        == []
    )
    user.is_active = False
    user.save()
    assert (
        services.notification_enqueue(
            recipient=user, kind="profile_change_proposed", dedup_key="d", context={}
        )
        == []
    )
    assert Notification.objects.count() == 0


def test_a_new_message_joins_the_newest_of_two_recent_ones_held_to_the_same_time():
    """Two recent email rows with the same time: an older one being sent and a newer one
    still waiting. The rule reads them newest first, so the next message joins the
    waiting one's digest instead of being held a window after the one being sent."""
    user = UserFactory()
    start = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        sent = by_channel(enqueue(user, "first"))["email"]
        waiting = by_channel(enqueue(user, "second"))["email"]
    held = start + timedelta(minutes=2)
    Notification.objects.filter(pk=sent.pk).update(
        state=NotificationState.SENDING,
        scheduled_at=held,
        created_at=start - timedelta(seconds=30),
    )
    Notification.objects.filter(pk=waiting.pk).update(scheduled_at=held, created_at=start)
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        third = by_channel(enqueue(user, "third"))["email"]
    assert third.scheduled_at == held
