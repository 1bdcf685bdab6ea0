import functools
import zoneinfo
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models
from django.db.models import Value
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import get_language_info, override, pgettext_lazy
from django.utils.translation import gettext_lazy as _


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: object) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        if not (extra["is_staff"] and extra["is_superuser"]):
            raise ValueError("A superuser must have is_staff and is_superuser set.")
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in: the email address is the login."""

    email = models.EmailField(_("email address"), unique=True)
    is_staff = models.BooleanField(_("staff status"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()

    def get_full_name(self) -> str:
        profile = getattr(self, "profile", None)
        return profile.full_name if profile and profile.full_name else self.email

    def get_short_name(self) -> str:
        profile = getattr(self, "profile", None)
        return profile.given_name if profile and profile.given_name else self.email


@functools.cache
def known_time_zones() -> frozenset[str]:
    """Every zone the time zone database knows: read once (a scan of it costs about 3 ms)."""
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    if value not in known_time_zones():
        raise ValidationError(_("%(value)s is not a known time zone."), params={"value": value})


class CustomerProfile(models.Model):
    """What the customer says about themselves. The customer owns it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    given_name = models.CharField(_("given name"), max_length=100, blank=True)
    family_name = models.CharField(_("family name"), max_length=100, blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    language = models.CharField(
        _("language"), max_length=8, choices=settings.LANGUAGES, default="en"
    )
    time_zone = models.CharField(
        _("time zone"), max_length=64, default="Europe/London", validators=[validate_time_zone]
    )
    timeline_newest_first = models.BooleanField(_("newest first on the timeline"), default=False)
    channel_email = models.BooleanField(_("email"), default=True)
    channel_sms = models.BooleanField(_("text message (SMS)"), default=False)
    channel_push = models.BooleanField(_("notifications on this device (web push)"), default=False)
    quiet_hours_start = models.TimeField(_("quiet from"), null=True, blank=True)
    quiet_hours_end = models.TimeField(_("quiet until"), null=True, blank=True)
    # Kinds of message the customer accepts even in their quiet hours.
    anytime_kinds = models.JSONField(_("allowed at any hour"), default=list, blank=True)
    # Set when email to this customer bounced: email is skipped until they change address.
    email_bounced_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Which profile fields were filled in by someone other than the customer, and by whom
    # ({"phone": "partner:Iberia Motor Works"}); a field the customer edits loses its mark.
    field_sources = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        verbose_name = _("customer profile")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(language__in=[code for code, _name in settings.LANGUAGES]),
                name="profile_language_known",
            ),
            models.CheckConstraint(
                condition=models.Q(quiet_hours_start__isnull=True, quiet_hours_end__isnull=True)
                | models.Q(quiet_hours_start__isnull=False, quiet_hours_end__isnull=False),
                name="profile_quiet_hours_both_or_neither",
                violation_error_message=_("Give both ends of your quiet hours, or neither."),
            ),
        ]

    def __str__(self) -> str:
        return self.full_name or str(self.user)

    @property
    def anytime_labels(self) -> list[str]:
        """The kinds allowed during quiet hours, as the customer reads them."""
        from notifications.kinds import KINDS

        return [str(KINDS[key].label) for key in self.anytime_kinds or [] if key in KINDS]

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class Source(models.TextChoices):
    """Who changed a customer's record."""

    CUSTOMER = "customer", _("You")
    STAFF = "staff", _("Our staff")
    PARTNER = "partner", _("A partner")
    SYSTEM = "system", _("The system")


# A source in the middle of a sentence ("proposed by our staff"); its label ("Our staff")
# begins a line of the history.
_IN_A_SENTENCE = {
    Source.CUSTOMER: pgettext_lazy("who, in the middle of a sentence", "you"),
    Source.STAFF: pgettext_lazy("who, in the middle of a sentence", "our staff"),
    Source.PARTNER: pgettext_lazy("who, in the middle of a sentence", "a partner"),
    Source.SYSTEM: pgettext_lazy("who, in the middle of a sentence", "the system"),
}


