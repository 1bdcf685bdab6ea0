"""GET /api/v1/journeys/: cursor pages, newest first, never a row skipped or repeated."""

import base64
from datetime import timedelta
from urllib import parse

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.services import partner_key_create
from journey.services import journey_create
from tests.factories import PartnerFactory, TemplateFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/journeys/"


def served(partner, customer, count: int) -> list[str]:
    """``count`` more journeys served by ``partner`` (one template: quick to make); the
    references of all it serves, newest first."""
    template = TemplateFactory(stages=2)
    journeys = [
        journey_create(
            template=template,
            owner=customer,
            title=f"Journey {n}",
            started_at=timezone.now() - timedelta(days=1),
        )
        for n in range(count)
    ]
    partner.journeys.add(*journeys)
    return list(partner.journeys.order_by("-id").values_list("reference", flat=True))


def references(response) -> list[str]:
    return [journey["reference"] for journey in response.json()["results"]]


def walk(api, url: str, link: str = "next") -> list[list[str]]:
    """Every page from ``url`` on, following ``link``."""
    pages = []
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.json()
        pages.append(references(response))
        url = response.json()[link]
    return pages


def cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_page_holds_100_journeys_by_default_newest_first(api, partner, customer, other_journey):
    everything = served(partner, customer, 100)  # and the journey fixture: 101
    first = api.get(URL)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"next", "previous", "results"}
    assert body["previous"] is None
    assert references(first) == everything[:100]
    assert set(body["results"][0]) == {
        "reference",
        "title",
        "template",
        "started_at",
        "promised_date",
        "eta",
        "health",
        "last_event_at",
        "milestones",
    }
    last = api.get(body["next"])
    assert last.json()["next"] is None
    assert last.json()["previous"] is not None
    assert references(last) == everything[100:]
    assert other_journey.reference not in everything


def test_walking_forward_and_back_lists_every_journey_once(api, partner, customer):
    everything = served(partner, customer, 6)  # 7 with the journey fixture
    pages = walk(api, f"{URL}?page_size=3")
    assert pages == [everything[0:3], everything[3:6], everything[6:7]]
    last = api.get(f"{URL}?page_size=3")
    for _ in range(2):
        last = api.get(last.json()["next"])
    back = walk(api, last.json()["previous"], link="previous")
    assert back == [everything[3:6], everything[0:3]]


def test_a_journey_added_during_a_walk_shifts_nothing(api, partner, customer):
    everything = served(partner, customer, 4)
    first = api.get(f"{URL}?page_size=2")
    newer = served(partner, customer, 1)[0]
    rest = walk(api, first.json()["next"])
    assert references(first) + [ref for page in rest for ref in page] == everything
    assert walk(api, f"{URL}?page_size=2")[0] == [newer, everything[0]]


@pytest.mark.parametrize("size", ["1", "500"])
def test_a_page_size_from_1_to_500_is_taken(api, partner, customer, size):
    everything = served(partner, customer, 2)
    response = api.get(f"{URL}?page_size={size}")
    assert response.status_code == 200
    assert references(response) == everything[: int(size)]
    assert (response.json()["next"] is None) == (size == "500")


@pytest.mark.parametrize("size", ["0", "-1", "501", "1.5", "ten", ""])
def test_any_other_page_size_is_a_400(api, size):
    response = api.get(f"{URL}?page_size={size}")
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "Invalid input: page_size.",
            "fields": {"page_size": ["A whole number from 1 to 500."]},
        }
    }


@pytest.mark.parametrize(
    "value",
    [
        "garbage!",
        "é",
        cursor("p=abc"),
        cursor("p=1.5"),
        cursor("p="),
        cursor("p=-3"),
        cursor("p=" + "9" * 30),
        cursor("p=9223372036854775808"),
        cursor("o=-1"),
        cursor("r=x"),
        # Well-formed for DRF, but not ours: a page that would start anywhere.
        cursor("p=3"),
        cursor("o=1"),
        cursor("p=3&o=1"),
        cursor("p=9999999"),
        "eA==",
        "%%%",
        cursor("p=3") + ":forged-signature",
    ],
)
def test_a_cursor_we_did_not_make_is_a_400(api, journey, value):
    response = api.get(URL, {"cursor": value})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "Invalid input: cursor.",
            "fields": {"cursor": ["Invalid cursor: follow the next and previous links."]},
        }
    }


def test_another_partners_key_pages_through_its_own_journeys_only(
    api, partner, customer, other_api, other_journey
):
    served(partner, customer, 3)
    assert walk(other_api, f"{URL}?page_size=1") == [[other_journey.reference]]


def test_a_partner_serving_nothing_gets_an_empty_page(journey):
    _key, plain = partner_key_create(partner=PartnerFactory())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {plain}")
    response = client.get(URL)
    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": []}


def test_a_cursor_is_good_for_its_own_list_only(api, partner, customer, journey):
    """A journeys page's cursor on a photos list is refused, not read as a photo's id."""
    served(partner, customer, 2)
    cursor_of_journeys = parse.parse_qs(
        parse.urlsplit(api.get(f"{URL}?page_size=1").json()["next"]).query
    )["cursor"][0]
    photos = reverse("api:journey-photos", kwargs={"reference": journey.reference})
    response = api.get(photos, {"cursor": cursor_of_journeys})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["cursor"]
    assert api.get(URL, {"cursor": cursor_of_journeys, "page_size": 1}).status_code == 200
