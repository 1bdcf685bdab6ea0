"""Writes to the customer's record. The customer owns it: others propose, the customer decides,
and every change lands in the audit trail."""

from datetime import time, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.forms import PROPOSABLE_FIELDS, ProfileForm
from accounts.models import (
    ACCEPTED_NOTE,
    INVITATION_MAX_AGE,
    Address,
    ChangeProposal,
    CustomerProfile,
    JourneyShare,
    ProfileChange,
    ProposalState,
    ShareLink,
    Source,
    User,
    label_taken,
    value_label,
)
from journey.errors import ApplicationError
from journey.jargon import jargon_check
from notifications.services import (
    notification_enqueue,
    notification_settle,
    notifications_reschedule,
)

if TYPE_CHECKING:
    from integrations.models import Partner


def profile_ensure(*, user: User, language: str | None = None) -> CustomerProfile:
    """The user's profile, made if missing; a new one in ``language`` when the site
    offers it (the language the customer signed up in), else the default."""
    offered = {code for code, _name in settings.LANGUAGES}
    defaults = {"language": language} if language in offered else {}
    profile, _created = CustomerProfile.objects.get_or_create(user=user, defaults=defaults)
    return profile


def customer_create(
    *,
    email: str,
    password: str | None,
    given_name: str = "",
    family_name: str = "",
    language: str = "en",
    time_zone: str = "Europe/London",
) -> User:
    """A customer with a verified email address and their profile (used by staff and the demo)."""
    from allauth.account.models import EmailAddress

    with transaction.atomic():
        user = User.objects.create_user(email=email, password=password)
        profile = CustomerProfile(
            user=user,
            given_name=given_name,
            family_name=family_name,
            language=language,
            time_zone=time_zone,
        )
        profile.full_clean()
        profile.save()
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def _display(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return str(value)


def audit_record(
    *,
    user: User,
    field: str,
    old: object,
    new: object,
    source: Source,
    actor: User | None = None,
    actor_name: str = "",
    note: str = "",
) -> ProfileChange:
    return ProfileChange.objects.create(
        user=user,
        field=field,
        old_value=_display(old),
        new_value=_display(new),
        source=source,
        actor=actor,
        actor_name=actor_name,
        note=note,
    )


def profile_update(
    *,
    profile: CustomerProfile,
    changes: dict[str, Any],
    actor: User,
    source: Source,
    note: str = "",
) -> list[str]:
    """Apply validated values; audit each real change. Returns the fields that changed.

    A field the customer sets loses any "filled in by" mark, since it is now theirs. New
    quiet hours, time zone or channels apply to the messages still waiting, too.
    """
    changed = []
    with transaction.atomic():
        profile = CustomerProfile.objects.select_for_update().get(pk=profile.pk)
        for field, value in changes.items():
            old = getattr(profile, field)
            if old == value:
                continue
            setattr(profile, field, value)
            changed.append(field)
            audit_record(
                user=profile.user,
                field=field,
                old=old,
                new=value,
                source=source,
                actor=actor,
                actor_name=actor.get_username() if source != Source.CUSTOMER else "",
                note=note,
            )
            if source == Source.CUSTOMER:
                profile.field_sources.pop(field, None)
        if changed:
            profile.full_clean()
            profile.save()
            notifications_reschedule(recipient=profile.user, changed=changed)
    return changed


def _validated(profile: CustomerProfile, field: str, value: str) -> Any:
    """The value as the profile form would store it, or an ApplicationError naming it."""
    if field not in PROPOSABLE_FIELDS:
        raise ApplicationError(
            f"{field!r} cannot be changed this way.",
            code="unknown_field",
            fields={"field": [f"Choose one of: {', '.join(PROPOSABLE_FIELDS)}."]},
        )
    form = ProfileForm(instance=profile, data={field: value})
    form.fields = {field: form.fields[field]}
    if not form.is_valid():
        errors = form.errors.get(field) or form.non_field_errors()
        raise ApplicationError(
            f"Invalid value for {field}: {' '.join(errors)}", fields={"value": list(errors)}
        )
    return form.cleaned_data[field]


def profile_propose_change(
    *,
    user: User,
    field: str,
    value: str,
    reason: str,
    source: Source,
    actor: User | None = None,
    actor_name: str = "",
    partner: "Partner | None" = None,
) -> ChangeProposal | None:
    """Staff or a partner want a field changed.

    A field nobody has filled in yet is filled directly (and marked with its source);
    otherwise a proposal waits for the customer, who is notified. Returns the proposal,
    or None when the value was filled in directly. ``partner``, the partner proposing,
    hears the customer's answer (and only it).
    """
    if source == Source.CUSTOMER:
        raise ApplicationError("Customers edit their profile directly.")
    if not reason.strip():
        raise ApplicationError("Give a reason for the change.", fields={"reason": ["Required."]})
    # The customer reads the reason (the proposal, the change's history): our words only.
    jargon_check(reason=reason)
    if not user.is_active and not _is_sandbox_owner(user):
        # A deleted account's data stays erased: nobody fills it in again. (A partner's
        # sandbox owner is inactive by design: it never logs in, and is never told.)
        raise ApplicationError("No such customer.", code="not_found", status=404)
    profile = profile_ensure(user=user)
    cleaned = _validated(profile, field, value)
    with transaction.atomic():
        profile = CustomerProfile.objects.select_for_update().get(pk=profile.pk)
        current = getattr(profile, field)
        if current in ("", None):
            setattr(profile, field, cleaned)
            profile.field_sources[field] = f"{source}:{actor_name}"
            profile.save()
            change = audit_record(
                user=user,
                field=field,
                old=current,
                new=cleaned,
                source=source,
                actor=actor,
                actor_name=actor_name,
                note=reason,
            )
            # A phone or a zone filled in decides where and when waiting messages go, as a
            # change of the customer's own does (profile_update).
            notifications_reschedule(recipient=user, changed={field})
            # Their record, filled in by someone else: they are told, and may change it.
            notification_enqueue(
                recipient=user,
                kind="profile_filled_in",
                dedup_key=f"profile-filled:{change.pk}",
                context={
                    **_about_field(field),
                    "new_value": value_label(field, _display(cleaned)),
                    "reason": reason.strip(),
                },
            )
            return None
        if current == cleaned:
            raise ApplicationError(
                f"{field} already has that value.", code="unchanged", fields={"value": ["Same."]}
            )
        now = timezone.now()
        waiting = ChangeProposal.objects.filter(user=user, field=field, state=ProposalState.PENDING)
        same = waiting.filter(new_value=_display(cleaned), source=source, partner=partner).first()
        if same is not None:
            # Proposed again (a partner's retry, its reason reworded or not): the customer
            # was told once, and the proposer hears of that one proposal.
            return same
        # A newer proposal for the same field replaces the one still waiting; a partner
        # whose proposal it was hears that it was withdrawn.
        for replaced in waiting.select_related("partner"):
            replaced.state, replaced.decided_at = ProposalState.WITHDRAWN, now
            _tell_partner_of_answer(replaced)
            # Its message, if it has not gone yet, would ask about a value nobody proposes.
            notification_settle(recipient=user, dedup_key=f"proposal:{replaced.pk}")
        waiting.update(state=ProposalState.WITHDRAWN, decided_at=now)
        proposal = ChangeProposal.objects.create(
            user=user,
            field=field,
            new_value=_display(cleaned),
            reason=reason.strip(),
            source=source,
            proposed_by=actor,
            proposed_by_name=actor_name,
            partner=partner,
        )
        notification_enqueue(
            recipient=user,
            kind="profile_change_proposed",
            dedup_key=f"proposal:{proposal.pk}",
            context={
                **_about_field(field),
                "old_value": value_label(field, _display(current)),
                "new_value": value_label(field, proposal.new_value),
                "reason": proposal.reason,
            },
            occurred_at=now,
        )
    return proposal


def _about_field(field: str) -> dict[str, str]:
    """A message's words for the field it is about (its label, as the form names it)."""
    return {"field": field, "field_label": str(ProfileForm.base_fields[field].label or field)}


def proposal_decide(*, proposal: ChangeProposal, user: User, accept: bool) -> ChangeProposal:
    """The customer accepts or declines a proposal of theirs. Only then does the record change."""
    if proposal.user_id != user.pk:
        raise ApplicationError("That proposal is not yours.", status=404, code="not_found")
    with transaction.atomic():
        proposal = ChangeProposal.objects.select_for_update().get(pk=proposal.pk)
        if proposal.state != ProposalState.PENDING:
            raise ApplicationError(_("This proposal was already answered."), code="decided")
        proposal.state = ProposalState.ACCEPTED if accept else ProposalState.DECLINED
        proposal.decided_at = timezone.now()
        proposal.save(update_fields=["state", "decided_at"])
        # Answered: an email or text still waiting to ask about it would ask again.
        notification_settle(recipient=user, dedup_key=f"proposal:{proposal.pk}")
        _tell_partner_of_answer(proposal)
        if accept:
            profile = profile_ensure(user=user)
            value = _validated(profile, proposal.field, proposal.new_value)
            with translation.override(settings.LANGUAGE_CODE):  # note_label reads it so
                by = proposal.proposed_by_name or str(proposal.get_source_display())
            profile_update(
                profile=profile,
                changes={proposal.field: value},
                actor=user,
                source=Source.CUSTOMER,
                note=ACCEPTED_NOTE.format(by=by, reason=proposal.reason)[:300],
            )
    return proposal


def address_add(*, profile: CustomerProfile, data: dict[str, str], actor: User) -> Address:
    """Refuses a label the customer gave another address (the form says so first; the
    constraint settles two tabs adding "Home" at once)."""
    try:
        with transaction.atomic():
            address = Address.objects.create(profile=profile, **data)
            audit_record(
                user=profile.user,
                field="address",
                old="",
                new=address,
                source=Source.CUSTOMER,
                actor=actor,
            )
    except IntegrityError as error:
        if label_taken(profile, data.get("label", "")) is None:
            raise
        message = _("You have an address with this label already.")
        raise ApplicationError(
            message, code="duplicate_label", fields={"label": [message]}
        ) from error
    return address


def address_remove(*, address: Address, actor: User) -> None:
    with transaction.atomic():
        audit_record(
            user=address.profile.user,
            field="address",
            old=address,
            new="",
            source=Source.CUSTOMER,
            actor=actor,
        )
        address.delete()


# --- Sharing ------------------------------------------------------------------------

INVITATION_SALT = "milepost.invitation"


def share_invitation_token(share: JourneyShare) -> str:
    return signing.dumps(share.pk, salt=INVITATION_SALT)


class InvitationExpired(Exception):
    """The link is ours but older than ``INVITATION_MAX_AGE``: ``share`` is what it was
    for (None if deleted since), so that its reader can be told whom to ask again."""

    def __init__(self, share: JourneyShare | None) -> None:
        super().__init__("This invitation has expired.")
        self.share = share


def share_from_invitation_token(token: str) -> JourneyShare | None:
    """The invitation a link is for; None for a link that is not ours. Raises
    ``InvitationExpired`` for one of ours past its age."""
    try:
        share_id = signing.loads(token, salt=INVITATION_SALT, max_age=INVITATION_MAX_AGE)
    except signing.SignatureExpired:
        # Signed by us, so its payload can be trusted; only its age is past.
        raise InvitationExpired(_invitation(signing.loads(token, salt=INVITATION_SALT))) from None
    except signing.BadSignature:
        return None
    return _invitation(share_id)


def _invitation(share_id: object) -> JourneyShare | None:
    return (
        JourneyShare.objects.select_related("journey", "invited_by__profile")
        .filter(pk=share_id)
        .first()
    )


def journey_share_invite(*, journey: Any, owner: User, email: str) -> JourneyShare:
    """The owner invites someone to follow the journey; they get an email with a link."""
    email = email.strip().lower()
    if journey.owner_id != owner.pk:
        raise ApplicationError("Only the journey's owner can invite.", status=404, code="not_found")
    if email == owner.email:
        raise ApplicationError(_("You already follow this journey."), fields={"email": ["Yours."]})
    with transaction.atomic():
        if JourneyShare.objects.filter(
            journey=journey, email=email, revoked_at__isnull=True
        ).exists():
            raise ApplicationError(
                _("That person is already invited."), fields={"email": ["Already invited."]}
            )
        share = JourneyShare.objects.create(journey=journey, email=email, invited_by=owner)
        notification_enqueue(
            recipient=None,
            to_email=email,
            journey=journey,
            kind="journey_invitation",
            dedup_key=f"share:{share.pk}",
            context={
                "inviter": owner.get_full_name(),
                "invitation_url": settings.SITE_URL
                + reverse("accounts:invitation", kwargs={"token": share_invitation_token(share)}),
            },
            occurred_at=share.created_at,
        )
    return share


def journey_share_accept(*, share: JourneyShare, user: User) -> JourneyShare:
    """The invitee, logged in with the invited address, accepts."""
    if share.revoked_at is not None:
        raise ApplicationError(_("This invitation was withdrawn."), status=404, code="not_found")
    if user.email.lower() != share.email:  # stored lower-cased (journey_share_invite)
        raise ApplicationError(
            _("This invitation was sent to another email address. Sign in with that one."),
            status=403,
            code="wrong_account",
        )
    if share.viewer_id not in (None, user.pk):
        # Accepted by an account that had this address before: not this one's to take.
        raise ApplicationError(
            "This invitation was accepted by another account.", status=404, code="not_found"
        )
    if share.viewer_id is None:
        with transaction.atomic():
            share.viewer = user
            share.accepted_at = timezone.now()
            share.save(update_fields=["viewer", "accepted_at"])
            # The owner hears who now follows their journey (by the address they typed,
            # for an account without a name yet: get_full_name).
            notification_enqueue(
                recipient=share.journey.owner,
                journey=share.journey,
                kind="share_accepted",
                dedup_key=f"share-accepted:{share.pk}",
                context={"follower": user.get_full_name()},
                occurred_at=share.accepted_at,
            )
    return share


def journey_share_revoke(*, share: JourneyShare, owner: User) -> JourneyShare:
    if share.journey.owner_id != owner.pk:
        raise ApplicationError("Only the journey's owner can revoke.", status=404, code="not_found")
    if share.revoked_at is None:
        share.revoked_at = timezone.now()
        share.save(update_fields=["revoked_at"])
    return share


def share_link_create(*, journey: Any, owner: User, days: int) -> ShareLink:
    if journey.owner_id != owner.pk:
        raise ApplicationError(
            "Only the journey's owner can share it.", status=404, code="not_found"
        )
    if not 1 <= days <= 90:
        raise ApplicationError(_("A link lasts 1 to 90 days."), fields={"days": ["1 to 90."]})
    now = timezone.now()
    return ShareLink.objects.create(
        journey=journey, created_by=owner, created_at=now, expires_at=now + timedelta(days=days)
    )


def share_link_revoke(*, link: ShareLink, owner: User) -> ShareLink:
    if link.journey.owner_id != owner.pk:
        raise ApplicationError("Only the journey's owner can revoke.", status=404, code="not_found")
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])
    return link


