"""The customer's own record in the portal: profile, proposals, history, sharing, privacy."""

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from accounts import privacy, services
from accounts.forms import (
    SECTIONS,
    AddressForm,
    DeleteAccountForm,
    InviteForm,
    ShareLinkForm,
    section_form,
)
from accounts.models import (
    Address,
    ChangeProposal,
    JourneyShare,
    ProposalState,
    ShareLink,
    Source,
    invitations_made_since,
)
from journey.errors import ApplicationError
from journey.models import Health
from journey.selectors import journeys_owned_by, journeys_visible_to


def _profile_context(request: HttpRequest) -> dict[str, object]:
    profile = services.profile_ensure(user=request.user)
    return {
        "profile": profile,
        "addresses": list(profile.addresses.all()),
        "proposals": list(
            ChangeProposal.objects.filter(user=request.user, state=ProposalState.PENDING)
        ),
        "sections": list(SECTIONS),
        "address_form": AddressForm(),
    }


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    context = _profile_context(request)
    editing = request.GET.get("edit")
    if editing in SECTIONS:
        context["editing"] = editing
        context["form"] = section_form(editing, instance=context["profile"])
    return render(request, "accounts/profile.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def profile_section(request: HttpRequest, section: str) -> HttpResponse:
    """One section of the profile: shown, edited in place (HTMX) or saved."""
    if section not in SECTIONS:
        raise Http404("No such section.")
    profile_obj = services.profile_ensure(user=request.user)
    template = "accounts/profile.html#section"
    if request.method == "GET":
        editing = request.GET.get("edit") == "1"
        form = section_form(section, instance=profile_obj) if editing else None
        if not request.htmx:
            return redirect(reverse("accounts:profile") + (f"?edit={section}" if editing else ""))
        return render(
            request,
            template,
            {"section": section, "profile": profile_obj, "form": form, "editing": editing},
        )
    form = section_form(section, instance=profile_obj, data=request.POST)
    if not form.is_valid():
        context = _profile_context(request) | {"editing": section, "form": form}
        if request.htmx:
            context |= {"section": section}
            return render(request, template, context, status=422)
        return render(request, "accounts/profile.html", context, status=422)
    changed = services.profile_update(
        profile=profile_obj,
        changes={name: form.cleaned_data[name] for name in form.fields},
        actor=request.user,
        source=Source.CUSTOMER,
    )
    profile_obj.refresh_from_db()
    if not request.htmx or "language" in changed:
        with translation.override(profile_obj.language):  # said in the page's language
            messages.success(request, _("Saved.") if changed else _("Nothing changed."))
        if request.htmx:
            # The whole page, menu included, is in the other language now: load it again
            # (in it; the message waits for it) rather than swap one section.
            return HttpResponseClientRefresh()
        return redirect("accounts:profile")
    return render(
        request,
        template,
        {"section": section, "profile": profile_obj, "editing": False, "saved": bool(changed)},
    )


@login_required
@require_POST
def address_add(request: HttpRequest) -> HttpResponse:
    profile_obj = services.profile_ensure(user=request.user)
    form = AddressForm(request.POST, profile=profile_obj)
    if form.is_valid():
        try:
            services.address_add(profile=profile_obj, data=form.cleaned_data, actor=request.user)
        except ApplicationError as error:
            form.add_error("label" if "label" in error.fields else None, error.message)
    if not form.is_valid():
        context = _profile_context(request) | {"address_form": form}
        return render(request, "accounts/profile.html", context, status=422)
    messages.success(request, _("Address added."))
    return redirect(reverse("accounts:profile") + "#addresses")


@login_required
@require_POST
def address_remove(request: HttpRequest, address_id: int) -> HttpResponse:
    address = get_object_or_404(Address, pk=address_id, profile__user=request.user)
    services.address_remove(address=address, actor=request.user)
    messages.success(request, _("Address removed."))
    return redirect(reverse("accounts:profile") + "#addresses")


@login_required
@require_POST
def proposal_decide(request: HttpRequest, proposal_id: int, decision: str) -> HttpResponse:
    proposal = get_object_or_404(ChangeProposal, pk=proposal_id, user=request.user)
    if decision not in {"accept", "decline"}:
        raise Http404("No such decision.")
    try:
        services.proposal_decide(proposal=proposal, user=request.user, accept=decision == "accept")
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request, _("Change accepted.") if decision == "accept" else _("Change declined.")
        )
    if request.htmx:
        return HttpResponseClientRedirect(reverse("accounts:profile"))
    return redirect("accounts:profile")


@login_required
def history(request: HttpRequest) -> HttpResponse:
    changes = request.user.profile_changes.select_related("actor")[:500]
    return render(request, "accounts/history.html", {"changes": changes})


# --- Sharing ---------------------------------------------------------------------------


def _owned_journey(request: HttpRequest, reference: str):
    journey = journeys_owned_by(user=request.user).filter(reference=reference).first()
    if journey is None:
        raise Http404("No such journey.")
    return journey


