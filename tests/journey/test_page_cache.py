"""The journey page's cache: the version that keys it, and what each response owns."""

import importlib
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.db import connection
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.services import journey_share_accept, journey_share_invite
from journey.models import (
    Appointment,
    Checkpoint,
    CustomerTask,
    EtaEstimate,
    Feedback,
    Journey,
    JourneyTemplate,
    Message,
    Milestone,
    Photo,
    PromisedItem,
    RescheduleRequest,
    ShipmentLeg,
    StageDefinition,
)
from journey.services import journey_appointment_cancel
from journey.views import detail
from tests.factories import PASSWORD, UserFactory, make_journey
from tests.sql import triggers

pytestmark = pytest.mark.django_db


def version(journey: Journey) -> int:
    return Journey.objects.values_list("version", flat=True).get(pk=journey.pk)


def leg(journey: Journey) -> ShipmentLeg:
    return ShipmentLeg.objects.create(
        journey=journey,
        sequence=1,
        mode="ship",
        origin_name="Santander",
        origin_lat=Decimal(43),
        origin_lon=Decimal(-3),
        destination_name="Portbury",
        destination_lat=Decimal(51),
        destination_lon=Decimal(-2),
    )


def appointment(journey: Journey) -> Appointment:
    at = timezone.now() + timedelta(days=3)
    return Appointment.objects.create(
        journey=journey, title="Handover", starts_at=at, arrive_at=at, place_name="Bristol"
    )


# Each: make a row of the journey's (directly or through another row), then change it.
WRITES = {
    "milestone": lambda j: Milestone.objects.filter(journey=j),
    "photo": lambda j: [Photo.objects.create(journey=j, image="photos/x.jpg")],
    "leg": lambda j: [leg(j)],
    "checkpoint": lambda j: [
        Checkpoint.objects.create(leg=leg(j), occurred_at=timezone.now(), location_name="Sea")
    ],
    "task": lambda j: [CustomerTask.objects.create(journey=j, title="Sign")],
    "promised item": lambda j: [PromisedItem.objects.create(journey=j, name="Mats")],
    "appointment": lambda j: [appointment(j)],
    "reschedule request": lambda j: [
        RescheduleRequest.objects.create(
            appointment=appointment(j),
            requested_by=j.owner,
            first_choice=timezone.now() + timedelta(days=5),
        )
    ],
    "message": lambda j: [Message.objects.create(journey=j, body="Hello")],
    "eta estimate": lambda j: [
        EtaEstimate.objects.create(
            journey=j,
            computed_at=timezone.now(),
            expected=timezone.localdate(),
            low=timezone.localdate(),
            high=timezone.localdate(),
            basis="planned",
            health="on_track",
            cause="event",
        )
    ],
    "feedback": lambda j: [
        Feedback.objects.create(milestone=j.milestones.first(), customer=j.owner, rating=4)
    ],
}


@pytest.mark.parametrize("kind", WRITES)
def test_every_write_to_what_the_page_shows_moves_the_version(kind):
    journey = make_journey()
    other = make_journey()
    other_before = version(other)
    before = version(journey)
    rows = list(WRITES[kind](journey))
    created = version(journey)
    assert created > before or kind == "milestone"  # milestones exist from the start
    model = type(rows[0])
    pks = [row.pk for row in rows]
    # Updated in bulk (no signals, no save()): still moves.
    model.objects.filter(pk__in=pks).update(id=F("id"))
    updated = version(journey)
    assert updated > created
    if kind != "milestone":  # milestones are PROTECTed by events
        model.objects.filter(pk__in=pks).delete()
        assert version(journey) > updated
    assert version(other) == other_before


# Each: what a row of that kind points to on another journey.
MOVES = {
    "photo": ("journey", lambda other: other),
    "checkpoint": ("leg", leg),
    "task": ("journey", lambda other: other),
    "reschedule request": ("appointment", appointment),
    "message": ("journey", lambda other: other),
    "eta estimate": ("journey", lambda other: other),
    "feedback": ("milestone", lambda other: other.milestones.first()),
}


