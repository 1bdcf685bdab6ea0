"""The schema describes every response, the one error shape included."""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from integrations.idempotency import MAX_KEY_LENGTH

ERROR_STATUSES = {
    "400": "Bad input; `fields` names what is wrong.",
    "401": "Missing, unknown, revoked or expired API key.",
    "403": "Not allowed.",
    "404": "No such journey (or not one this partner serves).",
    "405": "Not a method this path takes; the Allow header lists those it does.",
    "406": "The Accept header asks for something other than JSON.",
    "409": "Conflict: an event_id or Idempotency-Key already used differently, or in flight.",
    "411": "The body was sent chunked: send it with a Content-Length header.",
    "413": "The request body is too large.",
    "415": "Unsupported content type.",
    "429": "Too many requests for this key; see Retry-After.",
}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.JSONField(), help_text="Input name → list of problems."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class PartnerAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        bodies = super()._get_response_bodies(direction=direction)
        if direction != "response" or not self.path.startswith("/api/v1/"):
            return bodies
        for code, description in ERROR_STATUSES.items():
            if code not in bodies:
                body = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                body["description"] = description
                bodies[code] = body
        return bodies

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        handler = getattr(self.view, self.method.lower(), None)
        # Every POST (an event's hands it on to a decorated handler), and whatever else
        # ``idempotent`` wraps (a task's or an appointment's PATCH and DELETE).
        if self.method == "POST" or getattr(handler, "idempotent", False):
            parameters.append(
                OpenApiParameter(
                    "Idempotency-Key",
                    # As integrations.idempotency checks it: 1 to 255 printable
                    # characters, not only spaces.
                    {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_KEY_LENGTH,
                        "pattern": "^[ -~]*[!-~][ -~]*$",
                    },
                    OpenApiParameter.HEADER,
                    required=False,
                    description="Send the same key to retry safely: the first response is "
                    "replayed for 24 h; another body with the same key answers 409.",
                )
            )
        return parameters
