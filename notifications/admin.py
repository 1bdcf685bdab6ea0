from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from journey.errors import ApplicationError
from notifications.channels import render, sms_text
from notifications.kinds import KINDS
from notifications.models import Channel, Notification
from notifications.services import notification_resend


class KindFilter(admin.SimpleListFilter):
    """Kinds by what they are ("A customer wrote"), not their code."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: object) -> list[tuple[str, str]]:
        return sorted(((key, str(kind.label)) for key, kind in KINDS.items()), key=lambda p: p[1])

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """The outbox, to read and to send again: a row is what was (or will be) sent, so
    nothing of it is edited here (a changed address on a copy misled: the message still
    went to the customer's)."""

    list_display = [
        "created_at",
        "what",
        "recipient",
        "channel",
        "state",
        "attempts",
        "sent_at",
    ]
    list_filter = ["state", "channel", KindFilter]
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

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return ["message", *(field.name for field in Notification._meta.fields)]

    def get_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return ["message", *(f.name for f in Notification._meta.fields if f.name != "id")]

    @admin.display(description="kind", ordering="kind")
    def what(self, notification: Notification) -> str:
        kind = KINDS.get(notification.kind)
        return str(kind.label) if kind else notification.kind

    @admin.display(
        description="the message, as it reads now (the recipient's language and clock today)"
    )
    def message(self, notification: Notification) -> str:
        if notification.channel == Channel.SMS:
            # The text message itself, not the email's words.
            heading, text = "", sms_text([notification])
        else:
            rendered = render(notification)
            heading, text = rendered.subject, rendered.text
        return format_html(
            '<strong>{}</strong><pre style="white-space:pre-wrap;max-width:60em">{}</pre>',
            heading,
            text,
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, object] | None = None,
    ) -> HttpResponse:
        # Nothing on the page is editable: no Save buttons (the change permission stays,
        # for the send-again action).
        context = {
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context=context)

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
