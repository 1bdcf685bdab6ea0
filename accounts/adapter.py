from allauth.account.adapter import DefaultAccountAdapter
from django.forms import Form
from django.http import HttpRequest

from accounts.models import User
from accounts.services import profile_ensure


class AccountAdapter(DefaultAccountAdapter):
    """Every customer who signs up gets the profile they own."""

    def save_user(self, request: HttpRequest, user: User, form: Form, commit: bool = True) -> User:
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            profile_ensure(user=user)
        return user
