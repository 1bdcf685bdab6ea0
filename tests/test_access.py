"""The access walk: every URL pattern, as everyone who is not the owner.

The patterns are read from the URLconf (``get_resolver()``), so a URL added later is walked
automatically, and a URL nobody has classified makes the test fail until it is added to
``RULES`` below. Each pattern is requested with GET and POST as an anonymous visitor,
another customer, an invited viewer (share accepted), staff, and another partner's API key,
and each must get what it should: a redirect to the login, 401, 403, 404 or 405, or, where
the page is theirs or public, a page that never carries the owner's name, email or
(outside the journey's own viewers) reference. Nothing a denied request posts may change.
"""

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Address, ChangeProposal, JourneyShare, ShareLink
from accounts.services import (
    journey_share_accept,
    journey_share_invite,
    share_invitation_token,
    share_link_create,
)
from integrations.models import InboundEvent, WebhookEndpoint
from integrations.services import partner_key_create
from integrations.webhooks import webhook_endpoint_create
from journey.models import (
    Appointment,
    CustomerTask,
    EventSource,
    Feedback,
    JourneyEvent,
    Message,
    Photo,
    RescheduleRequest,
    ShipmentLeg,
)
from journey.photos import photo_add
from journey.public import share_link_token
from journey.services import journey_record_milestone
from notifications.models import Notification
from tests.factories import MappingFactory, PartnerFactory, UserFactory, make_journey
from tests.journey.test_views import jpeg

pytestmark = pytest.mark.django_db

ACTORS = ("anonymous", "stranger", "viewer", "staff", "other_partner")

# What each actor may get from a pattern:
#   "login"  a redirect to the login page (anonymous visitors on customer pages)
#   "deny"   401, 403, 404 or 405, or a redirect to a login page
#   "own"    their own page (or a page about nobody): any answer below 500
#   "public" anyone may see it (any answer below 500)
# Every answer to anyone but the owner must lack the owner's name and email; and, except
# for the journey's invited viewer on the journey's own pages, its reference too.
# A partner's API key means nothing to the portal: it is an anonymous visitor there.
PORTAL = {"anonymous": "login", "stranger": "deny", "viewer": "deny", "staff": "deny"}
PORTAL["other_partner"] = "login"
SHARED = {**PORTAL, "viewer": "own"}
OWN = {"anonymous": "login", "stranger": "own", "viewer": "own", "staff": "own"}
OWN["other_partner"] = "login"
PUBLIC = dict.fromkeys(ACTORS, "public")
DENY = dict.fromkeys(ACTORS, "deny")
# The partner API answers only to a partner key; another partner's key sees nothing of
# a journey it does not serve.
API = dict.fromkeys(ACTORS, "deny")
# A partner's own collection (its webhooks, its sandbox) is its own, not the owner's.
API_OWN = {**API, "other_partner": "own"}

RULES: dict[str, dict[str, str]] = {
    # The customer portal.
    "journey:home": OWN,
    "journey:detail": SHARED,
    "journey:photo": SHARED,
    "journey:part": SHARED,
    "journey:appointment_calendar": SHARED,
    # Writes on a journey. A viewer takes part in the conversation and rates stages (their
    # own rating); ticking tasks off and moving appointments is the owner's alone (the
    # service answers 403: test_a_viewer_cannot_move_an_appointment below, since an empty
    # form is refused before the permission is asked).
    "journey:task_done": PORTAL,
    "journey:reschedule": SHARED,
    "journey:message": SHARED,
    "journey:feedback": SHARED,
    # The account: each user's own; objects of someone else's answer 404.
    "accounts:profile": OWN,
    "accounts:section": OWN,
    "accounts:address-add": OWN,
    "accounts:address-remove": PORTAL,
    "accounts:proposal-decide": PORTAL,
    "accounts:history": OWN,
    "accounts:export": OWN,
    "accounts:delete": OWN,
    "accounts:sharing": PORTAL,
    # An invitation's page is shown to whoever holds its emailed token, signed in or not
    # (the journey's title and the invited address, nothing of the owner's); accepting
    # needs the invited address (tests/accounts/test_sharing.py), and the walk checks
    # nothing changed.
    "accounts:invitation": {**OWN, "anonymous": "own", "other_partner": "own"},
    # The portal's offer of an invitation: only to the invited address (another's is a
    # 404, and the walk checks that nothing changed).
    "accounts:invitation-accept": PORTAL,
    "notifications:centre": OWN,
    # Marks only the user's own rows (someone else's id changes nothing: checked below).
    "notifications:read": OWN,
    "notifications:read-all": OWN,
    # Marks and follows only the user's own rows: another's id is a 404 (the walk checks
    # that nothing changed).
    "notifications:open": PORTAL,
    # Signed server-to-server callbacks: nobody gets in without the signature.
    "notifications:inbound-email": DENY,
    "notifications:inbound-bounce": DENY,
    # Share links show progress to anyone holding the token, nothing personal.
    "public-journey": PUBLIC,
    "public-photo": PUBLIC,
    "healthz": PUBLIC,
    # How to report a vulnerability (RFC 9116): from settings, about nobody.
    "security-txt": PUBLIC,
    # The partner API.
    "api:journey-list": API_OWN,
    "api:journey-detail": API,
    "api:journey-events": API,
    "api:journey-event": API,
    "api:journey-profile-changes": API,
    "api:event-batch": API_OWN,
    "api:journey-legs": API,
    "api:journey-leg": API,
    "api:leg-checkpoints": API,
    "api:journey-photos": API,
    "api:journey-tasks": API,
    "api:journey-task": API,
    "api:journey-appointments": API,
    "api:journey-appointment": API,
    "api:webhook-list": API_OWN,
    "api:webhook-detail": API,
    "api:webhook-rotate": API,
    "api:sandbox-journeys": API_OWN,
    "api:not-found": API,
    "api-not-found": API,
    # The API's description is public by design (it holds no data).
    "api-schema": PUBLIC,
    "api-docs": PUBLIC,
}

