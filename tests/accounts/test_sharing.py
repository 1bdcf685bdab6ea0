"""Viewers follow a journey but see nothing of the owner's; share links show nothing personal."""

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import JourneyShare, ShareLink
from accounts.services import (
    journey_share_invite,
    journey_share_revoke,
    share_from_invitation_token,
    share_invitation_token,
    share_link_create,
    share_link_revoke,
)
from journey.errors import ApplicationError
from journey.models import EventSource, Message
from journey.photos import photo_add
from journey.public import share_link_token
from journey.services import journey_record_milestone
from notifications.models import Notification
from tests.factories import UserFactory, make_journey
from tests.journey.test_views import jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer():
    return UserFactory(email="friend@example.com")


@pytest.fixture
def accepted(client, journey, customer, viewer):
    share = journey_share_invite(journey=journey, owner=customer, email="Friend@Example.com")
    client.force_login(viewer)
    token = share_invitation_token(share)
    response = client.post(reverse("accounts:invitation", args=[token]))
    assert response.status_code == 302
    share.refresh_from_db()
    return share


def test_an_invitation_is_emailed_and_accepted_by_the_invited_address(
    client, journey, customer, viewer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        share = journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    assert mail.outbox[0].to == ["friend@example.com"]
    token = re.search(r"/invitations/([^/\s]+)/", mail.outbox[0].body).group(1)
    assert share_from_invitation_token(token) == share

    client.force_login(viewer)
    assert client.get(reverse("journey:detail", args=[journey.reference])).status_code == 404
    client.post(reverse("accounts:invitation", args=[token]))
    assert client.get(reverse("journey:detail", args=[journey.reference])).status_code == 200
    assert journey.reference in client.get(reverse("journey:home")).content.decode()
    # The link opened again: the journey, not the invitation to accept once more.
    again = client.get(reverse("accounts:invitation", args=[token]))
    assert again.status_code == 302
    assert again["Location"] == reverse("journey:detail", args=[journey.reference])


def test_someone_else_cannot_accept_the_invitation(client, journey, customer):
    share = journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    client.force_login(UserFactory(email="stranger@example.com"))
    response = client.post(reverse("accounts:invitation", args=[share_invitation_token(share)]))
    assert response.status_code == 403
    share.refresh_from_db()
    assert share.viewer is None
    assert client.get(reverse("journey:detail", args=[journey.reference])).status_code == 404
    forged = client.get(reverse("accounts:invitation", args=["forged-token"]))
    assert forged.status_code == 404


def test_a_viewer_cannot_reach_the_owners_profile_export_or_sharing(client, journey, accepted):
    # A name no page could contain by chance (a random one may be "Mark" or "May").
    journey.owner.profile.given_name = "Zebedee"
    journey.owner.profile.save()
    # The viewer's own profile page is theirs, never the owner's.
    page = client.get(reverse("accounts:profile")).content.decode()
    assert journey.owner.profile.given_name not in page
    assert journey.owner.email not in page
    assert client.get(reverse("accounts:sharing", args=[journey.reference])).status_code == 404
    export = client.post(reverse("accounts:export"))
    assert journey.reference.encode() not in export.content  # only the viewer's own data
    detail = client.get(reverse("journey:detail", args=[journey.reference])).content.decode()
    assert reverse("accounts:sharing", args=[journey.reference]) not in detail


def test_a_viewer_does_not_see_private_messages(client, journey, accepted):
    Message.objects.create(journey=journey, author=journey.owner, body="Public note")
    Message.objects.create(
        journey=journey, author=journey.owner, body="My bank details are…", private=True
    )
    from journey.selectors import journey_messages

    viewer_view = [m.body for m in journey_messages(journey=journey, user=accepted.viewer)]
    owner_view = [m.body for m in journey_messages(journey=journey, user=journey.owner)]
    assert viewer_view == ["Public note"]
    assert owner_view == ["Public note", "My bank details are…"]


def test_the_owner_revokes_an_invitation(client, journey, customer, accepted):
    journey_share_revoke(share=accepted, owner=customer)
    assert client.get(reverse("journey:detail", args=[journey.reference])).status_code == 404


def test_a_withdrawn_invitation_says_so_and_whom_to_ask(client, journey, customer, viewer):
    """A walk-through opened a revoked invitation and read "Not found"."""
    customer.profile.given_name, customer.profile.family_name = "Alex", "Morgan"
    customer.profile.save()
    share = journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    journey_share_revoke(share=share, owner=customer)
    client.force_login(viewer)
    url = reverse("accounts:invitation", args=[share_invitation_token(share)])
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 410
        page = response.content.decode()
        assert "This invitation was withdrawn" in page
        assert f"Alex Morgan no longer shares “{journey.title}”" in page
    share.refresh_from_db()
    assert share.viewer is None
    # Anyone else holding the link reads that it no longer works, and nothing more.
    client.force_login(UserFactory(email="stranger@example.com"))
    page = client.get(url).content.decode()
    assert "This link no longer works." in page
    assert "Alex Morgan" not in page and journey.title not in page
    # Its owner is taken to the journey.
    client.force_login(customer)
    assert client.get(url)["Location"] == reverse("journey:detail", args=[journey.reference])
    client.force_login(viewer)
    # Invited again: the old link says the new email's link works.
    again = journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    page = client.get(url).content.decode()
    assert "You were invited again since: open the link in the latest invitation email." in page
    assert "ask Alex Morgan" not in page
    # Accepted: the old link opens the journey, as an accepted one does.
    client.post(reverse("accounts:invitation", args=[share_invitation_token(again)]))
    opened = client.get(url)
    assert opened.status_code == 302
    assert opened["Location"] == reverse("journey:detail", args=[journey.reference])


def test_an_expired_invitation_says_so_and_whom_to_ask(client, journey, customer, viewer):
    share = journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    token = share_invitation_token(share)
    url = reverse("accounts:invitation", args=[token])
    with time_machine.travel(timezone.now() + timedelta(days=29)):
        client.force_login(viewer)
        assert client.get(url).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        client.force_login(viewer)  # signed in again, a month on
        expired = client.get(url)
        assert expired.status_code == 410
        page = expired.content.decode()
        assert "This invitation has expired" in page
        assert f"An invitation to follow “{journey.title}” is valid for 30 days." in page
        assert f"Ask {customer.get_full_name()} to invite you again" in page
        assert client.post(url).status_code == 410
        share.refresh_from_db()
        assert share.viewer is None
        # A link of ours for an invitation deleted since (its journey deleted) is not found.
        journey.delete()
        assert client.get(url).status_code == 404


def _sign_up_from(client, url: str, email: str) -> str:
    """Follows an invitation's link signed out, signs up from the page it shows, and
    returns the path of the confirmation email's link."""
    page = client.get(url)
    assert page.status_code == 200
    signup = re.search(r'href="([^"]*/signup/[^"]*)"', page.content.decode())
    signup_url = signup.group(1).replace("&amp;", "&")
    mail.outbox.clear()
    answer = client.post(
        signup_url,
        {"email": email, "password1": "a-long-new-pass-7", "password2": "a-long-new-pass-7"},
        follow=True,
    )
    # Waiting for the confirmation, with a way on for one made on another device.
    assert answer.redirect_chain[-1][0] == reverse("account_email_verification_sent")
    assert 'Confirmed it on another device? <a href="/accounts/login/">Sign in here</a>.' in (
        answer.content.decode()
    )
    return re.search(r"https?://[^/\s]+(/accounts/confirm-email/\S+)", mail.outbox[-1].body).group(
        1
    )


def test_a_link_opened_signed_out_says_what_it_is_and_how_to_accept(client, journey, customer):
    """A walk-through opened its invitation signed out and landed on a bare sign-in page
    that said nothing of it. It reads the journey's title and the invited address, with
    sign-in and sign-up links that come back to it; nothing of the owner's."""
    share = journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    url = reverse("accounts:invitation", args=[share_invitation_token(share)])
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert f"Follow “{journey.title}”" in html
    # The address masked: its invitee knows it, someone the email was forwarded to
    # need not; kept by no proxy, indexed by nobody.
    assert "To accept, sign in or create an account with f•••@example.com." in html
    assert "friend@example.com" not in html
    assert page["Cache-Control"] == "private, no-store"
    assert page["X-Robots-Tag"] == "noindex"
    back = f"?next={quote(url)}"
    for where in ("account_login", "account_signup"):
        assert f'href="{reverse(where)}{back}"' in html
    assert customer.email not in html and customer.profile.family_name not in html
    assert "Accept the invitation" not in html
    # Accepting, or a link that no longer works, goes to the sign-in first: what it says
    # depends on who signs in.
    forged = reverse("accounts:invitation", args=[share_invitation_token(share) + "x"])
    for response in (client.post(url), client.get(forged)):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))
    journey_share_revoke(share=share, owner=customer)
    assert client.get(url)["Location"].startswith(reverse("account_login"))
    share.refresh_from_db()
    assert share.viewer is None