@pytest.mark.parametrize("kind", MOVES)
def test_a_row_moved_to_another_journey_moves_both_versions(kind):
    # The UPDATE triggers read the rows as they were (the journey left) and as they are
    # (the journey joined), through a leg, an appointment or a milestone where the row
    # names one of those.
    journey, other, bystander = make_journey(), make_journey(), make_journey()
    rows = list(WRITES[kind](journey))
    column, target = MOVES[kind]
    to = target(other)
    before = {j.pk: version(j) for j in (journey, other, bystander)}
    type(rows[0]).objects.filter(pk__in=[row.pk for row in rows]).update(**{column: to})
    assert version(journey) > before[journey.pk]
    assert version(other) > before[other.pk]
    assert version(bystander) == before[bystander.pk]


def test_one_statement_over_many_journeys_moves_each_of_them_and_no_other():
    # As a batch's flush writes: one UPDATE of the milestones of many journeys, and one
    # INSERT of their rows of ETA history. Each journey the statement touched moves (on
    # PostgreSQL by exactly one per statement: its triggers run once per statement and
    # look the journeys up by key, however many rows it wrote); no other moves.
    journeys = [make_journey() for _ in range(4)]
    untouched = make_journey()
    before = {j.pk: version(j) for j in [*journeys, untouched]}

    def check_moved(since: dict[int, int]) -> None:
        moves = [version(j) - since[j.pk] for j in journeys]
        assert min(moves) > 0
        if connection.vendor == "postgresql":
            assert set(moves) == {1}

    Milestone.objects.filter(journey__in=journeys).update(expected_date=timezone.localdate())
    after_update = {j.pk: version(j) for j in journeys}
    check_moved(before)
    today = timezone.localdate()
    EtaEstimate.objects.bulk_create(
        EtaEstimate(
            journey=j,
            computed_at=timezone.now(),
            expected=today,
            low=today,
            high=today,
            basis="planned",
            health="on_track",
            cause="event",
        )
        for j in journeys
        for _ in range(2)
    )
    check_moved(after_update)
    assert version(untouched) == before[untouched.pk]


def test_every_watched_table_keeps_its_version_triggers_after_all_migrations():
    """A later migration that makes a table again (SQLite, for a column with a default)
    drops its triggers: journey.migration_ops.keep_version_triggers makes them again."""
    version = importlib.import_module("journey.migrations.0008_journey_version")
    expected = {
        (f"mp_version_{table}_{event.lower()}", table)
        for table in version.CHILDREN
        for event in version.EVENTS
    } | {("mp_version_journey_self", version.JOURNEY)}
    assert triggers("mp_version_%") == expected


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a PostgreSQL storage parameter (migration 0010)"
)
def test_the_tables_the_spine_updates_leave_room_for_hot_updates():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s)",
            [["journey_journey", "journey_milestone"]],
        )
        options = dict(cursor.fetchall())
    assert options == {
        "journey_journey": ["fillfactor=70"],
        "journey_milestone": ["fillfactor=85"],
    }


# Foreign keys without an index of their own (migrations journey 0011, integrations 0004,
# notifications 0005): (table, column, the index that starts with the column instead).
COVERED = [
    ("journey_milestone", "journey_id", "milestone_position_unique"),
    ("journey_journeyevent", "journey_id", "event_journey_time_idx"),
    ("journey_etaestimate", "journey_id", "eta_journey_time_idx"),
    ("integrations_inboundevent", "partner_id", "inbound_event_unique"),
    ("integrations_idempotencyrecord", "partner_id", "idempotency_key_unique"),
    ("notifications_notification", "recipient_id", "notification_recipient_idx"),
]


@pytest.mark.parametrize(("table", "column", "covering"), COVERED)
def test_a_covered_foreign_key_has_no_index_of_its_own(table, column, covering):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    alone = [
        name
        for name, c in constraints.items()
        if c["index"] and not c["primary_key"] and c["columns"] == [column]
    ]
    assert alone == []
    assert constraints[covering]["columns"][0] == column


def test_the_journey_row_and_its_template_move_the_version():
    journey = make_journey()
    before = version(journey)
    Journey.objects.filter(pk=journey.pk).update(delay_reason="A storm in Biscay")
    after_update = version(journey)
    assert after_update == before + 1
    # A save with a stale version in memory does not move it back.
    journey.title = "Renamed"
    journey.save()
    assert version(journey) == after_update + 1
    StageDefinition.objects.filter(template_id=journey.template_id).update(label="Renamed")
    after_stages = version(journey)
    assert after_stages > after_update + 1
    JourneyTemplate.objects.filter(pk=journey.template_id).update(name="Renamed template")
    assert version(journey) > after_stages


@pytest.fixture
def owner_client(client, customer):
    client.login(email=customer.email, password=PASSWORD)
    return client