# Third-party URL sets, classified by where their views live.
# allauth: the login, signup, password and 2FA flows. Public or the user's own by design;
# they are walked like the rest and must never show the owner's data.
LIBRARY_MODULES = ("allauth.",)


@dataclass
class Pattern:
    route: str
    name: str | None
    module: str
    pattern: URLPattern


def all_patterns() -> list[Pattern]:
    found: list[Pattern] = []

    def walk(resolver: URLResolver, prefix: str, namespace: str) -> None:
        for item in resolver.url_patterns:
            if isinstance(item, URLResolver):
                inner = namespace + (f"{item.namespace}:" if item.namespace else "")
                walk(item, prefix + str(item.pattern), inner)
            else:
                name = f"{namespace}{item.name}" if item.name else None
                module = getattr(item.callback, "__module__", "")
                found.append(Pattern(prefix + str(item.pattern), name, module, item))

    walk(get_resolver(), "", "")
    return found


@pytest.fixture
def world(django_capture_on_commit_callbacks) -> dict[str, Any]:
    owner = UserFactory(email="owner.secret@example.com")
    owner.profile.given_name = "Ottoline"
    owner.profile.family_name = "Quimby-Secret"
    owner.profile.save()
    journey = make_journey(owner=owner)
    for key in ("stage-1", "stage-2", "stage-3"):
        journey_record_milestone(
            journey=journey,
            stage_key=key,
            occurred_at=timezone.now() - timedelta(hours=2),
            source=EventSource.STAFF,
        )
    partner = PartnerFactory()
    partner.journeys.add(journey)
    MappingFactory(partner=partner, code="S1", stage_key="stage-1")
    # An event the partner sent, which only that partner may read back.
    InboundEvent.objects.create(
        partner=partner,
        journey=journey,
        event_id="evt-access",
        code="S1",
        occurred_at=timezone.now() - timedelta(hours=2),
    )
    other_partner = PartnerFactory()
    other_partner.journeys.add(make_journey())
    _key, other_key = partner_key_create(partner=other_partner)
    endpoint = webhook_endpoint_create(
        partner=partner, url="https://hooks.example.com/in", event_types=["task.completed"]
    )
    starts = timezone.now().replace(microsecond=0) + timedelta(days=5)
    appointment = Appointment.objects.create(
        journey=journey,
        title="Handover",
        starts_at=starts,
        arrive_at=starts - timedelta(minutes=10),
        place_name="Showroom",
    )
    task = CustomerTask.objects.create(journey=journey, title="Insurance")
    ShipmentLeg.objects.create(
        journey=journey,
        sequence=1,
        mode="ship",
        origin_name="A",
        origin_lat=Decimal(43),
        origin_lon=Decimal(1),
        destination_name="B",
        destination_lat=Decimal(44),
        destination_lon=Decimal(2),
    )
    with django_capture_on_commit_callbacks(execute=True):
        photo = photo_add(journey=journey, milestone=None, file=jpeg(), caption="Chassis")
    address = Address.objects.create(
        profile=owner.profile, label="Home", line1="1 Secret Lane", city="Leeds"
    )
    proposal = ChangeProposal.objects.create(
        user=owner, field="phone", new_value="+447700900123", reason="Typo", source="staff"
    )
    viewer = UserFactory(email="viewer@example.com")
    stranger = UserFactory(email="stranger@example.com")
    share = journey_share_invite(journey=journey, owner=owner, email=viewer.email)
    journey_share_accept(share=share, user=viewer)
    pending = journey_share_invite(journey=journey, owner=owner, email="later@example.com")
    link = share_link_create(journey=journey, owner=owner, days=7)
    staff = UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)
    from accounts.mfa import totp_activate

    totp_activate(user=staff)
    notification = Notification.objects.filter(recipient=owner).first()
    assert notification is not None
    kwargs = {
        "reference": journey.reference,
        "photo_id": photo.pk,
        "variant": "full",
        "name": "timeline",
        "task_id": task.pk,
        "appointment_id": appointment.pk,
        "milestone_id": journey.milestones.get(position=1).pk,
        "section": "personal",
        "address_id": address.pk,
        "proposal_id": proposal.pk,
        "decision": "accept",
        "notification_id": notification.pk,
        "pk": endpoint.pk,
        "sequence": 1,
        "event_id": "evt-access",
        "share_id": pending.pk,
    }
    return {
        "owner": owner,
        "journey": journey,
        "viewer": viewer,
        "stranger": stranger,
        "staff": staff,
        "other_key": other_key,
        "kwargs": kwargs,
        "invitation_token": share_invitation_token(pending),
        "link_token": share_link_token(link),
        "photo": photo,
    }


