"""Posting an admin page back as a browser would: every field as it was rendered (the
change form and its inlines, with their management forms), then what the test changes
or crafts on top of it."""

import zoneinfo

from django import forms
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.http import HttpResponse
from django.utils import timezone


def _form_into(data: dict[str, object], form: forms.BaseForm) -> None:
    for bound in form:
        field, widget = bound.field, bound.field.widget
        if isinstance(widget, RelatedFieldWidgetWrapper):
            widget = widget.widget  # the admin's add/change links around the select
        if field.disabled or isinstance(widget, forms.FileInput):
            continue  # a browser sends neither a disabled input nor, here, a file
        value = bound.value()
        if isinstance(widget, forms.CheckboxInput):
            if widget.check_test(value):
                data[bound.html_name] = "on"
            continue
        context = widget.get_context(bound.html_name, value, {})["widget"]
        for part in context.get("subwidgets") or [context]:
            shown = part["value"]
            if shown is None:
                continue
            data[part["name"]] = list(shown) if isinstance(shown, (list, tuple)) else shown


def page_data(response: HttpResponse) -> dict[str, object]:
    """The POST body of the admin change page ``response`` rendered, unchanged (times on
    the clock the page was drawn on: the staff member's profile's, as the middleware's)."""
    data: dict[str, object] = {}
    profile = getattr(response.wsgi_request.user, "profile", None)
    zone = zoneinfo.ZoneInfo(profile.time_zone) if profile else timezone.get_default_timezone()
    with timezone.override(zone):
        _form_into(data, response.context["adminform"].form)
        for inline in response.context["inline_admin_formsets"]:
            formset = inline.formset
            _form_into(data, formset.management_form)
            for form in formset.forms:
                _form_into(data, form)
    return data
