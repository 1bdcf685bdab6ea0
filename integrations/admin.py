from django.contrib import admin, messages
from django.http import HttpRequest

from integrations.forms import PartnerAPIKeyForm
from integrations.models import InboundEvent, Partner, PartnerAPIKey, StatusMapping
from integrations.services import partner_key_create, partner_key_revoke


class StatusMappingInline(admin.TabularInline):
    model = StatusMapping
    extra = 1


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["journeys"]
    inlines = [StatusMappingInline]


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

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: object) -> None:
        for key in queryset:
            partner_key_revoke(key=key)
        self.message_user(request, "Revoked.")


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = ["received_at", "partner", "journey", "event_id", "code", "unmapped"]
    list_filter = ["unmapped", "partner"]
    search_fields = ["event_id", "code", "journey__reference"]
    readonly_fields = [f.name for f in InboundEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
