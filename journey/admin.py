import contextlib
from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language_info

from journey import eta, services
from journey.dashboard import unanswered_journey_ids
from journey.errors import ApplicationError
from journey.forms import (
    AppointmentAdminForm,
    AppointmentFormSet,
    JourneyAdminForm,
    JourneyCreateForm,
    JourneyTemplateForm,
    StaffRecordMilestoneForm,
    StaffReplyForm,
    StageForm,
    StageFormSet,
    TaskForm,
    other_languages,
)
from journey.models import (
    Appointment,
    Checkpoint,
    CustomerTask,
    EtaBasis,
    EtaCause,
    EtaEstimate,
    EventSource,
    Feedback,
    JargonTerm,
    Journey,
    JourneyEvent,
    JourneyTemplate,
    Message,
    Milestone,
    MilestoneState,
    Photo,
    PromisedItem,
    RescheduleRequest,
    RescheduleState,
    ShipmentLeg,
    StageDefinition,
    TemplateEtaStats,
)
from journey.photos import photo_add
from journey.services import journey_create, journey_record_milestone, staff_reply_post
from notifications.models import Notification, NotificationState


class ServiceRefused(Exception):
    """Raised from ``save_model`` when a service refuses what the form accepted (the data
    changed in between): ``RefusalRollsBack`` undoes the whole save."""

    def __init__(self, error: ApplicationError) -> None:
        super().__init__(error.message)
        self.error = error


class RefusalRollsBack:
    """For a ModelAdmin whose save calls services: a refusal raised as ServiceRefused
    leaves the admin's transaction, so nothing of the save is kept (not the form's own
    fields, not the admin log), and the page says so instead of "changed successfully"."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefused as refused:
            messages.error(request, f"Nothing was saved: {refused.error.message}")
            return redirect(request.get_full_path())


class StageInline(admin.StackedInline):
    model = StageDefinition
    form = StageForm
    formset = StageFormSet
    extra = 0

    def get_fieldsets(self, request: HttpRequest, obj: object = None) -> list:
        """The stage, then its words in each other language, under that language's name."""
        translated = [
            (name, {"fields": [f"label_{code}", f"explanation_{code}"]})
            for code, name in other_languages()
        ]
        return [(None, {"fields": StageForm.Meta.fields}), *translated]


def _translated_display(code: str, field: str, label: object):
    """The stage's ``field`` in language ``code``, for staff who may only view templates
    (the form's fields are not drawn then: the admin looks the name up here)."""

    @admin.display(description=label)
    def shown(inline: StageInline, stage: StageDefinition) -> str:
        return (stage.translations.get(code) or {}).get(field) or "—"

    return shown


for _code, _name in other_languages():
    setattr(
        StageInline,
        f"label_{_code}",
        _translated_display(_code, "label", StageForm.base_fields[f"label_{_code}"].label),
    )
    setattr(
        StageInline,
        f"explanation_{_code}",
        _translated_display(
            _code, "explanation", StageForm.base_fields[f"explanation_{_code}"].label
        ),
    )


def _duration(value: timedelta) -> str:
    return f"{value.days} d" if value >= timedelta(days=1) else f"{value.seconds // 3600} h"


def _templates_at_a_glance() -> list[dict[str, object]]:
    """Each template's stages and how long they usually take, to choose one by."""
    found = []
    for template in JourneyTemplate.objects.order_by("name").prefetch_related("stages"):
        stages = list(template.stages.all())
        found.append(
            {
                "template": template,
                "stages": [(stage.label, _duration(stage.expected_duration)) for stage in stages],
                "total": _duration(sum((s.expected_duration for s in stages), timedelta())),
            }
        )
    return found


