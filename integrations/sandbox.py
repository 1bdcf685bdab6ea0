"""Test mode: a partner's sandbox journeys, owned by a sandbox user, never a customer."""

import secrets

from django.db import transaction

from accounts.models import User
from integrations.models import Partner
from journey.errors import ApplicationError
from journey.models import Journey, JourneyTemplate
from journey.services import journey_create

SANDBOX_DOMAIN = "sandbox.milepost.invalid"


def sandbox_user(*, partner: Partner) -> User:
    """A new sandbox owner for one of the partner's sandbox journeys: cannot log in, and
    its address cannot receive mail (``.invalid`` is reserved); sandbox journeys notify
    nobody anyway. One per journey, as each real journey has its customer: what a test
    does to one owner's profile (a proposed change) does not decide the next test's
    answer."""
    user = User(email=f"{partner.slug}+{secrets.token_hex(6)}@{SANDBOX_DOMAIN}", is_active=False)
    user.set_unusable_password()
    user.save()
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
