from django import template
from django.conf import settings

from accounts.forms import zone_label as _zone_label

register = template.Library()


@register.simple_tag
def company_name() -> str:
    """The company's name, for templates rendered without the request's context."""
    return settings.COMPANY_NAME


@register.filter
def zone_label(zone: str) -> str:
    """A time zone as the profile's picker names it (accounts.forms.zone_label)."""
    return _zone_label(zone)


@register.filter
def masked_email(email: str) -> str:
    """An address its owner recognises and a stranger cannot use: "f•••@example.com"."""
    local, _at, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"