def test_an_invitee_who_signs_up_from_the_link_is_taken_back_to_it(
    client, journey, customer, django_capture_on_commit_callbacks
):
    """A walk-through signed up from an invitation's link, confirmed its address and
    landed on the home page, the link forgotten."""
    share = journey_share_invite(journey=journey, owner=customer, email="new@example.com")
    url = reverse("accounts:invitation", args=[share_invitation_token(share)])
    with django_capture_on_commit_callbacks(execute=True):
        confirm = _sign_up_from(client, url, "new@example.com")
    asked = client.get(confirm).content.decode()
    assert "Please confirm that new@example.com is your email address." in asked
    confirmed = client.post(confirm)  # in the browser that signed up: signed in, and on
    assert confirmed.status_code == 302
    assert confirmed["Location"] == url
    assert "Accept the invitation" in client.get(url).content.decode()
    accepted = client.post(url, follow=True)
    assert accepted.redirect_chain == [(reverse("journey:detail", args=[journey.reference]), 302)]
    assert f"You now follow “{journey.title}”." in accepted.content.decode()
    again = client.post(url, follow=True)  # the form sent again: nothing new to say
    assert "You now follow" not in again.content.decode()
    share.refresh_from_db()
    assert share.viewer.email == "new@example.com"


def test_an_invitation_waits_in_the_portal_for_an_address_confirmed_elsewhere(
    client, journey, customer, django_capture_on_commit_callbacks, django_assert_num_queries
):
    """Confirmed in another browser (a phone's mail app), nobody is signed in (allauth
    signs in only the session that signed up); signed in, the home page offers it."""
    customer.profile.given_name, customer.profile.family_name = "Alex", "Morgan"
    customer.profile.save()
    share = journey_share_invite(journey=journey, owner=customer, email="new@example.com")
    url = reverse("accounts:invitation", args=[share_invitation_token(share)])
    with django_capture_on_commit_callbacks(execute=True):
        confirm = _sign_up_from(client, url, "new@example.com")
    elsewhere = Client()
    confirmed = elsewhere.post(confirm)
    assert confirmed["Location"] == reverse("account_login")
    assert elsewhere.get(reverse("journey:home")).status_code == 302  # signed in nowhere
    elsewhere.login(email="new@example.com", password="a-long-new-pass-7")
    home = elsewhere.get(reverse("journey:home")).content.decode()
    assert f"Alex Morgan invited you to follow “{journey.title}”" in home
    assert "Nothing on its way yet" not in home
    accept = reverse("accounts:invitation-accept", args=[share.pk])
    assert f'action="{accept}"' in home
    accepted = elsewhere.post(accept, follow=True)
    assert accepted.redirect_chain == [(reverse("journey:detail", args=[journey.reference]), 302)]
    assert f"You now follow “{journey.title}”." in accepted.content.decode()
    home = elsewhere.get(reverse("journey:home")).content.decode()
    assert "invited you" not in home
    # Followed, not theirs: said so on the list and the page (a walk-through could not
    # tell a friend's car from its own broadband).
    assert f'{journey.title}</a> <span class="pill">Shared with you</span>' in home
    page = elsewhere.get(reverse("journey:detail", args=[journey.reference])).content.decode()
    assert '<span class="pill">Shared with you</span>' in page
    # Accepted already (a second tab): the journey, nothing changed.
    assert elsewhere.post(accept)["Location"] == reverse("journey:detail", args=[journey.reference])
    # The list costs one query, whatever it holds.
    with CaptureQueriesContext(connection) as none_waiting:
        elsewhere.get(reverse("journey:home"))
    for other in (make_journey(owner=customer) for _ in range(3)):
        journey_share_invite(journey=other, owner=customer, email="New@Example.com")
    with django_assert_num_queries(len(none_waiting.captured_queries)):
        home = elsewhere.get(reverse("journey:home")).content.decode()
    assert home.count("invited you to follow") == 3


