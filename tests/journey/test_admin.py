"""Staff record milestones in the admin, through the same spine as the API."""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.mfa import totp_activate
from journey.models import (
    Appointment,
    EventSource,
    Feedback,
    Journey,
    JourneyEvent,
    MilestoneState,
    RescheduleRequest,
    RescheduleState,
    ShipmentLeg,
    TemplateEtaStats,
)
from notifications.models import Notification
from tests.factories import TemplateFactory, UserFactory, make_journey

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    totp_activate(user=user)  # staff use the admin only with two-factor authentication
    client.force_login(user)
    return user


def change_url(milestone) -> str:
    return reverse("admin:journey_milestone_change", args=[milestone.pk])


def form(milestone, **fields: str) -> dict[str, str]:
    data = {"planned_date": milestone.planned_date.isoformat()}
    data.update(fields)
    return data


def test_staff_saving_a_milestone_records_it_through_the_spine(
    client, staff, journey, customer, django_capture_on_commit_callbacks
):
    milestone = journey.milestones.get(stage__key="stage-2")
    reached = timezone.localtime() - timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            change_url(milestone),
            form(
                milestone,
                record_reached_at=reached.strftime("%Y-%m-%d %H:%M:%S"),
                record_message="Ahead of plan!",
            ),
        )

    assert response.status_code == 302, response.content.decode()[:2000]
    milestone.refresh_from_db()
    assert milestone.state == MilestoneState.CURRENT
    event = JourneyEvent.objects.get()
    assert event.source == EventSource.STAFF
    assert event.actor == staff
    assert event.message == "Ahead of plan!"
    notification = Notification.objects.get(channel="email")
    assert notification.recipient == customer
    assert notification.dedup_key == f"milestone-reached:{milestone.pk}"
    assert len(mail.outbox) == 1
    assert "Ahead of plan!" in mail.outbox[0].body


def test_a_milestone_in_the_future_is_a_form_error_and_nothing_is_saved(client, staff, journey):
    milestone = journey.milestones.get(stage__key="stage-2")
    future = timezone.localtime() + timedelta(days=2)
    response = client.post(
        change_url(milestone),
        form(milestone, record_reached_at=future.strftime("%Y-%m-%d %H:%M:%S")),
    )
    assert response.status_code == 200
    assert "cannot be reached in the future" in response.content.decode()
    assert JourneyEvent.objects.count() == 0
    assert Notification.objects.count() == 0


