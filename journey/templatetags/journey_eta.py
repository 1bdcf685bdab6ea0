"""The ETA in plain words, for the portal."""

from datetime import date

from django import template
from django.utils import formats
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from journey.models import Health, Journey

register = template.Library()


def _day(value: date) -> str:
    # The language's own order and words ("3 December", "3 de diciembre").
    return formats.date_format(value, pgettext("date format: day, month", "j F"))


def _span(low: date, high: date) -> tuple[str, str]:
    """'1' and '6 December' in one month; whole dates across months or years."""
    if low.year != high.year:
        whole = pgettext("date format: day, month, year", "j F Y")
        return formats.date_format(low, whole), formats.date_format(high, whole)
    if low.month == high.month:
        return formats.date_format(low, "j"), _day(high)
    return _day(low), _day(high)


@register.simple_tag
def eta_in_words(journey: Journey) -> str:
    """'Expected 3 December, most likely between 1 and 6 December.'"""
    if journey.health == Health.DONE and journey.eta:
        return _("Arrived on %(date)s.") % {"date": _day(journey.eta)}
    if journey.eta is None or journey.health == Health.CANCELLED:
        return ""
    if not journey.eta_low or not journey.eta_high or journey.eta_low == journey.eta_high:
        return _("Expected %(date)s.") % {"date": _day(journey.eta)}
    low, high = _span(journey.eta_low, journey.eta_high)
    return _("Expected %(date)s, most likely between %(low)s and %(high)s.") % {
        "date": _day(journey.eta),
        "low": low,
        "high": high,
    }
