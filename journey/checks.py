"""System checks of the site's own settings (Django's run with ``check --deploy``)."""

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def security_contact_check(**kwargs: Any) -> list[checks.CheckMessage]:
    """Researchers need to know where to report a problem (RFC 9116)."""
    if settings.SECURITY_CONTACT:
        return []
    return [
        checks.Warning(
            "SECURITY_CONTACT is not set, so /.well-known/security.txt answers 404 and "
            "nobody knows where to report a vulnerability.",
            hint="Set SECURITY_CONTACT to your security mailbox or page (docs/security.md).",
            id="milepost.W001",
        )
    ]
