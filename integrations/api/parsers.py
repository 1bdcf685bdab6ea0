"""The API's JSON parser: DRF's, refusing what the rest of the stack cannot hold."""

import codecs
import json
import math
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

# Deeper than any body the API documents (an event's ``data`` is a few levels at most),
# and far short of what the checks that walk a body (NUL characters) or the database's
# JSON functions would need a stack for.
MAX_DEPTH = 64


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        # json reads 1e400 as infinity, which no JSON column can store.
        raise ValueError(f"the number {text[:40]} is too large")
    return number


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(data: Any) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((item, depth + 1) for item in value)
    return False


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, and 400 (``parse_error``) for what it lets through: NaN and
    Infinity, a number too large for a float (read as infinity), and a document nested
    more than ``MAX_DEPTH`` levels (or so deep that Python's parser gives up)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.load(
                codecs.getreader(encoding)(stream), parse_float=_finite, parse_constant=_constant
            )
        except RecursionError as error:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels") from error
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from error
        if _too_deep(data):
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels")
        return data
