import sys
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError, connection
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.template import loader
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.http import parse_etags
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from journey import page_cache, selectors, services
from journey.calendar import appointment_ics
from journey.errors import ApplicationError
from journey.forms import FeedbackForm, MessageForm, RescheduleForm
from journey.models import Appointment, Journey, Milestone, MilestoneState
from journey.route import map_tiles, route_schematic


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    journeys = selectors.journey_list(user=request.user)
    booked = selectors.stage_bookings(journeys)
    rows = []
    for journey in journeys:
        milestones = selectors.visible_milestones(journey)
        rows.append(
            (
                journey,
                selectors.journey_progress(journey),
                _booked_end(journey, milestones, booked[journey.pk]),
            )
        )
    return render(
        request,
        "journey/home.html",
        {"rows": rows, "invitations": selectors.invitations_waiting(user=request.user)},
    )


def _booked_end(
    journey: Journey, milestones: list[Milestone], appointments: list[Appointment]
) -> Appointment | None:
    """The appointment booked for the journey's last stage (its handover), while that
    stage is to come: the customer is told its day, not a forecast. (The journey's ETA
    puts no stage before its booking's day already: journey.eta.)"""
    _mark_booked(milestones, appointments)
    last = milestones[-1] if milestones else None
    return last.booked if last and last.state == MilestoneState.UPCOMING else None


def _detail_context(request: HttpRequest, journey: Journey, **forms: object) -> dict:
    """Everything the journey page and its partials show, from the prefetched journey."""
    legs = list(journey.legs.all())
    milestones = selectors.visible_milestones(journey)
    profile = getattr(request.user, "profile", None)
    newest_first = bool(profile and profile.timeline_newest_first)
    latest_checkpoint = max(
        (c for leg in legs for c in leg.checkpoints.all()),
        key=lambda c: c.occurred_at,
        default=None,
    )
    route = route_schematic(legs, checkpoint=latest_checkpoint)
    reply_to = None
    raw_reply = request.GET.get("reply", "")
    if raw_reply.isdigit():
        reply_to = next((m for m in milestones if m.pk == int(raw_reply)), None)
    message_form = forms.pop("message_form", None) or MessageForm(
        initial={"milestone": reply_to.pk if reply_to else None}
    )
    if reply_to is None and message_form.is_bound:
        raw = message_form.data.get("milestone", "")
        reply_to = next((m for m in milestones if str(m.pk) == raw), None)
    feedback_forms = forms.pop("feedback_forms", {})
    for milestone in milestones:
        # A rating form that came back with errors is shown again in place.
        milestone.feedback_form = feedback_forms.get(milestone.pk)
        # The same words sent twice (a partner's retry under another id, staff and a
        # mapping saying the same) are shown once, wherever the repeat came.
        told = getattr(milestone, "told", None)
        if told:
            milestone.told = list({event.message: event for event in told}.values())
    appointments = list(journey.appointments.all())
    booked_end = _booked_end(journey, milestones, appointments)
    reschedule_forms = forms.pop("reschedule_forms", {})
    return {
        "journey": journey,
        "progress": selectors.journey_progress(journey),
        # The journey's last stage booked (its handover): its day, not a forecast.
        "booked_end": booked_end,
        "milestones": list(reversed(milestones)) if newest_first else milestones,
        "legs": legs,
        "route": route,
        "map_tiles": map_tiles(route, settings.MAP_TILE_URL)
        if route and settings.MAP_TILE_URL
        else [],
        "map_attribution": settings.MAP_TILE_ATTRIBUTION,
        "latest_checkpoint": latest_checkpoint,
        "open_tasks": [t for t in journey.tasks.all() if t.done_at is None],
        "done_tasks": [t for t in journey.tasks.all() if t.done_at is not None],
        "is_owner": journey.owner_id == request.user.pk,
        "appointments": [
            (a, reschedule_forms.get(a.pk) or RescheduleForm(zone=a.zone, prefix=f"r{a.pk}"))
            for a in appointments
        ],
        "message_form": message_form,
        "reply_to": reply_to,
        "conversation": selectors.journey_messages(journey=journey, user=request.user),
        **forms,
    }


def _mark_booked(milestones: list[Milestone], appointments: list[Appointment]) -> None:
    """Each milestone's ``booked``: the appointment booked for it (the latest, if several,
    as the ETA reads it: no clock, so the cached page stays true), with ``forecast_later``
    when the stage is now expected after its day (``Appointment.day``; the ETA expects it
    no earlier)."""
    # The last one wins: the latest, ties by id, as the ETA's read takes it.
    in_order = sorted(appointments, key=lambda a: (a.starts_at, a.pk))
    by_stage = {a.milestone_id: a for a in in_order if a.milestone_id}
    for milestone in milestones:
        milestone.booked = booked = None
        if milestone.state != MilestoneState.UPCOMING:
            continue  # reached: its time is told, not its booking
        milestone.booked = booked = by_stage.get(milestone.pk)
        if booked is not None:
            booked.milestone = milestone  # its stage's label, with no query
            booked.forecast_later = bool(
                milestone.expected_date and milestone.expected_date > booked.day
            )


