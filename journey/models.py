"""The domain core: journeys, their milestones and the append-only timeline.

State (a milestone's state, the journey's current stage, ETA and health) is derived
from events by ``journey.services.journey_record_event`` and never written elsewhere.
"""

import secrets
import zoneinfo
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from accounts.models import validate_time_zone
from journey.db import QuickLoad

# Crockford-style alphabet: no 0/O, 1/I/L confusion when a customer reads it out.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_reference() -> str:
    return "MP-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))


class JourneyTemplate(QuickLoad):
    """A kind of journey (a car built to order, a fitted kitchen) and its stages."""

    key = models.SlugField(unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    # Kinds of customer message switched off for journeys of this kind (all on by default;
    # see notifications.kinds).
    disabled_notifications = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


STAGE_TRANSLATED = ("label", "explanation")


def validate_stage_translations(value: object) -> None:
    """{language: {"label": str, "explanation": str}} for the site's other languages."""
    others = {code for code, _name in settings.LANGUAGES} - {settings.LANGUAGE_CODE}
    if not isinstance(value, dict):
        raise ValidationError(_("Translations must be an object keyed by language."))
    for language, fields in value.items():
        if language not in others:
            raise ValidationError(
                _("%(language)s is not one of the site's other languages.") % {"language": language}
            )
        if not isinstance(fields, dict) or not set(fields) <= set(STAGE_TRANSLATED):
            raise ValidationError(_("Translate only the label and the explanation."))
        if not all(isinstance(text, str) for text in fields.values()):
            raise ValidationError(_("Translations are text."))
        if len(fields.get("label", "")) > 80:
            raise ValidationError(_("A translated label has at most 80 characters."))


def stage_translated(translations: dict, field: str, default: str) -> str:
    """A stage's ``field`` in the active language: its translation, else ``default``."""
    language = (translation.get_language() or settings.LANGUAGE_CODE).split("-")[0]
    return (translations.get(language) or {}).get(field) or default


class StageDefinition(QuickLoad):
    template = models.ForeignKey(JourneyTemplate, on_delete=models.CASCADE, related_name="stages")
    position = models.PositiveSmallIntegerField()
    key = models.SlugField(help_text=_("Internal key, used by partners' status mappings."))
    label = models.CharField(max_length=80, help_text=_("What the customer sees."))
    explanation = models.TextField(blank=True, help_text=_("What happens in this stage."))
    expected_duration = models.DurationField(
        default=timedelta(days=1),
        help_text=_("How long this stage usually takes."),
        # The same bounds as the stage_duration_sane constraint, as form errors.
        validators=[MinValueValidator(timedelta(0)), MaxValueValidator(timedelta(days=730))],
    )
    customer_visible = models.BooleanField(default=True)
    notify_customer = models.BooleanField(
        default=True, help_text=_("Tell the customer when this stage is reached.")
    )
    shipping = models.BooleanField(
        default=False,
        help_text=_(
            "The goods are in transit during this stage: while its journey has open "
            "shipment legs, the stage ends when the carrier expects the last leg to arrive."
        ),
    )
    # What the customer sees in their language, when it is not the site's default:
    # {"es": {"label": "Pintura", "explanation": "..."}}. The admin edits each
    # language's as fields of their own; a language missing shows the default's.
    translations = models.JSONField(
        _("translations"), default=dict, blank=True, validators=[validate_stage_translations]
    )

    class Meta:
        ordering = ["template", "position"]
        constraints = [
            models.UniqueConstraint(fields=["template", "key"], name="stage_key_unique"),
            models.UniqueConstraint(fields=["template", "position"], name="stage_position_unique"),
            models.CheckConstraint(
                condition=models.Q(expected_duration__gte=timedelta(0))
                & models.Q(expected_duration__lte=timedelta(days=730)),
                name="stage_duration_sane",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template.key}:{self.key}"

    @property
    def shown_label(self) -> str:
        """The label in the active language: the customer's, on their pages."""
        return stage_translated(self.translations, "label", self.label)

    @property
    def shown_explanation(self) -> str:
        return stage_translated(self.translations, "explanation", self.explanation)


class Health(models.TextChoices):
    ON_TRACK = "on_track", _("On track")
    AT_RISK = "at_risk", _("At risk")
    DELAYED = "delayed", _("Delayed")
    DONE = "done", _("Done")
    CANCELLED = "cancelled", _("Cancelled")


class Journey(QuickLoad):
    reference = models.CharField(max_length=16, unique=True, default=new_reference, editable=False)
    title = models.CharField(max_length=200)
    template = models.ForeignKey(JourneyTemplate, on_delete=models.PROTECT, related_name="+")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="journeys"
    )
    started_at = models.DateTimeField()
    promised_date = models.DateField(null=True, blank=True)
    # Derived by the spine: never edited by hand.
    eta = models.DateField(null=True, blank=True, editable=False)
    health = models.CharField(
        max_length=16, choices=Health.choices, default=Health.ON_TRACK, editable=False
    )
    delay_reason = models.CharField(
        max_length=300, blank=True, help_text=_("In the company's words, shown when late.")
    )
    last_event_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The prediction's 80% range and what it was based on (journey.eta); derived.
    eta_low = models.DateField(null=True, blank=True, editable=False)
    eta_high = models.DateField(null=True, blank=True, editable=False)
    eta_basis = models.CharField(max_length=24, blank=True, editable=False)
    # Set when the current stage has run longer than 95% of similar ones; cleared by
    # the next event. For staff, never shown to the customer.
    stalled_since = models.DateTimeField(null=True, blank=True, editable=False)
    # The expected date the customer was last told in a delay message, while the
    # journey is delayed (journey.eta: a slip a week further is told again).
    delay_told_eta = models.DateField(null=True, blank=True, editable=False)
    # A partner's test journey: driven through the API like any other, but it never
    # notifies anyone (its owner is a sandbox user, not a customer).
    is_sandbox = models.BooleanField(default=False, editable=False)
    # Moves on every change to what the journey page shows: the journey row, its
    # milestones, photos, ratings, legs, checkpoints, tasks, promised items, appointments,
    # reschedule requests, messages and ETA history, and its template's stages. Kept by
    # database triggers (migration 0008), so no write can forget it; the page and its
    # polled parts are cached under it (journey/page_cache.py).
    version = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="journey_owner_idx")]

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"


