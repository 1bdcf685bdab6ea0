from datetime import timedelta

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
