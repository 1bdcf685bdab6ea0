"""The partner API's own middleware stack: /api/v1/ runs API_MIDDLEWARE, the rest of the
site runs MIDDLEWARE, and SecurityMiddleware runs for both."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from integrations.api.middleware import APIMiddleware

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


class Hooked(_Recorder):
    def process_view(self, request, view, args, kwargs):
        return None


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
    answer = client.get(reverse("api:journey-detail", kwargs={"reference": journey.reference}))
    assert answer.status_code == 200
    assert recorded == ["api"]
    # A middleware that says it is not used is left out, as Django's stack does.
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
    # The session and CSRF are the site's: no cookie, nothing varies by one.
    assert "Vary" not in answer
    assert not answer.cookies
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
    assert answer["X-Content-Type-Options"] == "nosniff"
    with pytest.raises(RuntimeError, match="boom"):
        api.raise_request_exception = True
        api.get(reverse("api:journey-detail", kwargs={"reference": journey.reference}))


def test_a_middleware_hooking_the_view_is_refused_at_startup(settings):
    settings.API_MIDDLEWARE = [f"{__name__}.Hooked"]
    with pytest.raises(ImproperlyConfigured, match="Hooked in API_MIDDLEWARE has process_view"):
        APIMiddleware(lambda request: HttpResponse())