@admin.register(JourneyTemplate)
class JourneyTemplateAdmin(admin.ModelAdmin):
    form = JourneyTemplateForm
    list_display = ["name", "key", "eta_history"]
    search_fields = ["name", "key"]
    inlines = [StageInline]
    actions = ["recompute_eta"]

    @admin.display(description="ETA learns from")
    def eta_history(self, template: JourneyTemplate) -> str:
        stats = TemplateEtaStats.objects.filter(template=template).first()
        if stats is None:
            return "not computed yet"
        return f"{stats.journey_count} completed journeys ({stats.computed_at:%Y-%m-%d %H:%M})"

    @admin.action(
        description="Relearn ETA statistics and recompute open journeys", permissions=["change"]
    )
    def recompute_eta(self, request: HttpRequest, queryset: QuerySet[JourneyTemplate]) -> None:
        journeys = 0
        for template in queryset:
            journeys += eta.eta_recompute_template_journeys(template=template)
        messages.success(request, eta.recomputed(journeys))


class StalledFilter(admin.SimpleListFilter):
    title = "stalled"
    parameter_name = "stalled"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [("yes", "Stalled"), ("no", "Not stalled")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Journey]) -> QuerySet[Journey]:
        if self.value() == "yes":
            return queryset.filter(stalled_since__isnull=False)
        if self.value() == "no":
            return queryset.filter(stalled_since__isnull=True)
        return queryset


class EtaEstimateInline(admin.TabularInline):
    """How the promise moved: read-only, newest first."""

    model = EtaEstimate
    extra = 0
    can_delete = False
    fields = ["computed_at", "expected", "low", "high", "basis", "health", "cause"]
    readonly_fields = fields
    ordering = ["-computed_at", "-id"]
    verbose_name = "ETA"
    verbose_name_plural = "ETA history"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class MilestoneInline(admin.TabularInline):
    model = Milestone
    extra = 0
    can_delete = False
    fields = ["position", "stage", "state", "planned_date", "reached_at", "record"]
    readonly_fields = ["position", "stage", "state", "planned_date", "reached_at", "record"]
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="")
    def record(self, milestone: Milestone) -> str:
        url = reverse("admin:journey_milestone_change", args=[milestone.pk])
        return format_html('<a href="{}">Record…</a>', url)


class EventInline(admin.TabularInline):
    model = JourneyEvent
    extra = 0
    can_delete = False
    fields = ["occurred_at", "received_at", "kind", "milestone", "source", "source_name", "applied"]
    readonly_fields = fields
    ordering = ["-occurred_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class LegInline(admin.TabularInline):
    model = ShipmentLeg
    extra = 0


class TaskInline(admin.TabularInline):
    model = CustomerTask
    form = TaskForm
    extra = 0


class PromisedItemInline(admin.TabularInline):
    model = PromisedItem
    extra = 0


def _appointment_delete(appointment: Appointment) -> None:
    """Staff delete an appointment. One still to come is cancelled as a partner cancels
    it (``journey_appointment_cancel``: the customer is told, with the calendar file that
    removes it); one that has started is only deleted: nobody is told about the past."""
    if appointment.starts_at > timezone.now():
        # Refused only if it started meanwhile (or is gone already): deleted below, untold.
        with contextlib.suppress(ApplicationError):
            services.journey_appointment_cancel(appointment=appointment)
            return
    appointment.delete()


class AppointmentInlineFormSet(AppointmentFormSet):
    """The journey page's appointments: a deleted one goes through
    ``_appointment_delete``, so the customer hears that it is off."""

    def delete_existing(self, obj: Appointment, commit: bool = True) -> None:
        if commit:
            _appointment_delete(obj)


class AppointmentInline(admin.StackedInline):
    model = Appointment
    form = AppointmentAdminForm
    formset = AppointmentInlineFormSet
    extra = 0


class PhotoInline(admin.TabularInline):
    """Read-only: photos are added with a milestone ("Record…"), through photo_add, which
    re-encodes them (no EXIF/GPS), enforces the size limits, makes the thumbnail and tells
    the customer. An upload saved here directly would skip all of that."""

    model = Photo
    extra = 0
    fields = ["milestone", "caption", "image", "width", "height"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class MessageInline(admin.TabularInline):
    """The conversation, read-only: staff answer with "Reply to the customer…", which goes
    through journey.services.staff_reply_post (the customer is told)."""

    model = Message
    extra = 0
    can_delete = False
    fields = ["created_at", "from_staff", "author", "body", "private", "milestone"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class NotificationInline(admin.TabularInline):
    """What the customer was told, and whether it arrived (resend from the outbox page)."""

    model = Notification
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "channel", "state", "sent_at", "last_error", "link"]
    readonly_fields = fields
    ordering = ["-created_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="")
    def link(self, notification: Notification) -> str:
        url = reverse("admin:notifications_notification_change", args=[notification.pk])
        return format_html('<a href="{}">Open…</a>', url)


class StageFilter(admin.SimpleListFilter):
    """The stage a journey is at now (its current milestone's label)."""

    title = "current stage"
    parameter_name = "stage"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        labels = (
            StageDefinition.objects.values_list("label", flat=True).distinct().order_by("label")
        )
        return [(label, label) for label in labels]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Journey]) -> QuerySet[Journey]:
        if self.value():
            return queryset.filter(
                milestones__state=MilestoneState.CURRENT, milestones__stage__label=self.value()
            ).distinct()
        return queryset


class YesFilter(admin.SimpleListFilter):
    """A yes-only filter: subclasses define ``condition()`` (a Q) or their own queryset."""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [("yes", "Yes")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Journey]) -> QuerySet[Journey]:
        if self.value() == "yes":
            return queryset.filter(self.condition()).distinct()
        return queryset


