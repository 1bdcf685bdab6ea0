"""The ``Idempotency-Key`` header on every POST of the API (see integrations.idempotency)."""

import functools
import hashlib
from collections.abc import Callable
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from rest_framework.request import Request
from rest_framework.response import Response

from integrations.idempotency import (
    HEADER,
    Replay,
    idempotency_abandon,
    idempotency_begin,
    idempotency_finish,
)

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

    Only responses the handler returned are stored: a request refused with an error
    (bad input, 404) keeps no record and may be corrected and sent with the same key.
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
            response = handler(view, request, *args, **kwargs)
        except BaseException:
            idempotency_abandon(record=record)
            raise
        idempotency_finish(record=record, status_code=response.status_code, body=response.data)
        return response

    return wrapper