def test_the_journey_admin_shows_milestones_and_events(client, staff, journey):
    response = client.get(reverse("admin:journey_journey_change", args=[journey.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Stage 1" in html and "Record…" in html


def test_customers_cannot_reach_the_admin(client, customer, journey):
    client.force_login(customer)
    response = client.get(reverse("admin:journey_journey_change", args=[journey.pk]))
    assert response.status_code == 302


# --- The ETA in the admin (journey/eta.py) ----------------------------------------------


def test_the_journey_admin_shows_the_eta_basis_range_and_history(client, staff, journey):
    response = client.get(reverse("admin:journey_journey_change", args=[journey.pk]))
    html = response.content.decode()
    assert "Planned durations" in html
    assert f"{journey.eta_low:%Y-%m-%d} to {journey.eta_high:%Y-%m-%d}" in html
    assert "ETA history" in html and "Journey created" in html


def test_staff_filter_stalled_journeys(client, staff, journey):
    stalled = make_journey(title="Stuck in paint")
    Journey.objects.filter(pk=stalled.pk).update(stalled_since=timezone.now())

    response = client.get(reverse("admin:journey_journey_changelist"), {"stalled": "yes"})

    html = response.content.decode()
    assert stalled.reference in html
    assert journey.reference not in html


def stage_form(template, **changes: str) -> dict[str, str]:
    stages = list(template.stages.order_by("position"))
    data = {
        "key": template.key,
        "name": template.name,
        "description": "",
        "stages-TOTAL_FORMS": str(len(stages)),
        "stages-INITIAL_FORMS": str(len(stages)),
        "stages-MIN_NUM_FORMS": "0",
        "stages-MAX_NUM_FORMS": "1000",
    }
    for index, stage in enumerate(stages):
        prefix = f"stages-{index}-"
        data.update(
            {
                prefix + "id": str(stage.pk),
                prefix + "template": str(template.pk),
                prefix + "position": str(stage.position),
                prefix + "key": stage.key,
                prefix + "label": stage.label,
                prefix + "explanation": stage.explanation,
                prefix + "expected_duration": "2 00:00:00",
                prefix + "customer_visible": "on",
                prefix + "notify_customer": "on",
            }
        )
    data.update(changes)
    return data


def test_a_negative_stage_duration_is_a_form_error_and_nothing_is_saved(client, staff):
    template = TemplateFactory(stages=2)
    url = reverse("admin:journey_journeytemplate_change", args=[template.pk])

    response = client.post(
        url, stage_form(template, **{"stages-0-expected_duration": "-3 00:00:00"})
    )

    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 0:00:00." in response.content.decode()
    assert set(template.stages.values_list("expected_duration", flat=True)) == {timedelta(days=2)}


def test_a_shipping_stage_is_marked_in_the_template_admin(client, staff):
    template = TemplateFactory(stages=2)
    url = reverse("admin:journey_journeytemplate_change", args=[template.pk])

    response = client.post(url, stage_form(template, **{"stages-1-shipping": "on"}))

    assert response.status_code == 302
    assert list(template.stages.values_list("key", "shipping")) == [
        ("stage-1", False),
        ("stage-2", True),
    ]


def _leg_and_its_form(journey, **times: datetime) -> tuple[ShipmentLeg, dict[str, str]]:
    """A ship leg with no times, and its admin change form's data with ``times`` (split
    date and time fields) set."""
    leg = ShipmentLeg.objects.create(
        journey=journey,
        sequence=1,
        mode="ship",
        origin_name="Santander",
        origin_lat=Decimal("43.46"),
        origin_lon=Decimal("-3.80"),
        destination_name="Portbury",
        destination_lat=Decimal("51.49"),
        destination_lon=Decimal("-2.72"),
    )
    data = {
        "journey": str(journey.pk),
        "sequence": "1",
        "mode": "ship",
        "carrier": "",
        "origin_name": "Santander",
        "origin_lat": "43.46",
        "origin_lon": "-3.80",
        "destination_name": "Portbury",
        "destination_lat": "51.49",
        "destination_lon": "-2.72",
        "checkpoints-TOTAL_FORMS": "0",
        "checkpoints-INITIAL_FORMS": "0",
        "checkpoints-MIN_NUM_FORMS": "0",
        "checkpoints-MAX_NUM_FORMS": "1000",
    }
    for name, value in times.items():
        local = timezone.localtime(value)
        data[f"{name}_0"] = local.strftime("%Y-%m-%d")
        data[f"{name}_1"] = local.strftime("%H:%M:%S")
    return leg, data


def test_a_leg_eta_before_the_journey_started_is_a_form_error(client, staff, journey):
    before = (journey.eta, journey.eta_low, journey.eta_high)
    leg, data = _leg_and_its_form(journey, eta=journey.started_at - timedelta(days=2))

    response = client.post(reverse("admin:journey_shipmentleg_change", args=[leg.pk]), data)

    assert response.status_code == 200
    assert "The ETA is before the journey started." in response.content.decode()
    leg.refresh_from_db()
    assert leg.eta is None
    journey.refresh_from_db()
    assert (journey.eta, journey.eta_low, journey.eta_high) == before


def test_a_leg_arriving_before_it_departs_is_said_in_words(client, staff, journey):
    departed = journey.started_at + timedelta(days=3)
    leg, data = _leg_and_its_form(
        journey, departed_at=departed, arrived_at=departed - timedelta(days=1)
    )

    response = client.post(reverse("admin:journey_shipmentleg_change", args=[leg.pk]), data)

    assert response.status_code == 200
    page = response.content.decode()
    assert "A leg arrives only once it has departed, and not before it departed." in page
    assert "Constraint" not in page
    leg.refresh_from_db()
    assert (leg.departed_at, leg.arrived_at) == (None, None)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"starts_at": "9999"}, "starts_at", "Set an appointment within two years from now."),
        ({"starts_at": "past"}, "starts_at", "An appointment cannot start in the past."),
        ({"duration": timedelta(hours=-1)}, "duration", "between 1 minute and 24 hours"),
        ({"duration": timedelta(0)}, "duration", "between 1 minute and 24 hours"),
        ({"duration": timedelta(days=30)}, "duration", "between 1 minute and 24 hours"),
        ({"arrive_at": "late"}, "__all__", "arrive at the start or before it"),
    ],
)
def test_an_appointments_time_is_checked_as_the_admin_saves_it(journey, changes, field, message):
    """What the admin's forms ask (Model.full_clean): an appointment the customer's page
    and emails can show, as the API's services ask too."""
    from django.core.exceptions import ValidationError

    starts = timezone.now().replace(microsecond=0) + timedelta(days=5)
    values = {"starts_at": starts, "arrive_at": starts, "duration": timedelta(hours=1)}
    values.update(changes)
    if values["starts_at"] == "9999":
        values["starts_at"] = values["arrive_at"] = starts.replace(year=9999, month=12, day=31)
    elif values["starts_at"] == "past":
        values["starts_at"] = values["arrive_at"] = starts - timedelta(days=30)
    if values["arrive_at"] == "late":
        values["arrive_at"] = starts + timedelta(minutes=5)
    appointment = Appointment(journey=journey, title="Handover", place_name="Showroom", **values)
    with pytest.raises(ValidationError) as refused:
        appointment.full_clean()
    assert any(message in text for text in refused.value.message_dict[field])
    assert "Constraint" not in str(refused.value)


