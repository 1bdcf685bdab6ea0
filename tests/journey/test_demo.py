import pytest
from django.core.management import call_command
from django.urls import reverse

from integrations.models import PartnerAPIKey
from journey.management.commands import demo
from journey.models import Journey, JourneyEvent, Photo, ShipmentLeg
from notifications.models import Notification

pytestmark = pytest.mark.django_db


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Journey, JourneyEvent, Photo, ShipmentLeg, Notification, PartnerAPIKey)
    }


def test_the_demo_loads_once_and_again_changes_nothing(capsys):
    call_command("demo")
    first = capsys.readouterr().out
    loaded = counts()
    call_command("demo")
    second = capsys.readouterr().out

    # Notifications: each of the 14 milestones and the photos of 4 stages, each in the
    # notification centre and by email.
    assert loaded == {
        "Journey": 3,
        "JourneyEvent": 14,
        "Photo": 5,
        "ShipmentLeg": 3,
        "Notification": 36,
        "PartnerAPIKey": 2,
    }
    assert counts() == loaded
    assert "shown once): mp_" in first
    assert "mp_" not in second
    assert demo.CUSTOMER in second and demo.STAFF in second


def test_demo_customers_each_see_only_their_own(client):
    call_command("demo")
    car = reverse("journey:detail", kwargs={"reference": demo.CAR_REFERENCE})
    kitchen = reverse("journey:detail", kwargs={"reference": demo.KITCHEN_REFERENCE})
    client.login(email=demo.CUSTOMER, password=demo.PASSWORD)
    page = client.get(car)
    assert page.status_code == 200
    html = page.content.decode()
    assert "On its way" in html and "Port of Santander" in html and "Rubber floor mats" in html
    assert client.get(kitchen).status_code == 404
    client.login(email=demo.SECOND_CUSTOMER, password=demo.PASSWORD)
    assert client.get(kitchen).status_code == 200
    assert client.get(car).status_code == 404


def test_the_third_customer_waits_for_a_broadband_engineer_and_sam_reads_in_spanish(client):
    call_command("demo")
    broadband = reverse("journey:detail", kwargs={"reference": demo.BROADBAND_REFERENCE})
    client.login(email=demo.THIRD_CUSTOMER, password=demo.PASSWORD)
    html = client.get(broadband).content.decode()
    assert "Engineer booked" in html and "Engineer&#x27;s visit" in html
    assert "Choose where the router goes" in html and "Wi-Fi booster" in html
    client.login(email=demo.SECOND_CUSTOMER, password=demo.PASSWORD)
    kitchen = reverse("journey:detail", kwargs={"reference": demo.KITCHEN_REFERENCE})
    html = client.get(kitchen).content.decode()
    assert '<html lang="es">' in html and "Fabricación a medida" in html