def test_an_invitation_someone_else_accepted_is_not_offered_again(client, journey, customer):
    """An account accepted, then changed its address; a new account with the old address
    does not see, nor accept, the invitation the first one holds."""
    share = journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    first = UserFactory(email="friend@example.com")
    client.force_login(first)
    client.post(reverse("accounts:invitation-accept", args=[share.pk]))
    first.email = "friend.new@example.com"
    first.save()
    client.force_login(UserFactory(email="friend@example.com"))
    assert "invited you" not in client.get(reverse("journey:home")).content.decode()
    assert client.post(reverse("accounts:invitation-accept", args=[share.pk])).status_code == 404
    # Nor through the email's link: not found, where it offered "Accept" and opened a 404.
    url = reverse("accounts:invitation", args=[share_invitation_token(share)])
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    share.refresh_from_db()
    assert share.viewer == first
    # Its owner, or someone who follows the journey by another invitation, opening the
    # used link: the journey (a walk-through's follower read a bare 404).
    for follower in (customer, first):
        client.force_login(follower)
        assert client.get(url)["Location"] == reverse("journey:detail", args=[journey.reference])
    # Signed out, the accepted link shows nothing: the sign-in first, saying why.
    client.logout()
    response = client.get(url, follow=True)
    assert response.redirect_chain[0][0].startswith(reverse("account_login"))
    assert "Sign in to open this invitation." in response.content.decode()


