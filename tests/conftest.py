import pytest
from rest_framework.test import APIClient

from config.celery import app as celery_app
from integrations.services import partner_key_create
from tests.factories import MappingFactory, PartnerFactory, UserFactory, make_journey


@pytest.fixture(autouse=True)
def _tasks_in_process(request: pytest.FixtureRequest):
    """Tasks run in-process in tests (CI sets REDIS_URL for the rest of the suite);
    only the tests marked ``worker`` talk to a real worker."""
    if request.node.get_closest_marker("worker"):
        yield
        return
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _private_media(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def customer():
    return UserFactory()


@pytest.fixture
def journey(customer):
    return make_journey(owner=customer)


@pytest.fixture
def partner(journey):
    partner = PartnerFactory()
    partner.journeys.add(journey)
    for position in range(1, 5):
        MappingFactory(partner=partner, code=f"S{position}", stage_key=f"stage-{position}")
    return partner


@pytest.fixture
def api_key(partner) -> str:
    _key, plain = partner_key_create(partner=partner)
    return plain


@pytest.fixture
def api(api_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    return client


@pytest.fixture
def admin_user(db, django_user_model):
    """A superuser as staff really are: with two-factor authentication set up."""
    from accounts.mfa import totp_activate

    user = django_user_model.objects.create_superuser(email="admin@example.com", password="pw")
    totp_activate(user=user)
    return user
