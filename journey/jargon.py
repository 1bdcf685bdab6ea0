"""The jargon guard: internal words (team names, system codes) never reach customers.

The list is ``JargonTerm`` rows (edited in the admin) plus ``settings.JARGON_TERMS``.
Matching is case-insensitive and on word boundaries, so "WMS" catches "wms code" but
not "swms".
"""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from journey.errors import ApplicationError


def jargon_terms() -> list[str]:
    from journey.models import JargonTerm

    terms = set(getattr(settings, "JARGON_TERMS", []))
    terms.update(JargonTerm.objects.values_list("term", flat=True))
    return sorted(t for t in terms if t.strip())


def jargon_found(text: str, *, terms: list[str] | None = None) -> str | None:
    """The first internal term in ``text`` (as it appears there), or None."""
    if not text:
        return None
    for term in jargon_terms() if terms is None else terms:
        # \b fails next to punctuation-edged terms ("R&D"), so use look-arounds instead.
        pattern = rf"(?<!\w){re.escape(term.strip())}(?!\w)"
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match:
            return match.group(0)
    return None


def _message(word: str) -> str:
    return _("“%(word)s” is an internal term: customers would not understand it.") % {"word": word}


def validate_no_jargon(value: str) -> None:
    """A form field validator."""
    word = jargon_found(value)
    if word:
        raise ValidationError(_message(word), code="jargon")


def jargon_check(**fields: str) -> None:
    """For services: raise an ApplicationError naming the field and the word."""
    if not any(fields.values()):
        return  # nothing a customer reads: no need to load the list
    terms = jargon_terms()
    errors = {}
    for name, value in fields.items():
        word = jargon_found(value or "", terms=terms)
        if word:
            errors[name] = [_message(word)]
    if errors:
        first = next(iter(errors.values()))[0]
        raise ApplicationError(first, code="jargon", fields=errors)
