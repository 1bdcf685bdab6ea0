"""Rate limits per key and request size limits, answered in the one error shape."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from integrations.services import partner_key_create

pytestmark = pytest.mark.django_db


def test_a_key_over_its_rate_gets_429_with_retry_after(api, partner, settings):
    settings.API_RATE_LIMIT = "3/min"
    url = reverse("api:journey-list")
    statuses = [api.get(url).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = api.get(url)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    # Until this minute ends, and then until enough of it has slid out of the window.
    assert 0 < int(response["Retry-After"]) <= 120


def test_the_window_slides_so_a_full_minute_cannot_be_followed_by_another(api, settings):
    """The last minute's requests still count, in proportion to how much of it the
    sliding minute overlaps: no burst of twice the rate across a minute's boundary."""
    settings.API_RATE_LIMIT = "2/min"
    url = reverse("api:journey-list")
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    with time_machine.travel(start + timedelta(seconds=50), tick=False):
        assert [api.get(url).status_code for _ in range(3)] == [200, 200, 429]
    with time_machine.travel(start + timedelta(seconds=66), tick=False):
        # 2 x 54/60 of the last minute + 1 = 2.8: over.
        refused = api.get(url)
        assert refused.status_code == 429
        assert int(refused["Retry-After"]) == 24  # then 2 x 30/60 + 1 = 2
    with time_machine.travel(start + timedelta(seconds=90), tick=False):
        assert [api.get(url).status_code for _ in range(2)] == [200, 429]


def test_each_key_has_its_own_rate(api, partner, settings):
    settings.API_RATE_LIMIT = "1/min"
    url = reverse("api:journey-list")
    assert api.get(url).status_code == 200
    assert api.get(url).status_code == 429
    _key, second = partner_key_create(partner=partner)
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {second}")
    assert api.get(url).status_code == 200


def test_an_oversize_json_body_is_a_413_in_the_error_shape(api_key, journey, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    response = client.post(
        reverse("api:event-batch"), data="[" + "1," * 1000 + "1]", content_type="application/json"
    )
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "request_too_large"


def test_an_oversize_upload_is_a_413_in_the_error_shape(api_key, journey, settings):
    settings.API_MAX_UPLOAD_BYTES = 1000
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    url = reverse("api:journey-photos", kwargs={"reference": journey.reference})
    response = client.post(url, {"file": SimpleUploadedFile("p.jpg", b"x" * 2000)})
    assert response.status_code == 413
    assert response.json()["error"]["fields"] == {"body": ["Over 1000 bytes."]}


def test_too_many_form_fields_is_a_400_in_the_error_shape(api_key, journey, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    url = reverse("api:journey-photos", kwargs={"reference": journey.reference})
    response = client.post(url, {f"f{i}": "x" for i in range(10)})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_malformed_json_is_a_400_in_the_error_shape(api, journey):
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    response = api.generic("POST", url, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_an_unknown_api_url_answers_in_the_error_shape(api):
    response = api.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_an_unknown_api_url_still_needs_a_key(client):
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_url_without_its_trailing_slash_says_so(api, journey):
    path = f"/api/v1/journeys/{journey.reference}/events"
    response = api.post(path, {}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (f"No such API endpoint. Did you mean {path}/ ?")
    assert api.get("/api/v1/nothing-like-it").json()["error"]["message"] == (
        "No such API endpoint."
    )


@pytest.mark.parametrize("path", ["/api/v2/journeys/", "/api/whatever"])
def test_other_paths_under_api_answer_json_too(api, client, path):
    response = api.get(path)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    assert client.get(path).json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("path", ["/api/docs", "/api/schema"])
def test_the_public_docs_without_their_slash_redirect_to_them(client, path):
    response = client.get(path)
    assert (response.status_code, response["Location"]) == (301, path + "/")


@pytest.mark.parametrize("encoding", ["chunked", "gzip, chunked", "Chunked"])
def test_a_chunked_body_is_a_411_not_read_as_empty(api_key, journey, encoding):
    """Django reads CONTENT_LENGTH bytes of a WSGI body: without the header a chunked
    upload arrived as no file at all ("No file was submitted.")."""
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    url = reverse("api:journey-photos", kwargs={"reference": journey.reference})
    response = client.post(
        url, {"file": SimpleUploadedFile("p.jpg", b"x" * 20)}, HTTP_TRANSFER_ENCODING=encoding
    )
    assert response.status_code == 411
    assert response.json()["error"] == {
        "code": "length_required",
        "message": "Send the body with a Content-Length header: a chunked body is not read.",
        "fields": {"body": ["Sent without a Content-Length."]},
    }
    assert not journey.photos.exists()


def test_the_api_answers_in_english_whatever_the_client_asks(api, journey):
    """DRF's and Django's messages were translated, ours not: one 400 in two languages."""
    response = api.post(
        reverse("api:journey-events", kwargs={"reference": journey.reference}),
        {"event_id": "", "code": "S2", "occurred_at": "2026-12-05T22:00:00"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="es",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "event_id": ["This field may not be blank."],
        "occurred_at": ["Give a UTC offset, e.g. 2026-11-26T09:30:00Z."],
    }
    assert response["Content-Language"] == "en"
    assert "Accept-Language" not in response.get("Vary", "")
    missing = api.get("/api/v1/journeys/MP-NOPE/", HTTP_ACCEPT_LANGUAGE="es")
    assert missing.json()["error"]["message"] == "Not found."
