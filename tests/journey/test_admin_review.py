"""A staff review of the journey admin: an appointment moved later keeps its lead time, a
milestone page saves all it was given or nothing, a journey keeps its template and owner,
and a stage key partners' mappings use is neither renamed nor deleted."""

import io
import zoneinfo
from datetime import datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from accounts.mfa import totp_activate
from accounts.roles import AGENTS
from journey.errors import ApplicationError
from journey.forms import JourneyAdminForm
from journey.models import (
    Appointment,
    EventSource,
    JourneyEvent,
    Message,
    Photo,
    StageDefinition,
    TemplateEtaStats,
)
from journey.services import journey_record_milestone
from notifications import channels
from notifications.models import Notification
from tests.admin_pages import page_data
from tests.factories import MappingFactory, PartnerFactory, TemplateFactory, UserFactory

pytestmark = pytest.mark.django_db

LONDON = zoneinfo.ZoneInfo("Europe/London")


@pytest.fixture
def staff(client):
    """A superuser with TOTP, whose admin pages are on London's clock (their profile)."""
    user = UserFactory(is_staff=True, is_superuser=True)
    totp_activate(user=user)
    client.force_login(user)
    return user


def split(value: datetime, zone: zoneinfo.ZoneInfo = LONDON) -> tuple[str, str]:
    """The admin's date and time inputs for ``value``, on ``zone``'s clock (an
    appointment's are on its place's: London, the model's default, unless said)."""
    local = timezone.localtime(value, zone)
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")


def jpeg_upload(name: str = "car.jpg") -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, format="JPEG")
    return SimpleUploadedFile(name, out.getvalue(), content_type="image/jpeg")


def inline_formset(response, model):
    return next(
        inline.formset
        for inline in response.context["inline_admin_formsets"]
        if inline.formset.model is model
    )


# --- Appointments (AppointmentInline) ----------------------------------------------------


@pytest.fixture
def appointment(journey) -> Appointment:
    starts = (timezone.now() + timedelta(days=5)).replace(second=0, microsecond=0)
    return Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=starts,
        arrive_at=starts - timedelta(minutes=15),
        place_name="Showroom",
    )


def test_saving_the_journey_untouched_tells_nobody_of_a_change(
    client, staff, journey, appointment, django_capture_on_commit_callbacks
):
    """A walk-through saved a journey unchanged and its customer was emailed "Changed":
    the browser sends an address's line ends back as CRLF, stored as LF."""
    Appointment.objects.filter(pk=appointment.pk).update(
        address="12 Harbourside Way\nBristol", what_to_bring="Licence\nInsurance"
    )
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    for name in ("address", "what_to_bring"):
        assert "\n" in data[f"appointments-0-{name}"]
        data[f"appointments-0-{name}"] = data[f"appointments-0-{name}"].replace("\n", "\r\n")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, data).status_code == 302
    appointment.refresh_from_db()
    assert appointment.address == "12 Harbourside Way\nBristol"
    assert Notification.objects.filter(kind="appointment_changed").count() == 0


def test_a_booking_for_a_stage_reached_since_is_kept_by_an_untouched_save(
    client, staff, journey, appointment
):
    """The admin offers the stages to come, and the one an appointment was booked for
    before it was reached: without it, the journey could not be saved."""
    booked = journey.milestones.get(stage__key="stage-2")
    Appointment.objects.filter(pk=appointment.pk).update(milestone=booked)
    for key in ("stage-2", "stage-3"):
        journey_record_milestone(
            journey=journey,
            stage_key=key,
            occurred_at=timezone.now() - timedelta(hours=1),
            source=EventSource.STAFF,
        )
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    page = client.get(url)
    formset = inline_formset(page, Appointment)
    offered = [m.stage.key for m in formset.forms[0].fields["milestone"].queryset]
    blank = [m.stage.key for m in formset.empty_form.fields["milestone"].queryset]
    assert offered[0] == "stage-2" and not {"stage-1", "stage-3"} & set(offered)
    assert blank[0] == "stage-4"
    response = client.post(url, page_data(page))
    assert response.status_code == 302
    appointment.refresh_from_db()
    assert appointment.milestone == booked


