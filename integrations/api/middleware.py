"""Refuse API bodies the API cannot read up front, with its JSON error shape: too large
(413), or sent chunked, without their length (411)."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.locale import LocaleMiddleware as DjangoLocaleMiddleware
from django.utils import translation

from integrations.api.errors import error_body


class APIBodyLimitMiddleware:
    """DRF's JSON parser reads the body whatever its size, and Django's own limits answer
    with an HTML page: so the API's limits are checked here, before anything is read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            # A WSGI application reads CONTENT_LENGTH bytes, so a chunked body (no
            # Content-Length) reads as empty: an upload would be "no file", an event
            # "field required". Say what is wrong instead.
            if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
                return JsonResponse(
                    error_body(
                        "length_required",
                        "Send the body with a Content-Length header: a chunked body is not read.",
                        {"body": ["Sent without a Content-Length."]},
                    ),
                    status=411,
                )
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            multipart = request.META.get("CONTENT_TYPE", "").startswith("multipart/")
            limit = (
                settings.API_MAX_UPLOAD_BYTES if multipart else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            )
            if limit is not None and length > limit:
                return JsonResponse(
                    error_body(
                        "request_too_large",
                        f"The request body is larger than {limit} bytes.",
                        {"body": [f"Over {limit} bytes."]},
                    ),
                    status=413,
                )
        return self.get_response(request)


class LocaleMiddleware(DjangoLocaleMiddleware):
    """Django's LocaleMiddleware for the site; the API answers in English, as
    partner-api.md documents its messages, whatever the client's Accept-Language (one
    400 had DRF's messages in Spanish and ours in English). For /api/ it does none of
    its work (about 15 µs a request on the ingest path) and adds no Vary."""

    def process_request(self, request: HttpRequest) -> None:
        if request.path.startswith("/api/"):
            translation.activate(settings.LANGUAGE_CODE)
            request.LANGUAGE_CODE = settings.LANGUAGE_CODE
            return
        super().process_request(request)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if request.path.startswith("/api/"):
            response.headers.setdefault("Content-Language", settings.LANGUAGE_CODE)
            return response
        return super().process_response(request, response)
