from django import forms
from django.utils import timezone

from integrations import egress
from integrations.models import PartnerAPIKey, WebhookEndpoint
from journey.errors import ApplicationError


class PartnerAPIKeyForm(forms.ModelForm):
    class Meta:
        model = PartnerAPIKey
        fields = ["partner", "name", "expires_at"]

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return value


class WebhookEndpointForm(forms.ModelForm):
    """Staff's edits get the checks partners' registrations get (public addresses only)."""

    class Meta:
        model = WebhookEndpoint
        fields = ["partner", "url", "event_types", "is_active"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            egress.check_url(url)
        except ApplicationError as error:
            raise forms.ValidationError(error.fields.get("url") or error.message) from error
        return url
