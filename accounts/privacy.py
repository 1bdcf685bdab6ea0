"""Self-service export and deletion of a customer's data.

What deletion keeps, and why (also shown to the customer before they confirm):
the journeys, their milestones, events, photos of the item, shipment legs, tasks and
appointments stay, linked to an anonymous account, because they are the company's record
of an order it fulfilled (warranty, consumer-law and tax obligations). Everything that
identifies the person (name, email, phone, addresses, preferences, messages they wrote,
the audit trail's values, invitations, partner payloads) is erased.
"""

import io
import json
import zipfile
from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import (
    ERASED_NOTE,
    Address,
    ChangeProposal,
    CustomerProfile,
    JourneyShare,
    ProfileChange,
    ShareLink,
    Source,
    User,
)
from integrations.models import DeliveryState, InboundEvent, WebhookAttempt, WebhookDelivery
from journey.models import (
    Feedback,
    Journey,
    JourneyEvent,
    Message,
    Photo,
    RescheduleRequest,
)
from notifications.models import Notification

ERASED = "[erased at the customer's request]"


def account_export_data(*, user: User) -> dict[str, Any]:
    """Everything we hold about the customer, as plain data."""
    profile = CustomerProfile.objects.filter(user=user).first()
    journeys = Journey.objects.filter(owner=user).select_related("template")
    data: dict[str, Any] = {
        "exported_at": timezone.now(),
        "account": {"email": user.email, "date_joined": user.date_joined},
        "profile": None,
        "addresses": [],
        "journeys": [],
        "audit_trail": [
            {
                "when": change.created_at,
                "field": change.field,
                "old": change.old_value,
                "new": change.new_value,
                "source": change.source,
                "by": change.actor_name,
                "note": change.note,
            }
            for change in ProfileChange.objects.filter(user=user).order_by("created_at", "id")
        ],
        "change_proposals": list(
            ChangeProposal.objects.filter(user=user).values(
                "field", "new_value", "reason", "source", "state", "created_at", "decided_at"
            )
        ),
    }
    if profile is not None:
        data["profile"] = {
            "given_name": profile.given_name,
            "family_name": profile.family_name,
            "phone": profile.phone,
            "language": profile.language,
            "time_zone": profile.time_zone,
            "channels": {
                "email": profile.channel_email,
                "sms": profile.channel_sms,
                "push": profile.channel_push,
            },
            "quiet_hours": [profile.quiet_hours_start, profile.quiet_hours_end],
            "filled_in_by_others": profile.field_sources,
        }
        data["addresses"] = list(
            profile.addresses.values("label", "line1", "line2", "city", "postcode", "country")
        )
    for journey in journeys:
        data["journeys"].append(
            {
                "reference": journey.reference,
                "title": journey.title,
                "kind": journey.template.name,
                "started_at": journey.started_at,
                "promised_date": journey.promised_date,
                "expected_date": journey.eta,
                "milestones": list(
                    journey.milestones.order_by("position").values(
                        "stage__label", "state", "planned_date", "reached_at"
                    )
                ),
                "events": list(
                    journey.events.filter(customer_visible=True, applied=True)
                    .order_by("occurred_at", "id")
                    .values("kind", "occurred_at", "milestone__stage__label", "message")
                ),
                "messages": list(
                    journey.messages.order_by("created_at", "id").values(
                        "created_at", "from_staff", "body"
                    )
                ),
                "tasks": list(journey.tasks.values("title", "due_date", "done_at")),
                "ratings": list(
                    Feedback.objects.filter(milestone__journey=journey, customer=user).values(
                        "milestone__stage__label", "rating", "comment", "created_at"
                    )
                ),
                "reschedule_requests": list(
                    RescheduleRequest.objects.filter(
                        appointment__journey=journey, requested_by=user
                    ).values("appointment__title", "first_choice", "second_choice", "note")
                ),
                "appointments": list(
                    journey.appointments.values(
                        "title", "arrive_at", "place_name", "address", "milestone__stage__label"
                    )
                ),
                "shared_with": list(
                    journey.shares.filter(revoked_at__isnull=True).values("email", "accepted_at")
                ),
            }
        )
    # Journeys of others that the customer follows, or once followed, with what they
    # wrote there: their own messages and ratings (the owner's data stays the owner's).
    # Not the journeys a staff member answered on: those replies are the company's.
    followed = (
        Journey.objects.exclude(owner=user)
        .filter(
            Q(shares__viewer=user)
            | Q(messages__author=user, messages__from_staff=False)
            | Q(milestones__feedback__customer=user)
        )
        .distinct()
        .order_by("reference")
    )
    data["followed_journeys"] = [
        {
            "reference": journey.reference,
            "title": journey.title,
            # Each time they followed it: an invitation accepted, and revoked if it was
            # (until: null while they still follow it).
            "followed": [
                {"since": since, "until": until}
                for since, until in JourneyShare.objects.filter(
                    journey=journey, viewer=user, accepted_at__isnull=False
                )
                .order_by("accepted_at", "pk")
                .values_list("accepted_at", "revoked_at")
            ],
            "your_messages": list(
                journey.messages.filter(author=user, from_staff=False)
                .order_by("created_at", "id")
                .values("created_at", "milestone__stage__label", "body")
            ),
            "your_ratings": list(
                Feedback.objects.filter(milestone__journey=journey, customer=user).values(
                    "milestone__stage__label", "rating", "comment", "created_at"
                )
            ),
        }
        for journey in followed
    ]
    return data


