"""The partner API's interactive docs, drawn by Chromium under the site's CSP."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_api_docs_draw_every_operation_from_this_host_only(browser, live_server):
    """Swagger UI's start-up script was inline, which the CSP refuses: the page was
    blank. It comes from the split view's own URL now."""
    base = live_server.url
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    outside, refused = [], []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(base) else None)
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(f"{base}/api/docs/")
    page.locator(".opblock").first.wait_for(state="visible")
    assert page.locator(".opblock").count() == 29  # as the schema test counts them
    assert page.get_by_text("Milepost partner API").first.is_visible()
    assert page.locator("body").evaluate("b => getComputedStyle(b).margin") == "0px"
    assert outside == [] and refused == []
