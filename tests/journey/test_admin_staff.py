"""The admin as a control room (issue 8): every page renders, the actions go through the
services, bad input is a form error and nothing is saved."""

import io
import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from PIL import Image

from integrations.models import InboundEvent
from journey.models import (
    CustomerTask,
    EventSource,
    Journey,
    JourneyEvent,
    JourneyTemplate,
    Message,
    Milestone,
    MilestoneState,
    Photo,
    StageDefinition,
)
from journey.services import message_post
from notifications.models import Notification, NotificationState
from tests.factories import TemplateFactory, UserFactory, make_journey

pytestmark = pytest.mark.django_db


def jpeg_upload(name: str = "car.jpg") -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, format="JPEG")
    return SimpleUploadedFile(name, out.getvalue(), content_type="image/jpeg")


def test_every_registered_model_renders_its_changelist_add_and_change_pages(admin_client):
    call_command("demo", stdout=io.StringIO())
    checked = 0
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        changelist = admin_client.get(reverse("admin:{}_{}_changelist".format(*info)))
        assert changelist.status_code == 200, (model, changelist.status_code)
        if model_admin.has_add_permission(changelist.wsgi_request):
            add = admin_client.get(reverse("admin:{}_{}_add".format(*info)), follow=True)
            assert add.status_code == 200, model
        obj = model._default_manager.first()
        if obj is not None:
            try:
                url = reverse("admin:{}_{}_change".format(*info), args=[obj.pk])
            except NoReverseMatch:
                continue
            change = admin_client.get(url)
            assert change.status_code == 200, (model, change.status_code)
        checked += 1
    assert checked == len(admin.site._registry)


def test_the_journey_list_filters_for_the_work(admin_client, customer):
    overdue = make_journey(owner=customer, title="Overdue task")
    CustomerTask.objects.create(
        journey=overdue, title="Insure the car", due_date=timezone.localdate() - timedelta(days=1)
    )
    asked = make_journey(owner=customer, title="Customer asked")
    message_post(journey=asked, author=customer, body="Where is my car?")
    failed = make_journey(owner=customer, title="Failed message")
    Notification.objects.create(
        recipient=customer, journey=failed, kind="staff_reply", dedup_key="x", state="failed"
    )
    url = reverse("admin:journey_journey_changelist")
    for query, title in (
        ("overdue_tasks=yes", "Overdue task"),
        ("unanswered=yes", "Customer asked"),
        ("failed_notifications=yes", "Failed message"),
    ):
        response = admin_client.get(f"{url}?{query}")
        assert response.status_code == 200
        assert [j.title for j in response.context["cl"].result_list] == [title], query
    search = admin_client.get(f"{url}?q={customer.profile.family_name}")
    assert search.context["cl"].result_count == 3


def test_recording_a_milestone_in_the_admin_matches_the_api(
    admin_client, admin_user, customer, api, partner, journey, django_capture_on_commit_callbacks
):
    """The same change through the admin and through the API writes the same rows."""
    # Another customer: the same one would get the second email held as a digest.
    twin = make_journey(owner=UserFactory())
    occurred = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            reverse("api:journey-events", kwargs={"reference": journey.reference}),
            {"event_id": "e1", "code": "S2", "occurred_at": occurred.isoformat()},
            format="json",
        )
    assert response.status_code == 201
    milestone = twin.milestones.get(stage__key="stage-2")
    local = timezone.localtime(occurred)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:journey_milestone_change", args=[milestone.pk]),
            {
                "planned_date": milestone.planned_date.isoformat(),
                "record_reached_at": local.strftime("%Y-%m-%d %H:%M:%S"),
                "record_message": "",
            },
        )
    assert response.status_code == 302

    def event_row(j: Journey) -> dict:
        event = JourneyEvent.objects.get(journey=j)
        return {
            "kind": event.kind,
            "stage": event.milestone.stage.key,
            "occurred_at": event.occurred_at,
            "message": event.message,
            "customer_visible": event.customer_visible,
            "applied": event.applied,
        }

    def notification_rows(j: Journey) -> list[tuple]:
        rows = Notification.objects.filter(journey=j).order_by("channel")
        return [
            (
                n.recipient_id == j.owner_id,
                n.kind,
                n.channel,
                n.state,
                n.occurred_at,
                n.dedup_key.replace(str(n.context.get("position")), "P"),
                {k: v for k, v in n.context.items()},
            )
            for n in rows
        ]

    def state(j: Journey) -> list[tuple]:
        return [(m.stage.key, m.state, m.reached_at) for m in j.milestones.order_by("position")]

    assert event_row(journey) == event_row(twin)
    assert JourneyEvent.objects.get(journey=journey).source == EventSource.PARTNER
    staff_event = JourneyEvent.objects.get(journey=twin)
    assert (staff_event.source, staff_event.actor) == (EventSource.STAFF, admin_user)
    api_rows = notification_rows(journey)
    admin_rows = notification_rows(twin)
    assert len(api_rows) == len(admin_rows) == 2
    for api_row, admin_row in zip(api_rows, admin_rows, strict=True):
        assert api_row[:5] == admin_row[:5]
        assert api_row[6] == admin_row[6]
    assert [n.dedup_key for n in Notification.objects.filter(journey=twin)] == [
        f"milestone-reached:{milestone.pk}"
    ] * 2
    assert state(journey) == state(twin)


