from django.http import HttpRequest

from notifications.services import unread_count


def unread(request: HttpRequest) -> dict[str, object]:
    """The unread badge, counted only when a page shows it (lazily)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"unread_notifications": lambda: unread_count(user=user)}
