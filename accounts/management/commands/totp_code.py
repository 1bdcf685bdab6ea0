from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.mfa import totp_current_code
from accounts.models import User


class Command(BaseCommand):
    help = (
        "Development and demo only: print the current TOTP code of a staff user, so the demo "
        "staff login can be tried without an authenticator app. Refused in production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")

    def handle(self, *args: object, **options: object) -> None:
        if settings.PRODUCTION:
            raise CommandError("Not available in production.")
        user = User.objects.filter(email=options["email"]).first()
        code = totp_current_code(user) if user else None
        if code is None:
            raise CommandError(f"{options['email']} has no TOTP authenticator.")
        self.stdout.write(code)