def test_a_milestone_with_photos_stores_them_through_photo_add(admin_client, journey):
    milestone = journey.milestones.get(stage__key="stage-2")
    response = admin_client.post(
        reverse("admin:journey_milestone_change", args=[milestone.pk]),
        {
            "planned_date": milestone.planned_date.isoformat(),
            "record_reached_at": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
            "record_photos": [jpeg_upload("a.jpg"), jpeg_upload("b.jpg")],
            "record_photo_caption": "Leaving the line",
        },
    )
    assert response.status_code == 302
    photos = list(Photo.objects.filter(milestone=milestone))
    assert [(p.caption, p.width, p.height) for p in photos] == [("Leaving the line", 64, 48)] * 2
    assert Notification.objects.filter(kind="photos_added", channel="email").count() == 1


def test_a_bad_photo_or_a_future_date_is_a_form_error_and_nothing_is_saved(admin_client, journey):
    milestone = journey.milestones.get(stage__key="stage-2")
    url = reverse("admin:journey_milestone_change", args=[milestone.pk])
    base = {"planned_date": milestone.planned_date.isoformat()}
    bad = admin_client.post(
        url,
        {
            **base,
            "record_reached_at": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
            "record_photos": [SimpleUploadedFile("x.jpg", b"not an image")],
        },
    )
    assert bad.status_code == 200
    assert "x.jpg: The file is not a whole JPEG, PNG or WebP image." in str(
        bad.context["adminform"].form.errors["record_photos"]
    )
    future = admin_client.post(
        url,
        {
            **base,
            "record_reached_at": (timezone.localtime() + timedelta(days=3)).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
        },
    )
    assert future.context["adminform"].form.errors["record_reached_at"] == [
        "A milestone cannot be reached in the future."
    ]
    assert (JourneyEvent.objects.count(), Photo.objects.count(), Notification.objects.count()) == (
        0,
        0,
        0,
    )
    assert Milestone.objects.get(pk=milestone.pk).state == MilestoneState.UPCOMING


def test_staff_reply_goes_through_the_service_and_tells_the_customer(
    admin_client, admin_user, journey, customer, django_capture_on_commit_callbacks
):
    message_post(journey=journey, author=customer, body="Any news?")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:journey_journey_reply", args=[journey.pk]),
            {"body": "Your car leaves the factory on Monday."},
        )
    assert response.status_code == 302
    reply = Message.objects.get(from_staff=True)
    assert (reply.author, reply.body, reply.private) == (
        admin_user,
        "Your car leaves the factory on Monday.",
        False,
    )
    assert Notification.objects.filter(
        kind="staff_reply", dedup_key=f"staff-reply:{reply.pk}", channel="email", state="sent"
    ).exists()
    unanswered = admin_client.get(reverse("admin:journey_journey_changelist") + "?unanswered=yes")
    assert list(unanswered.context["cl"].result_list) == []


