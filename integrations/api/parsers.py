"""The API's JSON parser: DRF's, refusing what the rest of the stack cannot hold."""

import codecs
import json
import math
import re
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

# Deeper than any body the API documents (an event's ``data`` is a few levels at most),
# and far short of what the checks that walk a body (NUL characters) or the database's
# JSON functions would need a stack for.
MAX_DEPTH = 64

# A surrogate can only come in as an escape (UTF-8 cannot carry one); a pair is an
# astral character (an emoji), a lone one is no text at all, and PostgreSQL's JSON
# refuses it. The walk below runs only when the body has such an escape.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        # json reads 1e400 as infinity, which no JSON column can store.
        raise ValueError(f"the number {text[:40]} is too large")
    return number


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _has_lone_surrogate(data: Any) -> bool:
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


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
    Infinity, a number too large for a float (read as infinity), a document nested
    more than ``MAX_DEPTH`` levels (or so deep that Python's parser gives up), and a
    string with a lone surrogate (``"\\ud800"``), which is no text."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            data = json.loads(text, parse_float=_finite, parse_constant=_constant)
        except RecursionError as error:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels") from error
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from error
        if _too_deep(data):
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels")
        if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(data):
            raise ParseError("JSON parse error - a lone surrogate (\\ud800-\\udfff) is not text")
        return data
