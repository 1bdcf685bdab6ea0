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

    def add_message(
        self,
        request: HttpRequest,
        level: int,
        message_template: str | None = None,
        message_context: dict[str, Any] | None = None,
        extra_tags: str = "",
        message: str | None = None,
    ) -> None:
        """In the language of the page that shows it: "Successfully signed in" on the
        account's first page, in the account's; "You have signed out" on the sign-in
        page, in the browser's (a walk-through read each in the other's language)."""
        with translation.override(_page_language(request, message_template)):
            super().add_message(
                request, level, message_template, message_context, extra_tags, message
            )

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


def _page_language(request: HttpRequest, message_template: str | None) -> str:
    """The language of the next page: the account's while one is signed in
    (accounts.middleware), the browser's once signed out."""
    if message_template == "account/messages/logged_out.txt":
        return translation.get_language_from_request(request)
    profile = getattr(request.user, "profile", None) if request.user.is_authenticated else None
    return profile.language if profile is not None else translation.get_language()
