from django.conf import settings
from django.http import HttpRequest


def branding(request: HttpRequest) -> dict[str, str]:
    """The company's own name: customers see it, never a partner's."""
    return {"company_name": settings.COMPANY_NAME}