def source_in_a_sentence(source: str) -> str:
    return str(_IN_A_SENTENCE.get(source, source))


def label_taken(profile: "CustomerProfile", label: str) -> str | None:
    """The label of the customer's address that this one would repeat, as the customer
    wrote it ("Home" for "HOME"), folded as the unique index folds it (``Lower`` in the
    database: ``iexact``'s ``UPPER`` differs on a few letters); None if there is none."""
    return (
        profile.addresses.annotate(folded=Lower("label"))
        .filter(folded=Lower(Value(label)))
        .values_list("label", flat=True)
        .first()
    )


class Address(models.Model):
    profile = models.ForeignKey(CustomerProfile, on_delete=models.CASCADE, related_name="addresses")
    label = models.CharField(_("label"), max_length=40, help_text=_("Home, work, delivery…"))
    line1 = models.CharField(_("address"), max_length=200)
    line2 = models.CharField(_("address, line 2"), max_length=200, blank=True)
    city = models.CharField(_("town or city"), max_length=100)
    postcode = models.CharField(_("postcode"), max_length=20, blank=True)
    country = models.CharField(_("country"), max_length=2, default="GB")

    class Meta:
        ordering = ["id"]
        verbose_name = _("address")
        verbose_name_plural = _("addresses")
        constraints = [
            # "Deliver to Home" must say which: one address per label, whatever its case.
            models.UniqueConstraint(
                "profile",
                Lower("label"),
                name="one_address_per_label",
                violation_error_message=_("You have an address with this label already."),
            ),
        ]

    def __str__(self) -> str:
        return ", ".join(p for p in (self.line1, self.line2, self.city, self.postcode) if p)


# Notes the audit trail writes itself, in the site's language; shown in the reader's.
ACCEPTED_NOTE = "Accepted a proposal from {by}: {reason}"
ERASED_NOTE = "Personal data erased at the customer's request."
RELABELLED_NOTE = "Two of your addresses had this label: this one was numbered."


def value_label(field: str, value: str) -> str:
    """A stored value as the customer reads it: a language by its own name ("español",
    not "es"), a channel's switch as yes or no in their language; others as stored."""
    if field == "language" and value:
        try:
            return capfirst(get_language_info(value)["name_local"])
        except KeyError:
            return value
    if value in ("yes", "no") and _is_switch(field):
        return str(_("Yes") if value == "yes" else _("No"))
    if field == "anytime_kinds" and value:
        from notifications.kinds import KINDS

        return ", ".join(
            str(KINDS[key].label) if key in KINDS else key for key in value.split(", ")
        )
    return value


def _is_switch(field: str) -> bool:
    try:
        return isinstance(CustomerProfile._meta.get_field(field), models.BooleanField)
    except FieldDoesNotExist:
        return False


def note_label(note: str) -> str:
    """A note the audit trail wrote (``ACCEPTED_NOTE``, ``ERASED_NOTE``) in the reader's
    language; a staff member's or partner's own note as written."""
    prefix, _sep, _rest = ACCEPTED_NOTE.partition("{by}")
    if note.startswith(prefix) and ": " in note:
        by, reason = note.removeprefix(prefix).split(": ", 1)
        # "Our staff" was written in the site's language; a partner's name is a name.
        with override(settings.LANGUAGE_CODE):
            sources = {str(label): value for value, label in Source.choices}
        by = source_in_a_sentence(sources[by]) if by in sources else by
        return _("Accepted a proposal from %(by)s: %(reason)s") % {"by": by, "reason": reason}
    if note == ERASED_NOTE:
        return str(_("Personal data erased at the customer's request."))
    if note == RELABELLED_NOTE:
        return str(_("Two of your addresses had this label: this one was numbered."))
    return note