def test_a_waiting_invitation_names_its_inviter_by_name_only(client, journey, customer, viewer):
    customer.profile.given_name = customer.profile.family_name = ""
    customer.profile.save()
    journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    client.force_login(viewer)
    home = client.get(reverse("journey:home")).content.decode()
    assert f"You are invited to follow “{journey.title}”" in home
    assert customer.email not in home


def test_only_live_invitations_to_the_address_wait(client, journey, customer, viewer):
    revoked = journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    journey_share_revoke(share=revoked, owner=customer)
    elsewhere = journey_share_invite(
        journey=make_journey(owner=customer), owner=customer, email="someone@example.com"
    )
    old_journey = make_journey(owner=customer)
    with time_machine.travel(timezone.now() - timedelta(days=31)):
        old = journey_share_invite(journey=old_journey, owner=customer, email="friend@example.com")
    client.force_login(viewer)
    assert "invited you" not in client.get(reverse("journey:home")).content.decode()
    accept = "accounts:invitation-accept"
    # Not theirs: not found, and still waiting for its invitee.
    assert client.post(reverse(accept, args=[elsewhere.pk])).status_code == 404
    elsewhere.refresh_from_db()
    assert elsewhere.viewer is None
    # Theirs, but withdrawn or past its age: the pages a link to them gets.
    gone = client.post(reverse(accept, args=[revoked.pk]))
    assert gone.status_code == 410
    assert "This invitation was withdrawn" in gone.content.decode()
    gone = client.post(reverse(accept, args=[old.pk]))
    assert gone.status_code == 410
    assert "This invitation has expired" in gone.content.decode()
    old.refresh_from_db()
    assert old.viewer is None
    # Accepting is a POST.
    assert client.get(reverse(accept, args=[old.pk])).status_code == 405


