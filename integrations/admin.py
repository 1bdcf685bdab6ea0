from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from integrations import egress
from integrations.forms import PartnerAPIKeyForm, WebhookEndpointForm
from integrations.models import (
    InboundEvent,
    Partner,
    PartnerAPIKey,
    StatusMapping,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)
from integrations.services import (
    REFUSED_FOR_ITS_MAPPING,
    UNMAPPED_AT_ONCE,
    partner_key_create,
    partner_key_revoke,
    partner_unmapped_events_apply,
)
from integrations.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_redeliver,
)
from journey.admin import RefusalRollsBack, ServiceRefused
from journey.errors import ApplicationError
from journey.jargon import validate_no_jargon


class StatusMappingForm(forms.ModelForm):
    class Meta:
        model = StatusMapping
        fields = ["code", "stage_key", "customer_text"]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # The words customers read: no internal terms.
        self.fields["customer_text"].validators.append(validate_no_jargon)


class StatusMappingInline(admin.TabularInline):
    model = StatusMapping
    form = StatusMappingForm
    extra = 1


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "unmapped_codes"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["journeys"]
    inlines = [StatusMappingInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Partner]:
        # The list's unmapped codes compare with each partner's mappings.
        return super().get_queryset(request).prefetch_related("mappings")

    @admin.display(description="Unmapped codes received")
    def unmapped_codes(self, obj: Partner) -> str:
        # Flagged for staff: map these codes (below) so their events reach customers.
        codes = (
            InboundEvent.objects.filter(partner=obj, unmapped=True)
            .values_list("code", flat=True)
            .distinct()
            .order_by("code")
        )
        if not codes:
            return "-"
        # A code mapped in other capitals is the likeliest slip: codes match exactly.
        mapped = {mapping.code.casefold(): mapping.code for mapping in obj.mappings.all()}
        return ", ".join(
            _("%(code)s (mapped as %(mapped)s: capitals count)")
            % {"code": code, "mapped": mapped[code.casefold()]}
            if code.casefold() in mapped
            else code
            for code in codes
        )