def _is_sandbox_owner(user: User) -> bool:
    """Owns sandbox journeys and nothing else: told by the journeys themselves, not by
    whoever calls, so a deleted customer's account is never taken for one."""
    from django.db.models import Count, Q

    from journey.models import Journey

    owned = Journey.objects.filter(owner=user).aggregate(
        sandbox=Count("pk", filter=Q(is_sandbox=True)),
        real=Count("pk", filter=Q(is_sandbox=False)),
    )
    return owned["sandbox"] > 0 and owned["real"] == 0


def _tell_partner_of_answer(proposal: ChangeProposal) -> None:
    """The partner that proposed the change hears the answer (a signed webhook per
    journey of the customer's it serves, each naming it), in the same transaction; no
    other partner does: what the customer decided is theirs and the proposer's."""
    from integrations.webhooks import webhook_emit
    from journey.models import Journey

    if proposal.partner_id is None:
        return
    journeys = Journey.objects.filter(
        owner=proposal.user, is_sandbox=False, partners=proposal.partner_id
    )
    for journey in journeys:
        webhook_emit(
            event_type="profile_change.answered",
            journey=journey,
            partner=proposal.partner,
            data={
                "field": proposal.field,
                "value": proposal.new_value,
                "state": proposal.state,
                "decided_at": proposal.decided_at,
            },
        )
