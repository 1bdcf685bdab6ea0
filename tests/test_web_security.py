"""The browser-facing defences: CSRF on every write, a strict CSP with nonces, inline code
nowhere, the session key rotated at login, and rate limits on login and login-by-code."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from tests.factories import PASSWORD, UserFactory
from tests.test_access import (
    LIBRARY_MODULES,
    all_patterns,
    state,
    url_for,
)
from tests.test_access import (
    world as world,  # the access walk's fixture: one journey with every kind of object
)

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
# Signed server-to-server callbacks (csrf_exempt, verified by HMAC) and the partner API
# (an API key header, no cookies) are not browser forms: CSRF does not apply to them.
NOT_BROWSER = ("api/", "^api/", "inbound/")


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


def test_every_state_changing_portal_request_needs_the_csrf_token(world) -> None:
    """POST to every portal, account and notification URL, as the owner and with HTMX's
    header, without the token: 403 and nothing changes."""
    before = state(world)
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["owner"])
    posted = []
    for pattern in all_patterns():
        if pattern.route.startswith(("admin/", *NOT_BROWSER)) or not pattern.name:
            continue
        if pattern.module.startswith(LIBRARY_MODULES) and "(?P<" in pattern.route:
            continue
        url = url_for(pattern, world) if not pattern.module.startswith(LIBRARY_MODULES) else None
        url = url or reverse(pattern.name)
        response = client.post(url, {"body": "Hi", "rating": "5"}, HTTP_HX_REQUEST="true")
        posted.append(url)
        assert (url, response.status_code) == (url, 403)
    assert reverse("journey:message", args=[world["journey"].reference]) in posted
    assert state(world) == before


def test_a_portal_write_with_the_token_goes_through(world) -> None:
    """The positive control for the CSRF walk: the token from the page is accepted."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["owner"])
    url = reverse("journey:detail", args=[world["journey"].reference])
    page = client.get(url).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    message_url = reverse("journey:message", args=[world["journey"].reference])
    response = client.post(message_url, {"body": "Hello", "csrfmiddlewaretoken": token})
    assert response.status_code == 302


# --- Content-Security-Policy ---------------------------------------------------------------


def _csp(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {
        part.split()[0]: part.split()[1:] for part in (p.strip() for p in header.split(";")) if part
    }


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"\sstyle\s*=", re.I), "an inline style= attribute"),
    (re.compile(r"<style[\s>]", re.I), "a <style> element"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an on*= event handler"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def test_no_template_has_inline_code_or_style() -> None:
    """The CSP forbids inline scripts, styles and handlers; templates must not rely on
    them. Email templates are exempt: mail clients need inline styles and no CSP applies."""
    problems = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        if "email" in path.relative_to(ROOT / "templates").parts:
            continue
        text = path.read_text()
        for pattern, what in INLINE:
            for match in pattern.finditer(text):
                problems.append(f"{path.relative_to(ROOT)}: {what}: {match.group(0)!r}")
        for tag in re.findall(r"<script\b[^>]*>", text, re.I):
            if "nonce=" not in tag:
                problems.append(f"{path.relative_to(ROOT)}: <script> without a nonce: {tag}")
    assert problems == []


def test_no_template_comment_spans_lines() -> None:
    """Django's {# #} ends at the line's end: one over two lines is printed on the page
    (the profile's proposals and every error page showed theirs). {% comment %} spans."""
    problems = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "templates").rglob("*"))
        if path.is_file()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "{#" in line and "#}" not in line.split("{#", 1)[1]
    ]
    assert problems == []


def test_pages_carry_a_strict_csp_and_every_script_its_nonce(world) -> None:
    client = Client()
    client.force_login(world["owner"])
    reference = world["journey"].reference
    pages = [
        reverse("journey:home"),
        reverse("journey:detail", args=[reference]),
        reverse("accounts:profile"),
        reverse("notifications:centre"),
        reverse("public-journey", args=[world["link_token"]]),
    ]
    anonymous = [reverse("account_login"), reverse("account_request_login_code")]
    for url, response in [(u, client.get(u)) for u in pages] + [
        (u, Client().get(u)) for u in anonymous
    ]:
        assert (url, response.status_code) == (url, 200)
        policy = _csp(response)
        nonce = re.fullmatch(r"'nonce-([A-Za-z0-9+/=_-]+)'", policy["script-src"][1]).group(1)
        assert policy["script-src"][0] == "'self'"
        assert policy["default-src"] == ["'self'"]
        assert policy["style-src"] == ["'self'"]
        assert policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["base-uri"] == ["'self'"]
        assert "'unsafe-inline'" not in response["Content-Security-Policy"]
        assert "'unsafe-eval'" not in response["Content-Security-Policy"]
        html = response.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html, re.I):
            assert f'nonce="{nonce}"' in tag, (url, tag)
        for pattern, what in INLINE[1:]:
            assert not pattern.search(html), (url, what)