def test_staff_recompute_a_templates_eta_on_demand(client, staff, journey):
    response = client.post(
        reverse("admin:journey_journeytemplate_changelist"),
        {"action": "recompute_eta", "_selected_action": [str(journey.template_id)]},
    )
    assert response.status_code == 302
    stats = TemplateEtaStats.objects.get(template=journey.template)
    assert stats.journey_count == 0
    assert journey.eta_estimates.count() == 1  # nothing moved, so no new history row


def test_staff_see_reschedule_requests_and_ratings_and_mark_a_request_answered(
    client, staff, journey, customer
):
    starts = timezone.now() + timedelta(days=5)
    appointment = Appointment.objects.create(
        journey=journey, title="Handover", starts_at=starts, arrive_at=starts, place_name="Here"
    )
    request = RescheduleRequest.objects.create(
        appointment=appointment,
        requested_by=customer,
        first_choice=starts + timedelta(days=1),
        note="Mornings",
    )
    milestone = journey.milestones.get(position=1)
    Feedback.objects.create(milestone=milestone, customer=customer, rating=2, comment="Slow")
    listing = client.get(reverse("admin:journey_reschedulerequest_changelist"))
    assert listing.status_code == 200
    assert "Handover" in listing.content.decode()
    ratings = client.get(reverse("admin:journey_feedback_changelist"))
    assert ratings.status_code == 200
    assert "Slow" in ratings.content.decode()
    url = reverse("admin:journey_reschedulerequest_change", args=[request.pk])
    response = client.post(url, {"state": RescheduleState.HANDLED})
    assert response.status_code == 302
    request.refresh_from_db()
    assert (request.state, request.note) == (RescheduleState.HANDLED, "Mornings")


