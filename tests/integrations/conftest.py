import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from integrations.services import partner_key_create
from journey.models import ShipmentLeg
from tests.factories import MappingFactory, PartnerFactory, make_journey


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def other_partner():
    """Partner B, serving its own journey: partner A's key must never reach it."""
    partner = PartnerFactory()
    partner.journeys.add(make_journey())
    MappingFactory(partner=partner, code="S2", stage_key="stage-2")
    return partner


@pytest.fixture
def other_journey(other_partner):
    return other_partner.journeys.get()


@pytest.fixture
def other_api(other_partner) -> APIClient:
    _key, plain = partner_key_create(partner=other_partner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {plain}")
    return client


@pytest.fixture
def journey_with_leg(journey):
    """The journey with one leg, so requests about legs reach past their 404s."""
    ShipmentLeg.objects.create(
        journey=journey,
        sequence=1,
        mode="ship",
        origin_name="A",
        origin_lat=1,
        origin_lon=1,
        destination_name="B",
        destination_lat=2,
        destination_lon=2,
    )
    return journey