def test_an_inviter_without_a_name_is_not_named_by_their_email(client, journey, customer, viewer):
    """``get_full_name`` falls back to the email address: the page never shows that."""
    customer.profile.given_name = customer.profile.family_name = ""
    customer.profile.save()
    share = journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    journey_share_revoke(share=share, owner=customer)
    client.force_login(viewer)
    page = client.get(reverse("accounts:invitation", args=[share_invitation_token(share)]))
    assert page.status_code == 410
    html = page.content.decode()
    assert customer.email not in html
    assert f"“{journey.title}” is no longer shared through this invitation." in html
    assert "ask the person who invited you" in html


def test_revoking_says_whether_an_invitation_or_a_follower_was_stopped(
    client, journey, customer, accepted
):
    """A walk-through revoked a viewer who followed the journey and read "Invitation
    revoked"."""
    pending = journey_share_invite(journey=journey, owner=customer, email="later@example.com")
    client.force_login(customer)
    url = reverse("accounts:sharing", args=[journey.reference])
    for share, said in (
        (pending, "Invitation withdrawn."),
        (accepted, f"{accepted.email} no longer follows this journey."),
    ):
        page = client.post(
            url, {"action": "revoke-share", "id": share.pk, "confirm": "yes"}, follow=True
        )
        assert said in page.content.decode()
    assert not JourneyShare.objects.filter(revoked_at__isnull=True).exists()


def test_a_revoke_is_asked_once_more_at_its_invitation_or_link(client, journey, customer, accepted):
    """A click on "Revoke" took a follower's access away at once, with nothing to stop
    a slip of the finger."""
    link = share_link_create(journey=journey, owner=customer, days=7)
    client.force_login(customer)
    url = reverse("accounts:sharing", args=[journey.reference])

    asked = client.post(url, {"action": "revoke-share", "id": accepted.pk})
    assert asked.status_code == 200
    html = asked.content.decode()
    assert f"Stop sharing it with {accepted.email}? They will no longer see it." in html
    assert 'name="confirm" value="yes"' in html
    assert html.count('name="confirm"') == 1  # at that follower only
    asked = client.post(url, {"action": "revoke-link", "id": link.pk}).content.decode()
    assert "Anyone who has it will no longer be able to open it." in asked
    accepted.refresh_from_db()
    link.refresh_from_db()
    assert accepted.revoked_at is None and link.revoked_at is None  # nothing taken yet

    assert (
        client.post(url, {"action": "revoke-link", "id": link.pk, "confirm": "yes"}).status_code
        == 302
    )
    link.refresh_from_db()
    assert link.revoked_at is not None
    pending = journey_share_invite(journey=journey, owner=customer, email="later@example.com")
    asked = client.post(url, {"action": "revoke-share", "id": pending.pk}).content.decode()
    assert "Withdraw the invitation to later@example.com? Its link will stop working." in asked


def test_the_owner_is_told_who_accepted_their_invitation(
    client, journey, customer, viewer, django_capture_on_commit_callbacks
):
    viewer.profile.given_name, viewer.profile.family_name = "Sam", "Rivera"
    viewer.profile.save()
    share = journey_share_invite(journey=journey, owner=customer, email="friend@example.com")
    client.force_login(viewer)
    token = share_invitation_token(share)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("accounts:invitation", args=[token]))
        client.post(reverse("accounts:invitation", args=[token]))  # opened twice: told once
    [told] = [m for m in mail.outbox if m.to == [customer.email]]
    assert told.subject == f"Sam Rivera now follows “{journey.title}”"
    assert "Sam Rivera accepted your invitation" in told.body
    assert reverse("accounts:sharing", args=[journey.reference]) in told.body
    # The sharing page names them so too, with the address the owner typed.
    client.force_login(customer)
    page = client.get(reverse("accounts:sharing", args=[journey.reference])).content.decode()
    assert "Sam Rivera (friend@example.com)" in page
    client.force_login(viewer)

    # An account without a name yet: the address the owner typed.
    other = UserFactory(email="nameless@example.com")
    other.profile.given_name = other.profile.family_name = ""
    other.profile.save()
    share = journey_share_invite(journey=journey, owner=customer, email=other.email)
    client.force_login(other)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("accounts:invitation", args=[share_invitation_token(share)]))
    # (Held for the owner's digest, a second message so soon: the row says it.)
    latest = Notification.objects.filter(kind="share_accepted", channel="email").latest("pk")
    assert latest.context == {"follower": "nameless@example.com"}


