"""For the error pages (templates/standalone.html): nothing there may fail in turn."""

from django import template
from django.conf import settings
from django.templatetags.static import static

register = template.Library()


@register.simple_tag
def static_or_plain(path: str) -> str:
    """``{% static path %}``, or the file's plain address if the manifest storage has no
    entry for it (collectstatic not run): an error page that raised in turn would be
    replaced by a bare one, or fail a request that should have been a clean 404."""
    try:
        return static(path)
    except ValueError:
        return settings.STATIC_URL + path