@login_required
@require_GET
def detail(request: HttpRequest, reference: str) -> HttpResponse:
    if not page_cache.cacheable(request):  # ?reply=, or a message to show once
        journey = selectors.journey_detail(user=request.user, reference=reference)
        return render(request, "journey/detail.html", _detail_context(request, journey))
    stamp = selectors.journey_stamp(user=request.user, reference=reference)
    unread = page_cache.unread(request)
    html = page_cache.render_cached(
        request,
        key=page_cache.cache_key(request, stamp, "page", unread),
        template="journey/detail.html",
        context=lambda: _detail_context(
            request, selectors.journey_detail(user=request.user, reference=reference)
        ),
        unread=unread,
    )
    return page_cache.respond(request, html)


# The parts of the journey page that change while it is open, and poll for it.
POLLED_PARTS = {"header", "timeline", "route", "todo", "messages"}


@login_required
@require_GET
def part(request: HttpRequest, reference: str, name: str) -> HttpResponse:
    """One changing part of the journey page, with an ETag: 304 when nothing changed.

    The ETag comes from the journey's version and the viewer (journey/page_cache.py), so
    the answer to "has it changed?" needs no rendering at all."""
    if name not in POLLED_PARTS:
        raise Http404("No such part.")
    stamp = selectors.journey_stamp(user=request.user, reference=reference)
    unread = page_cache.unread(request)
    key = page_cache.cache_key(request, stamp, name, unread)
    # The browser must ask each time; the ETag makes asking cheap.
    headers = {"ETag": page_cache.etag_of(key), "Cache-Control": "private, no-cache"}
    if headers["ETag"] in parse_etags(request.headers.get("If-None-Match", "")):
        return HttpResponseNotModified(headers=headers)
    html = page_cache.render_cached(
        request,
        key=key,
        template=f"journey/detail.html#{name}",
        context=lambda: _detail_context(
            request, selectors.journey_detail(user=request.user, reference=reference)
        ),
        unread=unread,
    )
    return page_cache.respond(request, html, **headers)


def _after_write(request: HttpRequest, reference: str, part_name: str, anchor: str) -> HttpResponse:
    """HTMX gets the fresh part back; a plain form post is redirected (PRG)."""
    url = reverse("journey:detail", kwargs={"reference": reference})
    if request.htmx:
        journey = selectors.journey_detail(user=request.user, reference=reference)
        response = render(
            request, f"journey/detail.html#{part_name}", _detail_context(request, journey)
        )
        if part_name == "conversation" and "?" in (request.htmx.current_url or ""):
            # A reply sent from ?reply=<update>: reloading must not open the reply again.
            response["HX-Replace-Url"] = f"{url}#{anchor}"
        return response
    return redirect(f"{url}#{anchor}")


def _form_error(
    request: HttpRequest, journey: Journey, part_name: str, **forms: object
) -> HttpResponse:
    """Show the form again with its messages: the part for HTMX, else the whole page.

    HTMX swaps only 2xx answers by default, so the part comes back with 200; the plain
    page answers 400 so a failed post is never mistaken for success.
    """
    context = _detail_context(request, journey, **forms)
    if request.htmx:
        return render(request, f"journey/detail.html#{part_name}", context)
    return render(request, "journey/detail.html", context, status=400)


def _apply_error(form: forms.Form, error: ApplicationError) -> None:
    if error.fields:
        for field, messages in error.fields.items():
            for message in messages:
                form.add_error(field if field in form.fields else None, message)
    else:
        form.add_error(None, error.message)


@login_required
@require_POST
def task_done(request: HttpRequest, reference: str, task_id: int) -> HttpResponse:
    journey = selectors.journey_detail(user=request.user, reference=reference)
    task = next((t for t in journey.tasks.all() if t.pk == task_id), None)
    if task is None:
        raise Http404("No such task.")
    try:
        services.task_complete(task=task, user=request.user)
    except ApplicationError as error:
        if error.status == 404:  # withdrawn meanwhile
            raise Http404(error.message) from error
        raise PermissionDenied(error.message) from error
    return _after_write(request, reference, "todo", "todo")


@login_required
@require_POST
def reschedule(request: HttpRequest, reference: str, appointment_id: int) -> HttpResponse:
    journey = selectors.journey_detail(user=request.user, reference=reference)
    appointment = next((a for a in journey.appointments.all() if a.pk == appointment_id), None)
    if appointment is None:
        raise Http404("No such appointment.")
    form = RescheduleForm(request.POST, zone=appointment.zone, prefix=f"r{appointment.pk}")
    if form.is_valid():
        try:
            services.appointment_request_reschedule(
                appointment=appointment,
                user=request.user,
                first_choice=form.cleaned_data["first_choice"],
                second_choice=form.cleaned_data["second_choice"],
                note=form.cleaned_data["note"],
            )
        except ApplicationError as error:
            if error.status == 403:
                raise PermissionDenied(error.message) from error
            if error.status == 404:  # cancelled meanwhile
                raise Http404(error.message) from error
            _apply_error(form, error)
    if form.errors:
        return _form_error(
            request, journey, "appointments", reschedule_forms={appointment.pk: form}
        )
    return _after_write(request, reference, "appointments", "appointments")


