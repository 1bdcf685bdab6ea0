"""Login by password or emailed code, email verification, and MFA for staff."""

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.urls import reverse

from accounts.mfa import totp_activate, totp_current_code
from accounts.models import CustomerProfile, User
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_sign_up_needs_email_verification_and_creates_the_profile(client):
    response = client.post(
        reverse("account_signup"),
        {
            "email": "New@Example.com",
            "password1": "a-long-new-pass-7",
            "password2": "a-long-new-pass-7",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(email="new@example.com")
    assert CustomerProfile.objects.filter(user=user).exists()
    assert EmailAddress.objects.get(user=user).verified is False
    # In the company's words, not the library's ("[Milepost Motors] Please Confirm Your
    # Email Address", "user new@example.com has given your email address to register").
    assert mail.outbox[0].subject == "Milepost Motors: please confirm your email address"
    assert "Please confirm that this is your email address" in mail.outbox[0].body
    assert "has given your email address" not in mail.outbox[0].body
    # Unverified: not logged in to the portal yet.
    assert client.get(reverse("journey:home")).status_code == 302


def test_login_by_password_with_the_email_address(client, customer):
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    response = client.post(
        reverse("account_login"), {"login": customer.email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 302
    assert client.get(reverse("journey:home")).status_code == 200


def test_login_by_an_emailed_code(client, customer):
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    response = client.post(reverse("account_request_login_code"), {"email": customer.email})
    assert response.status_code == 302
    code = re.search(r"\b([A-Z0-9]{4}-[A-Z0-9]{4})\b", mail.outbox[-1].body).group(1)
    confirm = client.post(reverse("account_confirm_login_code"), {"code": code})
    assert confirm.status_code == 302
    assert client.get(reverse("journey:home")).status_code == 200


def test_allauth_emails_speak_as_the_company(client, customer, settings):
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    client.post(reverse("account_request_login_code"), {"email": customer.email})
    body = mail.outbox[-1].body
    assert settings.COMPANY_NAME in body
    assert "testserver" not in body


def test_password_reset_sends_a_link(client, customer):
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    client.post(reverse("account_reset_password"), {"email": customer.email})
    assert "/accounts/password/reset/key/" in mail.outbox[-1].body
    assert mail.outbox[-1].subject == "Milepost Motors: reset your password"
    assert "If it was not you, ignore this email" in mail.outbox[-1].body


@pytest.mark.parametrize(
    ("language", "browser", "reset", "code"),
    [
        ("es", "en", "restablezca su contraseña", "su código para entrar"),
        ("en", "es", "reset your password", "your sign-in code"),
    ],
)
def test_account_emails_speak_the_accounts_language_not_the_browsers(
    client, language, browser, reset, code
):
    """A reset asked for from a browser in another language read in that one (from a
    customer's review): the account's own language decides."""
    user = UserFactory(profile__language=language)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    client.post(
        reverse("account_reset_password"), {"email": user.email}, HTTP_ACCEPT_LANGUAGE=browser
    )
    assert mail.outbox[-1].subject == f"Milepost Motors: {reset}"
    client.post(
        reverse("account_request_login_code"), {"email": user.email}, HTTP_ACCEPT_LANGUAGE=browser
    )
    assert mail.outbox[-1].subject == f"Milepost Motors: {code}"


def test_staff_without_totp_are_sent_to_set_it_up(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_activate_totp")


def test_staff_with_totp_log_in_with_a_code_and_reach_the_admin(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    EmailAddress.objects.create(user=staff, email=staff.email, verified=True, primary=True)
    totp_activate(user=staff)
    response = client.post(reverse("account_login"), {"login": staff.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_authenticate")
    assert client.get(reverse("admin:index")).status_code == 302  # not yet logged in
    client.post(reverse("mfa_authenticate"), {"code": totp_current_code(staff)})
    assert client.get(reverse("admin:index")).status_code == 200


def test_the_admin_login_goes_through_allauth(client):
    response = client.get(reverse("admin:login"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_allauths_pages_speak_in_the_portals_sentence_case(client):
    """allauth titles its pages and buttons in Title Case ("Sign In", "Remember Me") where
    the portal writes sentences (from a customer's review): locale/en rewords them."""
    page = client.get(reverse("account_login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    login = " ".join(page.split())
    assert "Sign In" not in login and "Remember Me" not in login
    assert "<h1> Sign in </h1>" in login
    assert "Remember me" in login
    signup = client.get(reverse("account_signup"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Sign Up" not in signup and "Sign up" in signup
    # Spanish is allauth's own, already in sentence case.
    spanish = client.get(reverse("account_login"), HTTP_ACCEPT_LANGUAGE="es").content.decode()
    assert "Iniciar sesión" in spanish


def test_a_customer_who_signs_up_in_spanish_is_written_to_in_spanish(client):
    """The profile is new at sign-up: it takes the language the form was filled in, and
    the confirmation email that follows speaks it (from a code review)."""
    client.post(
        reverse("account_signup"),
        {
            "email": "nueva@example.com",
            "password1": "una-clave-larga-7",
            "password2": "una-clave-larga-7",
        },
        HTTP_ACCEPT_LANGUAGE="es",
    )
    user = User.objects.get(email="nueva@example.com")
    assert user.profile.language == "es"
    assert mail.outbox[-1].subject == "Milepost Motors: confirme su dirección de correo"


def test_signing_in_and_out_is_said_in_the_language_of_the_page_after(client, customer):
    """A walk-through signed in as a Spanish customer from an English browser and read
    "Successfully signed in" on a Spanish page; signed out, "Ha cerrado sesión" on an
    English one."""
    customer.profile.language = "es"
    customer.profile.save()
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    home = client.post(
        reverse("account_login"),
        {"login": customer.email, "password": PASSWORD},
        HTTP_ACCEPT_LANGUAGE="en",
        follow=True,
    )
    [signed_in] = [str(m) for m in home.context["messages"]]
    assert signed_in.startswith("Ha iniciado sesión")
    assert 'lang="es"' in home.content.decode()
    login = client.post(reverse("account_logout"), HTTP_ACCEPT_LANGUAGE="en", follow=True)
    [signed_out] = [str(m) for m in login.context["messages"]]
    assert signed_out == "You have signed out."
    assert 'lang="en"' in login.content.decode()