def url_for(pattern: Pattern, world: dict[str, Any]) -> str:
    if pattern.name == "api:not-found":
        return "/api/v1/nowhere/"
    if pattern.name == "api-not-found":
        return "/api/v2/nowhere/"
    params = set(pattern.pattern.pattern.converters) | set(
        re.findall(r"\(\?P<(\w+)>", str(pattern.pattern.pattern))
    )
    kwargs = {key: world["kwargs"][key] for key in params if key in world["kwargs"]}
    if "token" in params:
        kwargs["token"] = (
            world["invitation_token"]
            if pattern.name == "accounts:invitation"
            else world["link_token"]
        )
    missing = params - set(kwargs)
    assert not missing, f"{pattern.route}: no fixture fills {sorted(missing)}"
    return reverse(pattern.name, kwargs=kwargs)


def client_for(actor: str, world: dict[str, Any]) -> Client:
    if actor == "other_partner":
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {world['other_key']}")
        return client
    client = Client()
    if actor in ("stranger", "viewer", "staff"):
        client.force_login(world[actor])
    return client


def state(world: dict[str, Any]) -> dict[str, object]:
    """Everything a denied request might have changed."""
    return {
        "events": JourneyEvent.objects.count(),
        "messages": Message.objects.count(),
        "feedback": Feedback.objects.count(),
        "reschedules": RescheduleRequest.objects.count(),
        "tasks": list(CustomerTask.objects.values_list("pk", "done_at")),
        "addresses": Address.objects.count(),
        "proposals": list(ChangeProposal.objects.values_list("pk", "state")),
        "shares": list(JourneyShare.objects.values_list("pk", "viewer_id", "revoked_at")),
        "links": list(ShareLink.objects.values_list("pk", "revoked_at")),
        "read": list(Notification.objects.values_list("pk", "read_at")),
        "webhooks": list(WebhookEndpoint.objects.values_list("pk", "secret", "url")),
        "photos": Photo.objects.count(),
        "appointments": Appointment.objects.count(),
        "legs": list(ShipmentLeg.objects.values_list("pk", "eta")),
        "owner": (world["owner"].email, world["owner"].is_active),
    }


def secrets(world: dict[str, Any], actor: str, name: str | None) -> list[str]:
    owner = world["owner"]
    found = [owner.email, owner.profile.family_name, "1 Secret Lane"]
    viewer_page = actor == "viewer" and RULES.get(name or "", {}).get(actor) == "own"
    if not viewer_page and name not in ("public-journey", "public-photo"):
        found.append(world["journey"].reference)
    return found


def check(actor: str, rule: str, response: Any, url: str, method: str) -> str | None:
    status = response.status_code
    where = f"{method} {url} as {actor}: {status}"
    if status >= 500:
        return f"{where} (server error)"
    location = response.get("Location", "")
    to_login = status == 302 and (
        location.startswith(reverse("account_login")) or "/login/" in location
    )
    if rule == "login" and not to_login and status not in (401, 403, 404, 405):
        return f"{where}, expected a redirect to the login"
    if rule == "deny" and not to_login and status not in (401, 403, 404, 405):
        return f"{where}, expected 401/403/404/405 or a login redirect"
    return None


