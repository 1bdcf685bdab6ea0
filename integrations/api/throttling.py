from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from integrations.models import PartnerAPIKey


class PartnerKeyThrottle(SimpleRateThrottle):
    """Requests per API key (by its prefix), counted in the cache; rate from settings."""

    scope = "partner_key"

    def get_rate(self) -> str | None:
        # Read at each request (not at import, as DRF does) so settings can change it.
        return settings.API_RATE_LIMIT

    def get_cache_key(self, request: Request, view: object) -> str | None:
        if not isinstance(request.auth, PartnerAPIKey):
            return None  # refused by authentication anyway
        return f"throttle:partner_key:{request.auth.prefix}"