def test_a_stage_booked_in_the_admin_moves_the_journeys_eta(client, staff, journey, appointment):
    """As the API's booking does (journey.services._booking_moved): the ETA, the health
    and the admin's own lists read it at once, not at the next event."""
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    later = timezone.now() + timedelta(days=60)
    data["appointments-0-starts_at_0"], data["appointments-0-starts_at_1"] = split(later)
    data["appointments-0-arrive_at_0"], data["appointments-0-arrive_at_1"] = split(later)
    data["appointments-0-milestone"] = str(journey.milestones.get(stage__key="stage-4").pk)
    assert client.post(url, data).status_code == 302
    appointment.refresh_from_db()
    journey.refresh_from_db()
    assert journey.eta == appointment.day == timezone.localtime(later, LONDON).date()
    assert journey.health == "delayed"  # promised 30 days out
    assert journey.eta_estimates.latest("computed_at").cause == "booking"


def test_an_appointment_is_not_moved_into_the_past(client, staff, journey, appointment):
    """As the API refuses it: the customer was told "Changed: … Saturday 5 December",
    two days gone."""
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    gone = timezone.now() - timedelta(days=2)
    data["appointments-0-starts_at_0"], data["appointments-0-starts_at_1"] = split(gone)
    response = client.post(url, data)
    assert response.status_code == 200
    form = inline_formset(response, Appointment).forms[0]
    assert form.errors == {"starts_at": ["An appointment cannot start in the past."]}
    before = appointment.starts_at
    appointment.refresh_from_db()
    assert appointment.starts_at == before


def test_moving_an_appointment_later_moves_the_arrival_with_it(
    client, staff, journey, appointment, django_capture_on_commit_callbacks
):
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    later = appointment.starts_at + timedelta(hours=2)
    data["appointments-0-starts_at_0"], data["appointments-0-starts_at_1"] = split(later)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, data)

    assert response.status_code == 302
    appointment.refresh_from_db()
    assert (appointment.starts_at, appointment.arrive_at) == (
        later,
        later - timedelta(minutes=15),
    )
    told = Notification.objects.get(kind="appointment_changed", channel="email")
    assert told.context["arrive_at"] == (later - timedelta(minutes=15)).isoformat()


def test_an_arrival_edited_with_the_start_is_kept(client, staff, journey, appointment):
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    later = appointment.starts_at + timedelta(hours=2)
    data["appointments-0-starts_at_0"], data["appointments-0-starts_at_1"] = split(later)
    arrival = later - timedelta(minutes=30)
    data["appointments-0-arrive_at_0"], data["appointments-0-arrive_at_1"] = split(arrival)

    assert client.post(url, data).status_code == 302

    appointment.refresh_from_db()
    assert (appointment.starts_at, appointment.arrive_at) == (later, arrival)


def test_an_arrival_after_the_start_is_an_error_on_that_field(client, staff, journey, appointment):
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    late = appointment.starts_at + timedelta(minutes=10)
    data["appointments-0-arrive_at_0"], data["appointments-0-arrive_at_1"] = split(late)
    before = (appointment.starts_at, appointment.arrive_at)

    response = client.post(url, data)

    assert response.status_code == 200
    form = inline_formset(response, Appointment).forms[0]
    assert form.errors == {
        "arrive_at": [
            "The customer would arrive after the start: make it the start or earlier "
            "(empty: at the start)."
        ]
    }
    appointment.refresh_from_db()
    assert (appointment.starts_at, appointment.arrive_at) == before
    assert Notification.objects.filter(kind="appointment_changed").count() == 0


