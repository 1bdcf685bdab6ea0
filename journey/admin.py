from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from journey import eta
from journey.errors import ApplicationError
from journey.forms import RecordMilestoneForm
from journey.models import (
    Appointment,
    Checkpoint,
    CustomerTask,
    EtaBasis,
    EtaCause,
    EtaEstimate,
    EventSource,
    Feedback,
    Journey,
    JourneyEvent,
    JourneyTemplate,
    Message,
    Milestone,
    Photo,
    PromisedItem,
    RescheduleRequest,
    ShipmentLeg,
    StageDefinition,
    TemplateEtaStats,
)
from journey.services import journey_record_milestone


class StageInline(admin.TabularInline):
    model = StageDefinition
    extra = 0


@admin.register(JourneyTemplate)
class JourneyTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "eta_history"]
    inlines = [StageInline]
    actions = ["recompute_eta"]

    @admin.display(description="ETA learns from")
    def eta_history(self, template: JourneyTemplate) -> str:
        stats = TemplateEtaStats.objects.filter(template=template).first()
        if stats is None:
            return "not computed yet"
        return f"{stats.journey_count} completed journeys ({stats.computed_at:%Y-%m-%d %H:%M})"

    @admin.action(description="Relearn ETA statistics and recompute open journeys")
    def recompute_eta(self, request: HttpRequest, queryset: QuerySet[JourneyTemplate]) -> None:
        journeys = 0
        for template in queryset:
            journeys += eta.eta_recompute_template_journeys(template=template)
        messages.success(request, f"Recomputed {journeys} open journeys.")


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
    extra = 0


class PromisedItemInline(admin.TabularInline):
    model = PromisedItem
    extra = 0


class AppointmentInline(admin.StackedInline):
    model = Appointment
    extra = 0


class PhotoInline(admin.TabularInline):
    model = Photo
    extra = 0
    fields = ["milestone", "caption", "image", "width", "height"]
    readonly_fields = ["width", "height"]


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    # The update a customer replied to is theirs to choose; staff see it.
    readonly_fields = ["created_at", "milestone"]


@admin.register(Journey)
class JourneyAdmin(admin.ModelAdmin):
    def save_formset(
        self, request: HttpRequest, form: object, formset: object, change: bool
    ) -> None:
        if formset.model is Message:
            # A message written here is the company's answer, from this staff member.
            for inline_form in formset.forms:
                message = inline_form.instance
                if message.pk is None and inline_form.has_changed():
                    message.from_staff = True
                    message.author = request.user
        super().save_formset(request, form, formset, change)
        _notify_inline_changes(request, formset, form.instance)

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
    list_filter = ["health", StalledFilter, "template"]
    search_fields = ["reference", "title", "owner__email", "owner__profile__family_name"]
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
    ]

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
        super().save_related(request, form, formsets, change)
        legs_changed = any(
            formset.model is ShipmentLeg and formset.has_changed() for formset in formsets
        )
        if change and legs_changed:
            # A carrier's new ETA moves the prediction now, not at the next event.
            eta.eta_recompute(journey=form.instance, cause=EtaCause.LEG_ETA)


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
        if isinstance(obj, Appointment) and {"arrive_at", "place_name", "starts_at"} & set(changed):
            notify_appointment(obj, changed=True)


@admin.register(Milestone)
class MilestoneAdmin(admin.ModelAdmin):
    """Staff record milestones here; saving goes through the same service as the API."""

    form = RecordMilestoneForm
    list_display = ["journey", "stage", "state", "reached_at"]
    list_filter = ["state"]
    search_fields = ["journey__reference"]
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
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: Milestone, form: RecordMilestoneForm, change: bool
    ) -> None:
        if "planned_date" in form.changed_data:
            obj.save(update_fields=["planned_date"])
        reached_at = form.cleaned_data.get("record_reached_at")
        if reached_at is None:
            return
        try:
            recorded = journey_record_milestone(
                journey=obj.journey,
                stage_key=obj.stage.key,
                occurred_at=reached_at,
                source=EventSource.STAFF,
                actor=request.user,
                source_name=request.user.get_username(),
                message=form.cleaned_data.get("record_message", ""),
            )
        except ApplicationError as error:
            messages.error(request, error.message)
            return
        if not recorded.applied:
            messages.warning(
                request,
                "Recorded in the timeline, but the journey is already past this stage, "
                "so it did not move.",
            )


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
    """Customers' requests for another appointment time; staff mark them answered."""

    list_display = ["appointment", "first_choice", "second_choice", "state", "created_at"]
    list_filter = ["state"]
    list_select_related = ["appointment"]
    fields = ["appointment", "requested_by", "first_choice", "second_choice", "note", "state"]
    readonly_fields = ["appointment", "requested_by", "first_choice", "second_choice", "note"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Ratings of completed stages: which stages annoy customers."""

    list_display = ["milestone", "rating", "comment", "created_at"]
    list_filter = ["rating", "milestone__stage__label"]
    list_select_related = ["milestone__journey", "milestone__stage"]
    readonly_fields = ["milestone", "customer", "rating", "comment", "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
