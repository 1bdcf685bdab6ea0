"""The ``Idempotency-Key`` header on every POST of the API, and on the PATCH and DELETE of
a task or an appointment (see integrations.idempotency)."""

import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, InterfaceError, transaction
from rest_framework.request import Request
from rest_framework.response import Response

from integrations.idempotency import (
    HEADER,
    Replay,
    idempotency_abandon,
    idempotency_begin,
    idempotency_finish,
)
from integrations.models import IdempotencyRecord

logger = logging.getLogger(__name__)

Handler = Callable[..., Response]


def request_fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    if request.content_type.startswith("multipart/"):
        # The raw body's boundary differs between sends; compare what was sent instead.
        for name in sorted(request.data.keys()):
            for value in request.data.getlist(name):
                digest.update(name.encode() + b"\0")
                if isinstance(value, UploadedFile):
                    for chunk in value.chunks():
                        digest.update(chunk)
                    value.seek(0)
                else:
                    digest.update(str(value).encode())
                digest.update(b"\0")
    else:
        digest.update(request.body)
    return digest.hexdigest()


def idempotent(handler: Handler) -> Handler:
    """Replay the first response for a repeated key; refuse a reused or in-flight one.

    The handler runs in one transaction with the storing of its response, so a request
    either leaves its work and its response, or neither. What is stored follows Stripe
    where this design allows, and is kinder to retries where it does not:

    * a response the handler returned with a status below 500 (2xx, and any 4xx it
      answers on purpose) is stored and replayed, with its writes;
    * an error raised by the handler (bad input, 404, a conflict, a crash answered with
      500 or 503) rolls everything back and releases the key, so the request may be
      corrected or simply sent again. Stripe replays a 500 because its work may have
      been half done; here nothing of a failed request survives, so a retry is safe;
    * a 5xx the handler returned rolls back and releases the key the same way.

    If even the release fails (the database went away), the claim's lease frees the key.
    """

    @functools.wraps(handler)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        record = idempotency_begin(
            partner=request.user,
            key=key,
            method=request.method,
            path=request.path,
            fingerprint=request_fingerprint(request),
        )
        if isinstance(record, Replay):
            response = Response(record.body, status=record.status_code)
            response["Idempotent-Replayed"] = "true"
            return response
        try:
            with transaction.atomic():
                request.in_idempotent_transaction = True
                response = handler(view, request, *args, **kwargs)
                if response.status_code >= 500:
                    transaction.set_rollback(True)
                else:
                    idempotency_finish(
                        record=record, status_code=response.status_code, body=response.data
                    )
        except BaseException:
            _release(record)
            raise
        if response.status_code >= 500:
            _release(record)
        return response

    # The schema documents the header on the handlers that take it.
    wrapper.idempotent = True
    return wrapper


def rolled_back_whole(request: Request) -> bool:
    """Whether the handler runs in the transaction ``idempotent`` opened for it, which any
    error the handler raises rolls back whole (with the key released): what it writes
    needs no savepoint of its own."""
    return getattr(request, "in_idempotent_transaction", False)


def _release(record: IdempotencyRecord) -> None:
    try:
        idempotency_abandon(record=record)
    except (DatabaseError, InterfaceError):
        logger.warning("Could not release Idempotency-Key %s; its lease will.", record.pk)
