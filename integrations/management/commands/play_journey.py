"""Play a whole journey's status events through the partner API, in test mode."""

import json
import uuid
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from rest_framework.test import APIRequestFactory

from integrations.api.views import JourneyEventCreate
from integrations.models import Partner
from integrations.sandbox import sandbox_journey_create
from integrations.services import partner_key_create, partner_key_revoke
from journey.errors import ApplicationError
from journey.models import Journey, JourneyTemplate


class Command(BaseCommand):
    help = (
        "Send one status event per stage of a sandbox journey through the partner API "
        "(authentication, validation, idempotency and the spine), using the partner's own "
        "status mapping. Without --reference a new sandbox journey is made."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("partner", help="The partner's slug.")
        parser.add_argument("--reference", help="A sandbox journey this partner serves.")
        parser.add_argument("--template", help="Template key for a new sandbox journey.")

    def handle(self, *args: object, **options: object) -> None:
        partner = Partner.objects.filter(slug=options["partner"]).first()
        if partner is None:
            raise CommandError(f"No partner {options['partner']!r}.")
        journey = self._journey(partner, options["reference"], options["template"])
        mapping = {m.stage_key: m.code for m in partner.mappings.all()}
        stages = list(journey.template.stages.order_by("position"))
        key, plain = partner_key_create(partner=partner, name="play_journey (temporary)")
        view = JourneyEventCreate.as_view()
        factory = APIRequestFactory()
        start = timezone.now() - timedelta(minutes=len(stages))
        try:
            for index, stage in enumerate(stages):
                code = mapping.get(stage.key)
                if code is None:
                    self.stdout.write(f"  {stage.key}: no status code maps to it, skipped")
                    continue
                body = {
                    "event_id": f"play-{uuid.uuid4().hex[:12]}",
                    "code": code,
                    "occurred_at": (start + timedelta(minutes=index)).isoformat(),
                    "data": {"played_by": "play_journey"},
                }
                request = factory.post(
                    f"/api/v1/journeys/{journey.reference}/events/",
                    data=json.dumps(body),
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Api-Key {plain}",
                )
                response = view(request, reference=journey.reference)
                response.render()
                state = response.data.get("state") if response.status_code < 400 else None
                said = f" ({state})" if state else ""
                self.stdout.write(f"  {stage.key} ({code}): HTTP {response.status_code}{said}")
                if response.status_code >= 400:
                    raise CommandError(response.content.decode())
        finally:
            partner_key_revoke(key=key)
        self.stdout.write(self.style.SUCCESS(f"Played {journey.reference} for {partner}."))

    def _journey(self, partner: Partner, reference: str | None, template: str | None) -> Journey:
        if reference:
            journey = partner.journeys.filter(reference=reference).first()
            if journey is None:
                raise CommandError(f"{partner} serves no journey {reference!r}.")
            if not journey.is_sandbox:
                # Playing on a real journey would tell a real customer.
                raise CommandError(f"{reference} is a real journey; only sandbox ones are played.")
            return journey
        if template is None:
            served = partner.journeys.order_by("-created_at").values_list(
                "template__key", flat=True
            )
            template = next(iter(served), None) or (
                JourneyTemplate.objects.values_list("key", flat=True).first()
            )
        if template is None:
            raise CommandError("There is no journey template; pass --template.")
        try:
            journey = sandbox_journey_create(partner=partner, template=template)
        except ApplicationError as error:
            known = ", ".join(JourneyTemplate.objects.values_list("key", flat=True))
            raise CommandError(f"{error.message} Templates: {known}.") from error
        self.stdout.write(f"Sandbox journey {journey.reference} ({template}):")
        return journey
