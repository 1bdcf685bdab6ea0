"""Dates in the reader's language: ``{{ value|day:"l j F" }}`` is "Saturday 5 December"
in English and "sábado 5 de diciembre" in Spanish, ``{{ value|day:"j M" }}`` "5 Dec" and
"5 dic".

Django's ``date`` filter takes a format as it is given, so "l j F" came out as "sábado 5
diciembre". Each shape the templates use is a catalogue entry of its own (its context
names its parts), which the language's translation reorders and fills in."""

from datetime import date, datetime

from django import template
from django.template.defaultfilters import date as date_filter
from django.utils.translation import pgettext_lazy

register = template.Library()

SHAPES = {
    "j F": pgettext_lazy("date format: day, month", "j F"),
    "j F Y": pgettext_lazy("date format: day, month, year", "j F Y"),
    "l j F": pgettext_lazy("date format: weekday, day, month", "l j F"),
    "l j F, H:i": pgettext_lazy("date format: weekday, day, month, time", "l j F, H:i"),
    # Short months: "5 Dec" in English; Spanish writes them in lower case ("5 dic").
    "j M": pgettext_lazy("date format: day, short month", "j M"),
    "j M Y": pgettext_lazy("date format: day, short month, year", "j M Y"),
    "j M, H:i": pgettext_lazy("date format: day, short month, time", "j M, H:i"),
    "j M Y, H:i": pgettext_lazy("date format: day, short month, year, time", "j M Y, H:i"),
    "D j M": pgettext_lazy("date format: short weekday, day, short month", "D j M"),
    "D j M, H:i": pgettext_lazy("date format: short weekday, day, short month, time", "D j M, H:i"),
}


@register.filter(expects_localtime=True, is_safe=False)
def day(value: date | datetime | None, shape: str) -> str:
    """``value`` in ``shape`` (one of ``SHAPES``), in the active language's words; a
    shape not in the table is used as it is (a message still goes out)."""
    if value in (None, ""):
        return ""
    return date_filter(value, str(SHAPES.get(shape, shape)))