@pytest.mark.parametrize("email", ["not-an-address", "", "a@b"])
def test_an_invitation_to_an_invalid_address_is_a_form_error(client, journey, customer, email):
    client.force_login(customer)
    response = client.post(
        reverse("accounts:sharing", args=[journey.reference]), {"action": "invite", "email": email}
    )
    assert response.status_code == 422
    assert "field__error" in response.content.decode()
    assert JourneyShare.objects.count() == 0


def test_only_the_owner_shares(journey):
    with pytest.raises(ApplicationError):
        journey_share_invite(journey=journey, owner=UserFactory(), email="x@example.com")
    with pytest.raises(ApplicationError):
        share_link_create(journey=journey, owner=UserFactory(), days=7)
    assert JourneyShare.objects.count() == 0 and ShareLink.objects.count() == 0


def personal_data(customer) -> list[str]:
    profile = customer.profile
    return [customer.email, profile.given_name, profile.family_name, "+447911123456", "Secret St"]


def test_a_share_link_shows_progress_and_photos_but_nothing_personal(client, journey, customer):
    # Names no page text can contain by chance: a Faker name that is also a word of the
    # page (a "Hope" or a "Grace") would fail the test for nothing.
    customer.profile.given_name, customer.profile.family_name = "Ottoline", "Quimby-Secret"
    customer.profile.phone = "+447911123456"
    customer.profile.save()
    customer.profile.addresses.create(label="Home", line1="1 Secret St", city="Bristol")
    Message.objects.create(journey=journey, author=customer, body="A message to staff")
    slot = timezone.now() + timedelta(days=3)
    journey.appointments.create(
        title="Handover",
        starts_at=slot,
        arrive_at=slot - timedelta(minutes=10),
        place_name="Showroom",
        address="9 Secret St",
    )
    journey_record_milestone(
        journey=journey, stage_key="stage-2", occurred_at=timezone.now(), source=EventSource.STAFF
    )
    photo = photo_add(journey=journey, milestone=journey.milestones.get(position=2), file=jpeg())
    link = share_link_create(journey=journey, owner=customer, days=7)
    url = reverse("public-journey", args=[share_link_token(link)])

    response = client.get(url)  # no login
    assert response.status_code == 200
    html = response.content.decode()
    assert "Stage 2" in html and "step 2 of 4" in html
    for value in [*personal_data(customer), "A message to staff", "Handover"]:
        assert value not in html
    photo_url = reverse("public-photo", args=[share_link_token(link), photo.pk, "thumb"])
    assert photo_url in html
    assert client.get(photo_url).status_code == 200
    assert response["Cache-Control"] == "private, no-store"


def test_a_share_link_stops_working_when_revoked_or_expired(client, journey, customer):
    photo = photo_add(journey=journey, milestone=None, file=jpeg())
    revoked = share_link_create(journey=journey, owner=customer, days=1)
    token = share_link_token(revoked)
    share_link_revoke(link=revoked, owner=customer)
    assert client.get(reverse("public-journey", args=[token])).status_code == 404
    assert client.get(reverse("public-photo", args=[token, photo.pk, "full"])).status_code == 404

    expiring = share_link_create(journey=journey, owner=customer, days=1)
    token = share_link_token(expiring)
    assert client.get(reverse("public-journey", args=[token])).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=1, seconds=1)):
        assert client.get(reverse("public-journey", args=[token])).status_code == 404
    assert client.get(reverse("public-journey", args=["tampered"])).status_code == 404


def test_a_share_link_shows_only_its_own_journeys_photos(client, journey, customer):
    from tests.factories import make_journey

    other = make_journey()
    photo = photo_add(journey=other, milestone=None, file=jpeg())
    link = share_link_create(journey=journey, owner=customer, days=7)
    url = reverse("public-photo", args=[share_link_token(link), photo.pk, "full"])
    assert client.get(url).status_code == 404


