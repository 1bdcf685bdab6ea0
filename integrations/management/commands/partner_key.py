from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from integrations.models import Partner, PartnerAPIKey
from integrations.services import KEY_PREFIX, partner_key_create, partner_key_revoke


class Command(BaseCommand):
    help = "Create, list or revoke a partner's API keys. A new key is printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key and print it.")
        create.add_argument("partner", help="The partner's slug.")
        create.add_argument("--name", default="", help="What the key is for.")
        create.add_argument("--expires-in-days", type=int, default=None)
        listing = sub.add_parser("list", help="List a partner's keys (prefixes only).")
        listing.add_argument("partner")
        revoke = sub.add_parser(
            "revoke", help="Revoke a key by its prefix (as listed, or mp_… as the key starts)."
        )
        revoke.add_argument("prefix")

    def handle(self, *args: object, **options: object) -> None:
        action = options["action"]
        if action == "revoke":
            # The listed prefix, or the key's start as the partner has it (mp_<prefix>.…).
            prefix = str(options["prefix"]).removeprefix(KEY_PREFIX).partition(".")[0]
            key = PartnerAPIKey.objects.filter(prefix=prefix).first()
            if key is None:
                raise CommandError(f"No key with prefix {options['prefix']!r}.")
            if key.revoked_at is not None:
                stamp = key.revoked_at.isoformat(timespec="seconds")
                self.stdout.write(f"{key.prefix} of {key.partner} was revoked already, at {stamp}.")
                return
            partner_key_revoke(key=key)
            self.stdout.write(f"Revoked {key.prefix} of {key.partner}.")
            return
        partner = Partner.objects.filter(slug=options["partner"]).first()
        if partner is None:
            slugs = ", ".join(Partner.objects.values_list("slug", flat=True)) or "none yet"
            raise CommandError(f"No partner {options['partner']!r}. Partners: {slugs}.")
        if action == "list":
            for key in partner.api_keys.all():
                state = (
                    "revoked" if key.revoked_at else ("usable" if key.is_usable() else "expired")
                )
                self.stdout.write(f"{key.prefix}  {key.name or '-'}  {state}")
            return
        days = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-in-days must be a positive number of days.")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        _key, plain = partner_key_create(
            partner=partner, name=options["name"], expires_at=expires_at
        )
        self.stdout.write(plain)