def detail_url(journey) -> str:
    return reverse("journey:detail", kwargs={"reference": journey.reference})


def test_a_change_made_anywhere_shows_at_once(owner_client, journey):
    task = CustomerTask.objects.create(journey=journey, title="Upload your licence")
    assert "Upload your licence" in owner_client.get(detail_url(journey)).content.decode()
    assert "Upload your licence" in owner_client.get(detail_url(journey)).content.decode()
    CustomerTask.objects.filter(pk=task.pk).update(title="Upload your passport")
    html = owner_client.get(detail_url(journey)).content.decode()
    assert "Upload your passport" in html
    assert "Upload your licence" not in html


def test_a_cancelled_appointment_leaves_the_page_at_once(owner_client, journey):
    """A partner's cancellation deletes the row: the delete moves the journey's version
    (the triggers), so the cached page is not served again."""
    booked = appointment(journey)
    assert "Bristol" in owner_client.get(detail_url(journey)).content.decode()
    before = version(journey)

    journey_appointment_cancel(appointment=booked)

    assert version(journey) > before
    response = owner_client.get(detail_url(journey))
    assert response.status_code == 200
    assert "Bristol" not in response.content.decode()


def _csrf_tokens(html: str) -> set[str]:
    return set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html))


def test_each_response_has_its_own_csrf_token_and_nonce(customer, journey):
    client = Client(enforce_csrf_checks=True)
    client.login(email=customer.email, password=PASSWORD)
    first = client.get(detail_url(journey))
    second = client.get(detail_url(journey))  # from the cache
    tokens = [_csrf_tokens(r.content.decode()) for r in (first, second)]
    assert all(len(t) == 1 for t in tokens)
    assert tokens[0] != tokens[1]  # masked afresh, as Django does
    assert "Placeholder" not in second.content.decode()
    nonces = []
    for response in (first, second):
        header = response["Content-Security-Policy"]
        nonce = re.search(r"'nonce-([^']+)'", header).group(1)
        assert f'nonce="{nonce}"' in response.content.decode()
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    # The token of the cached page works.
    posted = client.post(
        reverse("journey:message", args=[journey.reference]),
        {"body": "Thank you!", "csrfmiddlewaretoken": tokens[1].pop()},
    )
    assert posted.status_code in {302, 200}
    assert journey.messages.filter(body="Thank you!").exists()


def test_an_invited_viewer_gets_their_own_page(client, customer, journey):
    Message.objects.create(journey=journey, author=customer, body="Private note", private=True)
    viewer = UserFactory()
    share = journey_share_invite(journey=journey, owner=customer, email=viewer.email)
    journey_share_accept(share=share, user=viewer)
    client.login(email=customer.email, password=PASSWORD)
    assert "Private note" in client.get(detail_url(journey)).content.decode()
    viewer_client = Client()
    viewer_client.login(email=viewer.email, password=PASSWORD)
    for _ in range(2):
        html = viewer_client.get(detail_url(journey)).content.decode()
        assert "Private note" not in html
        assert reverse("accounts:sharing", args=[journey.reference]) not in html


def test_the_page_follows_the_viewers_language(owner_client, customer, journey):
    assert 'lang="en"' in owner_client.get(detail_url(journey)).content.decode()
    customer.profile.language = "es"
    customer.profile.save()
    assert 'lang="es"' in owner_client.get(detail_url(journey)).content.decode()


def test_a_message_to_show_once_is_shown_not_the_cached_page(rf, owner_client, customer, journey):
    owner_client.get(detail_url(journey))  # the page is in the cache
    request = rf.get(detail_url(journey))
    request.user = customer
    request.session = owner_client.session
    request._messages = FallbackStorage(request)
    messages.success(request, "Your handover date is confirmed.")
    response = detail(request, journey.reference)
    assert "Your handover date is confirmed." in response.content.decode()


def test_an_unchanged_part_is_answered_without_rendering(
    owner_client, journey, django_assert_num_queries
):
    url = reverse("journey:part", args=[journey.reference, "timeline"])
    etag = owner_client.get(url, HTTP_HX_REQUEST="true")["ETag"]
    # session, user, profile, the version, the unread badge: nothing rendered
    with django_assert_num_queries(5):
        again = owner_client.get(url, HTTP_IF_NONE_MATCH=etag, HTTP_HX_REQUEST="true")
    assert again.status_code == 304
