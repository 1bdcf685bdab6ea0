"""Relearn every template's ETA statistics and recompute every open journey now
(what the nightly task does): ``python manage.py eta_recompute``."""

from typing import Any

from django.core.management.base import BaseCommand

from journey.eta import eta_recompute_all, recomputed
from journey.models import EtaCause


class Command(BaseCommand):
    help = "Relearn ETA statistics and recompute every open journey's ETA."

    def handle(self, *args: Any, **options: Any) -> None:
        count = eta_recompute_all(cause=EtaCause.RECOMPUTE)
        self.stdout.write(recomputed(count))
