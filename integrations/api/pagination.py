"""Cursor pages for the API's lists that grow: ``{"next", "previous", "results"}``.

Ordered by id alone: unique, so a cursor (the last id a page showed) never skips nor
repeats a row, whatever is added meanwhile; given out in the order rows are inserted, so
it is the order they were created in; and read through an index that is there already
(the primary key's, or the partner-journey link's on (partner, journey)). DRF's cursor
filters on the first field of the ordering alone and counts ties with an offset: a
second field behind ``created_at`` would not make the cursor exact, id alone does.
"""

from types import SimpleNamespace
from typing import Any
from urllib import parse

from django.core import signing
from django.db.models import QuerySet
from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.utils.urls import replace_query_param

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
_LARGEST_ID = 2**63 - 1  # a BigAutoField's; beyond it the database refuses the number


class CursorPage(pagination.CursorPagination):
    """Newest first (the journeys)."""

    ordering = "-id"
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    page_size_query_description = (
        f"How many items a page holds: 1 to {MAX_PAGE_SIZE} ({DEFAULT_PAGE_SIZE} if not given)."
    )
    cursor_query_description = (
        "Where a page starts: take it from the `next` or `previous` link, never build it."
    )
    template = None  # no browsable API

    def paginate_queryset(
        self, queryset: QuerySet, request: Request, view: Any = None
    ) -> list[Any] | None:
        # As DRF does, with the page size read strictly first (400, not the default).
        self._strict_page_size(request)
        return super().paginate_queryset(queryset, request, view)

    def _strict_page_size(self, request: Request) -> None:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return
        if not (_digits(raw, 4) and 1 <= int(raw) <= MAX_PAGE_SIZE):
            raise ValidationError(
                {self.page_size_query_param: [f"A whole number from 1 to {MAX_PAGE_SIZE}."]}
            )

    def encode_cursor(self, cursor: pagination.Cursor) -> str:
        """DRF's, signed: a cursor is ours or refused (DRF would take any position or
        offset someone wrote, and answer a page that starts anywhere)."""
        url = super().encode_cursor(cursor)
        parts = parse.urlsplit(url)
        (encoded,) = parse.parse_qs(parts.query)[self.cursor_query_param]
        return replace_query_param(url, self.cursor_query_param, _signer(parts.path).sign(encoded))

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        """DRF's, for a cursor we signed; 400 naming ``cursor`` (not 404) for any other,
        and for a position that is not an id (DRF passes any text to the query: a 500)."""
        signed = request.query_params.get(self.cursor_query_param)
        try:
            if signed is None:
                cursor = None
            else:
                unsigned = _signer(request.path).unsign(signed)
                cursor = super().decode_cursor(
                    SimpleNamespace(query_params={self.cursor_query_param: unsigned})
                )
        except (NotFound, signing.BadSignature):
            cursor = None
            valid = False
        else:
            valid = cursor is None or _is_id(cursor.position)
        if not valid:
            raise ValidationError(
                {self.cursor_query_param: ["Invalid cursor: follow the next and previous links."]}
            )
        return cursor

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        # DRF's marks only `results` required and gives another API's URLs as examples.
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {
                    "type": "string",
                    "nullable": True,
                    "format": "uri",
                    "description": "The next page; null on the last one.",
                },
                "previous": {
                    "type": "string",
                    "nullable": True,
                    "format": "uri",
                    "description": "The page before; null on the first one.",
                },
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_PAGE_SIZE,
                    "default": DEFAULT_PAGE_SIZE,
                }
        return parameters


class OldestFirstCursorPage(CursorPage):
    """In the order they were posted (photos, checkpoints): what is added while a partner
    reads comes on the last page, after what it has read."""

    ordering = "id"


def _signer(path: str) -> signing.Signer:
    """Cursors signed for one list: a journeys page's cursor is no photos page's."""
    return signing.Signer(salt=f"milepost.api.cursor:{path}")


def _digits(text: str, most: int) -> bool:
    # Its length first: int() refuses (ValueError) a number of over 4,300 digits.
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def _is_id(position: str | None) -> bool:
    if position is None:
        return True
    return _digits(position, 19) and 0 < int(position) <= _LARGEST_ID
