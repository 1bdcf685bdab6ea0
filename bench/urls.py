"""The project's URLs and the floor: a view that loads the logged-in user, nothing else."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def floor(request: HttpRequest) -> HttpResponse:
    # The session and the user are loaded lazily: touching the user loads both.
    return HttpResponse(f"user {request.user.pk}", content_type="text/plain")


urlpatterns = [
    path("bench/floor/", floor, name="bench-floor"),
    path("", include("config.urls")),
]
