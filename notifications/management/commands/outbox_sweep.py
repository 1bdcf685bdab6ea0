from django.core.management.base import BaseCommand

from notifications.services import outbox_sweep


class Command(BaseCommand):
    help = "Deliver every outbox row that is due (what Celery beat runs every minute)."

    def handle(self, *args: object, **options: object) -> None:
        sent = outbox_sweep()
        self.stdout.write(f"{sent} notification(s) sent.")
