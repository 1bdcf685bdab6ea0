"""Controls repeated on a page say what they act on, for a screen reader's list of links and
buttons (a user review): the visible word, then the whole name in a visually hidden span.
tests/e2e/test_portal_accessibility.py checks the names Chromium computes."""

import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from accounts.models import Source
from accounts.services import journey_share_invite, profile_propose_change, share_link_create

pytestmark = pytest.mark.django_db


class Names(HTMLParser):
    """The accessible names of links and buttons: their text, less aria-hidden parts."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[tuple[str, str]] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, hidden from assistive technology)
        self.current: list[str] | None = None
        self.role = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"input", "br", "img", "meta", "link"}:
            return
        hidden = dict(attrs).get("aria-hidden") == "true" or bool(self.stack and self.stack[-1][1])
        self.stack.append((tag, hidden))
        if tag in {"a", "button"}:
            self.current, self.role = [], tag

    def handle_endtag(self, tag: str) -> None:
        if tag in {"input", "br", "img", "meta", "link"}:
            return
        self.stack.pop()
        if tag in {"a", "button"} and self.current is not None:
            self.names.append((self.role, " ".join("".join(self.current).split())))
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is not None and not (self.stack and self.stack[-1][1]):
            self.current.append(data)


def names(html: str) -> list[tuple[str, str]]:
    parser = Names()
    parser.feed(html)
    return parser.names


@pytest.fixture
def logged_in(client, customer):
    client.force_login(customer)
    return client


def test_the_profiles_edit_links_and_proposal_buttons_name_their_subject(logged_in, customer):
    for field, value in (("given_name", "Alexandra"), ("family_name", "Morgan-Smith")):
        profile_propose_change(
            user=customer,
            field=field,
            value=value,
            reason="As on the licence.",
            source=Source.STAFF,
        )
    found = names(logged_in.get(reverse("accounts:profile")).content.decode())
    assert [name for role, name in found if name.startswith("Edit")] == [
        "Edit: Name",
        "Edit: Phone and email",
        "Edit: Language and time",
        "Edit: How we reach you",
    ]
    decisions = [name for role, name in found if re.match(r"(Accept|Decline)\b", name)]
    assert sorted(decisions) == [
        "Accept: Family name “Morgan-Smith”",
        "Accept: Given name “Alexandra”",
        "Decline: Family name “Morgan-Smith”",
        "Decline: Given name “Alexandra”",
    ]


def test_the_sharing_pages_buttons_name_whom_or_which_link(logged_in, journey, customer):
    for email in ("friend@example.com", "granny@example.com"):
        journey_share_invite(journey=journey, owner=customer, email=email)
    for days in (1, 30):
        share_link_create(journey=journey, owner=customer, days=days)
    html = logged_in.get(reverse("accounts:sharing", args=[journey.reference])).content.decode()
    found = [name for role, name in names(html) if role == "button"]
    revoke = [name for name in found if name.startswith("Revoke")]
    copy = [name for name in found if name.startswith("Copy")]
    assert sorted(revoke[:2]) == ["Revoke: friend@example.com", "Revoke: granny@example.com"]
    assert len(revoke) == len(set(revoke)) == 4
    assert all(re.fullmatch(r"Revoke the link valid until .+, \d\d:\d\d", n) for n in revoke[2:])
    assert len(copy) == len(set(copy)) == 2
    assert all(re.fullmatch(r"Copy the link valid until .+, \d\d:\d\d", n) for n in copy)
