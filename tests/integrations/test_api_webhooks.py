"""Partners register their webhook endpoints through the API."""

import pytest
from django.urls import reverse

from integrations.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

LIST = "/api/v1/webhooks/"


def test_an_endpoint_is_registered_and_its_secret_shown_once(api, partner):
    response = api.post(
        LIST,
        {"url": "https://partner.example/hooks", "event_types": ["task.completed"]},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    endpoint = WebhookEndpoint.objects.get()
    assert body["secret"] == endpoint.secret
    assert body["secret"].startswith("whsec_")
    assert endpoint.partner == partner
    listed = api.get(LIST).json()
    assert listed == [
        {
            "id": endpoint.pk,
            "url": "https://partner.example/hooks",
            "event_types": ["task.completed"],
            "is_active": True,
            "created_at": body["created_at"],
        }
    ]


def test_rotating_keeps_the_old_secret_for_a_while(api, partner):
    created = api.post(
        LIST, {"url": "https://p.example/h", "event_types": ["message.posted"]}, format="json"
    ).json()
    url = reverse("api:webhook-rotate", kwargs={"pk": created["id"]})
    rotated = api.post(url)
    assert rotated.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert rotated.json()["secret"] == endpoint.secret != created["secret"]
    assert endpoint.previous_secret == created["secret"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://p.example/h", "event_types": ["task.completed"]}, "url"),
        ({"url": "https://p.example/h", "event_types": []}, "event_types"),
        ({"url": "https://p.example/h", "event_types": ["task.deleted"]}, "event_types"),
        ({"event_types": ["task.completed"]}, "url"),
    ],
)
def test_a_bad_endpoint_is_refused(api, body, field):
    response = api.post(LIST, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379/", "http://[::ffff:169.254.169.254]/", "https://db.partner.example/"],
)
def test_an_endpoint_on_our_network_is_refused_naming_the_url(api, dns, url):
    dns["db.partner.example"] = ["10.0.0.7"]
    response = api.post(LIST, {"url": url, "event_types": ["task.completed"]}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == ["url"]
    assert "webhooks go to public addresses only" in error["fields"]["url"][0]
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://p.example:99999/h", "Port out of range."),
        # ":0" was taken, then delivered to port 80.
        ("http://p.example:0/h", "Port out of range."),
        ("http://0.0.0.0/h", "0.0.0.0 is an unspecified address"),
        ("ftp://p.example/h", "http(s) only."),
    ],
)
def test_a_refused_url_says_what_is_wrong_with_it(api, url, said):
    response = api.post(LIST, {"url": url, "event_types": ["task.completed"]}, format="json")
    assert response.status_code == 400
    assert said in response.json()["error"]["fields"]["url"][0]


def test_partner_b_cannot_see_rotate_or_delete_partner_a_endpoints(api, other_api):
    created = api.post(
        LIST, {"url": "https://p.example/h", "event_types": ["task.completed"]}, format="json"
    ).json()
    assert other_api.get(LIST).json() == []
    rotate = other_api.post(reverse("api:webhook-rotate", kwargs={"pk": created["id"]}))
    delete = other_api.delete(reverse("api:webhook-detail", kwargs={"pk": created["id"]}))
    assert (rotate.status_code, delete.status_code) == (404, 404)
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.secret, endpoint.is_active) == (created["secret"], True)


def test_deleting_deactivates(api):
    created = api.post(
        LIST, {"url": "https://p.example/h", "event_types": ["task.completed"]}, format="json"
    ).json()
    response = api.delete(reverse("api:webhook-detail", kwargs={"pk": created["id"]}))
    assert response.status_code == 204
    assert WebhookEndpoint.objects.get().is_active is False
    assert api.get(LIST).json() == []
