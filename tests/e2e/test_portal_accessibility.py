"""What a screen reader and a keyboard get, as Chromium computes it (a user review): the
reading order is the order on the screen, and no two controls share a name without context."""

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Source, User
from accounts.services import (
    address_add,
    journey_share_invite,
    profile_propose_change,
    share_link_create,
)
from journey.management.commands import demo
from journey.models import Appointment, Journey
from journey.services import appointment_request_reschedule
from tests.e2e.test_portal import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shown(control) -> str:
    """The words a control shows: its text less what is only for assistive technology."""
    return control.evaluate(
        """c => { const copy = c.cloneNode(true);
                  copy.querySelectorAll('.visually-hidden').forEach(s => s.remove());
                  const hidden = c.querySelector('.visually-hidden');
                  const box = hidden && hidden.getBoundingClientRect();
                  return box && box.width <= 1 && box.height <= 1 ? copy.textContent : null; }"""
    )


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)])
def test_the_reading_order_is_the_order_on_the_screen(browser, live_server, width, height):
    call_command("demo")
    base = live_server.url
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    log_in(page, base)
    page.goto(f"{base}/journeys/{demo.CAR_REFERENCE}/")

    box = {part: page.locator(f"#{part}").bounding_box() for part in ("todo", "timeline")}
    if width < 800:
        # A phone shows what the customer must do first...
        assert box["todo"]["y"] + box["todo"]["height"] <= box["timeline"]["y"]
    else:
        # ...a wide screen shows the timeline on the left and the side column beside it.
        assert box["timeline"]["x"] + box["timeline"]["width"] <= box["todo"]["x"]
        assert box["todo"]["y"] == pytest.approx(box["timeline"]["y"], abs=1)
        assert box["timeline"]["width"] > 1.5 * box["todo"]["width"]
    # The HTML (what a screen reader reads) has "For you to do" first too.
    assert page.evaluate(
        "() => Boolean(document.getElementById('todo').compareDocumentPosition("
        "document.getElementById('timeline')) & Node.DOCUMENT_POSITION_FOLLOWING)"
    )
    # And so has the keyboard: the next stop after the header is the first task's button.
    page.locator("#now details.eta-history summary").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.closest('section').id, document.activeElement.textContent]"
    )
    assert focused == ["todo", "Mark as done"]
    context.close()


def test_repeated_controls_say_what_they_act_on(browser, live_server):
    call_command("demo")
    customer = User.objects.get(email=demo.CUSTOMER)
    journey = Journey.objects.get(reference=demo.CAR_REFERENCE)
    for field, value in (("given_name", "Alexandra"), ("family_name", "Morgan-Smith")):
        profile_propose_change(
            user=customer,
            field=field,
            value=value,
            reason="As on the licence.",
            source=Source.STAFF,
        )
    for email in ("friend@example.com", "granny@example.com"):
        journey_share_invite(journey=journey, owner=customer, email=email)
    for days in (1, 30):
        share_link_create(journey=journey, owner=customer, days=days)
    for label in ("Home", "Work"):
        address_add(
            profile=customer.profile,
            data={"label": label, "line1": "1 High St", "city": "Bristol"},
            actor=customer,
        )
    base = live_server.url
    context = browser.new_context(viewport={"width": 390, "height": 844})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    log_in(page, base)

    page.goto(f"{base}/account/")
    for section in ("Name", "Phone and email", "Language and time", "How we reach you"):
        assert page.get_by_role("link", name=f"Edit: {section}", exact=True).count() == 1
    assert page.get_by_role("link", name="Edit", exact=True).count() == 0
    assert page.get_by_role("button", name="Remove", exact=True).count() == 0
    for label in ("Home", "Work"):
        remove = page.get_by_role("button", name=f"Remove the address “{label}”", exact=True)
        assert remove.count() == 1 and shown(remove) == "Remove"
    for word in ("Accept", "Decline"):
        assert page.get_by_role("button", name=word, exact=True).count() == 0
        for proposal in ("Given name “Alexandra”", "Family name “Morgan-Smith”"):
            button = page.get_by_role("button", name=f"{word}: {proposal}", exact=True)
            assert button.count() == 1
            assert shown(button) == word  # the context is for the ear, not the eye

    page.goto(f"{base}/journeys/{demo.CAR_REFERENCE}/sharing/")
    assert page.get_by_role("button", name="Revoke", exact=True).count() == 0
    for email in ("friend@example.com", "granny@example.com"):
        assert page.get_by_role("button", name=f"Revoke: {email}", exact=True).count() == 1
    for word, name in (("Revoke", "Revoke the link"), ("Copy the link", "Copy the link")):
        assert page.get_by_role("button", name=word, exact=True).count() == 0
        names = page.get_by_role("button", name=re.compile(f"^{name} valid until ")).evaluate_all(
            "buttons => buttons.map(b => b.textContent)"
        )
        assert len(names) == len(set(names)) == 2

    # "Copied" is shown for a moment; then the label comes back with its hidden context.
    copy = page.get_by_role("button", name=re.compile("^Copy the link valid until ")).first
    copy.evaluate(
        """b => { window.labels = [];
                  new MutationObserver(() => window.labels.push(b.textContent))
                    .observe(b, {childList: true, characterData: true, subtree: true}); }"""
    )
    page.bring_to_front()  # the clipboard is written only from a focused page
    copy.click()
    page.wait_for_function(
        "() => window.labels.includes('Copied') &&"
        " document.querySelector('button[data-copy-from] .visually-hidden') !== null"
        " && !window.labels.at(-1).startsWith('Copied')",
        timeout=15_000,
    )
    assert page.get_by_role("button", name=re.compile("^Copy the link valid until ")).count() == 2
    assert shown(copy) == "Copy the link"
    context.close()


