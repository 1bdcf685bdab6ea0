from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.forms import Form
from django.http import HttpRequest
from django.utils import translation

from accounts.models import User
from accounts.services import profile_ensure


class AccountAdapter(DefaultAccountAdapter):
    """Every customer who signs up gets the profile they own, and the account's emails
    speak the account's language."""

    def save_user(self, request: HttpRequest, user: User, form: Form, commit: bool = True) -> User:
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            # In the language they signed up in: the confirmation email that follows,
            # and every message after it, speak it until they choose another.
            profile_ensure(user=user, language=translation.get_language())
        return user

    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        """In the language the account chose, not the browser's that asked: a password
        reset asked for from a borrowed laptop reads as the customer's other emails do.
        An address with no account (the "unknown account" email) gets the browser's."""
        user = context.get("user")
        if user is None:
            user = User.objects.filter(email__iexact=email).select_related("profile").first()
        profile = getattr(user, "profile", None)
        language = profile.language if profile is not None else translation.get_language()
        with translation.override(language):
            super().send_mail(template_prefix, email, context)