@admin.register(PartnerAPIKey)
class PartnerAPIKeyAdmin(admin.ModelAdmin):
    """A key's secret is shown once, in the message after it is created."""

    form = PartnerAPIKeyForm
    list_display = ["prefix", "partner", "name", "created_at", "expires_at", "revoked_at"]
    list_filter = ["partner"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def save_model(
        self, request: HttpRequest, obj: PartnerAPIKey, form: PartnerAPIKeyForm, change: bool
    ) -> None:
        if change:
            obj.save(update_fields=["name", "expires_at"])
            return
        key, plain = partner_key_create(
            partner=obj.partner, name=obj.name, expires_at=obj.expires_at
        )
        obj.pk = key.pk
        obj.prefix = key.prefix
        messages.warning(request, f"The new key (shown only now, copy it): {plain}")

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: object) -> None:
        for key in queryset:
            partner_key_revoke(key=key)
        self.message_user(request, "Revoked.")


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "partner",
        "journey",
        "event_id",
        "code",
        "unmapped",
        "queued",
        "rejected",
    ]
    list_filter = ["unmapped", "queued", ("rejection", admin.EmptyFieldListFilter), "partner"]
    search_fields = ["event_id", "code", "journey__reference"]
    readonly_fields = [f.name for f in InboundEvent._meta.fields]
    actions = ["apply_with_current_mappings"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        """integrations.change_inboundevent (Managers) is for the action below: an event
        itself is kept as the partner sent it, so its page is read-only for everyone."""
        return obj is None and super().has_change_permission(request)

    @admin.action(
        description=_(
            "Apply the events whose codes are mapped now (unmapped, or refused for a stage "
            "their journey lacks)"
        ),
        permissions=["change"],
    )
    def apply_with_current_mappings(self, request: HttpRequest, queryset: QuerySet) -> None:
        """After staff map a code a partner sent before it was known: its events so far
        move their journeys, as they would have on arrival."""
        # Only what the action may apply counts towards its limit ("select all" of a long
        # list with a few unmapped events among it is fine).
        chosen = queryset.count()  # before: the list's filter (unmapped) may not hold after
        candidates = queryset.filter(
            Q(unmapped=True) | Q(rejection__code=REFUSED_FOR_ITS_MAPPING),
            queued=False,
            journey_event__isnull=True,
        )
        pks = list(candidates.values_list("pk", flat=True)[: UNMAPPED_AT_ONCE + 1])
        if len(pks) > UNMAPPED_AT_ONCE:
            self.message_user(
                request,
                _("Choose at most %(limit)d events at a time (filter by partner or code).")
                % {"limit": UNMAPPED_AT_ONCE},
                messages.ERROR,
            )
            return
        done = partner_unmapped_events_apply(pks=pks)
        if done.busy:
            self.message_user(
                request,
                _("The queue's applier is busy just now: nothing was changed. Try again."),
                messages.WARNING,
            )
            return
        self.message_user(
            request,
            _(
                "%(applied)d applied; %(logged)d logged as older than their journey's "
                "state (on its timeline, moving nothing); %(refused)d refused (see their "
                "rejection); %(left)d left as they were (applied already, still unmapped, "
                "refused for another reason, or of a journey the partner no longer serves)."
            )
            % {
                "applied": done.applied,
                "logged": done.logged,
                "refused": done.refused,
                "left": chosen - done.applied - done.logged - done.refused,
            },
            messages.SUCCESS
            if (done.applied or done.logged) and not done.refused
            else messages.WARNING,
        )

    @admin.display(boolean=True, description=_("rejected"))
    def rejected(self, obj: InboundEvent) -> bool:
        """A queued event the spine refused: why is in its rejection."""
        return obj.rejection is not None


class WebhookEndpointAdminForm(WebhookEndpointForm):
    """The event types chosen from those that exist (as the API's, and
    ``webhook_endpoint_create``, ask), on a new endpoint and an existing one alike; the
    URL checked as the API checks it, with the whole reason when it is refused."""

    event_types = forms.MultipleChoiceField(
        choices=WebhookEventType.choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={
            "required": "Choose at least one event type.",
            "invalid_choice": "%(value)s is not an event type.",
        },
    )

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            egress.check_url(url)
        except ApplicationError as error:
            raise forms.ValidationError(error.message) from error
        return url

    def clean_event_types(self) -> list[str]:
        return sorted(set(self.cleaned_data["event_types"]))


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(RefusalRollsBack, admin.ModelAdmin):
    """A secret is shown once, in the message after it is created or rotated."""

    form = WebhookEndpointAdminForm
    list_display = ["url", "partner", "event_types", "is_active", "created_at"]
    list_filter = ["partner", "is_active"]
    readonly_fields = ["previous_secret_expires_at", "created_at"]
    actions = ["rotate_secret"]

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: object, change: bool
    ) -> None:
        if change:
            obj.save()
            return
        try:
            endpoint = webhook_endpoint_create(
                partner=obj.partner, url=obj.url, event_types=list(obj.event_types)
            )
        except ApplicationError as error:
            # The form checked the same (the URL's host may resolve elsewhere since).
            raise ServiceRefused(error) from error
        obj.pk = endpoint.pk
        messages.warning(request, f"The signing secret (shown only now): {endpoint.secret}")

    @admin.action(
        description="Rotate the signing secret (the old one signs for 24 h more)",
        permissions=["change"],
    )
    def rotate_secret(self, request: HttpRequest, queryset: object) -> None:
        for endpoint in queryset:
            endpoint = webhook_endpoint_rotate_secret(endpoint=endpoint)
            messages.warning(request, f"New secret for {endpoint.url}: {endpoint.secret}")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["attempted_at", "status_code", "duration_ms", "error", "response_excerpt"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "event_type",
        "endpoint",
        "journey",
        "state",
        "attempts",
        "next_attempt_at",
    ]
    list_filter = ["state", "event_type", "endpoint__partner"]
    search_fields = ["message_id", "journey__reference", "endpoint__url"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    inlines = [WebhookAttemptInline]
    actions = ["send_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        """integrations.change_webhookdelivery (Managers) is for "Send again": a delivery
        is a log, read-only for everyone."""
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Send again", permissions=["change"])
    def send_again(self, request: HttpRequest, queryset: object) -> None:
        count = 0
        for delivery in queryset:
            webhook_redeliver(delivery=delivery)
            count += 1
        self.message_user(request, f"Queued {count} deliveries to be sent again.")