def _demo_customer(browser, live_server, path: str):
    """The demo's customer, logged in at ``path`` on a wide screen."""
    call_command("demo")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, live_server.url)
    page.goto(live_server.url + path)
    return context, page


def test_the_focus_stays_with_the_part_an_action_replaced(browser, live_server):
    """Ticking a task off, rating a stage and sending a message replace their part of
    the page, and the button pressed with it: the focus goes to what the new part says
    (the rating's thanks, the part's heading), not to the page's body (a user review)."""
    context, page = _demo_customer(browser, live_server, f"/journeys/{demo.CAR_REFERENCE}/")

    def focused() -> list[str]:
        return page.evaluate(
            "() => { const a = document.activeElement;"
            " return [a.tagName, (a.closest('[id]') || a).id, a.textContent.trim()]; }"
        )

    done = page.locator("#todo button", has_text="Mark as done").first
    done.focus()
    with page.expect_response(lambda r: "/done/" in r.url):
        page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement !== document.body", timeout=5000)
    assert focused()[:2] == ["H2", "todo-title"]

    rate = page.locator(".rating__btn").first
    feedback = rate.evaluate("b => b.closest('.feedback').id")
    rate.focus()
    with page.expect_response(lambda r: "/feedback/" in r.url):
        page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement !== document.body", timeout=5000)
    tag, holder, text = focused()
    assert (tag, holder) == ("P", feedback)
    assert text.startswith("You rated this 1 out of 5")

    # Another time asked for: the focus goes to what this appointment now says, not to
    # an earlier appointment's notice of its own (the nearest one to the button wins).
    journey = Journey.objects.get(reference=demo.CAR_REFERENCE)
    start = timezone.now() + timedelta(days=2)
    earlier = Appointment.objects.create(
        journey=journey, title="Paint sample", starts_at=start, arrive_at=start, place_name="Home"
    )
    appointment_request_reschedule(
        appointment=earlier, user=journey.owner, first_choice=start + timedelta(days=1)
    )
    page.reload()
    assert page.locator("article.appointment").first.get_by_role("status").count() == 1
    article = page.locator("article.appointment").last
    assert article.get_by_role("status").count() == 0
    article.locator("summary").click()
    article.locator("input[name$=first_choice]").fill("2027-03-01T10:00")
    article.get_by_role("button", name="Send request").focus()
    with page.expect_response(lambda r: "/reschedule/" in r.url):
        page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement !== document.body", timeout=5000)
    tag, holder, text = focused()
    assert (tag, holder) == ("DIV", article.evaluate("a => a.id"))
    assert text.startswith("You asked for")

    page.locator("#message-form textarea").fill("Is the paint dry?")
    page.locator("#message-form button[type=submit]").focus()
    with page.expect_response(lambda r: r.url.endswith("/messages/")):
        page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement !== document.body", timeout=5000)
    assert focused()[:2] == ["H2", "conversation-title"]
    context.close()


def test_marking_updates_read_in_place_updates_the_headers_count(browser, live_server):
    """The list is swapped in place; the header's unread count comes with it (out of
    band), where it stayed at its old number until the page was loaded again."""
    context, page = _demo_customer(browser, live_server, "/notifications/")
    assert int(page.locator("#updates-link .badge").inner_text()) > 0
    with page.expect_response(lambda r: r.url.endswith("/notifications/read-all/")):
        page.get_by_role("button", name="Mark all as read").click()
    page.locator("#updates-link .badge").wait_for(state="detached", timeout=5000)
    assert page.locator("#updates-link").inner_text() == "Updates"
    context.close()
