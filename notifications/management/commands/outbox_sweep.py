import time

from django.core.management.base import BaseCommand, CommandParser

from notifications.services import outbox_sweep


class Command(BaseCommand):
    help = (
        "Deliver every outbox row that is due (what Celery beat runs every minute). With "
        "--every N, keep doing it every N seconds (`make run` runs beat's whole schedule "
        "instead: manage.py beat_embedded)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--every", type=int, default=0, help="Repeat every N seconds.")

    def handle(self, *args: object, **options: object) -> None:
        every = options["every"]
        while True:
            sent = outbox_sweep()
            if sent or not every:
                self.stdout.write(f"{sent} notification(s) sent.")
            if not every:
                return
            time.sleep(every)
