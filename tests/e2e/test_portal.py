"""The portal in real headless Chromium, as the demo customer."""

import pytest
from django.core.management import call_command

from journey.management.commands import demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(demo.CUSTOMER)
    page.get_by_label("Password").fill(demo.PASSWORD)
    page.get_by_role("button", name="Sign In").click()
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
    assert "Arrange insurance" in page.locator("#todo").inner_text()
    assert "Please arrive at" in page.locator("#appointments").inner_text()
    page.screenshot(path=str(artifacts / f"journey-{name}.png"), full_page=True)
    assert outside == []
    assert errors == []
    context.close()
