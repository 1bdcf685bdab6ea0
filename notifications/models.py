"""The transactional outbox: every message is a row written with the change that causes it."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from journey.db import QuickLoad


class Channel(models.TextChoices):
    EMAIL = "email", _("Email")
    SMS = "sms", _("Text message")
    PUSH = "push", _("Web push")
    # The portal's notification centre: always written, never held, read in the portal.
    INAPP = "inapp", _("In the portal")


class NotificationState(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")


class Notification(QuickLoad):
    # No index of its own: notification_recipient_idx starts with it.
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notifications",
        db_index=False,
    )
    # For someone who has no account yet (an invitation): the address to write to.
    to_email = models.EmailField(blank=True)
    journey = models.ForeignKey(
        "journey.Journey",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notifications",
    )
    kind = models.CharField(max_length=48)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.EMAIL)
    # What happened, for the message's words; rendered at delivery in the recipient's
    # language and time zone.
    context = models.JSONField(default=dict, blank=True)
    # One message per cause however often it is retried or re-sent by a partner.
    dedup_key = models.CharField(max_length=200)
    state = models.CharField(
        max_length=16, choices=NotificationState.choices, default=NotificationState.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    scheduled_at = models.DateTimeField(default=timezone.now)
    # When a worker took the row; a row left in "sending" past the lease is taken again.
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Which delivery run holds the row (a digest claims several rows under one id).
    claim_id = models.UUIDField(null=True, blank=True, editable=False)
    # Set when this row went out as part of a digest with others.
    digest_size = models.PositiveSmallIntegerField(default=1)
    read_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # When the cause happened, for "time to know" (cause to message handed over).
    occurred_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["dedup_key", "channel"], name="notification_dedup"),
            models.CheckConstraint(
                condition=~models.Q(state="sent") | models.Q(sent_at__isnull=False),
                name="notification_sent_has_time",
            ),
            models.CheckConstraint(
                condition=models.Q(recipient__isnull=False) | ~models.Q(to_email=""),
                name="notification_has_recipient",
            ),
        ]
        indexes = [
            models.Index(
                fields=["scheduled_at"],
                name="notification_due_idx",
                condition=models.Q(state__in=["pending", "sending"]),
            ),
            models.Index(
                fields=["recipient", "channel", "-created_at"],
                name="notification_recipient_idx",
            ),
            # A delivery run finds the rows it claimed (one, or a digest's several).
            models.Index(
                fields=["claim_id"],
                name="notification_claim_idx",
                condition=models.Q(claim_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.recipient_id} ({self.channel}, {self.state})"