@login_required
@require_http_methods(["GET", "POST"])
def sharing(request: HttpRequest, reference: str) -> HttpResponse:
    """The owner invites viewers and makes share links."""
    journey = _owned_journey(request, reference)
    invite_form = InviteForm()
    link_form = ShareLinkForm()
    status = 200
    # A revoke asked for is confirmed first (``confirm=yes``): the page again, asking
    # at that invitation or link.
    confirming: dict[str, int] = {}
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "invite":
                invite_form = InviteForm(request.POST)
                if invite_form.is_valid():
                    services.journey_share_invite(
                        journey=journey, owner=request.user, email=invite_form.cleaned_data["email"]
                    )
                    messages.success(request, _("Invitation sent."))
                    return redirect("accounts:sharing", reference=reference)
            elif action == "link":
                link_form = ShareLinkForm(request.POST)
                if link_form.is_valid():
                    services.share_link_create(
                        journey=journey, owner=request.user, days=link_form.cleaned_data["days"]
                    )
                    messages.success(request, _("Link made."))
                    return redirect("accounts:sharing", reference=reference)
            elif action == "revoke-share":
                share = get_object_or_404(JourneyShare, pk=_posted_id(request), journey=journey)
                if request.POST.get("confirm") == "yes":
                    services.journey_share_revoke(share=share, owner=request.user)
                    if share.accepted_at is None:
                        messages.success(request, _("Invitation withdrawn."))
                    else:  # they were following it
                        messages.success(
                            request,
                            _("%(email)s no longer follows this journey.") % {"email": share.email},
                        )
                    return redirect("accounts:sharing", reference=reference)
                confirming["share"] = share.pk
            elif action == "revoke-link":
                link = get_object_or_404(ShareLink, pk=_posted_id(request), journey=journey)
                if request.POST.get("confirm") == "yes":
                    services.share_link_revoke(link=link, owner=request.user)
                    messages.success(request, _("Link revoked."))
                    return redirect("accounts:sharing", reference=reference)
                confirming["link"] = link.pk
            else:
                raise Http404("No such action.")
        except ApplicationError as error:
            target = invite_form if action == "invite" else link_form
            target.add_error(None, error.message)
        # A form's errors shown (422), or a revoke's question asked (200).
        status = 200 if confirming else 422
    now = timezone.now()
    links = [(link, public_link_url(request, link)) for link in journey.share_links.all()]
    return render(
        request,
        "accounts/sharing.html",
        {
            "journey": journey,
            "invite_form": invite_form,
            "link_form": link_form,
            # A follower by their name, as the message of their acceptance named them.
            "shares": journey.shares.filter(revoked_at__isnull=True).select_related(
                "viewer__profile"
            ),
            "links": links,
            "now": now,
            "confirming": confirming,
        },
        status=status,
    )


def _posted_id(request: HttpRequest) -> int:
    try:
        return int(request.POST.get("id", ""))
    except ValueError as error:
        raise Http404("No such item.") from error


def public_link_url(request: HttpRequest, link: ShareLink) -> str:
    from journey.public import share_link_token

    return request.build_absolute_uri(
        reverse("public-journey", kwargs={"token": share_link_token(link)})
    )