def test_a_new_appointment_is_on_the_customers_clock(client, staff, journey, customer):
    customer.profile.time_zone = "Europe/Madrid"
    customer.profile.save()
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    page = client.get(url)
    formset = inline_formset(page, Appointment)
    assert formset.empty_form["time_zone"].value() == "Europe/Madrid"
    html = page.content.decode()
    assert 'name="appointments-__prefix__-time_zone" value="Europe/Madrid"' in html
    # An untouched extra form is still nothing to save.
    data = page_data(page)
    starts = (timezone.now() + timedelta(days=3)).replace(second=0, microsecond=0)
    # Booked for one of this journey's stages (the blank form offers them too).
    offered = formset.empty_form.fields["milestone"].queryset
    assert list(offered) == list(journey.milestones.order_by("position"))
    fitting = journey.milestones.get(stage__key="stage-3")
    new = {
        "title": "Fitting",
        "duration": "01:00:00",
        "place_name": "Your home",
        "time_zone": formset.empty_form["time_zone"].value(),
        "milestone": str(fitting.pk),
    }
    data.update({f"appointments-0-{name}": value for name, value in new.items()})
    # Typed on the place's clock, Madrid's, whatever the staff member's.
    madrid = zoneinfo.ZoneInfo("Europe/Madrid")
    data["appointments-0-starts_at_0"], data["appointments-0-starts_at_1"] = split(starts, madrid)
    data["appointments-TOTAL_FORMS"] = "1"

    assert client.post(url, data).status_code == 302

    created = Appointment.objects.get()
    assert (created.time_zone, created.starts_at, created.arrive_at, created.milestone) == (
        "Europe/Madrid",
        starts,
        starts,
        fitting,
    )


def test_an_appointments_times_are_read_and_shown_on_its_places_clock(
    client, staff, journey, appointment
):
    """A staff review typed 10:00 for a Madrid appointment and the customer was told
    11:00: the admin read it on its own clock (UTC). It is the place's clock now."""
    madrid = zoneinfo.ZoneInfo("Europe/Madrid")
    Appointment.objects.filter(pk=appointment.pk).update(time_zone="Europe/Madrid")
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    page = client.get(url)
    shown = timezone.localtime(appointment.starts_at, madrid)
    assert f'value="{shown:%H:%M:%S}"' in page.content.decode()  # Madrid's wall clock
    data = page_data(page)
    ten = (shown + timedelta(days=1)).replace(hour=10, minute=0)
    data["appointments-0-starts_at_0"], data["appointments-0-starts_at_1"] = (
        f"{ten:%Y-%m-%d}",
        "10:00:00",
    )
    assert client.post(url, data).status_code == 302
    appointment.refresh_from_db()
    assert timezone.localtime(appointment.starts_at, madrid).strftime("%H:%M") == "10:00"
    assert appointment.starts_at - appointment.arrive_at == timedelta(minutes=15)


def test_another_time_zone_is_another_moment_and_the_customer_is_told(
    client, staff, journey, appointment, django_capture_on_commit_callbacks
):
    """A code review: changing only the zone moved the appointment by the zones'
    difference, and nobody was told (only the times' fields counted as a change)."""
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    data["appointments-0-time_zone"] = "Europe/Madrid"
    wall = timezone.localtime(appointment.starts_at, LONDON).strftime("%H:%M")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, data).status_code == 302
    appointment.refresh_from_db()
    madrid = zoneinfo.ZoneInfo("Europe/Madrid")
    assert timezone.localtime(appointment.starts_at, madrid).strftime("%H:%M") == wall
    assert appointment.starts_at - appointment.arrive_at == timedelta(minutes=15)
    told = Notification.objects.get(kind="appointment_changed", channel="email")
    assert told.context["place_time_zone"] == "Europe/Madrid"


def test_an_arrival_more_than_12_hours_early_is_refused_as_the_api_refuses_it(
    client, staff, journey, appointment
):
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    early = appointment.starts_at - timedelta(days=3)
    data["appointments-0-arrive_at_0"], data["appointments-0-arrive_at_1"] = split(early)
    response = client.post(url, data)
    assert response.status_code == 200
    form = inline_formset(response, Appointment).forms[0]
    assert form.errors == {"arrive_at": ["More than 12 hours before the start: a mistyped date?"]}


