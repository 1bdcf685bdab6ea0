"""Staff pages outside the ModelAdmins: the dashboard (reads journey.dashboard)."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from journey.dashboard import Bar, dashboard

CHART_WIDTH = 520
LABEL_WIDTH = 150
VALUE_WIDTH = 70
ROW_HEIGHT = 22
BAR_HEIGHT = 14
# Space between the module's title bar and the first bar.
PAD = 8


def bar_chart(
    bars: list[Bar],
    *,
    maximum: float | None = None,
    colour: str = "#417690",
    value_width: int = VALUE_WIDTH,
) -> dict:
    """Geometry for a horizontal bar chart drawn by the template as SVG attributes (no
    inline styles, no script: the CSP allows it as it is). ``value_width``: room for the
    longest text after a full bar."""
    top = maximum if maximum is not None else max([bar.value for bar in bars] or [0])
    span = CHART_WIDTH - LABEL_WIDTH - value_width
    rows = []
    for index, bar in enumerate(bars):
        width = 0 if not top else round(span * bar.value / top, 1)
        y = PAD + index * ROW_HEIGHT
        rows.append(
            {
                "label": bar.label,
                "colour": bar.colour or colour,
                "text": bar.text,
                "y": y,
                "text_y": y + BAR_HEIGHT - 2,
                "width": width,
                "value_x": LABEL_WIDTH + width + 6,
            }
        )
    return {
        "rows": rows,
        "width": CHART_WIDTH,
        "height": max(len(rows), 1) * ROW_HEIGHT + 2 * PAD,
        "label_width": LABEL_WIDTH,
        "label_x": LABEL_WIDTH - 6,
        "bar_height": BAR_HEIGHT,
    }


def staff_dashboard(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("journey.view_journey"):
        raise PermissionDenied
    data = dashboard()
    charts = {
        "health": bar_chart(data["at_risk"]["bars"]),
        "unanswered": bar_chart(data["unanswered"]["bars"], colour="#c86400"),
        "time_to_know": bar_chart(data["time_to_know"]["bars"]),
        "contact": bar_chart(data["contact"]["bars"], colour="#8a6d3b"),
        # "4.5 (12) · viewers 3.0 (4)" after a full bar.
        "feedback": bar_chart(data["feedback"], maximum=5, colour="#5b80b2", value_width=180),
    }
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "data": data,
        "charts": charts,
    }
    return TemplateResponse(request, "admin/dashboard/index.html", context)
