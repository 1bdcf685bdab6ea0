"""API key authentication: ``Authorization: Api-Key <key>``."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from integrations.models import Partner, PartnerAPIKey
from integrations.services import partner_key_authenticate, partner_key_authenticate_serving
from journey.models import Journey

KEYWORD = "Api-Key"


class PartnerKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Partner, PartnerAPIKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, raw = header.partition(" ")
        # An auth scheme's name is case-insensitive (RFC 9110, 11.1): api-key works too.
        if keyword.lower() != KEYWORD.lower() or not raw.strip():
            raise exceptions.AuthenticationFailed(
                f"Use the header 'Authorization: {KEYWORD} <key>'."
            )
        reference = _journey_to_read(request)
        if reference is None:
            key = partner_key_authenticate(raw.strip())
        else:
            key, journey = partner_key_authenticate_serving(raw.strip(), reference)
            if journey is not None:
                request.journey_read_with_key = journey
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown, revoked or expired API key.")
        return key.partner, key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


def _journey_to_read(request: Request) -> str | None:
    """The reference of the journey the view reads for the spine, which the key's read
    then brings (``journey_read_with_key``), as the view says (``journey_for_spine``)."""
    view = (request.parser_context or {}).get("view")
    journey_for_spine = getattr(view, "journey_for_spine", None)
    return None if journey_for_spine is None else journey_for_spine(request)


def journey_read_with_key(request: Request, reference: str) -> Journey | None:
    """The journey named ``reference`` that the key's read brought (read for the spine,
    served by the key's partner), once: a later read of it (after a refused attempt
    wrote to it in memory) goes to the database. None if none came."""
    journey = vars(request).pop("journey_read_with_key", None)
    return journey if journey is not None and journey.reference == reference else None


class IsPartner(permissions.BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, PartnerAPIKey)


class PartnerKeyScheme(OpenApiAuthenticationExtension):
    target_class = PartnerKeyAuthentication
    name = "PartnerApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"'{KEYWORD} <key>'; keys are created in the admin or with "
            "`manage.py partner_key create PARTNER`.",
        }
