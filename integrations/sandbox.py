"""Test mode: a partner's sandbox journeys, owned by a sandbox user, never a customer."""

import secrets
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from accounts.models import User
from integrations.models import Partner
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
    """Delete the sandbox journeys made more than ``SANDBOX_RETENTION`` ago, their photos'
    files, and the sandbox owners left with no journey. Real journeys and customers are
    never touched: a journey must be a sandbox one, and an owner inactive, at the
    sandbox's address and owning nothing else. Returns the journeys deleted.

    By age alone, whatever was done to them lately: "unused" would need every write of
    every kind (legs, checkpoints, appointments carry no time of their own) to mark the
    journey, and partners' tests make a new journey each run (partner-api.md says so). A
    chunk at a time, each in its own transaction, locked first: a journey a request is
    writing to (its row locked, as every write locks it) is left for the next night."""
    cutoff = (now or timezone.now()) - settings.SANDBOX_RETENTION
    stale = Journey.objects.filter(is_sandbox=True, created_at__lt=cutoff)
    deleted = 0
    while True:
        with transaction.atomic():
            chunk = list(
                stale.select_for_update(skip_locked=True)
                .order_by("pk")
                .values_list("pk", "owner_id")[:PURGE_CHUNK]
            )
            if not chunk:
                break
            pks, owners = [pk for pk, _ in chunk], {owner for _, owner in chunk}
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
