"""System checks of the integrations' settings (run with ``check --deploy``)."""

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def webhook_private_hosts_check(**kwargs: Any) -> list[checks.CheckMessage]:
    if not settings.WEBHOOK_ALLOW_PRIVATE_HOSTS:
        return []
    return [
        checks.Warning(
            "WEBHOOK_ALLOW_PRIVATE_HOSTS is on: partners' webhook URLs may reach this "
            "network (server-side request forgery).",
            hint="Unset WEBHOOK_ALLOW_PRIVATE_HOSTS outside development (docs/security.md).",
            id="milepost.W002",
        )
    ]