def test_an_empty_reply_is_a_form_error(admin_client, journey):
    response = admin_client.post(
        reverse("admin:journey_journey_reply", args=[journey.pk]), {"body": "  "}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["body"] == ["Write a message first."]
    assert Message.objects.count() == 0


def test_a_journey_is_created_from_a_template_through_the_service(admin_client, customer):
    template = TemplateFactory(stages=3)
    assert admin_client.get(reverse("admin:journey_journey_add")).url == reverse(
        "admin:journey_journey_create"
    )
    response = admin_client.post(
        reverse("admin:journey_journey_create"),
        {"owner": customer.pk, "template": template.pk, "title": "Kitchen", "promised_date": ""},
    )
    journey = Journey.objects.get()
    assert response.url == reverse("admin:journey_journey_change", args=[journey.pk])
    assert (journey.owner, journey.title, journey.template) == (customer, "Kitchen", template)
    assert list(journey.milestones.values_list("stage__key", flat=True)) == [
        "stage-1",
        "stage-2",
        "stage-3",
    ]
    assert journey.eta is not None


def test_a_promise_before_the_start_is_a_form_error_and_sandbox_owners_are_not_offered(
    admin_client, customer
):
    from integrations.sandbox import sandbox_user
    from tests.factories import PartnerFactory

    template = TemplateFactory(stages=3)
    sandbox = sandbox_user(partner=PartnerFactory())
    staff = UserFactory(is_staff=True)
    # The customer is searched as typed (the admin's autocomplete): customers only.
    found = admin_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "journey", "model_name": "journey", "field_name": "owner", "term": ""},
    ).json()["results"]
    assert {row["text"] for row in found} == {customer.email}
    assert {sandbox.email, staff.email}.isdisjoint(row["text"] for row in found)
    response = admin_client.post(
        reverse("admin:journey_journey_create"),
        {
            "owner": sandbox.pk,
            "template": template.pk,
            "title": "Kitchen",
            "started_at_0": "2026-12-01",
            "started_at_1": "09:00",
            "promised_date": "2026-11-01",
        },
    )
    assert response.context["form"].errors["owner"] == [
        "Select a valid choice. That choice is not one of the available choices."
    ]
    # A start years ahead is a typo.
    response = admin_client.post(
        reverse("admin:journey_journey_create"),
        {
            "owner": customer.pk,
            "template": template.pk,
            "title": "K",
            "started_at_0": "2030-01-01",
            "started_at_1": "09:00",
        },
    )
    assert response.context["form"].errors["started_at"] == ["Start it within a year from now."]
    # A date without its time is said, not taken as midnight.
    response = admin_client.post(
        reverse("admin:journey_journey_create"),
        {"owner": customer.pk, "template": template.pk, "title": "K", "started_at_0": "2026-12-01"},
    )
    assert response.context["form"].errors["started_at"] == [
        "Enter a valid time too, or leave both empty for now."
    ]
    response = admin_client.post(
        reverse("admin:journey_journey_create"),
        {
            "owner": customer.pk,
            "template": template.pk,
            "title": "Kitchen",
            "started_at_0": "2026-12-01",
            "started_at_1": "09:00",
            "promised_date": "2026-11-01",
        },
    )
    assert response.status_code == 200
    assert response.context["form"].errors["promised_date"] == [
        "The promised date is before the journey starts."
    ]
    assert Journey.objects.count() == 0


def test_the_change_form_keeps_the_start_before_the_stages_and_the_promise(journey):
    """JourneyAdminForm, the admin's change form of a journey."""
    from journey.forms import JourneyAdminForm
    from journey.services import journey_record_milestone

    reached = timezone.now() - timedelta(hours=1)
    journey_record_milestone(
        journey=journey, stage_key="stage-2", occurred_at=reached, source=EventSource.STAFF
    )
    fields = {
        "title": journey.title,
        "template": journey.template_id,
        "owner": journey.owner_id,
        "delay_reason": "",
    }
    later = timezone.localtime(reached + timedelta(days=2))  # past the day's grace
    form = JourneyAdminForm(instance=journey, data={**fields, "started_at": later})
    assert not form.is_valid()
    assert form.errors["started_at"] == [
        "A stage was reached before that: keep the start before it."
    ]
    start = timezone.localtime(journey.started_at)
    early = (start - timedelta(days=3)).date()
    form = JourneyAdminForm(
        instance=journey, data={**fields, "started_at": start, "promised_date": early}
    )
    assert not form.is_valid()
    assert form.errors["promised_date"] == ["The promised date is before the journey starts."]
    form = JourneyAdminForm(
        instance=journey,
        data={**fields, "started_at": start, "promised_date": start.date() + timedelta(days=30)},
    )
    assert form.is_valid(), form.errors
    # Dates it had already are not judged again: saved for its title, a journey whose
    # start was moved past a stage before this check (two days after it) passes.
    Journey.objects.filter(pk=journey.pk).update(started_at=reached + timedelta(days=2))
    journey.refresh_from_db()
    unchanged = {
        **fields,
        "title": "Renamed",
        "started_at": timezone.localtime(journey.started_at).replace(microsecond=0),
    }
    form = JourneyAdminForm(instance=journey, data=unchanged)
    assert form.is_valid(), form.errors


