"""The journey page's auto-refresh keeps what the customer did to it (a user review): open
disclosures stay open, the focus stays where it was, typed text is never replaced."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from journey.management.commands import demo
from journey.models import EventSource, Journey
from journey.services import journey_record_milestone
from tests.e2e.test_portal import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

POLL = "00:31"  # the parts poll every 30 s


def mark_parts(page) -> None:
    """Tag the parts now shown, so a test can tell whether a poll replaced them, and note
    each part whose poll has been answered (swapped or not)."""
    page.evaluate(
        """() => {
          ['now', 'timeline'].forEach(id => document.getElementById(id).dataset.old = '1');
          window.polled = [];
          if (!window.noting) {
            window.noting = true;
            // By path: a part replaced by its answer is no longer the event's element.
            document.body.addEventListener('htmx:afterRequest',
              e => window.polled.push(e.detail.pathInfo.requestPath.split('/').at(-2)));
          }
        }"""
    )


def poll(page) -> None:
    """Let 30 s pass, and wait until the header and the timeline have had their answers."""
    page.clock.run_for(POLL)
    page.wait_for_function(
        "() => ['header', 'timeline'].every(part => (window.polled || []).includes(part))"
    )


def replaced(page, part: str) -> bool:
    return page.evaluate(f"() => !document.getElementById('{part}').dataset.old")


def reach_the_showroom() -> None:
    """A change the header and the timeline both show."""
    journey_record_milestone(
        journey=Journey.objects.get(reference=demo.CAR_REFERENCE),
        stage_key="at_showroom",
        occurred_at=timezone.now() - timedelta(minutes=5),
        source=EventSource.STAFF,
    )


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)])
def test_open_details_and_the_focus_survive_a_poll(browser, live_server, width, height):
    call_command("demo")
    base = live_server.url
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.clock.install()  # the 30 s polls run when the test says so
    log_in(page, base)
    page.goto(f"{base}/journeys/{demo.CAR_REFERENCE}/")

    history = page.locator("#now details.eta-history")
    comment = page.locator("#timeline details.feedback__more").first
    comment.locator("summary").click()
    history.locator("summary").click()  # clicked last: it holds the focus
    assert history.evaluate("d => d.open") and comment.evaluate("d => d.open")
    assert history.locator("summary").evaluate("s => s === document.activeElement")
    mark_parts(page)

    reach_the_showroom()
    poll(page)
    assert replaced(page, "now") and replaced(page, "timeline")

    # The new parts show the change, and the customer's disclosures are still open.
    assert "At the showroom" in page.locator("#now .hero__now").inner_text()
    history = page.locator("#now details.eta-history")
    comment = page.locator("#timeline details.feedback__more").first
    assert history.evaluate("d => d.open") is True
    assert comment.evaluate("d => d.open") is True
    # Others are as they were: closed.
    assert page.locator("#timeline details.feedback__more[open]").count() == 1
    # The focus is back on the summary the customer used (not lost to the page).
    assert history.locator("summary").evaluate("s => s === document.activeElement")

    # A disclosure the customer closes stays closed too.
    history.locator("summary").click()
    assert history.evaluate("d => d.open") is False
    mark_parts(page)
    journey_record_milestone(
        journey=Journey.objects.get(reference=demo.CAR_REFERENCE),
        stage_key="handover",
        occurred_at=timezone.now() - timedelta(minutes=1),
        source=EventSource.STAFF,
    )
    poll(page)
    assert replaced(page, "now") and replaced(page, "timeline")
    assert page.locator("#now details.eta-history").evaluate("d => d.open") is False
    assert page.locator("#timeline details.feedback__more").first.evaluate("d => d.open")
    assert errors == []
    context.close()


def test_a_comment_being_typed_is_not_replaced_by_a_poll(browser, live_server):
    call_command("demo")
    base = live_server.url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.clock.install()
    log_in(page, base)
    page.goto(f"{base}/journeys/{demo.CAR_REFERENCE}/")

    comment = page.locator("#timeline details.feedback__more").first
    comment.locator("summary").click()
    comment.locator("textarea").fill("The paint is perfect")
    page.locator("#now details.eta-history summary").click()  # the focus leaves the field
    mark_parts(page)

    reach_the_showroom()
    poll(page)
    # The header moved on; the timeline, holding typed text, waits for the customer.
    assert replaced(page, "now") is True
    assert replaced(page, "timeline") is False
    assert comment.locator("textarea").input_value() == "The paint is perfect"
    assert page.locator("#now details.eta-history").evaluate("d => d.open") is True
    context.close()