def account_export_zip(*, user: User) -> bytes:
    """A zip: data.json, and the photos of the customer's journeys."""
    data = account_export_data(user=user)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.json", json.dumps(data, cls=DjangoJSONEncoder, indent=2))
        photos = Photo.objects.filter(journey__owner=user).select_related("journey")
        for photo in photos:
            with photo.image.open("rb") as image:
                archive.writestr(f"photos/{photo.journey.reference}/{photo.pk}.jpg", image.read())
    return buffer.getvalue()


def account_delete(*, user: User) -> None:
    """Erase or anonymise the customer's personal data in every table that holds it."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        journeys = Journey.objects.filter(owner=user)
        written = list(Message.objects.filter(author=user).values_list("pk", flat=True))
        Message.objects.filter(author=user).update(body=ERASED)
        RescheduleRequest.objects.filter(requested_by=user).update(note="")
        Feedback.objects.filter(customer=user).update(comment="")
        # What partners were (or were about to be) sent about this customer: the payloads
        # carry their messages and notes. Pending deliveries are cancelled.
        deliveries = WebhookDelivery.objects.filter(journey__in=journeys)
        WebhookAttempt.objects.filter(delivery__in=deliveries).update(response_excerpt="")
        deliveries.filter(state__in=[DeliveryState.PENDING, DeliveryState.SENDING]).update(
            state=DeliveryState.FAILED
        )
        deliveries.update(payload={})
        Notification.objects.filter(
            dedup_key__in=[f"customer-message:{pk}" for pk in written]
        ).delete()
        Notification.objects.filter(to_email=user.email).delete()
        JourneyShare.objects.filter(email=user.email).delete()
        JourneyEvent.objects.filter(journey__in=journeys).update(payload={})
        InboundEvent.objects.filter(journey__in=journeys).update(payload={})
        Notification.objects.filter(recipient=user).delete()
        Notification.objects.filter(journey__in=journeys, recipient__isnull=True).delete()
        JourneyShare.objects.filter(journey__in=journeys).delete()
        JourneyShare.objects.filter(viewer=user).delete()
        ShareLink.objects.filter(journey__in=journeys).delete()
        ChangeProposal.objects.filter(user=user).delete()
        ProfileChange.objects.filter(user=user).delete()
        Address.objects.filter(profile__user=user).delete()
        CustomerProfile.objects.filter(user=user).update(
            given_name="",
            family_name="",
            phone="",
            field_sources={},
            quiet_hours_start=None,
            quiet_hours_end=None,
            channel_email=False,
            channel_sms=False,
            channel_push=False,
        )
        EmailAddress.objects.filter(user=user).delete()
        Authenticator.objects.filter(user=user).delete()
        user.email = f"deleted-{user.pk}@deleted.invalid"
        user.set_unusable_password()  # also ends every other session (its hash changes)
        user.is_active = False
        user.save()
        ProfileChange.objects.create(
            user=user,
            field="account",
            old_value="",
            new_value="deleted",
            source=Source.CUSTOMER,
            note=ERASED_NOTE,
        )