@login_required
@require_POST
def message(request: HttpRequest, reference: str) -> HttpResponse:
    journey = selectors.journey_detail(user=request.user, reference=reference)
    form = MessageForm(request.POST)
    if form.is_valid():
        milestone = None
        if form.cleaned_data["milestone"] is not None:
            milestone = next(
                (m for m in journey.milestones.all() if m.pk == form.cleaned_data["milestone"]),
                None,
            )
            if milestone is None:
                form.add_error(None, _("That update is not part of this journey."))
        if not form.errors:
            try:
                services.message_post(
                    journey=journey,
                    author=request.user,
                    body=form.cleaned_data["body"],
                    milestone=milestone,
                )
            except ApplicationError as error:
                _apply_error(form, error)
    if form.errors:
        return _form_error(request, journey, "conversation", message_form=form)
    return _after_write(request, reference, "conversation", "conversation")


@login_required
@require_POST
def feedback(request: HttpRequest, reference: str, milestone_id: int) -> HttpResponse:
    journey = selectors.journey_detail(user=request.user, reference=reference)
    milestone = next((m for m in journey.milestones.all() if m.pk == milestone_id), None)
    if milestone is None or not milestone.stage.customer_visible:
        raise Http404("No such stage.")
    form = FeedbackForm(request.POST)
    if form.is_valid():
        try:
            services.feedback_give(
                milestone=milestone,
                customer=request.user,
                rating=form.cleaned_data["rating"],
                comment=form.cleaned_data["comment"],
            )
        except ApplicationError as error:
            _apply_error(form, error)
    if form.errors:
        return _form_error(request, journey, "timeline", feedback_forms={milestone.pk: form})
    return _after_write(request, reference, "timeline", f"m-{milestone.pk}")


@login_required
@require_GET
def appointment_calendar(request: HttpRequest, reference: str, appointment_id: int) -> HttpResponse:
    """The appointment as an .ics file: it starts when the customer should arrive."""
    journey = selectors.journey_detail(user=request.user, reference=reference)
    appointment = next((a for a in journey.appointments.all() if a.pk == appointment_id), None)
    if appointment is None:
        raise Http404("No such appointment.")
    body = appointment_ics(appointment, company=settings.COMPANY_NAME)
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="{journey.reference}-{appointment.pk}.ics"'
    )
    response["Cache-Control"] = "private, no-cache"
    return response


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
        response = HttpResponse("database unavailable", status=503, content_type="text/plain")
        response["Retry-After"] = str(DATABASE_RETRY_AFTER)
        return response
    return HttpResponse("ok", content_type="text/plain")


# security.txt says it expires this long after it was served (RFC 9116 asks for less
# than a year): a copy kept somewhere goes stale, the file served never does.
SECURITY_TXT_VALIDITY = timedelta(days=90)


@require_GET
def security_txt(request: HttpRequest) -> HttpResponse:
    """/.well-known/security.txt (RFC 9116): how to report a vulnerability, from
    SECURITY_CONTACT. Without a contact there is nothing true to say: 404 (and `check
    --deploy` warns)."""
    if not settings.SECURITY_CONTACT:
        raise Http404("No security contact is configured.")
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    lines = [f"Contact: {contact}" for contact in settings.SECURITY_CONTACT]
    lines.append(f"Expires: {midnight + SECURITY_TXT_VALIDITY:%Y-%m-%dT%H:%M:%SZ}")
    lines.append(f"Preferred-Languages: {', '.join(code for code, _name in settings.LANGUAGES)}")
    if settings.SITE_URL.startswith("https://"):
        lines.append(f"Canonical: {settings.SITE_URL}{request.path}")
    response = HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")
    patch_cache_control(response, public=True, max_age=60 * 60 * 24)
    return response


# Retry after this many seconds when the database is unreachable.
DATABASE_RETRY_AFTER = 30


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database that cannot be reached (stopped, restarting, failing over) is
    a 503 with Retry-After, so load balancers and partners retry instead of treating it as
    a bug; the connection is reopened on the next request, so the site recovers by itself.
    Anything else is the usual 500. Django calls this inside its ``except`` block, wherever
    in the middleware chain the error was raised (sessions and users load lazily)."""
    error = sys.exc_info()[1]
    if not isinstance(error, (OperationalError, InterfaceError)):
        return defaults.server_error(request)
    if request.path.startswith("/api/"):
        body = {
            "error": {
                "code": "service_unavailable",
                "message": "The service is briefly unavailable; retry later.",
                "fields": {},
            }
        }
        response: HttpResponse = JsonResponse(body, status=503)
    else:
        template = loader.get_template("503.html")
        response = HttpResponse(template.render({}, None), status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    response["Cache-Control"] = "no-store"
    return response
