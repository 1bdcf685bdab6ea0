from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def company_name() -> str:
    """The company's name, for templates rendered without the request's context."""
    return settings.COMPANY_NAME