class OverdueTaskFilter(YesFilter):
    title = "overdue tasks"
    parameter_name = "overdue_tasks"

    def condition(self) -> Q:
        return Q(tasks__done_at__isnull=True, tasks__due_date__lt=timezone.localdate())


class UnansweredFilter(YesFilter):
    title = "unanswered messages"
    parameter_name = "unanswered"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Journey]) -> QuerySet[Journey]:
        if self.value() == "yes":
            return queryset.filter(pk__in=unanswered_journey_ids())
        return queryset


class FailedNotificationFilter(YesFilter):
    title = "failed notifications"
    parameter_name = "failed_notifications"

    def condition(self) -> Q:
        return Q(notifications__state=NotificationState.FAILED)


class UnmappedCodeFilter(YesFilter):
    title = "unmapped partner codes"
    parameter_name = "unmapped"

    def condition(self) -> Q:
        return Q(inbound_events__unmapped=True)


@admin.register(Journey)
class JourneyAdmin(admin.ModelAdmin):
    form = JourneyAdminForm
    change_form_template = "admin/journey/journey/change_form.html"

    def save_formset(
        self, request: HttpRequest, form: object, formset: object, change: bool
    ) -> None:
        super().save_formset(request, form, formset, change)
        _notify_inline_changes(request, formset, form.instance)

    def get_readonly_fields(self, request: HttpRequest, obj: Journey | None = None) -> list[str]:
        if obj is None:
            return self.readonly_fields
        # Fixed once the journey exists (JourneyAdminForm says why).
        return [*JourneyAdminForm.FIXED, *self.readonly_fields]

    def delete_model(self, request: HttpRequest, obj: Journey) -> None:
        services.journeys_delete(pks=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Journey]) -> None:
        services.journeys_delete(pks=queryset.values_list("pk", flat=True))

    def save_model(self, request: HttpRequest, obj: Journey, form: object, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Only what the form edits. The rest (the ETA's fields above all) belongs to the
        # spine, which may have moved it since this page was read: a full save would put
        # back the old values, and the ETA history compares with them.
        obj.save(update_fields=[*form.changed_data, "updated_at"])

    list_display = [
        "reference",
        "title",
        "owner",
        "health",
        "eta",
        "eta_range",
        "basis",
        "promised_date",
        "stalled_since",
    ]
    list_filter = [
        "health",
        StageFilter,
        ("partners", admin.RelatedOnlyFieldListFilter),
        OverdueTaskFilter,
        UnansweredFilter,
        FailedNotificationFilter,
        UnmappedCodeFilter,
        StalledFilter,
        "template",
    ]
    search_fields = [
        "reference",
        "title",
        "owner__email",
        "owner__profile__given_name",
        "owner__profile__family_name",
    ]
    readonly_fields = [
        "reference",
        "eta",
        "eta_range",
        "basis",
        "health",
        "stalled_since",
        "last_event_at",
        "created_at",
    ]
    autocomplete_fields = ["owner"]
    list_select_related = ["owner"]
    inlines = [
        MilestoneInline,
        EtaEstimateInline,
        EventInline,
        LegInline,
        TaskInline,
        PromisedItemInline,
        AppointmentInline,
        PhotoInline,
        MessageInline,
        NotificationInline,
    ]

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "create-from-template/",
                self.admin_site.admin_view(self.create_view),
                name=f"{info[0]}_{info[1]}_create",
            ),
            path(
                "<int:object_id>/reply/",
                self.admin_site.admin_view(self.reply_view),
                name=f"{info[0]}_{info[1]}_reply",
            ),
            *super().get_urls(),
        ]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        # A journey is made by journey_create (milestones, ETA), never by a bare insert.
        return redirect("admin:journey_journey_create")

    def create_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = JourneyCreateForm(request.POST or None)
        # Thousands of customers: searched as typed, as on a journey's own page.
        owner = form.fields["owner"]
        owner.widget = AutocompleteSelect(Journey._meta.get_field("owner"), self.admin_site)
        owner.widget.choices, owner.widget.is_required = owner.choices, owner.required
        if request.method == "POST" and form.is_valid():
            try:
                journey = journey_create(
                    template=form.cleaned_data["template"],
                    owner=form.cleaned_data["owner"],
                    title=form.cleaned_data["title"],
                    started_at=form.cleaned_data["started_at"],
                    promised_date=form.cleaned_data["promised_date"],
                )
            except ApplicationError as error:
                _form_errors(form, error)
            else:
                self.log_addition(request, journey, [{"added": {}}])
                messages.success(request, f"Journey {journey.reference} created.")
                return redirect("admin:journey_journey_change", journey.pk)
        fields = ["owner", "template", "title", "started_at", "promised_date"]
        adminform = helpers.AdminForm(form, [(None, {"fields": fields})], {})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Create a journey from a template",
            "form": form,
            "adminform": adminform,
            "media": self.media + adminform.media,
            "templates": _templates_at_a_glance(),
        }
        return TemplateResponse(request, "admin/journey/journey/create.html", context)

    def reply_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        journey = get_object_or_404(Journey.objects.select_related("owner__profile"), pk=object_id)
        if not self.has_change_permission(request, journey):
            raise PermissionDenied
        form = StaffReplyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                staff_reply_post(
                    journey=journey,
                    author=request.user,
                    body=form.cleaned_data["body"],
                    private=form.cleaned_data["private"],
                )
            except ApplicationError as error:
                _form_errors(form, error)
            else:
                messages.success(request, "Your answer is sent to the customer.")
                # Back where the staff member came from (the dashboard's list), if ours.
                back = request.GET.get("next", "")
                if url_has_allowed_host_and_scheme(
                    back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
                ):
                    return redirect(back)
                return redirect("admin:journey_journey_change", journey.pk)
        profile = getattr(journey.owner, "profile", None)
        language = get_language_info(profile.language if profile else settings.LANGUAGE_CODE)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": journey,
            "title": f"Reply to the customer on {journey.reference}",
            "form": form,
            # Who reads it: messages go as written, untranslated.
            "customer_name": (profile.full_name if profile else "") or journey.owner.email,
            "customer_language": language,
            "customer_zone": profile.time_zone if profile else settings.TIME_ZONE,
            "customer_quiet": (
                (profile.quiet_hours_start, profile.quiet_hours_end)
                if profile and profile.quiet_hours_start
                else None
            ),
            "conversation": list(journey.messages.select_related("author").order_by("created_at")),
        }
        return TemplateResponse(request, "admin/journey/journey/reply.html", context)

    @admin.display(description="80% range")
    def eta_range(self, journey: Journey) -> str:
        if journey.eta_low is None or journey.eta_high is None:
            return "—"
        return f"{journey.eta_low:%Y-%m-%d} to {journey.eta_high:%Y-%m-%d}"

    @admin.display(description="ETA basis")
    def basis(self, journey: Journey) -> str:
        return EtaBasis(journey.eta_basis).label if journey.eta_basis else "—"

    def save_related(
        self, request: HttpRequest, form: object, formsets: list, change: bool
    ) -> None:
        since = timezone.now()
        super().save_related(request, form, formsets, change)
        changed = {formset.model for formset in formsets if formset.has_changed()}
        if change and "promised_date" in form.changed_data:
            # A new promise: the health, the lists and the delay message (or its undoing)
            # read it now, not at the next event or the nightly recompute, and the
            # customer hears of it, unless a booking cancelled in this save told it
            # (``since``). The recompute takes in the legs and bookings saved with it.
            eta.eta_promise_moved(
                journey=form.instance, before=form.initial.get("promised_date"), since=since
            )
        elif change and ShipmentLeg in changed:
            # A carrier's new ETA moves the prediction now, not at the next event.
            eta.eta_recompute(journey=form.instance, cause=EtaCause.LEG_ETA)
        elif change and Appointment in changed:
            # So may a stage booked, moved or freed (journey.services._booking_moved);
            # one deleted was cancelled by the service, which recomputed already.
            eta.eta_recompute(journey=form.instance, cause=EtaCause.BOOKING)


