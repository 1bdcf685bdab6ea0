"""Two identical events sent at the same moment: one milestone change, one notification.

On PostgreSQL (CI) the two requests really overlap, each in its own thread and database
connection; SQLite cannot write from two connections at once, so there they run one
after the other, and the test still checks the same outcome.
"""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.models import InboundEvent
from journey.models import JourneyEvent, MilestoneState
from notifications.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_identical_events_at_once_change_the_journey_once(journey, api_key):
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    body = {
        "event_id": "evt-concurrent",
        "code": "S2",
        "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
    }
    concurrent = connection.vendor == "postgresql"
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def send() -> None:
        from django.db import connection as thread_connection

        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
            if concurrent:
                barrier.wait(timeout=10)
            statuses.append(client.post(url, body, format="json").status_code)
        except BaseException as error:
            errors.append(error)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
        if not concurrent:
            thread.join()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(statuses) == [200, 201]
    assert InboundEvent.objects.count() == 1
    assert JourneyEvent.objects.count() == 1
    assert journey.milestones.get(stage__key="stage-2").state == MilestoneState.CURRENT
    assert Notification.objects.filter(channel="email").count() == 1
