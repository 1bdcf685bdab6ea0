"""API key authentication: ``Authorization: Api-Key <key>``."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from integrations.models import Partner, PartnerAPIKey
from integrations.services import partner_key_authenticate

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
        key = partner_key_authenticate(raw.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown, revoked or expired API key.")
        return key.partner, key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


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