def _form_errors(form: forms.Form, error: ApplicationError) -> None:
    """A service's refusal shown on the form: on the field it names, else on the form."""
    placed = False
    for name, problems in error.fields.items():
        if name in form.fields:
            for problem in problems:
                form.add_error(name, problem)
            placed = True
    if not placed:
        form.add_error(None, error.message)


def _notify_inline_changes(request: HttpRequest, formset: object, journey: Journey) -> None:
    """Staff edits in the journey page's inlines tell the customer what concerns them."""
    from notifications.triggers import (
        notify_appointment,
        notify_staff_reply,
        notify_task_assigned,
    )

    for obj in formset.new_objects:
        if isinstance(obj, CustomerTask):
            notify_task_assigned(obj)
        elif isinstance(obj, Appointment):
            notify_appointment(obj, changed=False)
        elif isinstance(obj, Message) and obj.from_staff:
            notify_staff_reply(obj)
    for obj, changed in formset.changed_objects:
        if (
            isinstance(obj, Appointment)
            and services.APPOINTMENT_TOLD & set(changed)
            and not journey.is_sandbox
        ):
            notify_appointment(obj, changed=True)
            if "starts_at" in changed:
                # A new time is the answer to any request for one still waiting.
                obj.reschedule_requests.filter(state=RescheduleState.OPEN).update(
                    state=RescheduleState.HANDLED
                )