def test_deleting_an_appointment_to_come_tells_the_customer_it_is_off(
    client, staff, journey, appointment, django_capture_on_commit_callbacks
):
    """As a partner's cancellation (journey_appointment_cancel): the customer is told, with
    the calendar file that removes it."""
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    data["appointments-0-DELETE"] = "on"

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, data).status_code == 302

    assert Appointment.objects.count() == 0
    told = Notification.objects.get(kind="appointment_cancelled", channel="email")
    assert told.context["appointment_id"] == appointment.pk
    (message,) = [m for m in mail.outbox if m.to == [journey.owner.email]]
    assert message.subject.startswith("Cancelled: Handover, ")
    (_name, content, _mimetype) = message.attachments[0]
    assert "METHOD:CANCEL" in content
    assert f"UID:appointment-{appointment.pk}@milepost" in content
    assert LogEntry.objects.get().get_change_message() == "Deleted appointment “Handover”."


def test_deleting_a_past_appointment_tells_nobody(client, staff, journey, appointment):
    past = timezone.now() - timedelta(days=2)
    Appointment.objects.filter(pk=appointment.pk).update(starts_at=past, arrive_at=past)
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    data["appointments-0-DELETE"] = "on"

    assert client.post(url, data).status_code == 302

    assert Appointment.objects.count() == 0
    assert Notification.objects.count() == 0


# --- The milestone page: all it was given, or nothing ------------------------------------


def milestone_url(milestone) -> str:
    return reverse("admin:journey_milestone_change", args=[milestone.pk])


def test_a_message_and_photos_without_a_time_are_a_form_error_and_nothing_is_saved(
    client, staff, journey, django_capture_on_commit_callbacks
):
    milestone = journey.milestones.get(stage__key="stage-2")
    planned = milestone.planned_date
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            milestone_url(milestone),
            {
                "planned_date": (planned + timedelta(days=1)).isoformat(),
                "record_reached_at": "",
                "record_message": "Your car is painted.",
                "record_photos": [jpeg_upload()],
                "record_photo_caption": "Fresh paint",
            },
        )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "record_reached_at": ["Enter when the stage was reached: the message is sent with it."]
    }
    milestone.refresh_from_db()
    assert (milestone.planned_date, milestone.state, milestone.reached_at) == (
        planned,
        "upcoming",
        None,
    )
    assert (
        Photo.objects.count(),
        JourneyEvent.objects.count(),
        Message.objects.count(),
        Notification.objects.count(),
        LogEntry.objects.count(),
    ) == (0, 0, 0, 0, 0)


def test_a_caption_without_photos_is_a_form_error(client, staff, journey):
    milestone = journey.milestones.get(stage__key="stage-2")
    response = client.post(
        milestone_url(milestone),
        {
            "planned_date": milestone.planned_date.isoformat(),
            "record_reached_at": timezone.localtime(timezone.now(), LONDON).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "record_photo_caption": "Fresh paint",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "record_photos": ["Choose the photos this caption is for."]
    }
    assert (JourneyEvent.objects.count(), Notification.objects.count()) == (0, 0)


def test_photos_alone_are_added_to_a_stage_without_recording_it(client, staff, journey):
    milestone = journey.milestones.get(stage__key="stage-2")
    response = client.post(
        milestone_url(milestone),
        {
            "planned_date": milestone.planned_date.isoformat(),
            "record_photos": [jpeg_upload()],
            "record_photo_caption": "In the paint shop",
        },
    )
    assert response.status_code == 302
    assert list(Photo.objects.values_list("milestone", "caption")) == [
        (milestone.pk, "In the paint shop")
    ]
    assert JourneyEvent.objects.count() == 0


def test_a_refusal_while_saving_keeps_nothing_and_says_so(
    client, staff, journey, monkeypatch, django_capture_on_commit_callbacks
):
    """The journey changed between the form's checks and the save (a race): the stage,
    the photos and the planned date are all kept back, and the page does not say
    "changed successfully"."""

    def refused(**kwargs: object) -> None:
        raise ApplicationError("The file is not a whole JPEG, PNG or WebP image.")

    monkeypatch.setattr("journey.admin.photo_add", refused)
    milestone = journey.milestones.get(stage__key="stage-2")
    planned = milestone.planned_date
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            milestone_url(milestone),
            {
                "planned_date": (planned + timedelta(days=1)).isoformat(),
                "record_reached_at": timezone.localtime(timezone.now(), LONDON).strftime(
                    "%Y-%m-%d %H:%M:%S"
                ),
                "record_message": "Painted.",
                "record_photos": [jpeg_upload()],
            },
            follow=True,
        )

    texts = [str(m) for m in response.context["messages"]]
    assert texts == ["Nothing was saved: The file is not a whole JPEG, PNG or WebP image."]
    milestone.refresh_from_db()
    assert (milestone.planned_date, milestone.state) == (planned, "upcoming")
    assert (
        JourneyEvent.objects.count(),
        Photo.objects.count(),
        Notification.objects.count(),
        LogEntry.objects.count(),
    ) == (0, 0, 0, 0)


