from django.db import transaction

from accounts.models import CustomerProfile, User


def profile_ensure(*, user: User) -> CustomerProfile:
    profile, _created = CustomerProfile.objects.get_or_create(user=user)
    return profile


def customer_create(
    *,
    email: str,
    password: str | None,
    given_name: str = "",
    family_name: str = "",
    language: str = "en",
    time_zone: str = "Europe/London",
) -> User:
    """A customer with a verified email address and their profile (used by staff and the demo)."""
    from allauth.account.models import EmailAddress

    with transaction.atomic():
        user = User.objects.create_user(email=email, password=password)
        profile = CustomerProfile(
            user=user,
            given_name=given_name,
            family_name=family_name,
            language=language,
            time_zone=time_zone,
        )
        profile.full_clean()
        profile.save()
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user
