"""The portal in real headless Chromium, as the demo customer."""

import itertools
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from journey.management.commands import demo
from journey.models import CustomerTask, Feedback, Message, RescheduleRequest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(demo.CUSTOMER)
    page.get_by_label("Password").fill(demo.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


@pytest.mark.parametrize(("name", "width", "height"), [("desktop", 1280, 900), ("phone", 360, 780)])
def test_customer_follows_the_car_journey(browser, live_server, artifacts, name, width, height):
    call_command("demo")
    base = live_server.url
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(base) else None)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    log_in(page, base)
    page.get_by_role("link", name="Your Aurora GT, Deep Ocean Blue").click()
    page.wait_for_url(f"{base}/journeys/{demo.CAR_REFERENCE}/")

    assert page.get_by_role("heading", name="Your Aurora GT, Deep Ocean Blue").is_visible()
    assert "On its way" in page.locator("#now").inner_text()
    photos = page.locator("#timeline .photos img")
    assert photos.count() == 5
    for i in range(5):  # lazy images load as they scroll into view
        photos.nth(i).scroll_into_view_if_needed()
        photos.nth(i).element_handle().wait_for_element_state("visible")
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=photos.nth(i).element_handle()
        )
    assert page.locator("svg.route line").count() == 3
    assert page.locator("svg.route .route__checkpoint").count() == 1
    route = page.locator("#route").inner_text()
    assert "Milepost Motors, with NorthSea Ro-Ro" in route
    assert "Latest: Bay of Biscay" in route
    assert "Arrange insurance" in page.locator("#todo").inner_text()
    assert "Please arrive at" in page.locator("#appointments").inner_text()

    # Photos open full size in the viewer; arrow keys move through them; Escape closes.
    page.locator("#timeline .photos a").first.click()
    viewer = page.locator("#lightbox")
    viewer.wait_for(state="visible")
    page.wait_for_function(
        "() => { const i = document.querySelector('.lightbox__img');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    assert viewer.locator(".lightbox__count").inner_text() == "1 / 5"
    page.screenshot(path=str(artifacts / f"journey-{name}-photo.png"))
    page.keyboard.press("ArrowRight")
    assert viewer.locator(".lightbox__count").inner_text() == "2 / 5"
    viewer.get_by_role("button", name="Previous").click()
    assert viewer.locator(".lightbox__count").inner_text() == "1 / 5"
    page.keyboard.press("Escape")
    viewer.wait_for(state="hidden")

    # Ticking a task swaps the list in place: the page is not reloaded.
    page.evaluate("window.__samePage = true")
    page.get_by_role("button", name="Mark as done: Arrange insurance").click()
    page.locator("#todo .task--done", has_text="Arrange insurance").wait_for()
    assert page.evaluate("window.__samePage") is True
    assert CustomerTask.objects.get(title="Arrange insurance").done_at is not None

    # Another appointment time: a time in the past is refused in the form, then one is sent.
    appointments = page.locator("#appointments")
    appointments.get_by_text("Ask for another time").click()
    past = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    appointments.get_by_label("Preferred time").fill(past)
    appointments.get_by_role("button", name="Send request").click()
    appointments.get_by_text("Choose a time in the future.").wait_for()
    assert RescheduleRequest.objects.count() == 0
    wanted = (timezone.now() + timedelta(days=12)).strftime("%Y-%m-%dT10:00")
    appointments.get_by_label("Preferred time").fill(wanted)
    appointments.get_by_label("Anything we should know (optional)").fill("Mornings suit me.")
    appointments.get_by_role("button", name="Send request").click()
    appointments.get_by_text("We will confirm a new time with you.").wait_for()
    assert RescheduleRequest.objects.get().note == "Mornings suit me."
    assert page.evaluate("window.__samePage") is True

    # Reply to an update: the link opens the form for that update (a plain link).
    page.get_by_role("link", name="Reply to “On its way”").click()
    conversation = page.locator("#conversation")
    conversation.get_by_text("Replying to “On its way”").wait_for()
    conversation.get_by_label("Your message").fill("Which port does the ferry arrive at?")
    conversation.get_by_role("button", name="Send").click()
    conversation.locator(".message", has_text="Which port does the ferry").wait_for()
    reply = Message.objects.get(from_staff=False)
    assert (reply.body, reply.milestone.stage.label) == (
        "Which port does the ferry arrive at?",
        "On its way",
    )

    # One tap rates a completed stage; the thanks replaces the buttons in place.
    page.get_by_role("button", name="Rate 4 out of 5").first.click()
    page.locator("#timeline .feedback__thanks").first.wait_for()
    assert "You rated this 4 out of 5" in page.locator("#timeline").inner_text()
    assert Feedback.objects.get().rating == 4

    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / f"journey-{name}.png"), full_page=True)
    assert outside == []
    assert errors == []
    context.close()