# --- A journey's template and owner ------------------------------------------------------


def test_a_journeys_template_and_owner_are_fixed_once_it_exists(client, staff, journey):
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    page = client.get(url)
    html = page.content.decode()
    assert 'name="owner"' not in html and 'name="template"' not in html
    assert journey.owner.email in html and journey.template.name in html
    other_owner, other_template = UserFactory(), TemplateFactory(stages=2)
    data = {
        **page_data(page),
        "title": "Renamed",
        "owner": str(other_owner.pk),
        "template": str(other_template.pk),
    }

    assert client.post(url, data).status_code == 302

    journey.refresh_from_db()
    assert (journey.title, journey.owner, journey.template) == (
        "Renamed",
        journey.owner,
        journey.template,
    )
    assert journey.owner != other_owner and journey.template != other_template
    assert journey.milestones.count() == 4


def test_the_journey_form_ignores_another_template_or_owner_posted(journey):
    """JourneyAdminForm on its own (not only the admin's read-only fields)."""
    other_owner, other_template = UserFactory(), TemplateFactory(stages=2)
    form = JourneyAdminForm(
        instance=journey,
        data={
            "title": journey.title,
            "owner": other_owner.pk,
            "template": other_template.pk,
            "started_at": timezone.localtime(journey.started_at).replace(microsecond=0),
            "promised_date": journey.promised_date,
            "delay_reason": "",
        },
    )
    assert form.is_valid(), form.errors
    assert (form.cleaned_data["owner"], form.cleaned_data["template"]) == (
        journey.owner,
        journey.template,
    )
    assert {"owner", "template"}.isdisjoint(form.changed_data)


# --- Stage keys that partners' mappings use ----------------------------------------------


@pytest.fixture
def mapped_template():
    template = TemplateFactory(stages=2)
    StageDefinition.objects.filter(template=template, key="stage-1").update(key="built")
    MappingFactory(
        partner=PartnerFactory(name="Iberia Motor Works"), code="OK-9", stage_key="built"
    )
    MappingFactory(partner=PartnerFactory(name="Atlas Freight"), code="B1", stage_key="built")
    return template


def test_renaming_a_stage_key_that_mappings_use_is_a_form_error(client, staff, mapped_template):
    url = reverse("admin:journey_journeytemplate_change", args=[mapped_template.pk])
    data = page_data(client.get(url))
    assert data["stages-0-key"] == "built"
    data["stages-0-key"] = "assembled"

    response = client.post(url, data)

    assert response.status_code == 200
    assert inline_formset(response, StageDefinition).forms[0].errors == {
        "key": [
            "Partners' status mappings use the key built (Atlas Freight: B1, Iberia Motor "
            "Works: OK-9): change those mappings first."
        ]
    }
    assert sorted(mapped_template.stages.values_list("key", flat=True)) == ["built", "stage-2"]


def test_deleting_a_stage_that_mappings_use_is_refused(client, staff, mapped_template):
    url = reverse("admin:journey_journeytemplate_change", args=[mapped_template.pk])
    data = {**page_data(client.get(url)), "stages-0-DELETE": "on"}

    response = client.post(url, data)

    assert response.status_code == 200
    assert list(inline_formset(response, StageDefinition).non_form_errors()) == [
        "The stage built cannot be deleted: partners' status mappings use it (Atlas Freight: "
        "B1, Iberia Motor Works: OK-9). Change those mappings first."
    ]
    assert "Change those mappings first." in response.content.decode()
    assert mapped_template.stages.count() == 2


