from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from journey import selectors
from journey.route import route_schematic


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    journeys = selectors.journey_list(user=request.user)
    rows = [(journey, selectors.journey_progress(journey)) for journey in journeys]
    return render(request, "journey/home.html", {"rows": rows})


@login_required
@require_GET
def detail(request: HttpRequest, reference: str) -> HttpResponse:
    journey = selectors.journey_detail(user=request.user, reference=reference)
    legs = list(journey.legs.all())
    milestones = [m for m in journey.milestones.all() if m.stage.customer_visible]
    profile = getattr(request.user, "profile", None)
    newest_first = bool(profile and profile.timeline_newest_first)
    context = {
        "journey": journey,
        "progress": selectors.journey_progress(journey),
        "milestones": list(reversed(milestones)) if newest_first else milestones,
        "legs": legs,
        "route": route_schematic(legs),
        "latest_checkpoint": max(
            (c for leg in legs for c in leg.checkpoints.all()),
            key=lambda c: c.occurred_at,
            default=None,
        ),
        "open_tasks": [t for t in journey.tasks.all() if t.done_at is None],
        "done_tasks": [t for t in journey.tasks.all() if t.done_at is not None],
    }
    return render(request, "journey/detail.html", context)


@login_required
@require_GET
def photo(request: HttpRequest, reference: str, photo_id: int, variant: str) -> FileResponse:
    """A photo, only for someone who may see its journey (404 for anyone else)."""
    if variant not in {"full", "thumb"}:
        raise Http404("No such photo size.")
    item = selectors.photo_for_viewer(user=request.user, reference=reference, photo_id=photo_id)
    field = item.thumbnail if variant == "thumb" and item.thumbnail else item.image
    response = FileResponse(field.open("rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Disposition"] = "inline"
    return response


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness and database reachability, for load balancers (503 when the DB is down)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return HttpResponse("database unavailable", status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")
