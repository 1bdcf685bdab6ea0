"""Property tests of quiet hours: a held message is released at the end of the quiet
hours, after now and within a day, on the customer's clock, across time zones and DST."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.models import CustomerProfile
from notifications.services import quiet_hours_end

ZONES = ["Europe/London", "Europe/Madrid", "America/New_York", "Australia/Lord_Howe", "UTC"]
TIMES = st.times().map(lambda t: t.replace(microsecond=0, second=0))
MOMENTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)


def inside(clock: time, start: time, end: time) -> bool:
    return start <= clock < end if start < end else (clock >= start or clock < end)


@settings(max_examples=300, deadline=None)
@given(start=TIMES, end=TIMES, zone=st.sampled_from(ZONES), now=MOMENTS)
def test_quiet_hours_release_after_now_within_a_day(start, end, zone, now) -> None:
    profile = CustomerProfile(time_zone=zone, quiet_hours_start=start, quiet_hours_end=end)
    release = quiet_hours_end(profile=profile, kind="milestone_reached", now=now)
    local = now.astimezone(ZoneInfo(zone))
    if not inside(local.time(), start, end):
        assert release is None
        return
    assert release is not None
    assert release > now
    # A day, plus an hour for a DST change (Lord Howe's half hour included).
    assert release - now <= timedelta(hours=25)
    # Released at the end of the quiet hours on the customer's clock (a time that does
    # not exist on a spring-forward night lands just after the gap).
    released_local = release.astimezone(ZoneInfo(zone))
    gap = abs(
        datetime.combine(released_local.date(), released_local.time())
        - datetime.combine(released_local.date(), end)
    )
    assert gap <= timedelta(hours=1)


@given(start=TIMES, end=TIMES, now=MOMENTS)
def test_no_quiet_hours_or_an_anytime_kind_is_never_held(start, end, now) -> None:
    assert quiet_hours_end(profile=None, kind="milestone_reached", now=now) is None
    profile = CustomerProfile(
        time_zone="Europe/London",
        quiet_hours_start=start,
        quiet_hours_end=end,
        anytime_kinds=["milestone_reached"],
    )
    assert quiet_hours_end(profile=profile, kind="milestone_reached", now=now) is None
