"""Partners, their API keys, their status codes, and what they sent us."""

from datetime import datetime

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


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
    code = models.CharField(max_length=64)
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


class InboundEvent(models.Model):
    """Every status event a partner sent, as sent: the idempotency record and the audit."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="events")
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
        ]

    def __str__(self) -> str:
        return f"{self.partner} {self.event_id} {self.code}"
