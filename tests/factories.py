"""Test objects. Journeys are made through the service, as in production."""

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from accounts.models import CustomerProfile, User
from integrations.models import Partner, StatusMapping
from journey.models import JourneyTemplate, ShipmentLeg, StageDefinition
from journey.services import journey_create

PASSWORD = "a-long-test-password"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    password = factory.django.Password(PASSWORD)
    profile = factory.RelatedFactory("tests.factories.ProfileFactory", factory_related_name="user")


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CustomerProfile

    given_name = factory.Faker("first_name")
    family_name = factory.Faker("last_name")
    time_zone = "Europe/London"


class TemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = JourneyTemplate
        skip_postgeneration_save = True

    key = factory.Sequence(lambda n: f"template-{n}")
    name = factory.Sequence(lambda n: f"Template {n}")

    @factory.post_generation
    def stages(self, create: bool, extracted: int | None, **kwargs: object) -> None:
        """``TemplateFactory(stages=N)`` makes N stages: stage-1 … stage-N."""
        if not create:
            return
        StageDefinition.objects.bulk_create(
            StageDefinition(
                template=self,
                position=position,
                key=f"stage-{position}",
                label=f"Stage {position}",
                explanation=f"What happens in stage {position}.",
                expected_duration=timedelta(days=2),
            )
            for position in range(1, (extracted or 4) + 1)
        )


def make_journey(*, owner: User | None = None, stages: int = 4, **kwargs: object):
    kwargs.setdefault("title", "Test journey")
    kwargs.setdefault("started_at", timezone.now() - timedelta(days=10))
    kwargs.setdefault("promised_date", (timezone.now() + timedelta(days=30)).date())
    return journey_create(
        template=TemplateFactory(stages=stages), owner=owner or UserFactory(), **kwargs
    )


class PartnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Partner

    name = factory.Sequence(lambda n: f"Partner {n}")
    slug = factory.Sequence(lambda n: f"partner-{n}")


class MappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StatusMapping

    partner = factory.SubFactory(PartnerFactory)
    code = factory.Sequence(lambda n: f"CODE-{n}")
    stage_key = "stage-1"


class LegFactory(factory.django.DjangoModelFactory):
    """A ship leg from Santander to Portbury, not yet departed."""

    class Meta:
        model = ShipmentLeg

    sequence = factory.LazyAttribute(lambda leg: leg.journey.legs.count() + 1)
    mode = "ship"
    origin_name = "Santander"
    origin_lat = Decimal("43.46")
    origin_lon = Decimal("-3.80")
    destination_name = "Portbury"
    destination_lat = Decimal("51.49")
    destination_lon = Decimal("-2.72")