def test_a_template_without_stages_is_a_form_error(admin_client, customer):
    template = JourneyTemplate.objects.create(key="empty", name="Empty")
    response = admin_client.post(
        reverse("admin:journey_journey_create"),
        {"owner": customer.pk, "template": template.pk, "title": "Nothing"},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["template"] == ["No stages."]
    assert Journey.objects.count() == 0


def stage_data(prefix: str, index: int, key: str, position: int, label: str) -> dict:
    return {
        f"{prefix}-{index}-key": key,
        f"{prefix}-{index}-position": str(position),
        f"{prefix}-{index}-label": label,
        f"{prefix}-{index}-explanation": "",
        f"{prefix}-{index}-expected_duration": "2 00:00:00",
        f"{prefix}-{index}-customer_visible": "on",
        f"{prefix}-{index}-notify_customer": "on",
    }


def template_post(admin_client, stages: list[tuple[str, int, str]], **extra: object):
    data: dict = {
        "key": "kitchen",
        "name": "Kitchen",
        "description": "",
        "stages-TOTAL_FORMS": str(len(stages)),
        "stages-INITIAL_FORMS": "0",
        **extra,
    }
    for index, (key, position, label) in enumerate(stages):
        data.update(stage_data("stages", index, key, position, label))
    return admin_client.post(reverse("admin:journey_journeytemplate_add"), data)


def test_a_template_with_stages_and_switched_off_notifications_is_saved(admin_client):
    response = template_post(
        admin_client,
        [("measure", 1, "Measuring"), ("fit", 2, "Fitting")],
        disabled_notifications=["photos_added", "task_due_soon"],
    )
    assert response.status_code == 302
    template = JourneyTemplate.objects.get(key="kitchen")
    assert template.disabled_notifications == ["photos_added", "task_due_soon"]
    assert list(template.stages.values_list("key", "position", "label")) == [
        ("measure", 1, "Measuring"),
        ("fit", 2, "Fitting"),
    ]


@pytest.mark.parametrize(
    ("stages", "field", "error"),
    [
        (
            [("measure", 1, "Measuring"), ("measure", 2, "Fitting")],
            "key",
            "Another stage of this template has the key measure.",
        ),
        (
            [("measure", 1, "Measuring"), ("fit", 1, "Fitting")],
            "position",
            "Another stage of this template has the position 1.",
        ),
    ],
)
def test_duplicate_stage_keys_or_positions_are_form_errors(admin_client, stages, field, error):
    response = template_post(admin_client, stages)
    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert formset.forms[1].errors[field] == [error]
    assert (JourneyTemplate.objects.count(), StageDefinition.objects.count()) == (0, 0)


def test_a_duplicate_key_against_an_existing_stage_is_a_form_error(admin_client):
    template = TemplateFactory(stages=2)
    data = {
        "key": template.key,
        "name": template.name,
        "description": "",
        "stages-TOTAL_FORMS": "3",
        "stages-INITIAL_FORMS": "2",
    }
    for index, stage in enumerate(template.stages.order_by("position")):
        data.update(stage_data("stages", index, stage.key, stage.position, stage.label))
        data[f"stages-{index}-id"] = str(stage.pk)
        data[f"stages-{index}-template"] = str(template.pk)
    data.update(stage_data("stages", 2, "stage-1", 3, "Again"))
    response = admin_client.post(
        reverse("admin:journey_journeytemplate_change", args=[template.pk]), data
    )
    assert response.status_code == 200
    assert template.stages.count() == 2


def test_jargon_in_a_stage_label_is_refused_naming_the_word(admin_client, settings):
    settings.JARGON_TERMS = ["WMS"]
    response = template_post(admin_client, [("measure", 1, "Measuring in wms")])
    formset = response.context["inline_admin_formsets"][0].formset
    assert formset.forms[0].errors["label"] == [
        "“wms” is an internal term: customers would not understand it."
    ]
    assert JourneyTemplate.objects.count() == 0


def test_jargon_in_a_staff_reply_or_a_milestone_message_is_refused(admin_client, journey):
    from journey.models import JargonTerm

    JargonTerm.objects.create(term="Team Falcon")
    reply = admin_client.post(
        reverse("admin:journey_journey_reply", args=[journey.pk]),
        {"body": "team falcon is on it"},
    )
    assert reply.context["form"].errors["body"] == [
        "“team falcon” is an internal term: customers would not understand it."
    ]
    milestone = journey.milestones.get(stage__key="stage-2")
    record = admin_client.post(
        reverse("admin:journey_milestone_change", args=[milestone.pk]),
        {
            "planned_date": milestone.planned_date.isoformat(),
            "record_reached_at": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
            "record_message": "Passed to Team Falcon.",
        },
    )
    assert record.status_code == 200
    assert "Team Falcon" in str(record.context["adminform"].form.errors["record_message"])
    assert (Message.objects.count(), JourneyEvent.objects.count()) == (0, 0)


def test_jargon_in_a_partner_mapping_customer_text_is_refused(admin_client, settings):
    from integrations.models import Partner

    settings.JARGON_TERMS = ["SAP"]
    response = admin_client.post(
        reverse("admin:integrations_partner_add"),
        {
            "name": "Factory",
            "slug": "factory",
            "mappings-TOTAL_FORMS": "1",
            "mappings-INITIAL_FORMS": "0",
            "mappings-0-code": "X1",
            "mappings-0-stage_key": "build",
            "mappings-0-customer_text": "Status from SAP received",
        },
    )
    assert response.status_code == 200
    assert Partner.objects.count() == 0


def test_unmapped_partner_codes_filter(admin_client, journey, partner):
    other = make_journey(owner=UserFactory())
    InboundEvent.objects.create(
        partner=partner,
        journey=journey,
        event_id="u1",
        code="ZZ",
        occurred_at=timezone.now(),
        unmapped=True,
    )
    InboundEvent.objects.create(
        partner=partner, journey=other, event_id="m1", code="S1", occurred_at=timezone.now()
    )
    response = admin_client.get(reverse("admin:journey_journey_changelist") + "?unmapped=yes")
    assert list(response.context["cl"].result_list) == [journey]


def test_resend_resets_a_failed_row_and_copies_a_sent_one(
    admin_client, customer, journey, django_capture_on_commit_callbacks
):
    failed = Notification.objects.create(
        recipient=customer,
        journey=journey,
        kind="staff_reply",
        dedup_key="r1",
        state=NotificationState.FAILED,
        attempts=8,
        last_error="SMTP down",
        context={"body": "Hello", "anchor": "conversation"},
    )
    sent = Notification.objects.create(
        recipient=customer,
        journey=journey,
        kind="staff_reply",
        dedup_key="r2",
        state=NotificationState.SENT,
        sent_at=timezone.now(),
        occurred_at=timezone.now(),
        context={"body": "Hi", "anchor": "conversation"},
    )
    pending = Notification.objects.create(
        recipient=customer,
        journey=journey,
        kind="staff_reply",
        dedup_key="r3",
        scheduled_at=timezone.now() + timedelta(hours=1),
        context={"body": "Later", "anchor": "conversation"},
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:notifications_notification_changelist"),
            {"action": "resend", "_selected_action": [failed.pk, sent.pk, pending.pk]},
            follow=True,
        )
    texts = [str(m) for m in response.context["messages"]]
    assert "2 message(s) queued to be sent again." in texts
    assert f"#{pending.pk}: This message is still waiting to be sent." in texts
    failed.refresh_from_db()
    assert (failed.state, failed.attempts, failed.last_error) == ("sent", 1, "")
    copy = Notification.objects.get(dedup_key="r2:resend:1")
    assert (copy.state, copy.occurred_at, copy.context) == ("sent", None, sent.context)
    pending.refresh_from_db()
    assert pending.state == "pending"


def test_the_create_page_is_an_admin_form_with_the_templates_at_a_glance(admin_client):
    template = TemplateFactory(stages=2, name="Fitted kitchen")
    page = admin_client.get(reverse("admin:journey_journey_create")).content.decode()
    # The admin's own widgets: a searched customer, a calendar and a clock.
    assert 'class="admin-autocomplete' in page
    assert 'name="started_at_0"' in page and 'class="vDateField' in page
    assert "admin/js/calendar.js" in page or "admin/js/admin/DateTimeShortcuts.js" in page
    # Its scripts carry the page's nonce (the CSP allows no other).
    assert re.search(r'<script src="[^"]*jsi18n/" nonce="[^"]+">', page)
    stages = " → ".join(f"{s.label} (2 d)" for s in template.stages.order_by("position"))
    assert "Fitted kitchen" in page and stages in page


def test_staff_delete_a_journey_and_a_selection_of_journeys_with_what_is_theirs(admin_client):
    """Through journeys_delete, which locks them first (test_concurrency has why)."""
    one, two, three = (make_journey() for _ in range(3))
    url = reverse("admin:journey_journey_delete", args=[one.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    response = admin_client.post(
        reverse("admin:journey_journey_changelist"),
        {"action": "delete_selected", "_selected_action": [two.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert list(Journey.objects.values_list("pk", flat=True)) == [three.pk]
    assert not Milestone.objects.filter(journey__in=[one.pk, two.pk]).exists()
