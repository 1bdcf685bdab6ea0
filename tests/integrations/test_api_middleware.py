"""The partner API's own middleware stack: /api/v1/ runs API_MIDDLEWARE, the rest of the
site runs MIDDLEWARE, and SecurityMiddleware runs for both."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from integrations.api.middleware import API_CSP, APIMiddleware
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SEEN: list[str] = []


class _Recorder:
    name = ""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        SEEN.append(self.name)
        return self.get_response(request)


class SiteRecorder(_Recorder):
    name = "site"


class APIRecorder(_Recorder):
    name = "api"


class Unused:
    def __init__(self, get_response):
        raise MiddlewareNotUsed


class Raising(_Recorder):
    def __call__(self, request):
        raise RuntimeError("a middleware's bug")


class AsyncOnly(_Recorder):
    sync_capable = False
    async_capable = True


def _hooked(hook: str) -> type:
    return type("Hooked", (_Recorder,), {hook: lambda self, *args: None})


@pytest.fixture
def recorded(settings):
    SEEN.clear()
    here = f"{__name__}."
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, here + "SiteRecorder"]
    settings.API_MIDDLEWARE = [here + "Unused", here + "APIRecorder", *settings.API_MIDDLEWARE]
    yield SEEN
    SEEN.clear()


def test_the_api_runs_its_own_stack_and_the_site_the_rest(recorded, api_key, journey):
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    # A middleware that says it is not used (Unused) is left out, as Django's stack does.
    answer = client.get(reverse("api:journey-detail", kwargs={"reference": journey.reference}))
    assert answer.status_code == 200
    assert recorded == ["api"]
    recorded.clear()
    assert Client().get(reverse("account_login")).status_code == 200
    assert recorded == ["site"]
    # /api/ outside v1 (the schema, the docs) is the site's.
    recorded.clear()
    assert Client().get("/api/schema/").status_code == 200
    assert recorded == ["site"]


def test_an_api_answer_has_security_headers_and_nothing_of_the_site_s(api, journey):
    answer = api.get(reverse("api:journey-detail", kwargs={"reference": journey.reference}))
    assert answer.status_code == 200
    # SecurityMiddleware's, before the fork; the API's language; no page, no frame.
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert answer["Referrer-Policy"] == "same-origin"
    assert answer["Content-Language"] == "en"
    assert answer["X-Frame-Options"] == "DENY"
    assert answer["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    # The session and CSRF are the site's: nothing varies by a cookie.
    assert "Vary" not in answer
    page = Client().get(reverse("account_login"))
    assert page["X-Frame-Options"] == "DENY"
    assert "script-src 'self' 'nonce-" in page["Content-Security-Policy"]
    assert "csrftoken" in page.cookies


def test_a_customer_s_session_is_not_read_by_the_api(client, journey, django_assert_num_queries):
    """A browser's session cookie means nothing to the API: it is not even loaded (a
    query of its own on the database sessions), and the request is refused for want of
    a key."""
    customer = get_user_model().objects.create_user(email="c@example.com", password="pw-123456")
    client.force_login(customer)
    url = reverse("api:journey-detail", kwargs={"reference": journey.reference})
    with django_assert_num_queries(0):
        answer = client.get(url)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "not_authenticated"


def test_a_crash_in_an_api_view_is_the_site_s_500(api, journey, monkeypatch):
    """Below the API's stack the view is called by Django's own handler code: an
    exception is logged, signalled and answered by handler500, as on the site."""
    from integrations.api import views

    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.JourneyDetail, "get", crash)
    api.raise_request_exception = False
    answer = api.get(reverse("api:journey-detail", kwargs={"reference": journey.reference}))
    assert answer.status_code == 500
    # Answered inside the API's stack: its headers are all there.
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert answer["Content-Security-Policy"] == API_CSP
    assert answer["X-Frame-Options"] == "DENY"
    assert answer["Content-Language"] == "en"
    with pytest.raises(RuntimeError, match="boom"):
        api.raise_request_exception = True
        api.get(reverse("api:journey-detail", kwargs={"reference": journey.reference}))


def test_a_crash_in_the_api_s_middleware_is_answered_there(api, journey, settings):
    settings.API_MIDDLEWARE = [*settings.API_MIDDLEWARE, f"{__name__}.Raising"]
    api.raise_request_exception = False
    answer = api.get(reverse("api:journey-detail", kwargs={"reference": journey.reference}))
    assert answer.status_code == 500
    assert answer["Content-Security-Policy"] == API_CSP
    assert answer["Content-Language"] == "en"


def test_a_customer_s_language_and_clock_stay_out_of_the_api(client, api_key, journey):
    """A site request switches to the customer's language and time zone; the API, even
    with that customer's session cookie (as the docs page's "Try it out" sends it),
    answers in English with times in UTC, as partner-api.md says."""
    customer = UserFactory(profile__language="es", profile__time_zone="America/New_York")
    client.force_login(customer)
    assert client.get(reverse("account_login"))["Content-Language"] == "es"
    answer = client.get(
        reverse("api:journey-detail", kwargs={"reference": journey.reference}),
        HTTP_AUTHORIZATION=f"Api-Key {api_key}",
    )
    assert answer.status_code == 200
    assert answer["Content-Language"] == "en"
    assert answer.json()["started_at"].endswith("Z")


@pytest.mark.parametrize("hook", ["process_view", "process_exception", "process_template_response"])
def test_a_middleware_hooking_the_view_is_refused_at_startup(settings, monkeypatch, hook):
    monkeypatch.setattr(f"{__name__}.Hooked", _hooked(hook), raising=False)
    settings.API_MIDDLEWARE = [f"{__name__}.Hooked"]
    with pytest.raises(ImproperlyConfigured, match=f"Hooked in API_MIDDLEWARE has {hook}"):
        APIMiddleware(lambda request: HttpResponse())


def test_an_async_only_middleware_is_refused_at_startup(settings):
    settings.API_MIDDLEWARE = [f"{__name__}.AsyncOnly"]
    with pytest.raises(ImproperlyConfigured, match="AsyncOnly in API_MIDDLEWARE is async only"):
        APIMiddleware(lambda request: HttpResponse())