def test_the_owner_copies_a_share_link(browser, live_server):
    """The copy button, shown by portal.js, puts the link on the clipboard."""
    call_command("demo")
    base = live_server.url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    log_in(page, base)
    page.goto(f"{base}/journeys/{demo.CAR_REFERENCE}/sharing/")
    page.get_by_role("button", name="Make a link").click()
    page.wait_for_load_state("networkidle")
    link = page.locator("input.copy").first.input_value()
    assert link.startswith(f"{base}/s/")
    copy = page.get_by_role("button", name="Copy the link")
    assert copy.is_visible()
    # Every label the button shows is noted: "Copied" lasts two seconds, which a slow
    # machine's polling could miss.
    copy.evaluate(
        """b => { window.labels = [];
                  new MutationObserver(() => window.labels.push(b.textContent))
                    .observe(b, {childList: true, characterData: true, subtree: true}); }"""
    )
    page.bring_to_front()  # the clipboard is written only from a focused page
    copy.click()
    page.wait_for_function("() => window.labels.includes('Copied')", timeout=15_000)
    assert page.evaluate("navigator.clipboard.readText()") == link
    context.close()


# Names that ran off the picture on a phone (a user review): long words, capitals, wide
# letters, and a stop with long names on each side of a crowded north-south route.
HARD_NAMES = [
    ("Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch", "53.22", "-4.20"),
    ("Donaudampfschifffahrtsgesellschaftskapitän", "48.21", "16.37"),
    ("WWW WAREHOUSE WEST MMM", "51.92", "4.48"),
    ("Bristol Showroom and Customer Handover Centre", "51.45", "-2.59"),
    ("MMMMMMMMMMMMMMMMMMMMMMMM", "50.91", "-1.42"),
]


@pytest.mark.parametrize("width", [1280, 390, 360])
def test_route_labels_stay_in_the_picture_as_chromium_draws_them(browser, live_server, width):
    """Measured in the browser (each text's box), not estimated: every label inside the
    route's 640 by 320 picture, at the desktop's font size and the phone's."""
    from journey.models import Journey
    from tests.journey.test_route import leg

    call_command("demo")
    journey = Journey.objects.get(reference=demo.CAR_REFERENCE)
    journey.legs.all().delete()
    for sequence, (start, end) in enumerate(itertools.pairwise(HARD_NAMES), 1):
        leg(journey, sequence, start, end)
    base = live_server.url
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    log_in(page, base)
    page.goto(f"{base}/journeys/{demo.CAR_REFERENCE}/")
    boxes = page.eval_on_selector_all(
        "svg.route text",
        "texts => texts.map(t => { const b = t.getBBox();"
        " return [t.textContent, b.x, b.y, b.x + b.width, b.y + b.height]; })",
    )
    assert len(boxes) >= len(HARD_NAMES) - 1
    for text, left, top, right, bottom in boxes:
        assert 0 <= left and right <= 640 and 0 <= top and bottom <= 320, (text, left, right)
    context.close()
