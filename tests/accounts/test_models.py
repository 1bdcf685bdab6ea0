import pytest
from django.contrib.auth import authenticate
from django.db import IntegrityError

from accounts.models import CustomerProfile, User
from accounts.services import customer_create

pytestmark = pytest.mark.django_db


def test_email_is_the_login_and_is_stored_lowercase():
    user = User.objects.create_user(email="Alex@Example.COM", password="a-long-password-1")
    assert user.email == "alex@example.com"
    assert user.USERNAME_FIELD == "email"
    assert authenticate(email="alex@example.com", password="a-long-password-1") == user


def test_an_email_address_belongs_to_one_user():
    User.objects.create_user(email="sam@example.com")
    with pytest.raises(IntegrityError):
        User.objects.create_user(email="sam@example.com")


def test_a_user_without_an_email_is_refused():
    with pytest.raises(ValueError, match="email address is required"):
        User.objects.create_user(email="")


def test_customer_create_makes_a_verified_customer_with_a_profile():
    user = customer_create(
        email="ana@example.com",
        password="pw-long-enough",
        given_name="Ana",
        time_zone="Europe/Madrid",
    )
    assert user.profile.time_zone == "Europe/Madrid"
    assert user.get_short_name() == "Ana"
    assert user.emailaddress_set.get().verified is True
    assert not user.is_staff


def test_an_unknown_time_zone_is_refused_and_nothing_is_saved():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="not a known time zone"):
        customer_create(
            email="bad@example.com", password="pw-long-enough", time_zone="Mars/Olympus"
        )
    assert not User.objects.filter(email="bad@example.com").exists()
    assert CustomerProfile.objects.count() == 0