def test_the_sharing_page_makes_and_lists_links(client, journey, customer):
    client.force_login(customer)
    response = client.post(
        reverse("accounts:sharing", args=[journey.reference]), {"action": "link", "days": "7"}
    )
    assert response.status_code == 302
    page = client.get(reverse("accounts:sharing", args=[journey.reference])).content.decode()
    link = ShareLink.objects.get()
    assert share_link_token(link) in page
    bad = client.post(
        reverse("accounts:sharing", args=[journey.reference]), {"action": "link", "days": "365"}
    )
    assert bad.status_code == 422
    assert ShareLink.objects.count() == 1


def _senders(client, journey) -> list[tuple[str, str]]:
    """(the name a message is shown under, its body), in the order the page shows them."""
    page = client.get(reverse("journey:detail", args=[journey.reference])).content.decode()
    return [
        (sender.strip(), body.strip())
        for sender, body in re.findall(
            r'class="message__meta">([^<·]+)·.*?class="message__body">([^<]*)</p>', page, re.S
        )
    ]


def test_the_conversation_says_who_wrote_each_message(client, journey, customer, accepted):
    viewer = accepted.viewer
    Message.objects.create(journey=journey, author=customer, body="Where is my car?")
    Message.objects.create(journey=journey, author=viewer, body="Hi, Sam here")
    Message.objects.create(journey=journey, author=None, from_staff=True, body="On the ship")

    client.force_login(customer)
    page = client.get(reverse("journey:detail", args=[journey.reference])).content.decode()
    assert _senders(client, journey) == [
        ("You", "Where is my car?"),
        ("A viewer", "Hi, Sam here"),
        (settings.COMPANY_NAME, "On the ship"),
    ]
    assert viewer.email not in page
    client.force_login(viewer)
    page = client.get(reverse("journey:detail", args=[journey.reference])).content.decode()
    assert _senders(client, journey) == [
        ("The owner", "Where is my car?"),
        ("You", "Hi, Sam here"),
        (settings.COMPANY_NAME, "On the ship"),
    ]
    assert customer.email not in page


def test_a_share_link_has_a_copy_button_for_browsers_that_can(client, journey, customer):
    """Hidden in the page, shown by portal.js where the clipboard can be written
    (tests/e2e tries it in Chromium)."""
    share_link_create(journey=journey, owner=customer, days=7)
    client.force_login(customer)
    page = client.get(reverse("accounts:sharing", args=[journey.reference])).content.decode()
    assert re.search(r'<button type="button"[^>]*data-copy-from="link-\d+"[^>]*hidden>', page)
    assert re.search(r'<script src="[^"]*portal[^"]*\.js" nonce="[^"]+" defer>', page)


def test_the_shared_routes_numbers_keep_their_points_in_spanish(client, customer):
    from tests.journey.test_views import assert_svg_numbers_have_points, fill

    journey = make_journey(owner=customer)
    fill(journey, count=2)
    link = share_link_create(journey=journey, owner=customer, days=7)
    url = reverse("public-journey", args=[share_link_token(link)])
    html = client.get(url, headers={"Accept-Language": "es"}).content.decode()
    assert '<html lang="es">' in html
    assert_svg_numbers_have_points(html)


@pytest.mark.parametrize("has_account", [True, False])
def test_an_invitation_is_written_in_its_readers_language(
    journey, customer, has_account, django_capture_on_commit_callbacks
):
    """It went out in the site's language, though the invited account reads Spanish (a
    user's walk-through). An address with an account gets its language; one without,
    the language of the owner who invited them."""
    if has_account:
        invited = UserFactory(email="sam@example.com")
        invited.profile.language = "es"
        invited.profile.save()
    else:
        customer.profile.language = "es"
        customer.profile.save()
    with django_capture_on_commit_callbacks(execute=True):
        journey_share_invite(journey=journey, owner=customer, email="Sam@Example.com")
    (sent,) = mail.outbox
    assert sent.body.startswith("Hola:")