class MilestoneState(models.TextChoices):
    UPCOMING = "upcoming", _("Upcoming")
    CURRENT = "current", _("Now")
    DONE = "done", _("Done")


class Milestone(QuickLoad):
    """One stage of one journey."""

    # No index of its own: milestone_position_unique starts with it.
    journey = models.ForeignKey(
        Journey, on_delete=models.CASCADE, related_name="milestones", db_index=False
    )
    stage = models.ForeignKey(StageDefinition, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()
    state = models.CharField(
        max_length=16, choices=MilestoneState.choices, default=MilestoneState.UPCOMING
    )
    planned_date = models.DateField(null=True, blank=True)
    # Derived by the spine's forecast for stages not yet reached.
    expected_date = models.DateField(null=True, blank=True, editable=False)
    # When the stage was reached (from the event's occurred_at); null while upcoming,
    # and for a stage passed over without its own event.
    reached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["journey", "position"]
        constraints = [
            models.UniqueConstraint(fields=["journey", "stage"], name="milestone_stage_unique"),
            models.UniqueConstraint(
                fields=["journey", "position"], name="milestone_position_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.journey.reference} {self.stage.label}"


class EventSource(models.TextChoices):
    STAFF = "staff", _("Staff")
    PARTNER = "partner", _("Partner")
    SYSTEM = "system", _("System")


class EventKind(models.TextChoices):
    MILESTONE_REACHED = "milestone_reached", _("Milestone reached")
    NOTE = "note", _("Update")


class JourneyEvent(QuickLoad):
    """The timeline: an append-only log. Rows are written by ``journey.events`` only."""

    # No index of its own: event_journey_time_idx starts with it.
    journey = models.ForeignKey(
        Journey, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    milestone = models.ForeignKey(
        Milestone, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=16, choices=EventSource.choices)
    # Who: a staff user, or the partner's name (never shown to the customer).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source_name = models.CharField(max_length=120, blank=True)
    # The customer's words, when the event says more than the stage's label.
    message = models.TextField(blank=True)
    customer_visible = models.BooleanField(default=True)
    # False for an event that arrived late and so did not move the journey.
    applied = models.BooleanField(default=True)
    payload = models.JSONField(default=dict, blank=True, help_text=_("Raw partner payload."))

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["journey", "occurred_at"], name="event_journey_time_idx")]

    def __str__(self) -> str:
        return f"{self.journey_id} {self.kind} {self.occurred_at:%Y-%m-%d %H:%M}"


def photo_path(instance: "Photo", filename: str) -> str:
    # A random name: nothing about the customer or the original file leaks into it.
    return f"photos/{instance.journey_id}/{secrets.token_hex(12)}.jpg"


def thumbnail_path(instance: "Photo", filename: str) -> str:
    return f"photos/{instance.journey_id}/thumbs/{secrets.token_hex(12)}.jpg"


class Photo(models.Model):
    """A photo of the real item. Stored privately, metadata stripped."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="photos")
    milestone = models.ForeignKey(
        Milestone, on_delete=models.CASCADE, null=True, blank=True, related_name="photos"
    )
    image = models.ImageField(upload_to=photo_path)
    thumbnail = models.ImageField(upload_to=thumbnail_path, blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    caption = models.CharField(max_length=200, blank=True)
    taken_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.caption or f"Photo {self.pk}"


class LegMode(models.TextChoices):
    TRUCK = "truck", _("Truck")
    SHIP = "ship", _("Ship")
    RAIL = "rail", _("Train")
    AIR = "air", _("Plane")
    VAN = "van", _("Van")


class ShipmentLeg(models.Model):
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="legs")
    sequence = models.PositiveSmallIntegerField()
    mode = models.CharField(max_length=16, choices=LegMode.choices)
    carrier = models.CharField(max_length=120, blank=True)
    origin_name = models.CharField(max_length=120)
    origin_lat = models.DecimalField(
        max_digits=8,
        decimal_places=5,
        validators=[MinValueValidator(-90), MaxValueValidator(90)],
    )
    origin_lon = models.DecimalField(
        max_digits=8,
        decimal_places=5,
        validators=[MinValueValidator(-180), MaxValueValidator(180)],
    )
    destination_name = models.CharField(max_length=120)
    destination_lat = models.DecimalField(
        max_digits=8,
        decimal_places=5,
        validators=[MinValueValidator(-90), MaxValueValidator(90)],
    )
    destination_lon = models.DecimalField(
        max_digits=8,
        decimal_places=5,
        validators=[MinValueValidator(-180), MaxValueValidator(180)],
    )
    departed_at = models.DateTimeField(null=True, blank=True)
    arrived_at = models.DateTimeField(null=True, blank=True)
    eta = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["journey", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["journey", "sequence"], name="leg_sequence_unique"),
            models.CheckConstraint(
                condition=models.Q(arrived_at__isnull=True)
                | models.Q(departed_at__isnull=False, arrived_at__gte=models.F("departed_at")),
                name="leg_arrives_after_departing",
                violation_error_message=_(
                    "A leg arrives only once it has departed, and not before it departed."
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.origin_name} → {self.destination_name}"

    def clean(self) -> None:
        # A carrier's ETA before the journey even started is a typo, not a forecast.
        if self.eta and self.journey_id and self.eta < self.journey.started_at:
            raise ValidationError({"eta": _("The ETA is before the journey started.")})


class Checkpoint(models.Model):
    leg = models.ForeignKey(ShipmentLeg, on_delete=models.CASCADE, related_name="checkpoints")
    occurred_at = models.DateTimeField()
    location_name = models.CharField(max_length=120)
    lat = models.DecimalField(max_digits=8, decimal_places=5, null=True, blank=True)
    lon = models.DecimalField(max_digits=8, decimal_places=5, null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["leg", "occurred_at"]

    def __str__(self) -> str:
        return f"{self.location_name} {self.occurred_at:%Y-%m-%d %H:%M}"


class CustomerTask(models.Model):
    """Something the customer must do (arrange insurance, book the handover)."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    due_date = models.DateField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["done_at", "due_date", "id"]
        # The reminder job's question: which open tasks fall due, or are overdue?
        indexes = [
            models.Index(
                fields=["due_date"],
                name="task_open_due_idx",
                condition=models.Q(done_at__isnull=True, due_date__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return self.title


class PromisedItemState(models.TextChoices):
    PROMISED = "promised", _("Promised")
    ORDERED = "ordered", _("Ordered")
    DELIVERED = "delivered", _("Delivered")


class PromisedItem(models.Model):
    """An extra that was promised with the order: tracked until it is delivered."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="promised_items")
    name = models.CharField(max_length=200)
    state = models.CharField(
        max_length=16, choices=PromisedItemState.choices, default=PromisedItemState.PROMISED
    )
    due_date = models.DateField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        # The reminder job's question: which promises are late?
        indexes = [
            models.Index(
                fields=["due_date"],
                name="promised_open_due_idx",
                condition=~models.Q(state="delivered"),
            )
        ]

    def __str__(self) -> str:
        return self.name


# How long before a journey's recorded start its partners' reports may be (events, legs,
# checkpoints): a journey created at 10:00 (started "now") whose truck left at 09:00.
BEFORE_START_GRACE = timedelta(days=1)

# How far ahead an appointment may be set (a typo of a year, 9999, broke the pages and
# emails that show its end), and how long one may last.
APPOINTMENT_HORIZON = timedelta(days=2 * 366)
APPOINTMENT_LONGEST = timedelta(days=1)


def appointment_time_problems(
    *, starts_at: datetime | None, duration: timedelta | None, new: bool
) -> dict[str, list[str]]:
    """What is wrong with an appointment's time, by field: it starts within two years, a
    new one not in the past (an hour's grace for clocks), and it lasts a minute to a
    day. The admin (``Appointment.clean``) and the services ask the same."""
    errors: dict[str, list[str]] = {}
    now = timezone.now()
    if starts_at is not None and not timezone.is_naive(starts_at):
        if starts_at > now + APPOINTMENT_HORIZON:
            errors["starts_at"] = [_("Set an appointment within two years from now.")]
        elif new and starts_at < now - timedelta(hours=1):
            errors["starts_at"] = [_("An appointment cannot start in the past.")]
    if duration is not None and not timedelta(minutes=1) <= duration <= APPOINTMENT_LONGEST:
        errors["duration"] = [_("An appointment lasts between 1 minute and 24 hours.")]
    return errors


class Appointment(models.Model):
    """An appointment the customer attends. ``arrive_at`` is what the customer sees."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="appointments")
    title = models.CharField(max_length=200)
    starts_at = models.DateTimeField(help_text=_("The slot's internal start."))
    # Blank in a form means the start (as the API's default): set by clean().
    arrive_at = models.DateTimeField(
        blank=True, help_text=_("When the customer should arrive (empty: at the start).")
    )
    duration = models.DurationField(default=timedelta(hours=1))
    place_name = models.CharField(max_length=200)
    address = models.TextField(blank=True)
    time_zone = models.CharField(
        max_length=64, default="Europe/London", validators=[validate_time_zone]
    )
    what_to_bring = models.TextField(blank=True)
    visit = models.BooleanField(
        _("we come to the customer"),
        default=False,
        help_text=_(
            "A visit (an engineer, a delivery): the customer is told when we will be with "
            "them, and what to have ready, not when to arrive and what to bring."
        ),
    )
    # The stage it is booked for (a handover, an installation): the customer's page says
    # that stage is booked for this day, where it said a forecast.
    milestone = models.ForeignKey(
        "Milestone",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="appointments",
        verbose_name=_("for the stage"),
        help_text=_(
            "The stage this appointment is for (a handover, an installation): the customer "
            "then sees that stage booked for its day, not an expected date."
        ),
    )

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(arrive_at__lte=models.F("starts_at")),
                name="appointment_arrive_before_start",
                violation_error_message=_(
                    "The customer is asked to arrive at the start or before it, not after."
                ),
            ),
        ]
        # The reminder job's question: whose appointment is tomorrow?
        indexes = [models.Index(fields=["arrive_at"], name="appointment_arrive_idx")]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        if self.arrive_at is None:
            self.arrive_at = self.starts_at
        errors = appointment_time_problems(
            starts_at=self.starts_at, duration=self.duration, new=self._state.adding
        )
        if self.milestone_id is not None and self.milestone.journey_id != self.journey_id:
            errors["milestone"] = [_("Choose a stage of this journey.")]
        if errors:
            raise ValidationError(errors)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    @property
    def day(self) -> date:
        """The day its customer is expected, on the place's clock (as they read it)."""
        return booked_day(self.arrive_at, self.time_zone)


def booked_day(arrive_at: datetime, time_zone: str) -> date:
    """The day of an appointment that arrives at ``arrive_at``, on ``time_zone``'s clock:
    the day a stage booked by it is reached at the earliest (journey.eta)."""
    return timezone.localtime(arrive_at, zoneinfo.ZoneInfo(time_zone)).date()


class Message(models.Model):
    """The journey's conversation."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    from_staff = models.BooleanField(default=False)
    body = models.TextField()
    # Only the owner (and staff) see a private message; invited viewers do not.
    private = models.BooleanField(default=False)
    # The timeline update this message answers, when the customer replied to one.
    milestone = models.ForeignKey(
        Milestone, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(body=""), name="message_body_not_empty"),
        ]

    def __str__(self) -> str:
        return self.body[:60]


class EtaBasis(models.TextChoices):
    PLANNED = "planned", _("Planned durations")
    HISTORY = "history", _("Similar journeys")
    PLANNED_PARTNER = "planned_partner", _("Planned durations and the carrier's ETA")
    HISTORY_PARTNER = "history_partner", _("Similar journeys and the carrier's ETA")
    DONE = "done", _("Arrived")


class EtaCause(models.TextChoices):
    CREATED = "created", _("Journey created")
    EVENT = "event", _("Milestone reached")
    LEG_ETA = "leg_eta", _("Carrier's ETA changed")
    NIGHTLY = "nightly", _("Nightly recompute")
    RECOMPUTE = "recompute", _("Recomputed on demand")
    BOOKING = "booking", _("A stage booked")


class EtaEstimate(QuickLoad):
    """The history of a journey's ETA: one row each time the prediction changed."""

    # No index of its own: eta_journey_time_idx starts with it.
    journey = models.ForeignKey(
        Journey, on_delete=models.CASCADE, related_name="eta_estimates", db_index=False
    )
    computed_at = models.DateTimeField()
    expected = models.DateField()
    low = models.DateField()
    high = models.DateField()
    basis = models.CharField(max_length=24, choices=EtaBasis.choices)
    health = models.CharField(max_length=16, choices=Health.choices)
    cause = models.CharField(max_length=16, choices=EtaCause.choices)

    class Meta:
        ordering = ["journey", "computed_at", "id"]
        indexes = [models.Index(fields=["journey", "computed_at"], name="eta_journey_time_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(low__lte=models.F("expected"))
                & models.Q(expected__lte=models.F("high")),
                name="eta_range_holds_expected",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.expected} ({self.low} to {self.high})"


class TemplateEtaStats(models.Model):
    """What completed journeys of a template teach: the cache the ETA reads.

    ``data`` is ``{"keys": [segment keys], "journeys": [[seconds or null, ...], ...]}``:
    one row per completed journey, one column per segment (from the start to the first
    stage, then each stage to the next). Recomputed nightly, when a journey of the
    template finishes, and on demand (admin action, ``manage.py eta_recompute``).
    """

    template = models.OneToOneField(
        JourneyTemplate, on_delete=models.CASCADE, related_name="eta_stats"
    )
    computed_at = models.DateTimeField()
    journey_count = models.PositiveIntegerField(default=0)
    data = models.JSONField(default=dict)

    class Meta:
        verbose_name = _("ETA statistics")
        verbose_name_plural = _("ETA statistics")

    def __str__(self) -> str:
        return f"{self.template.key}: {self.journey_count} journeys"


class RescheduleState(models.TextChoices):
    OPEN = "open", _("Waiting for an answer")
    HANDLED = "handled", _("Answered")


class RescheduleRequest(models.Model):
    """The customer asks for another time for an appointment; staff answer it."""

    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="reschedule_requests"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    first_choice = models.DateTimeField()
    second_choice = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    state = models.CharField(
        max_length=16, choices=RescheduleState.choices, default=RescheduleState.OPEN
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(second_choice__isnull=True)
                | ~models.Q(second_choice=models.F("first_choice")),
                name="reschedule_choices_differ",
            ),
        ]

    def __str__(self) -> str:
        # On the place's clock, as the customer asked and staff book it.
        first = self.first_choice.astimezone(self.appointment.zone)
        return f"{self.appointment} → {first:%Y-%m-%d %H:%M} ({self.appointment.time_zone})"


class Feedback(models.Model):
    """How a completed milestone went, in the customer's eyes: one per milestone and customer."""

    milestone = models.ForeignKey(Milestone, on_delete=models.CASCADE, related_name="feedback")
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    rating = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    comment = models.TextField(blank=True)
    # Given by the journey's owner as it was then, not a viewer it was shared with: the
    # dashboard ranks stages by the owners' ratings. Kept, not read off the journey's
    # owner now: nothing in the product gives a journey another owner, but a rating's
    # meaning should not hang on that staying so.
    # "Owner" in the admin: its column, and its filter "By owner" ("By by the owner" was).
    by_owner = models.BooleanField(
        _("owner"), default=False, help_text=_("Given by the journey's owner, not a viewer.")
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["milestone", "customer"], name="feedback_one_per_customer"
            ),
            models.CheckConstraint(
                condition=models.Q(rating__gte=1, rating__lte=5), name="feedback_rating_1_to_5"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.milestone} {self.rating}/5"


class AgreementKind(models.TextChoices):
    CONTRACT = "contract", _("Contract")
    WARRANTY = "warranty", _("Warranty")
    FINANCE = "finance", _("Finance agreement")
    LEASE = "lease", _("Lease")


class Agreement(models.Model):
    """Something that ends (a contract, a warranty, a finance agreement): the customer hears
    about it 30 and 7 days ahead, with what they can do next."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="agreements")
    kind = models.CharField(max_length=16, choices=AgreementKind.choices)
    title = models.CharField(max_length=200)
    ends_on = models.DateField()
    next_steps = models.TextField(
        help_text=_("What the customer can do next (renew, extend, return, buy)."),
    )

    class Meta:
        ordering = ["ends_on"]
        indexes = [models.Index(fields=["ends_on"], name="agreement_ends_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.title} ({self.ends_on})"


class JargonTerm(models.Model):
    """An internal word (a team name, a system code) that must never reach a customer.

    Customer-facing text containing one (whole word, any case) is refused: see
    ``journey.jargon``. ``settings.JARGON_TERMS`` adds defaults that need no row.
    """

    term = models.CharField(max_length=80, unique=True)
    note = models.CharField(
        max_length=200, blank=True, help_text=_("Why it is internal, or what to say instead.")
    )

    class Meta:
        ordering = ["term"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(term=""), name="jargon_term_not_empty"),
        ]

    def __str__(self) -> str:
        return self.term