def test_the_nonce_differs_on_every_response(world) -> None:
    client = Client()
    client.force_login(world["owner"])
    url = reverse("journey:detail", args=[world["journey"].reference])
    first, second = _csp(client.get(url)), _csp(client.get(url))
    assert first["script-src"][1] != second["script-src"][1]


# --- Sessions and rate limits ----------------------------------------------------------------


def test_the_session_key_is_rotated_at_login(client, customer) -> None:
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    client.get(reverse("account_login"))
    session = client.session
    session["planted"] = "by someone fixing the session"
    session.save()
    before = client.cookies["sessionid"].value
    response = client.post(
        reverse("account_login"), {"login": customer.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    after = client.cookies["sessionid"].value
    assert after != before
    # The old key is gone: a fixed session id is worth nothing after the victim logs in.
    assert not client.session.__class__(session_key=before).exists(before)


def test_failed_logins_lock_the_address_even_for_the_right_password(client, customer) -> None:
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    for _ in range(5):
        client.post(reverse("account_login"), {"login": customer.email, "password": "wrong"})
    response = client.post(
        reverse("account_login"), {"login": customer.email, "password": PASSWORD}
    )
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_repeated_logins_from_one_address_get_429(client, customer) -> None:
    for attempt in range(30):
        response = client.post(
            reverse("account_login"), {"login": f"nobody{attempt}@example.com", "password": "x"}
        )
        assert response.status_code == 200
    response = client.post(reverse("account_login"), {"login": customer.email, "password": "x"})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_login_codes_are_rate_limited_per_address_and_per_ip(client, customer) -> None:
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    for _ in range(5):
        client.post(reverse("account_request_login_code"), {"email": customer.email})
        client.cookies.clear()  # a fresh visitor each time: the limit is on the address
    # Three codes a minute for one address, however the requests arrive.
    assert len(mail.outbox) == 3
    # Twenty a minute from one IP address, whatever the addresses: the next code is not
    # sent (allauth answers with the form, not 429, so it does not tell whether the
    # address has an account).
    other = UserFactory(email="second@example.com")
    EmailAddress.objects.create(user=other, email=other.email, verified=True, primary=True)
    for attempt in range(20):
        client.post(reverse("account_request_login_code"), {"email": f"x{attempt}@example.com"})
    sent = len(mail.outbox)
    client.post(reverse("account_request_login_code"), {"email": other.email})
    assert len(mail.outbox) == sent
    assert not any(other.email in m.to for m in mail.outbox)


def test_a_wrong_login_code_three_times_ends_the_attempt(client, customer) -> None:
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    client.post(reverse("account_request_login_code"), {"email": customer.email})
    code = re.search(r"\b([A-Z0-9]{4}-[A-Z0-9]{4})\b", mail.outbox[-1].body).group(1)
    for _ in range(3):
        client.post(reverse("account_confirm_login_code"), {"code": "AAAA-AAAA"})
    response = client.post(reverse("account_confirm_login_code"), {"code": code})
    assert response.status_code == 302
    assert response["Location"] == reverse("account_request_login_code")
    assert "_auth_user_id" not in client.session


def test_security_txt_says_where_to_report_from_the_settings(client, settings):
    settings.SECURITY_CONTACT = ["mailto:security@partner-operator.test", "https://op.test/vdp"]
    settings.SITE_URL = "https://portal.op.test"
    with time_machine.travel(datetime(2026, 11, 26, 15, 4, tzinfo=UTC), tick=False):
        response = client.get("/.well-known/security.txt")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert "max-age=86400" in response["Cache-Control"]
    assert response.content.decode().splitlines() == [
        "Contact: mailto:security@partner-operator.test",
        "Contact: https://op.test/vdp",
        "Expires: 2027-02-24T00:00:00Z",  # 90 days on, less than the RFC's year
        "Preferred-Languages: en, es",
        "Canonical: https://portal.op.test/.well-known/security.txt",
    ]


def test_without_a_security_contact_there_is_no_security_txt(client, settings):
    settings.SECURITY_CONTACT = []
    assert client.get("/.well-known/security.txt").status_code == 404
