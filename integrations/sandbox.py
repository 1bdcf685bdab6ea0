"""Test mode: a partner's sandbox journeys, owned by a sandbox user, never a customer."""

from django.db import transaction

from accounts.models import User
from integrations.models import Partner
from journey.errors import ApplicationError
from journey.models import Journey, JourneyTemplate
from journey.services import journey_create

SANDBOX_DOMAIN = "sandbox.milepost.invalid"


def sandbox_user(*, partner: Partner) -> User:
    """The partner's sandbox owner: cannot log in, and its address cannot receive mail
    (``.invalid`` is reserved); sandbox journeys notify nobody anyway."""
    user, created = User.objects.get_or_create(email=f"{partner.slug}@{SANDBOX_DOMAIN}")
    if created:
        user.set_unusable_password()
        user.is_active = False
        user.save(update_fields=["password", "is_active"])
    return user


def sandbox_journey_create(
    *, partner: Partner, template: str, title: str = "Sandbox journey"
) -> Journey:
    """A journey in test mode, assigned to ``partner``, that notifies nobody."""
    found = JourneyTemplate.objects.filter(key=template).first()
    if found is None:
        raise ApplicationError(
            f"No journey template {template!r}.",
            code="unknown_template",
            fields={"template": ["Unknown template."]},
        )
    with transaction.atomic():
        journey = journey_create(template=found, owner=sandbox_user(partner=partner), title=title)
        Journey.objects.filter(pk=journey.pk).update(is_sandbox=True)
        journey.is_sandbox = True
        partner.journeys.add(journey)
    return journey