@admin.register(Milestone)
class MilestoneAdmin(RefusalRollsBack, admin.ModelAdmin):
    """Staff record milestones here; saving goes through the same service as the API."""

    form = StaffRecordMilestoneForm
    list_display = ["journey", "stage", "state", "reached_at"]
    list_filter = ["state"]
    search_fields = ["journey__reference", "journey__owner__email"]
    list_select_related = ["journey", "stage"]
    readonly_fields = ["journey", "stage", "position", "state", "reached_at"]
    fields = [
        "journey",
        "stage",
        "position",
        "state",
        "reached_at",
        "planned_date",
        "record_reached_at",
        "record_message",
        "record_photos",
        "record_photo_caption",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: Milestone, form: StaffRecordMilestoneForm, change: bool
    ) -> None:
        """The form checked what the services check (and refuses a message or a caption
        it would drop), so they refuse only when the journey changed meanwhile: then
        nothing is saved, the planned date included (RefusalRollsBack)."""
        reached_at = form.cleaned_data.get("record_reached_at")
        photos = form.cleaned_data.get("record_photos") or []
        recorded = None
        try:
            # One transaction (the admin's own is around it too): all or nothing.
            with transaction.atomic():
                if "planned_date" in form.changed_data:
                    obj.save(update_fields=["planned_date"])
                if reached_at is not None:
                    recorded = journey_record_milestone(
                        journey=obj.journey,
                        stage_key=obj.stage.key,
                        occurred_at=reached_at,
                        source=EventSource.STAFF,
                        actor=request.user,
                        source_name=request.user.get_username(),
                        message=form.cleaned_data.get("record_message", ""),
                    )
                for upload in photos:
                    photo_add(
                        journey=obj.journey,
                        milestone=obj,
                        file=upload,
                        caption=form.cleaned_data.get("record_photo_caption", ""),
                    )
        except ApplicationError as error:
            raise ServiceRefused(error) from error
        if recorded is not None and not recorded.applied:
            messages.warning(
                request,
                "Recorded in the timeline, but the journey is already past this stage, so it "
                "did not move.",
            )