def test_saving_a_journey_in_the_admin_keeps_what_the_spine_wrote_meanwhile(rf, staff, journey):
    """A staff member edits the title while a partner's event moves the ETA: the admin
    saves only what its form edits, not the ETA fields as the page read them (the ETA's
    history compares with them)."""
    from django.contrib import admin as django_admin

    from journey.admin import JourneyAdmin
    from journey.forms import JourneyAdminForm
    from journey.models import Health, Journey

    stale = Journey.objects.get(pk=journey.pk)
    moved = stale.eta + timedelta(days=9)
    Journey.objects.filter(pk=journey.pk).update(eta=moved, health=Health.DELAYED)
    data = {
        "title": "Renamed",
        "template": stale.template_id,
        "owner": stale.owner_id,
        "started_at": stale.started_at.isoformat(),
        "promised_date": stale.promised_date.isoformat(),
        "delay_reason": stale.delay_reason,
    }
    form = JourneyAdminForm(data=data, instance=stale)
    assert form.is_valid(), form.errors
    request = rf.post("/")
    request.user = staff
    JourneyAdmin(Journey, django_admin.site).save_model(
        request, form.save(commit=False), form, change=True
    )

    journey.refresh_from_db()
    assert journey.title == "Renamed"
    assert (journey.eta, journey.health) == (moved, Health.DELAYED)


def test_an_appointment_without_an_arrival_time_arrives_at_the_start(journey):
    """As the API's default: the admin's inline leaves the field empty."""
    starts = timezone.now().replace(microsecond=0) + timedelta(days=5)
    appointment = Appointment(
        journey=journey, title="Handover", place_name="Showroom", starts_at=starts
    )
    appointment.full_clean()
    appointment.save()
    appointment.refresh_from_db()
    assert appointment.arrive_at == starts


def test_staff_translate_a_stage_in_the_template_admin(client, staff):
    journey = make_journey()
    template = journey.template
    url = reverse("admin:journey_journeytemplate_change", args=[template.pk])
    page = client.get(url).content.decode()
    assert "Label (Spanish)" in page and "Explanation (Spanish)" in page

    response = client.post(
        url,
        stage_form(
            template,
            **{
                "stages-1-label_es": " Pintura ",
                "stages-1-explanation_es": "Cinco capas.",
                "stages-0-label_es": "",
            },
        ),
    )
    assert response.status_code == 302
    assert dict(template.stages.values_list("key", "translations")) == {
        "stage-1": {},
        "stage-2": {"es": {"label": "Pintura", "explanation": "Cinco capas."}},
        "stage-3": {},
        "stage-4": {},
    }
    # The form shows what is kept.
    assert 'value="Pintura"' in client.get(url).content.decode()


def test_an_explanation_without_its_label_is_a_form_error(client, staff):
    journey = make_journey()
    template = journey.template
    url = reverse("admin:journey_journeytemplate_change", args=[template.pk])
    response = client.post(url, stage_form(template, **{"stages-1-explanation_es": "Cinco."}))
    assert response.status_code == 200
    assert "Translate the label too." in response.content.decode()
    assert not template.stages.exclude(translations={}).exists()


def test_spanish_words_are_checked_as_the_english_ones_are(client, staff):
    from journey.models import JargonTerm

    JargonTerm.objects.create(term="WMS")
    template = make_journey().template
    url = reverse("admin:journey_journeytemplate_change", args=[template.pk])
    jargon = client.post(url, stage_form(template, **{"stages-1-label_es": "Revisión WMS"}))
    assert jargon.status_code == 200
    assert "is an internal term" in jargon.content.decode()
    # Too long is said once: the label was given, so "translate the label too" is not.
    too_long = client.post(
        url,
        stage_form(
            template, **{"stages-1-label_es": "x" * 81, "stages-1-explanation_es": "Cinco."}
        ),
    )
    errors = too_long.context["inline_admin_formsets"][0].formset.forms[1].errors
    assert errors == {"label_es": ["Ensure this value has at most 80 characters (it has 81)."]}
    assert not template.stages.exclude(translations={}).exists()