def test_a_stage_milestones_and_mappings_use_names_both_reasons(client, staff, journey, partner):
    """The admin refuses on its own to delete a stage a journey's milestone uses; the
    mappings are named as well, so staff know all there is to change."""
    url = reverse("admin:journey_journeytemplate_change", args=[journey.template_id])
    data = {**page_data(client.get(url)), "stages-0-DELETE": "on"}

    response = client.post(url, data)

    errors = list(inline_formset(response, StageDefinition).non_form_errors())
    assert errors[0] == (
        "The stage stage-1 cannot be deleted: partners' status mappings use it "
        f"({partner.name}: S1). Change those mappings first."
    )
    assert len(errors) == 2 and "protected related objects" in errors[1]
    assert journey.template.stages.count() == 4


def test_a_stage_key_no_mapping_uses_is_renamed(client, staff, mapped_template):
    url = reverse("admin:journey_journeytemplate_change", args=[mapped_template.pk])
    data = {**page_data(client.get(url)), "stages-1-key": "fitted"}

    assert client.post(url, data).status_code == 302

    assert sorted(mapped_template.stages.values_list("key", flat=True)) == ["built", "fitted"]


# --- Actions need the change permission ---------------------------------------------------


def test_an_agent_cannot_relearn_a_templates_eta(client, journey):
    call_command("setup_roles", stdout=io.StringIO())
    agent = UserFactory(is_staff=True)
    agent.groups.add(Group.objects.get(name=AGENTS))
    totp_activate(user=agent)
    client.force_login(agent)
    changelist = reverse("admin:journey_journeytemplate_changelist")
    page = client.get(changelist)
    assert page.status_code == 200  # Agents view templates
    assert "recompute_eta" not in page.content.decode()
    before = list(TemplateEtaStats.objects.values_list("template", "computed_at"))

    client.post(
        changelist, {"action": "recompute_eta", "_selected_action": [str(journey.template_id)]}
    )

    assert list(TemplateEtaStats.objects.values_list("template", "computed_at")) == before


def _save_promise(client, url: str, promised: str) -> None:
    """The journey's admin page saved as it is, with this promised date ("" for none)."""
    data = page_data(client.get(url))
    data["promised_date"] = promised
    assert client.post(url, data).status_code == 302


def test_a_new_promise_in_the_admin_moves_the_journeys_health_at_once(
    client, staff, journey, appointment
):
    """Staff moved a delayed journey's promise past its date: the admin still said
    "Delayed" until the next event or the nightly recompute."""
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    _save_promise(client, url, (journey.eta - timedelta(days=3)).isoformat())
    journey.refresh_from_db()
    assert journey.health == "delayed"
    # A promise the forecast has passed already is told to the customer now, as the
    # next event or the nightly recompute would have told it (docs/eta.md).
    [delay] = Notification.objects.filter(kind="journey_delayed", channel="email")
    assert delay.context["promised_date"] == (journey.eta - timedelta(days=3)).isoformat()
    _save_promise(client, url, (journey.eta + timedelta(days=30)).isoformat())
    journey.refresh_from_db()
    assert journey.health == "on_track"
    assert journey.eta_estimates.latest("computed_at").cause == "recompute"
    # The promise moved past the date the customer was told: their date did not move.
    assert not Notification.objects.filter(kind="journey_on_time").exists()


