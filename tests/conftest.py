import copy
import socket
import uuid

import pytest
from django.conf import settings as django_settings
from django.utils import translation
from rest_framework.test import APIClient

from config.celery import app as celery_app
from integrations import services as integrations_services
from integrations.services import partner_key_create
from journey import eta
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
def _own_cache_keys(settings) -> None:
    """Each test its own cache keys (a prefix of its own). With Redis (CI) the cache
    outlives a test and a run: a rate limit, a flag or a page cached by an earlier test,
    or by a run minutes before on the same Redis (allauth's one verification email per
    address every three minutes), would otherwise decide this one."""
    caches = copy.deepcopy(settings.CACHES)
    for cache in caches.values():
        cache["KEY_PREFIX"] = f"test-{uuid.uuid4().hex[:12]}"
    settings.CACHES = caches


@pytest.fixture(autouse=True)
def _learned_afresh() -> None:
    """Each test reads the ETA statistics it made: a process keeps what it learned for a
    minute (``journey.eta._LEARNED``), and a rolled-back test's template id may be the
    next test's on SQLite."""
    eta._LEARNED.clear()


@pytest.fixture(autouse=True)
def _mappings_afresh() -> None:
    """Each test reads its partners' mappings: a process keeps them under the partner's
    ``mappings_version`` (``integrations.services.partner_mappings``), and a rolled-back
    test's partner id, and its creation time under a frozen clock, may be the next
    test's on SQLite."""
    integrations_services._MAPPINGS_READ.clear()


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the site's language. A request as a customer whose profile is
    in Spanish leaves Spanish active in the thread (the next request's middleware would
    choose again; a test calling a service next would not)."""
    yield
    translation.activate(django_settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    """Django's default hasher is slow by design (PBKDF2, over a million rounds: most of a
    second per password on a slow CI machine, once per user a factory makes and per
    login). Tests check who may log in, not the hash's strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _private_media(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Webhook hosts resolve only through this table (name -> addresses) in tests: no
    network, and a test can make a name resolve wherever it needs. Addresses written as
    such (127.0.0.1, ::1, 2130706433) are parsed as the real resolver parses them."""
    table: dict[str, list[str]] = {"localhost": ["127.0.0.1", "::1"]}
    numeric = socket.AI_NUMERICHOST

    def getaddrinfo(host: str, port: int) -> list[tuple[object, ...]]:
        try:
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=numeric)
        except socket.gaierror:
            if host.lower() not in table:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return [
            (socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (address, port))
            for address in table[host.lower()]
        ]  # fmt: skip

    monkeypatch.setattr("integrations.egress._getaddrinfo", getaddrinfo)
    return table


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
