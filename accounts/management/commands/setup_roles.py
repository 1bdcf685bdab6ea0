from django.core.management.base import BaseCommand

from accounts.roles import roles_setup


class Command(BaseCommand):
    help = 'Create or update the staff groups "Agents" and "Managers" and their permissions.'

    def handle(self, *args: object, **options: object) -> None:
        for name, count in roles_setup().items():
            self.stdout.write(f"{name}: {count} permissions")
