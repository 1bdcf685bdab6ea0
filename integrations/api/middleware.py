"""The partner API's middleware: its own stack (``APIMiddleware``), its language, and
requests it cannot read refused up front, with its JSON error shape: bodies too large
(413), or sent chunked, without their length (411); a URL with a NUL (404, the site's
page elsewhere)."""

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.locale import LocaleMiddleware as DjangoLocaleMiddleware
from django.utils import translation
from django.utils.module_loading import import_string

from integrations.api.errors import error_body

API_PREFIX = "/api/v1/"
# JSON is never a page: it loads nothing and is framed by nobody (OWASP's REST Security
# Cheat Sheet). The site's policy, with its script nonces, is built for HTML.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


class APIMiddleware:
    """Partner API requests (``/api/v1/``) through a middleware stack of their own,
    ``settings.API_MIDDLEWARE``; everything else through the rest of ``MIDDLEWARE``.

    The site's stack is for people in browsers: static files, the session, CSRF, the
    login and its language and clock, messages, allauth's and htmx's state, and a CSP
    made for HTML. The API authenticates by key (DRF), keeps no session and answers JSON
    in English: none of it applies there, and running it cost 0.4-0.6 M instructions of
    every request, 4-9% of gunicorn's CPU per single event (docs/performance.md, the
    twenty-second pass). Put this right after ``SecurityMiddleware``, whose headers
    both kinds of answer keep; the API's answers get a CSP of their own (``API_CSP``).

    Below the API's stack the view is resolved, called and rendered by Django's own
    handler code (``BaseHandler._get_response``, a private method: the tests in
    tests/integrations/test_api_middleware.py fail first if an upgrade changes it), and
    each layer's exceptions become responses there, as on the site. The API's middleware
    may not hook the view (``process_view``, ``process_exception``,
    ``process_template_response``) nor be async only: the stack has no place for them,
    so such a middleware is refused at startup rather than silently not run."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        views = BaseHandler()
        views._view_middleware = []
        views._template_response_middleware = []
        views._exception_middleware = []
        handler = convert_exception_to_response(views._get_response)
        for path in reversed(settings.API_MIDDLEWARE):
            middleware = import_string(path)
            if not getattr(middleware, "sync_capable", True):
                raise ImproperlyConfigured(
                    f"{path} in API_MIDDLEWARE is async only; the API's stack is synchronous."
                )
            try:
                instance = middleware(handler)
            except MiddlewareNotUsed:
                continue
            if instance is None:
                raise ImproperlyConfigured(f"Middleware factory {path} returned None.")
            hooks = ("process_view", "process_exception", "process_template_response")
            hooked = [hook for hook in hooks if hasattr(instance, hook)]
            if hooked:
                raise ImproperlyConfigured(
                    f"{path} in API_MIDDLEWARE has {', '.join(hooked)}, which the API's "
                    "middleware stack does not run: give it a __call__ instead."
                )
            handler = convert_exception_to_response(instance)
        self.api = handler

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            response = self.api(request)
            response.headers.setdefault("Content-Security-Policy", API_CSP)
            return response
        return self.get_response(request)


class APIBodyLimitMiddleware:
    """DRF's JSON parser reads the body whatever its size, and Django's own limits answer
    with an HTML page: so the API's limits are checked here, before anything is read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        nul = "\x00" in request.path_info
        # No journey, event, photo or key has one, and PostgreSQL refuses it in a
        # parameter: the lookup of what the URL names would answer 500.
        if nul and not request.path_info.startswith("/api/"):
            raise Http404("No such URL: it has a NUL character.")  # the site's 404 page
        if request.path_info.startswith("/api/"):
            if nul:
                return JsonResponse(
                    error_body("not_found", "No such URL: it has a NUL character."),
                    status=404,
                )
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
        if request.path_info.startswith("/api/"):
            translation.activate(settings.LANGUAGE_CODE)
            request.LANGUAGE_CODE = settings.LANGUAGE_CODE
            return
        super().process_request(request)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if request.path_info.startswith("/api/"):
            response.headers.setdefault("Content-Language", settings.LANGUAGE_CODE)
            return response
        return super().process_response(request, response)