def body_of(response: Any) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("latin-1")
    return response.content.decode("utf-8", "replace")


def test_every_url_pattern_is_classified() -> None:
    unclassified = [
        p.route
        for p in all_patterns()
        if not p.route.startswith("admin/")
        and not p.module.startswith(LIBRARY_MODULES)
        and p.name not in RULES
    ]
    assert not unclassified, (
        "New URL patterns: classify who may reach them in RULES in tests/test_access.py: "
        f"{unclassified}"
    )


def test_nobody_but_the_owner_gets_in(world) -> None:
    before = state(world)
    problems: list[str] = []
    walked = 0
    for pattern in all_patterns():
        if pattern.route.startswith("admin/") or pattern.module.startswith(LIBRARY_MODULES):
            continue
        url = url_for(pattern, world)
        for actor in ACTORS:
            rule = RULES[pattern.name][actor]
            for method in ("get", "post"):
                client = client_for(actor, world)
                response = getattr(client, method)(url, HTTP_HX_REQUEST="true")
                walked += 1
                if problem := check(actor, rule, response, url, method.upper()):
                    problems.append(problem)
                body = body_of(response)
                for secret in secrets(world, actor, pattern.name):
                    if secret in body:
                        problems.append(f"{method.upper()} {url} as {actor} shows {secret!r}")
    assert problems == [], "\n".join(problems)
    assert walked == len(RULES) * len(ACTORS) * 2
    assert state(world) == before


def test_the_owner_reaches_every_page_of_the_walk(world) -> None:
    """The positive control: the ids the walk fills in are the owner's real objects, so a
    404 above is a refusal, not a typo."""
    client = Client()
    client.force_login(world["owner"])
    for pattern in all_patterns():
        rule = RULES.get(pattern.name or "")
        if rule is SHARED or rule is OWN:
            url = url_for(pattern, world)
            response = client.get(url, HTTP_HX_REQUEST="true")
            # POST-only views answer 405 to a GET before they look anything up.
            expected = 405 if response.status_code == 405 else 200
            assert (url, response.status_code) == (url, expected)


def test_library_pages_never_show_the_owner(world) -> None:
    """allauth's pages (login, signup, password, 2FA) as every actor: never a server error,
    never the owner's data."""
    problems = []
    for pattern in all_patterns():
        if not pattern.module.startswith(LIBRARY_MODULES) or pattern.pattern.pattern.converters:
            continue
        if "(?P<" in pattern.route:
            continue
        url = reverse(pattern.name)
        for actor in ("anonymous", "stranger", "viewer"):
            response = client_for(actor, world).get(url)
            if response.status_code >= 500:
                problems.append(f"GET {url} as {actor}: {response.status_code}")
            for secret in secrets(world, actor, pattern.name):
                if secret in body_of(response):
                    problems.append(f"GET {url} as {actor} shows {secret!r}")
    assert problems == []


def test_the_admin_is_for_staff_only(world) -> None:
    """Every model's list and change page in the admin: customers and viewers are sent to
    the login; staff (with two-factor set up) get in."""
    owner_objects = {"user": world["owner"].pk, "journey": world["journey"].pk}
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        if model._meta.model_name in owner_objects:
            args = [owner_objects[model._meta.model_name]]
            urls.append(reverse("admin:{}_{}_change".format(*info), args=args))
    login = reverse("admin:login")
    for actor in ("anonymous", "stranger", "viewer"):
        client = client_for(actor, world)
        for url in urls:
            response = client.get(url)
            assert (url, actor, response.status_code) == (url, actor, 302)
            assert response["Location"].startswith(login)
    staff = client_for("staff", world)
    for url in urls:
        assert (url, staff.get(url).status_code) == (url, 200)


def test_uploaded_files_are_not_served_from_media_url(world, settings) -> None:
    """Photos are served only through the permission-checking views, never as static
    media: the stored path under MEDIA_URL answers 404."""
    path = settings.MEDIA_URL.rstrip("/") + "/" + world["photo"].image.name
    for actor in ("anonymous", "stranger", "viewer", "staff"):
        assert client_for(actor, world).get(path).status_code == 404


def test_a_viewer_cannot_move_an_appointment(world) -> None:
    appointment = Appointment.objects.get(journey=world["journey"])
    url = reverse("journey:reschedule", args=[world["journey"].reference, appointment.pk])
    first = (timezone.now() + timedelta(days=9)).strftime("%Y-%m-%dT%H:%M")
    response = client_for("viewer", world).post(url, {f"r{appointment.pk}-first_choice": first})
    assert response.status_code == 403
    assert RescheduleRequest.objects.count() == 0