@admin.register(JargonTerm)
class JargonTermAdmin(admin.ModelAdmin):
    """Internal words refused in anything a customer reads."""

    list_display = ["term", "note"]
    search_fields = ["term", "note"]


@admin.register(ShipmentLeg)
class ShipmentLegAdmin(admin.ModelAdmin):
    list_display = ["journey", "sequence", "mode", "origin_name", "destination_name", "eta"]

    def save_model(
        self, request: HttpRequest, obj: ShipmentLeg, form: object, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        eta.eta_recompute(journey=obj.journey, cause=EtaCause.LEG_ETA)

    class CheckpointInline(admin.TabularInline):
        model = Checkpoint
        extra = 0

    inlines = [CheckpointInline]


@admin.register(RescheduleRequest)
class RescheduleRequestAdmin(admin.ModelAdmin):
    """Customers' requests for another appointment time. Staff answer one by moving the
    appointment to a time asked for (the actions; the customer is told), or by moving
    it on the journey's page, or mark it answered after settling it in the conversation.
    Times are shown on the place's clock, as the customer asked on it."""

    list_display = ["appointment", "journey", "now_booked", "first", "second", "state"]
    list_filter = ["state"]
    list_select_related = ["appointment__journey"]
    fields = [
        "journey",
        "appointment",
        "requested_by",
        "now_booked",
        "first",
        "second",
        "note",
        "state",
    ]
    readonly_fields = [name for name in fields if name != "state"]
    actions = ["move_to_first", "move_to_second"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def _on_place_clock(self, request_row: RescheduleRequest, value: datetime | None) -> str:
        if value is None:
            return "—"
        zone = request_row.appointment.zone
        return f"{timezone.localtime(value, zone):%a %d %b %Y, %H:%M} ({zone.key})"

    @admin.display(description="journey")
    def journey(self, row: RescheduleRequest) -> str:
        journey = row.appointment.journey
        url = reverse("admin:journey_journey_change", args=[journey.pk])
        return format_html('<a href="{}">{}</a>', url, journey.reference)

    # The customer asks for arrival times, the only ones they see: the booking shown
    # beside them is its arrival too, like with like.
    @admin.display(description="arrival booked now")
    def now_booked(self, row: RescheduleRequest) -> str:
        return self._on_place_clock(row, row.appointment.arrive_at)

    @admin.display(description="first choice (arrival)", ordering="first_choice")
    def first(self, row: RescheduleRequest) -> str:
        return self._on_place_clock(row, row.first_choice)

    @admin.display(description="second choice (arrival)")
    def second(self, row: RescheduleRequest) -> str:
        return self._on_place_clock(row, row.second_choice)

    def _move(self, request: HttpRequest, queryset: QuerySet, choice: str) -> None:
        moved, refused = 0, []
        for row in queryset.select_related("appointment"):
            try:
                services.reschedule_request_answer(request=row, choice=choice)
            except ApplicationError as error:
                refused.append(f"{row.appointment}: {error.message}")
            else:
                moved += 1
        if moved:
            messages.success(request, f"{moved} appointment(s) moved; the customer is told.")
        for line in refused:
            messages.warning(request, line)

    @admin.action(description="Move the appointment to the first choice", permissions=["change"])
    def move_to_first(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._move(request, queryset, "first")

    @admin.action(description="Move the appointment to the second choice", permissions=["change"])
    def move_to_second(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._move(request, queryset, "second")


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Ratings of completed stages: which stages annoy customers."""

    list_display = ["milestone", "rating", "by_owner", "comment", "created_at"]
    list_filter = ["rating", "by_owner", "milestone__stage__label"]
    list_select_related = ["milestone__journey", "milestone__stage"]
    readonly_fields = [
        "milestone",
        "customer",
        "by_owner",
        "rating",
        "comment",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
