from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from journey.errors import ApplicationError
from notifications.models import Notification
from notifications.services import notification_resend


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "recipient", "channel", "state", "attempts", "sent_at"]
    list_filter = ["state", "channel", "kind"]
    search_fields = [
        "recipient__email",
        "recipient__profile__family_name",
        "journey__reference",
        "dedup_key",
    ]
    list_select_related = ["recipient"]
    actions = ["resend"]
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

    @admin.action(description="Send again (through the outbox)", permissions=["change"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        done, refused = 0, []
        for notification in queryset:
            try:
                notification_resend(notification=notification)
            except ApplicationError as error:
                refused.append(f"#{notification.pk}: {error.message}")
            else:
                done += 1
        if done:
            messages.success(request, f"{done} message(s) queued to be sent again.")
        for line in refused:
            messages.warning(request, line)
