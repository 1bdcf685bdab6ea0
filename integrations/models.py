"""Partners, their API keys, their status codes, and what they sent us."""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from journey.db import QuickLoad


class Partner(models.Model):
    """A partner system (factory, carrier, dealer, installer)."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(unique=True)
    journeys = models.ManyToManyField(
        "journey.Journey",
        blank=True,
        related_name="partners",
        help_text=_("The journeys this partner serves; its keys reach only these."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # A new value, never one used before, at every change to the partner's mappings and
    # every update of the row itself (database triggers, migration 0007): what a
    # process's read of the mappings is kept under (partner_mappings).
    mappings_version = models.PositiveBigIntegerField(default=0, editable=False)

    # A partner authenticated by its API key is the API request's principal.
    is_authenticated = True
    is_anonymous = False

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PartnerAPIKey(models.Model):
    """An API key: shown once, stored as a SHA-256 hash, found by its visible prefix."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=120, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_secret = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("partner API key")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.partner} {self.prefix}…"

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now


class StatusMapping(models.Model):
    """A partner's own status code, turned into one of our stages."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="mappings")
    code = models.CharField(
        max_length=64,
        help_text=_(
            "The partner's code exactly as it sends it: capitals and punctuation count "
            "(BUILT and built are two codes)."
        ),
    )
    stage_key = models.SlugField(help_text=_("The stage this code means (its internal key)."))
    customer_text = models.CharField(
        max_length=300,
        blank=True,
        help_text=_("Optional words for the customer; the stage's label is used otherwise."),
    )

    class Meta:
        ordering = ["partner", "code"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "code"], name="mapping_code_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.partner}: {self.code} → {self.stage_key}"

    def clean(self) -> None:
        # A key no template has would refuse every event with this code (unknown_stage).
        from journey.models import StageDefinition

        if self.stage_key and not StageDefinition.objects.filter(key=self.stage_key).exists():
            raise ValidationError(
                {"stage_key": _("No journey template has a stage with this key.")}
            )


class InboundEvent(QuickLoad):
    """Every status event a partner sent, as sent: the idempotency record and the audit."""

    # No index of its own: inbound_event_unique starts with it.
    partner = models.ForeignKey(
        Partner, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    journey = models.ForeignKey(
        "journey.Journey", on_delete=models.CASCADE, related_name="inbound_events"
    )
    event_id = models.CharField(max_length=128)
    code = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    payload = models.JSONField(default=dict)
    journey_event = models.OneToOneField(
        "journey.JourneyEvent",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbound",
    )
    # An unmapped code is kept and flagged for staff; it never reaches the customer.
    unmapped = models.BooleanField(default=False)
    # Accepted with ``Prefer: respond-async`` and not applied yet: the queue's applier
    # (partner_queued_events_drain) takes these in key order.
    queued = models.BooleanField(default=False)
    # Why a queued event could not be applied ({"code", "message", "fields"}), as the
    # synchronous answer's error would have said; the partner reads it by the event's id.
    rejection = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "event_id"], name="inbound_event_unique"),
        ]
        indexes = [
            models.Index(
                fields=["partner", "code"],
                name="inbound_unmapped_idx",
                condition=models.Q(unmapped=True),
            ),
            # The queue: a few rows at most, whatever the table's size.
            models.Index(fields=["id"], name="inbound_queued_idx", condition=models.Q(queued=True)),
        ]

    def __str__(self) -> str:
        return f"{self.partner} {self.event_id} {self.code}"

    @property
    def state(self) -> str:
        """Where the event stands: queued, rejected, unmapped, applied or logged (kept in
        the timeline without moving the journey: older than its state)."""
        if self.queued:
            return "queued"
        if self.rejection is not None:
            return "rejected"
        if self.unmapped:
            return "unmapped"
        event = self.journey_event
        return "applied" if event is not None and event.applied else "logged"


class IdempotencyRecord(models.Model):
    """The first response to a POST sent with an ``Idempotency-Key`` (Stripe's semantics).

    A row with no ``status_code`` is a request still in flight: a duplicate sent meanwhile
    is refused (409) rather than run twice. Its ``locked_at`` is the claim's lease: once it
    is older than ``API_IDEMPOTENCY_LEASE`` (longer than any request may run) the request
    is taken to be dead and a retry may take the key over. ``locked_at`` is also the
    claim's fencing token: a request whose claim was taken over cannot store its response.
    """

    # No index of its own: idempotency_key_unique starts with it.
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    fingerprint = models.CharField(max_length=64, help_text=_("SHA-256 of the request."))
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    locked_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "key"], name="idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.partner_id} {self.key}"


class WebhookEventType(models.TextChoices):
    TASK_COMPLETED = "task.completed", _("Task completed")
    APPOINTMENT_RESCHEDULE_REQUESTED = (
        "appointment.reschedule_requested",
        _("New appointment time requested"),
    )
    MESSAGE_POSTED = "message.posted", _("Message posted")
    PROFILE_CHANGE_ANSWERED = "profile_change.answered", _("Profile change answered")


class WebhookEndpoint(models.Model):
    """Where a partner wants to hear what customers did, and which event types."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500, help_text=_("http(s) only."))
    event_types = models.JSONField(
        default=list, help_text=_('A list of event types, e.g. ["task.completed"].')
    )
    # Standard Webhooks secrets: "whsec_" + base64 of random bytes. While a secret is
    # rotated both are used to sign, so the receiver can switch at its own pace.
    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["partner", "url"]

    def __str__(self) -> str:
        return f"{self.partner}: {self.url}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


class WebhookDelivery(models.Model):
    """One event for one endpoint: the outbound outbox row, retried until delivered."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    journey = models.ForeignKey(
        "journey.Journey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The webhook-id header: the same for every attempt, so receivers can deduplicate.
    message_id = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=64, choices=WebhookEventType.choices)
    payload = models.JSONField()
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = _("webhook deliveries")
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_due_idx",
                condition=models.Q(state__in=["pending", "sending"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint.url}"


class WebhookAttempt(models.Model):
    """One try at delivering: what the receiver answered, or why it could not."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField(auto_now_add=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["attempted_at", "id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} {self.status_code or self.error[:40]}"