def field_label(name: str) -> str:
    """A record's field as the customer reads it ("Given name", not "given_name")."""
    others = {
        "address": _("address"),
        "address_label": _("address label"),
        "account": _("account"),
        "email": _("email address"),
    }
    try:
        label = CustomerProfile._meta.get_field(name).verbose_name
    except FieldDoesNotExist:
        label = others.get(name, name.replace("_", " "))
    return capfirst(str(label))


class ProfileChange(models.Model):
    """The audit trail: every change to a customer's record. Append-only."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile_changes"
    )
    field = models.CharField(max_length=64)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_name = models.CharField(max_length=120, blank=True)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="profilechange_user_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.field} ({self.source})"

    @property
    def field_label(self) -> str:
        return field_label(self.field)

    @property
    def shown_old_value(self) -> str:
        return value_label(self.field, self.old_value)

    @property
    def shown_new_value(self) -> str:
        return value_label(self.field, self.new_value)

    @property
    def shown_note(self) -> str:
        return note_label(self.note)


class ProposalState(models.TextChoices):
    PENDING = "pending", _("Waiting for you")
    ACCEPTED = "accepted", _("Accepted")
    DECLINED = "declined", _("Declined")
    WITHDRAWN = "withdrawn", _("Withdrawn")


class ChangeProposal(models.Model):
    """Staff or a partner propose a change; only the customer can accept it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="change_proposals"
    )
    field = models.CharField(max_length=64)
    new_value = models.TextField()
    reason = models.CharField(max_length=300)
    source = models.CharField(max_length=16, choices=Source.choices)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    proposed_by_name = models.CharField(max_length=120, blank=True)
    # The partner that proposed it: only it hears the customer's answer.
    partner = models.ForeignKey(
        "integrations.Partner", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    state = models.CharField(
        max_length=16, choices=ProposalState.choices, default=ProposalState.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open proposal per field: a newer one replaces (withdraws) the older.
            models.UniqueConstraint(
                fields=["user", "field"],
                condition=models.Q(state="pending"),
                name="one_pending_proposal_per_field",
            ),
            models.CheckConstraint(
                condition=models.Q(state="pending") | models.Q(decided_at__isnull=False),
                name="decided_proposal_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.field} → {self.new_value} ({self.state})"

    @property
    def field_label(self) -> str:
        return field_label(self.field)

    @property
    def shown_new_value(self) -> str:
        return value_label(self.field, self.new_value)

    @property
    def proposed_by_text(self) -> str:
        """ "proposed by our staff": a partner's name, else the source in a sentence."""
        who = self.proposed_by_name or source_in_a_sentence(self.source)
        return _("proposed by %(who)s") % {"who": who}


# How long an invitation's link lasts, and its invitation waits for them in the portal.
INVITATION_MAX_AGE = 60 * 60 * 24 * 30


def invitations_made_since() -> datetime:
    """The oldest an invitation may be and still be accepted (its link's own age)."""
    return timezone.now() - timedelta(seconds=INVITATION_MAX_AGE)


class JourneyShare(models.Model):
    """The owner invited someone by email to follow a journey as a viewer."""

    journey = models.ForeignKey("journey.Journey", on_delete=models.CASCADE, related_name="shares")
    email = models.EmailField(_("email address"))
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    viewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="journey_shares",
    )
    created_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["journey", "email"],
                condition=models.Q(revoked_at__isnull=True),
                name="one_open_share_per_email",
            ),
        ]
        indexes = [
            # The invitations waiting for an address, read by every home page.
            models.Index(
                fields=["email"],
                condition=models.Q(viewer__isnull=True, revoked_at__isnull=True),
                name="share_waiting_email_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.journey_id} → {self.email}"


class ShareLink(models.Model):
    """A signed, expiring, revocable link showing a journey's progress to anyone."""

    journey = models.ForeignKey(
        "journey.Journey", on_delete=models.CASCADE, related_name="share_links"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("created_at")),
                name="share_link_expires_after_creation",
            ),
        ]

    def __str__(self) -> str:
        return f"Link to {self.journey_id} until {self.expires_at:%Y-%m-%d}"

    def is_active(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and self.expires_at > now
