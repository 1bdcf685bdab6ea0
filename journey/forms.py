import zoneinfo
from datetime import UTC, datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib.admin.widgets import AdminDateWidget, AdminSplitDateTime
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from journey.jargon import validate_no_jargon
from journey.models import (
    BEFORE_START_GRACE,
    Appointment,
    CustomerTask,
    Journey,
    JourneyTemplate,
    Milestone,
    MilestoneState,
    StageDefinition,
    appointment_time_problems,
    validate_stage_translations,
)
from journey.services import APPOINTMENT_FIELDS, ARRIVE_AHEAD_AT_MOST


class RecordMilestoneForm(forms.ModelForm):
    """Staff record that a journey reached this milestone; saving goes through the spine."""

    record_reached_at = forms.DateTimeField(
        label=_("Reached at"),
        required=False,
        help_text=_("Record this stage as reached at this time (your time zone)."),
    )
    record_message = forms.CharField(
        label=_("Message to the customer"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Optional words for the customer, shown with the stage."),
    )

    class Meta:
        model = Milestone
        fields = ["planned_date"]

    def clean_record_reached_at(self):
        value = self.cleaned_data.get("record_reached_at")
        if value and value > timezone.now() + timedelta(minutes=5):
            raise forms.ValidationError(_("A milestone cannot be reached in the future."))
        if value and self.instance.pk and value < self.instance.journey.started_at:
            raise forms.ValidationError(_("That is before the journey started."))
        return value


CLOCK_CHANGE = _(
    "The clocks change at that time in %(zone)s, so it does not exist or happens twice "
    "there: choose another time."
)


class PlaceDateTimeField(forms.DateTimeField):
    """A date and time entered on a place's clock (``zone``, set by the form), whoever
    enters it: Django reads a naive time in the active zone, the customer's, which
    refuses or moves a time that exists at the place but not in the customer's zone
    (a clock change that differs between them). A time that does not exist at the place
    (the hour skipped when its clocks go forward) or exists twice there (the hour
    repeated when they go back) is refused with a plain message, not guessed."""

    zone: zoneinfo.ZoneInfo = zoneinfo.ZoneInfo("UTC")

    def to_python(self, value: object) -> datetime | None:
        with timezone.override(self.zone):
            try:
                return super().to_python(value)
            except forms.ValidationError as error:
                if error.code != "ambiguous_timezone":
                    raise
                raise forms.ValidationError(
                    CLOCK_CHANGE,
                    code="clock_change",
                    params={"zone": self.zone.key},
                ) from error


class RescheduleForm(forms.Form):
    """Another time for an appointment, entered on the place's clock."""

    first_choice = PlaceDateTimeField(
        label=_("Preferred time"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    second_choice = PlaceDateTimeField(
        label=_("Another time that suits you (optional)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    note = forms.CharField(
        label=_("Anything we should know (optional)"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: object, zone: zoneinfo.ZoneInfo, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone
        for name in ("first_choice", "second_choice"):
            self.fields[name].zone = zone


class MessageForm(forms.Form):
    body = forms.CharField(
        label=_("Your message"),
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": _("Write a message first.")},
    )
    milestone = forms.IntegerField(required=False, widget=forms.HiddenInput)


class FeedbackForm(forms.Form):
    rating = forms.TypedChoiceField(
        label=_("Rating"),
        choices=[(n, str(n)) for n in range(1, 6)],
        coerce=int,
        error_messages={
            "required": _("Choose a rating from 1 to 5."),
            "invalid_choice": _("Choose a rating from 1 to 5."),
        },
    )
    comment = forms.CharField(
        label=_("Comment (optional)"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


# --- Staff (the admin) ----------------------------------------------------------------


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several photos in one field (Django's documented pattern for multiple uploads)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*"}))
        super().__init__(*args, **kwargs)

    def clean(self, data: object, initial: object = None) -> list:
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(item, initial) for item in data if item]
        return [single(data, initial)] if data else []


class StaffRecordMilestoneForm(RecordMilestoneForm):
    """The admin's milestone form: jargon-free words, and photos checked before saving."""

    record_photos = MultipleImageField(
        label=_("Photos"),
        required=False,
        help_text=_("JPEG, PNG or WebP; metadata is removed. The customer is told once."),
    )
    record_photo_caption = forms.CharField(label=_("Photo caption"), required=False, max_length=200)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["record_message"].validators.append(validate_no_jargon)
        self.fields["record_photo_caption"].validators.append(validate_no_jargon)

    def clean(self) -> dict[str, object]:
        """Nothing entered is dropped: a message goes with the stage being reached, a
        caption with its photos. Either alone is a form error, and nothing is saved
        (the photos would otherwise be saved, and the customer told, without them)."""
        data = super().clean()
        # A field already refused is not blamed twice.
        reached = data.get("record_reached_at") or "record_reached_at" in self.errors
        if data.get("record_message") and not reached:
            self.add_error(
                "record_reached_at",
                _("Enter when the stage was reached: the message is sent with it."),
            )
        photos = data.get("record_photos") or "record_photos" in self.errors
        if data.get("record_photo_caption") and not photos:
            self.add_error("record_photos", _("Choose the photos this caption is for."))
        return data

    def clean_record_photos(self) -> list:
        from journey.errors import ApplicationError
        from journey.photos import photo_validate

        files = self.cleaned_data.get("record_photos") or []
        for upload in files:
            try:
                photo_validate(upload)
            except ApplicationError as error:
                raise forms.ValidationError(f"{upload.name}: {error.message}") from error
        return files


def other_languages() -> list[tuple[str, str]]:
    return [(code, name) for code, name in settings.LANGUAGES if code != settings.LANGUAGE_CODE]


class _StageForm(forms.ModelForm):
    """A stage, with its words in each of the site's other languages as fields of their
    own (``label_es``, ``explanation_es``), kept in its ``translations``."""

    class Meta:
        model = StageDefinition
        fields = [
            "position",
            "key",
            "label",
            "explanation",
            "expected_duration",
            "customer_visible",
            "notify_customer",
            "shipping",
        ]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["label"].validators.append(validate_no_jargon)
        self.fields["explanation"].validators.append(validate_no_jargon)
        for code, _name in other_languages():
            words = self.instance.translations.get(code) or {}
            for field in ("label", "explanation"):
                self.initial.setdefault(f"{field}_{code}", words.get(field, ""))

    def clean(self) -> dict[str, object]:
        data = super().clean()
        translations = {}
        for code, _name in other_languages():
            words = {
                field: data[f"{field}_{code}"].strip()
                for field in ("label", "explanation")
                if data.get(f"{field}_{code}", "").strip()
            }
            label_refused = f"label_{code}" in self.errors  # too long, or jargon
            if words.get("explanation") and not words.get("label") and not label_refused:
                self.add_error(f"label_{code}", _("Translate the label too."))
            if words:
                translations[code] = words
        validate_stage_translations(translations)
        self.instance.translations = translations
        return data


def _translation_fields() -> dict[str, forms.Field]:
    fields: dict[str, forms.Field] = {}
    for code, name in other_languages():
        fields[f"label_{code}"] = forms.CharField(
            label=format_lazy("{} ({})", _("Label"), name),
            max_length=80,
            required=False,
            help_text=_("Leave empty to show the label above."),
            # The jargon guard's terms are words staff use in any language ("WMS").
            validators=[validate_no_jargon],
            widget=forms.TextInput(attrs={"class": "vTextField"}),
        )
        fields[f"explanation_{code}"] = forms.CharField(
            label=format_lazy("{} ({})", _("Explanation"), name),
            required=False,
            validators=[validate_no_jargon],
            widget=forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"}),
        )
    return fields


# Declared on the class (not added in __init__) so the admin lays them out.
StageForm = type(_StageForm)(
    "StageForm", (_StageForm,), {"__module__": __name__, **_translation_fields()}
)


def _mappings_using(key: str) -> str:
    """The partners' status mappings that point at stage ``key`` ("Partner: CODE, …"),
    or "" when none does."""
    from integrations.models import StatusMapping

    mappings = (
        StatusMapping.objects.filter(stage_key=key)
        .select_related("partner")
        .order_by("partner__name", "code")
    )
    return ", ".join(f"{m.partner.name}: {m.code}" for m in mappings)


class StageFormSet(forms.BaseInlineFormSet):
    """Duplicate keys or positions within a template are form errors, not IntegrityErrors.
    A key that partners' status mappings use is neither renamed nor deleted: their events
    would be refused (unknown_stage) from then on."""

    def clean(self) -> None:
        refused_deletions = self._clean_keys_in_use()
        # Before the formset's own unique check, so the error names the field and value.
        seen: dict[str, dict[object, forms.Form]] = {"key": {}, "position": {}}
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or not form.cleaned_data:
                continue
            if self.can_delete and self._should_delete_form(form):
                continue
            for name, message in (
                ("key", _("Another stage of this template has the key %(value)s.")),
                ("position", _("Another stage of this template has the position %(value)s.")),
            ):
                value = form.cleaned_data.get(name)
                if value is None or value == "":
                    continue
                if value in seen[name]:
                    form.add_error(name, message % {"value": value})
                else:
                    seen[name][value] = form
        # A deleted form's own errors are not shown: these are the formset's, with those
        # of the formset's own checks (the admin's refusal to delete a stage that
        # milestones use is raised from there).
        try:
            super().clean()
        except forms.ValidationError as error:
            raise forms.ValidationError([*refused_deletions, *error.error_list]) from error
        if refused_deletions:
            raise forms.ValidationError(refused_deletions)

    def _clean_keys_in_use(self) -> list[str]:
        """A renamed key in use is an error on its form; the refused deletions are
        returned, for the formset's own errors."""
        deleted = []
        for form in self.initial_forms:
            old = form.initial.get("key")
            if not old:
                continue
            if self.can_delete and self._should_delete_form(form):
                used = _mappings_using(old)
                if used:
                    deleted.append(
                        _(
                            "The stage %(key)s cannot be deleted: partners' status mappings "
                            "use it (%(mappings)s). Change those mappings first."
                        )
                        % {"key": old, "mappings": used}
                    )
                continue
            if not hasattr(form, "cleaned_data") or "key" not in form.cleaned_data:
                continue
            if form.cleaned_data["key"] != old:
                used = _mappings_using(old)
                if used:
                    form.add_error(
                        "key",
                        _(
                            "Partners' status mappings use the key %(key)s (%(mappings)s): "
                            "change those mappings first."
                        )
                        % {"key": old, "mappings": used},
                    )
        return deleted


class JourneyTemplateForm(forms.ModelForm):
    disabled_notifications = forms.MultipleChoiceField(
        label=_("Notifications turned off"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Messages customers on journeys of this kind will not get."),
    )

    class Meta:
        model = JourneyTemplate
        fields = ["key", "name", "description", "disabled_notifications"]

    def __init__(self, *args: object, **kwargs: object) -> None:
        from notifications.kinds import JOURNEY_KINDS, KINDS

        super().__init__(*args, **kwargs)
        self.fields["disabled_notifications"].choices = [
            (key, KINDS[key].label) for key in JOURNEY_KINDS
        ]


def _promise_after_start(form: forms.Form, started_at: datetime | None) -> None:
    """A promised date before the journey starts is a typo: the journey would be late
    from its first day."""
    promised = form.cleaned_data.get("promised_date")
    if promised and started_at and promised < timezone.localdate(started_at):
        form.add_error("promised_date", _("The promised date is before the journey starts."))


class JourneyAdminForm(forms.ModelForm):
    """A journey's page. Its template and owner are fixed once it exists: another
    template would leave the old one's milestones, another owner would move the whole
    journey to someone else without a word (the admin shows both read-only)."""

    FIXED = ("template", "owner")

    class Meta:
        model = Journey
        fields = ["title", "template", "owner", "started_at", "promised_date", "delay_reason"]
        help_texts = {
            # Staff should know what saving it does (docs/eta.md).
            "promised_date": _(
                "A new date is told to the customer when saved (a delay, if the forecast "
                "is already later). Clearing it tells them nothing."
            ),
        }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if "delay_reason" in self.fields:
            self.fields["delay_reason"].validators.append(validate_no_jargon)
        if self.instance.pk:
            for name in self.FIXED:
                if name in self.fields:
                    # Whatever is posted, the saved value stays.
                    self.fields[name].disabled = True

    def clean(self) -> dict[str, object]:
        """The dates judged only when changed here: a journey saved for its title or an
        inline is not refused for dates it had already."""
        data = super().clean()
        started_at = data.get("started_at", self.instance.started_at)
        if {"started_at", "promised_date"} & set(self.changed_data):
            _promise_after_start(self, started_at)
        if "started_at" in self.changed_data and self.instance.pk and started_at:
            first = (
                self.instance.milestones.filter(reached_at__isnull=False)
                .order_by("reached_at")
                .values_list("reached_at", flat=True)
                .first()
            )
            # Partners report up to a day before the start (BEFORE_START_GRACE).
            if first and started_at - BEFORE_START_GRACE > first:
                self.add_error(
                    "started_at", _("A stage was reached before that: keep the start before it.")
                )
        return data


class TaskForm(forms.ModelForm):
    class Meta:
        model = CustomerTask
        fields = ["title", "description", "due_date", "done_at"]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["title"].validators.append(validate_no_jargon)
        self.fields["description"].validators.append(validate_no_jargon)


class WallClockSplitDateTimeField(forms.SplitDateTimeField):
    """The admin's date and time boxes read as a wall clock, with no zone: the form puts
    it on the place's clock. Django reads them on the active zone, the staff member's,
    and refused a time that zone skips (its clocks going forward) before the form could
    read it on the place's, where it exists (from a staff review)."""

    def compress(self, data_list: list[object]) -> datetime | None:
        with timezone.override(UTC):  # no gaps, no repeats: the wall clock as typed
            value = super().compress(data_list)
        return value.replace(tzinfo=None) if value is not None else None


def _on_the_place_clock(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """A wall-clock time at a place; refused if the place's clocks skip it or repeat it."""
    # Skipped or repeated, the two readings PEP 495 allows differ in offset.
    if (
        wall.replace(tzinfo=zone, fold=0).utcoffset()
        != wall.replace(tzinfo=zone, fold=1).utcoffset()
    ):
        raise forms.ValidationError(
            CLOCK_CHANGE,
            code="clock_change",
            params={"zone": zone.key},
        )
    return timezone.make_aware(wall, zone)


class TextareaField(forms.CharField):
    """A textarea's text with its line ends as stored: a browser sends them back as
    CRLF, so an untouched address read as changed, and its customer was told of a change
    nobody made."""

    def to_python(self, value: object) -> str:
        return super().to_python(value).replace("\r\n", "\n").replace("\r", "\n")


class AppointmentAdminForm(forms.ModelForm):
    """An appointment on a journey's page. Its times are on the place's clock (its time
    zone), as the customer is told them and as a staff member reads them off a booking,
    whatever the staff member's own zone. Moving its start moves the time the customer
    is asked to arrive with it (the same time before the start), unless that time was
    edited too; an arrival after the start is an error on that field."""

    TIMES = ("starts_at", "arrive_at")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        for name in self.TIMES:
            self.fields[name].help_text = _("On the place's clock (its time zone, below).")
        for name in ("title", "what_to_bring"):  # the customer reads them
            self.fields[name].validators.append(validate_no_jargon)
        if "milestone" in self.fields:
            # The journey's own stages the customer sees, in order (AppointmentFormSet
            # sets them again from its journey: a new inline form has none yet here).
            self.fields["milestone"].queryset = stage_choices(
                self.instance.journey_id, keep=self.instance.milestone_id
            )
            self.fields["milestone"].label_from_instance = lambda m: m.stage.label
        if self.instance.pk:
            zone = _zone(self.instance.time_zone)
            for name in self.TIMES:
                value = getattr(self.instance, name)
                if value is not None and zone is not None:
                    # Shown as the place's wall clock (a naive time is shown as it is).
                    self.initial[name] = timezone.localtime(value, zone).replace(tzinfo=None)

    class Meta:
        model = Appointment
        fields = list(APPOINTMENT_FIELDS)
        field_classes = {
            **{name: WallClockSplitDateTimeField for name in ("starts_at", "arrive_at")},
            **{name: TextareaField for name in ("address", "what_to_bring")},
        }

    @cached_property
    def changed_data(self) -> list[str]:
        changed = super().changed_data
        if self.instance.pk and "time_zone" in changed:
            # The same wall clock in another zone is another moment: the times changed
            # (the customer is told), and the arrival keeps its typed time.
            changed = [*changed, *(name for name in self.TIMES if name not in changed)]
        return changed

    def clean(self) -> dict[str, object]:
        data = super().clean()
        zone = _zone(data.get("time_zone") or "")
        for name in self.TIMES:
            wall = data.get(name)
            if wall is not None and zone is None:
                del data[name]  # no clock to read it on: the zone's own error says why
            elif wall is not None and timezone.is_naive(wall):
                try:
                    data[name] = _on_the_place_clock(wall, zone)
                except forms.ValidationError as error:
                    self.add_error(name, error)
        starts_at, arrive_at = data.get("starts_at"), data.get("arrive_at")
        if starts_at is None:
            return data
        if self.instance.pk and "starts_at" in self.changed_data:
            # Moved: to a time to come, as a new one is (and as the API refuses it); one
            # under way keeps its start as long as nobody moves it.
            for problem in appointment_time_problems(
                starts_at=starts_at, duration=None, new=True
            ).get("starts_at", []):
                self.add_error("starts_at", problem)
        moved = "starts_at" in self.changed_data and "arrive_at" not in self.changed_data
        old_start, old_arrival = self.instance.starts_at, self.instance.arrive_at
        if self.instance.pk and moved and old_start and old_arrival:
            # Still the instance as saved: the form's values are put on it after clean().
            arrive_at = data["arrive_at"] = starts_at - (old_start - old_arrival)
        if arrive_at is not None and arrive_at > starts_at:
            self.add_error(
                "arrive_at",
                _(
                    "The customer would arrive after the start: make it the start "
                    "or earlier (empty: at the start)."
                ),
            )
        elif arrive_at is not None and starts_at - arrive_at > ARRIVE_AHEAD_AT_MOST:
            # As the partner API refuses it (journey_appointment_create).
            self.add_error("arrive_at", _("More than 12 hours before the start: a mistyped date?"))
        return data


def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None  # the field's own validation says so


def stage_choices(journey_id: int | None, *, keep: int | None = None) -> QuerySet[Milestone]:
    """The stages an appointment may be booked for: its journey's, those its customer
    sees, not reached yet; and ``keep``, the one it is booked for already (a stage
    reached since), so that saving it untouched keeps it."""
    return (
        Milestone.objects.filter(journey_id=journey_id, stage__customer_visible=True)
        .filter(Q(state=MilestoneState.UPCOMING) | Q(pk=keep))
        .select_related("stage")
        .order_by("position")
    )


class AppointmentFormSet(forms.BaseInlineFormSet):
    """A new appointment is on the customer's clock by default (their profile's time
    zone), not the model's Europe/London. Every form, the blank one behind "Add another"
    included, offers the journey's own stages (a new form's instance has no journey
    when it is made)."""

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        if "milestone" in form.fields:
            form.fields["milestone"].queryset = stage_choices(
                self.instance.pk, keep=form.instance.milestone_id
            )

    def get_form_kwargs(self, index: int | None) -> dict[str, object]:
        kwargs = super().get_form_kwargs(index)
        if index is None or index >= self.initial_form_count():
            profile = getattr(getattr(self.instance, "owner", None), "profile", None)
            if profile is not None and profile.time_zone:
                kwargs["initial"] = {"time_zone": profile.time_zone, **kwargs.get("initial", {})}
        return kwargs


class JourneyCreateForm(forms.Form):
    """A new journey for a customer, from a template (through journey_create)."""

    owner = forms.ModelChoiceField(
        label=_("Customer"),
        # Not the partners' sandbox owners (inactive: they cannot log in).
        queryset=User.objects.filter(is_staff=False, is_active=True).order_by("email"),
    )
    template = forms.ModelChoiceField(
        label=_("Template"), queryset=JourneyTemplate.objects.order_by("name")
    )
    title = forms.CharField(
        label=_("Title"),
        max_length=200,
        validators=[validate_no_jargon],
        help_text=_("What the customer calls it, e.g. “Your Lumen kitchen, Sage green”."),
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )
    started_at = forms.SplitDateTimeField(
        label=_("Started at"),
        required=False,
        widget=AdminSplitDateTime,
        help_text=_("Your time zone. Empty for now."),
        error_messages={
            "invalid_date": _("Enter a valid date, or leave both empty for now."),
            "invalid_time": _("Enter a valid time too, or leave both empty for now."),
        },
    )
    promised_date = forms.DateField(
        label=_("Promised date"),
        required=False,
        widget=AdminDateWidget,
        help_text=_("The date promised to the customer, if one was."),
    )

    def clean_started_at(self) -> datetime | None:
        value = self.cleaned_data.get("started_at")
        if value and value > timezone.now() + timedelta(days=365):
            raise forms.ValidationError(_("Start it within a year from now."))
        return value

    def clean(self) -> dict[str, object]:
        data = super().clean()
        _promise_after_start(self, data.get("started_at") or timezone.now())
        return data


class StaffReplyForm(forms.Form):
    body = forms.CharField(
        label=_("Your answer to the customer"),
        widget=forms.Textarea(attrs={"rows": 5, "cols": 80}),
        validators=[validate_no_jargon],
        error_messages={"required": _("Write a message first.")},
    )
    private = forms.BooleanField(
        label=_("Private (the owner only, not invited viewers)"), required=False
    )
