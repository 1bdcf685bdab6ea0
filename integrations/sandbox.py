"""Test mode: a partner's sandbox journeys, owned by a sandbox user, never a customer."""

import secrets
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from accounts.models import User
from integrations.models import InboundEvent, Partner
from journey.errors import ApplicationError
from journey.models import Journey, JourneyTemplate, Photo
from journey.services import journey_create

SANDBOX_DOMAIN = "sandbox.milepost.invalid"


def sandbox_user(*, partner: Partner) -> User:
    """A new sandbox owner for one of the partner's sandbox journeys: cannot log in, and
    its address cannot receive mail (``.invalid`` is reserved); sandbox journeys notify
    nobody anyway. One per journey, as each real journey has its customer: what a test
    does to one owner's profile (a proposed change) does not decide the next test's
    answer."""
    user = User(email=f"{partner.slug}+{secrets.token_hex(6)}@{SANDBOX_DOMAIN}", is_active=False)
    user.set_unusable_password()
    user.save()
    return user


def sandbox_journey_create(
    *, partner: Partner, template: str, title: str = "Sandbox journey"
) -> Journey:
    """A journey in test mode, assigned to ``partner``, that notifies nobody."""
    found = JourneyTemplate.objects.filter(key=template).first()
    if found is None:
        raise ApplicationError(
            f"No journey template {template!r}.",
            code="unknown_template",
            fields={"template": ["Unknown template."]},
        )
    with transaction.atomic():
        journey = journey_create(template=found, owner=sandbox_user(partner=partner), title=title)
        Journey.objects.filter(pk=journey.pk).update(is_sandbox=True)
        journey.is_sandbox = True
        partner.journeys.add(journey)
    return journey


PURGE_CHUNK = 100


def sandbox_purge(*, now: datetime | None = None) -> int:
    """Delete the sandbox journeys nobody has used for ``SANDBOX_RETENTION`` (made,
    changed and sent no event since), their photos' files, and the sandbox owners left with no
    journey. Real journeys and customers are never touched: a journey must be a sandbox
    one, and an owner inactive, at the sandbox's address and owning nothing else.
    Returns the journeys deleted. A chunk at a time, each in its own transaction."""
    cutoff = (now or timezone.now()) - settings.SANDBOX_RETENTION
    stale = Journey.objects.filter(
        ~Exists(InboundEvent.objects.filter(journey=OuterRef("pk"), received_at__gte=cutoff)),
        is_sandbox=True,
        created_at__lt=cutoff,
        updated_at__lt=cutoff,
    ).exclude(last_event_at__gte=cutoff)
    deleted = 0
    while chunk := list(stale.values_list("pk", "owner_id")[:PURGE_CHUNK]):
        pks, owners = [pk for pk, _ in chunk], {owner for _, owner in chunk}
        with transaction.atomic():
            files = [
                name
                for pair in Photo.objects.filter(journey__in=pks).values_list("image", "thumbnail")
                for name in pair
                if name
            ]
            # Rows first: a file is deleted only once nothing refers to it.
            Journey.objects.filter(pk__in=pks, is_sandbox=True).delete()
            User.objects.filter(
                ~Exists(Journey.objects.filter(owner=OuterRef("pk"))),
                Q(email__endswith=f"@{SANDBOX_DOMAIN}"),
                pk__in=owners,
                is_active=False,
            ).delete()
            transaction.on_commit(lambda files=files: _delete_files(files))
        deleted += len(pks)
    return deleted


def _delete_files(names: list[str]) -> None:
    storage = Photo._meta.get_field("image").storage
    for name in names:
        storage.delete(name)
