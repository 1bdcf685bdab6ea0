from django.contrib import admin

from notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "recipient", "channel", "state", "attempts", "sent_at"]
    list_filter = ["state", "channel", "kind"]
    search_fields = ["recipient__email", "journey__reference", "dedup_key"]
    list_select_related = ["recipient"]
    readonly_fields = [
        "recipient",
        "journey",
        "kind",
        "channel",
        "context",
        "dedup_key",
        "state",
        "attempts",
        "scheduled_at",
        "claimed_at",
        "sent_at",
        "last_error",
        "occurred_at",
        "created_at",
    ]

    def has_add_permission(self, request: object) -> bool:
        return False
