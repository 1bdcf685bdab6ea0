import zoneinfo
from datetime import datetime, timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from journey.models import Milestone


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


class RescheduleForm(forms.Form):
    """Another time for an appointment, entered on the place's clock."""

    first_choice = forms.DateTimeField(
        label=_("Preferred time"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    second_choice = forms.DateTimeField(
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

    def _on_place_clock(self, value: datetime | None) -> datetime | None:
        # The field read the wall time in the customer's zone; the form asks for the
        # place's local time, so keep the wall time and attach the place's zone.
        if value is None:
            return None
        return timezone.make_aware(timezone.make_naive(value), self.zone)

    def clean_first_choice(self) -> datetime | None:
        return self._on_place_clock(self.cleaned_data.get("first_choice"))

    def clean_second_choice(self) -> datetime | None:
        return self._on_place_clock(self.cleaned_data.get("second_choice"))


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