def test_a_promise_moved_in_the_admin_is_told_unless_a_delay_told_it(
    client, staff, journey, appointment
):
    """A promise moved later used to go unsaid: a customer told "late" kept that apology
    as their last word while the page read "On track"."""
    url = reverse("admin:journey_journey_change", args=[journey.pk])

    def moved():
        return list(
            Notification.objects.filter(kind="journey_promise_moved", channel="email").order_by(
                "pk"
            )
        )

    _save_promise(client, url, (journey.eta - timedelta(days=3)).isoformat())
    # Past the forecast: the delay quotes the new promise, and says it all.
    assert Notification.objects.filter(kind="journey_delayed").exists()
    assert moved() == []

    later = journey.eta + timedelta(days=30)
    _save_promise(client, url, later.isoformat())
    [told] = moved()
    assert told.context == {
        "promised_date": later.isoformat(),
        "previous_promised_date": (journey.eta - timedelta(days=3)).isoformat(),
        "eta": journey.eta.isoformat(),
        "late": False,
    }
    assert told.recipient == journey.owner

    # Saved again with the same promise: nothing new to say.
    assert client.post(url, page_data(client.get(url))).status_code == 302
    assert len(moved()) == 1
    # Taken away: no promise to tell.
    _save_promise(client, url, "")
    assert len(moved()) == 1
    # Given again, where there was none.
    _save_promise(client, url, (later + timedelta(days=10)).isoformat())
    assert len(moved()) == 2
    assert moved()[-1].context["previous_promised_date"] is None


def test_a_promise_moved_but_still_missed_is_told_with_the_date_and_an_apology(
    client, staff, journey, appointment
):
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    _save_promise(client, url, (journey.eta - timedelta(days=10)).isoformat())
    _save_promise(client, url, (journey.eta - timedelta(days=5)).isoformat())
    journey.refresh_from_db()
    assert journey.health == "delayed"
    [told] = Notification.objects.filter(kind="journey_promise_moved", channel="email")
    assert told.context["late"] is True
    rendered = channels.render(told)
    promised = journey.eta - timedelta(days=5)
    # Still late: the subject, all a digest lists of it, says so.
    assert rendered.subject.endswith(
        f"now promised by {promised.day} {promised:%B}, still expected "
        f"{journey.eta.day} {journey.eta:%B}"
    )
    assert "We are sorry: we still expect it later than that" in " ".join(rendered.text.split())
    profile = journey.owner.profile
    profile.language = "es"
    profile.save()
    told = Notification.objects.get(pk=told.pk)
    assert "ahora prometido para el" in channels.render(told).subject


def test_a_promise_moved_with_a_booking_cancelled_in_the_same_save_is_told_once(
    client, staff, journey, appointment
):
    """From a review: the booking's cancel recomputed with the new promise and told a
    delay quoting it, then the promise's own recompute, in a unit of its own, told the
    new promise again."""
    last = journey.milestones.order_by("-position").first()
    Appointment.objects.filter(pk=appointment.pk).update(milestone=last)
    journey.refresh_from_db()
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    data = page_data(client.get(url))
    data["promised_date"] = (journey.eta - timedelta(days=3)).isoformat()
    data["appointments-0-DELETE"] = "on"
    assert client.post(url, data).status_code == 302
    kinds = set(Notification.objects.filter(channel="email").values_list("kind", flat=True))
    assert "appointment_cancelled" in kinds
    assert len(kinds & {"journey_delayed", "journey_on_time", "journey_promise_moved"}) == 1


def test_a_held_delay_is_dropped_when_a_new_promise_covers_it(client, staff, journey, appointment):
    """From a walk-through: a delay held for the digest went out after staff had moved the
    promise past the date, next to the message of the new promise."""
    url = reverse("admin:journey_journey_change", args=[journey.pk])
    assert "Clearing it tells them nothing." in client.get(url).content.decode()
    _save_promise(client, url, (journey.eta - timedelta(days=3)).isoformat())
    delay = Notification.objects.filter(kind="journey_delayed", channel="email")
    delay.update(state="pending", scheduled_at=timezone.now() + timedelta(minutes=3))
    _save_promise(client, url, (journey.eta + timedelta(days=30)).isoformat())
    assert not delay.exists()  # never sent: dropped
    assert Notification.objects.filter(kind="journey_promise_moved", channel="email").exists()
    # In the updates page it stays, as read: it was true when written.
    assert Notification.objects.get(kind="journey_delayed", channel="inapp").read_at is not None