def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The invitee follows the link in their email; accepting needs the invited address.
    A link withdrawn by the owner or past its age says so, and whom to ask (410), rather
    than "not found"; one that is not ours is not found."""
    if request.user.is_authenticated:
        response = _invitation_signed_in(request, token)
    else:
        response = _invitation_signed_out(request, token)
    # Its address holds the token, its page the invited address: kept by no proxy and
    # indexed by nobody, as a share link's page.
    response["Cache-Control"] = "private, no-store"
    response["X-Robots-Tag"] = "noindex"
    return response


def _invitation_signed_in(request: HttpRequest, token: str) -> HttpResponse:
    try:
        share = services.share_from_invitation_token(token)
    except services.InvitationExpired as expired:
        if expired.share is None:
            raise Http404("No such invitation.") from None
        return _invitation_gone(request, expired.share, expired=True)
    if share is None:
        raise Http404("No such invitation.")
    if share.revoked_at is not None:
        return _invitation_gone(request, share, expired=False)
    if share.viewer_id not in (None, request.user.pk):
        # Accepted by another account (one that had this address before, or the link
        # forwarded): whoever may see the journey goes to it, anyone else finds nothing.
        if _sees(request, share):
            return redirect("journey:detail", reference=share.journey.reference)
        raise Http404("No such invitation.")
    if request.method == "POST":
        newly = share.viewer_id is None
        try:
            services.journey_share_accept(share=share, user=request.user)
        except ApplicationError as error:
            if error.status == 404:
                raise Http404(error.message) from error
            messages.error(request, error.message)
            return render(
                request,
                "accounts/invitation.html",
                {"share": share, "invitee": _invitee(request, share)},
                status=403,
            )
        if newly:
            _say_followed(request, share)
        return redirect("journey:detail", reference=share.journey.reference)
    if share.viewer_id == request.user.pk:
        # Accepted already (the link opened again from the email): the journey itself.
        return redirect("journey:detail", reference=share.journey.reference)
    return render(
        request, "accounts/invitation.html", {"share": share, "invitee": _invitee(request, share)}
    )


def _invitation_signed_out(request: HttpRequest, token: str) -> HttpResponse:
    """Signed out, a live invitation says what it is and how to accept it: sign in, or
    sign up, with the invited address, the link kept as ``next`` (a walk-through landed
    on a bare sign-in page). Nothing of the owner's: whoever holds the link reads it.
    The invited address is masked ("f•••@example.com": its invitee knows it; someone
    the email was forwarded to need not). Anything else (a link gone, accepted, or not
    ours) goes to the sign-in first, since what it says depends on who signs in."""
    try:
        share = services.share_from_invitation_token(token)
    except services.InvitationExpired:
        share = None
    if (
        request.method != "GET"
        or share is None
        or share.revoked_at is not None
        or share.viewer_id is not None
    ):
        # Said, so that the sign-in page is not a riddle (a walk-through's used link).
        messages.info(request, _("Sign in to open this invitation."))
        return redirect_to_login(request.get_full_path())
    return render(
        request,
        "accounts/invitation.html",
        {"share": share, "signed_out": True, "next": request.get_full_path()},
    )


def _invitee(request: HttpRequest, share: JourneyShare) -> bool:
    """Signed in with the address the invitation was sent to (its case aside)."""
    return request.user.email.lower() == share.email  # stored lower-cased


@login_required
@require_POST
def invitation_accept(request: HttpRequest, share_id: int) -> HttpResponse:
    """Accepting an invitation the portal offers (``invitations_waiting``), without its
    email's link: only one sent to the signed-in address, and while its link would work."""
    share = get_object_or_404(
        JourneyShare.objects.select_related("journey", "invited_by__profile"),
        # Not one someone else accepted (an account that had this address before).
        Q(viewer__isnull=True) | Q(viewer=request.user),
        pk=share_id,
        email=request.user.email.lower(),
    )
    if share.revoked_at is not None:
        return _invitation_gone(request, share, expired=False)
    if share.viewer_id is None and share.created_at <= invitations_made_since():
        return _invitation_gone(request, share, expired=True)
    if share.viewer_id is None:  # else accepted already, in another tab: the journey
        try:
            services.journey_share_accept(share=share, user=request.user)
        except ApplicationError as error:
            raise Http404(error.message) from error
        _say_followed(request, share)
    return redirect("journey:detail", reference=share.journey.reference)


def _say_followed(request: HttpRequest, share: JourneyShare) -> None:
    messages.success(request, _("You now follow “%(title)s”.") % {"title": share.journey.title})


def _sees(request: HttpRequest, share: JourneyShare) -> bool:
    """The reader may see the invitation's journey already: its owner, or a follower (by
    this invitation or another): the link takes them to it."""
    return journeys_visible_to(user=request.user).filter(pk=share.journey_id).exists()


def _invitation_gone(request: HttpRequest, share: JourneyShare, *, expired: bool) -> HttpResponse:
    """410: the invitation was withdrawn or is past its age. Its invitee reads whom to
    ask and for what (they had the email: the journey's title, the inviter's name);
    anyone else holding the link reads only that it no longer works (never a name, nor
    the email address ``get_full_name`` falls back to)."""
    journey = share.journey
    if _sees(request, share):
        # Its owner, or a viewer by a newer invitation: the journey, as an accepted link.
        return redirect("journey:detail", reference=journey.reference)
    invitee = _invitee(request, share)
    profile = getattr(share.invited_by, "profile", None) if invitee else None
    context = {
        "share": share if invitee else None,
        # Invited again since: that email's link works (a walk-through was told to ask
        # for one it had).
        "newer": invitee
        and JourneyShare.objects.filter(journey=journey, email=share.email, revoked_at__isnull=True)
        .exclude(pk=share.pk)
        .exists(),
        "expired": expired,
        "max_age_days": services.INVITATION_MAX_AGE // 86400,
        "inviter": profile.full_name if profile else "",
    }
    return render(request, "accounts/invitation_gone.html", context, status=410)


# --- Privacy ---------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def export(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "accounts/export.html")
    data = privacy.account_export_zip(user=request.user)
    response = HttpResponse(data, content_type="application/zip")
    stamp = timezone.now().strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="milepost-export-{stamp}.zip"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest) -> HttpResponse:
    form = DeleteAccountForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        privacy.account_delete(user=request.user)
        logout(request)
        return render(request, "accounts/deleted.html")
    status = 422 if request.method == "POST" else 200
    # What the customer would stop hearing about: their journeys still under way, and
    # the appointments still ahead of them.
    under_way = (
        journeys_owned_by(user=request.user)
        .exclude(health__in=[Health.DONE, Health.CANCELLED])
        .annotate(
            appointments_ahead=Count(
                "appointments", filter=Q(appointments__starts_at__gte=timezone.now())
            )
        )
        .order_by("created_at")
    )
    return render(
        request, "accounts/delete.html", {"form": form, "under_way": under_way}, status=status
    )
