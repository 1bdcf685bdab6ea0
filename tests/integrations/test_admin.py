"""Staff see unmapped status codes, and webhook deliveries with their attempts."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_unmapped_codes_are_flagged_for_staff_and_never_reach_the_customer(
    api, journey, partner, admin_client, client, customer
):
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    occurred = (timezone.now() - timedelta(minutes=2)).isoformat()
    api.post(url, {"event_id": "u1", "code": "WEIRD-42", "occurred_at": occurred}, format="json")

    partners = admin_client.get(reverse("admin:integrations_partner_changelist")).content.decode()
    assert "WEIRD-42" in partners
    flagged = admin_client.get(
        reverse("admin:integrations_inboundevent_changelist") + "?unmapped__exact=1"
    ).content.decode()
    assert "WEIRD-42" in flagged

    client.force_login(customer)
    page = client.get(reverse("journey:detail", kwargs={"reference": journey.reference}))
    assert page.status_code == 200
    assert "WEIRD-42" not in page.content.decode()


def test_an_unmapped_code_mapped_in_other_capitals_is_pointed_out(
    api, journey, partner, admin_client
):
    """Codes match exactly; the partner list says which mapping a slip was meant for, and
    the mapping's code says that capitals count (from a staff review)."""
    from integrations.models import StatusMapping

    StatusMapping.objects.create(partner=partner, code="BODY-DONE", stage_key="stage-2")
    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    occurred = (timezone.now() - timedelta(minutes=2)).isoformat()
    for event_id, code in (("c1", "body-done"), ("c2", "WEIRD-42")):
        body = {"event_id": event_id, "code": code, "occurred_at": occurred}
        assert api.post(url, body, format="json").json()["state"] == "unmapped"

    partners = admin_client.get(reverse("admin:integrations_partner_changelist")).content.decode()
    assert "WEIRD-42, body-done (mapped as BODY-DONE: capitals count)" in partners
    page = admin_client.get(reverse("admin:integrations_partner_change", args=[partner.pk]))
    assert "capitals and punctuation count" in page.content.decode()


def test_the_partner_page_edits_the_mapping_inline(admin_client, partner):
    page = admin_client.get(reverse("admin:integrations_partner_change", args=[partner.pk]))
    assert page.status_code == 200
    assert 'name="mappings-0-code"' in page.content.decode()


def test_a_mapping_to_a_stage_no_template_has_is_a_form_error(journey, partner):
    """The partner page's mapping rows are model forms: Model.full_clean asks this."""
    from django.core.exceptions import ValidationError

    from integrations.models import StatusMapping

    StatusMapping(partner=partner, code="OK", stage_key="stage-2").full_clean()
    with pytest.raises(ValidationError) as refused:
        StatusMapping(partner=partner, code="BOGUS", stage_key="no-such-stage").full_clean()
    assert refused.value.message_dict == {
        "stage_key": ["No journey template has a stage with this key."]
    }


def test_unmapped_events_apply_once_staff_map_their_code(
    api, journey, partner, admin_client, django_capture_on_commit_callbacks
):
    from integrations.models import InboundEvent, StatusMapping
    from journey.models import MilestoneState
    from notifications.models import Notification

    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    occurred = (timezone.now() - timedelta(minutes=2)).isoformat()
    for event_id, code in (("u1", "LATE-MAP"), ("u2", "STILL-UNKNOWN")):
        body = {"event_id": event_id, "code": code, "occurred_at": occurred}
        assert api.post(url, body, format="json").json()["state"] == "unmapped"
    StatusMapping.objects.create(partner=partner, code="LATE-MAP", stage_key="stage-3")
    changelist = reverse("admin:integrations_inboundevent_changelist")
    chosen = [str(pk) for pk in InboundEvent.objects.values_list("pk", flat=True)]
    action = {"action": "apply_with_current_mappings", "_selected_action": chosen}

    with django_capture_on_commit_callbacks(execute=True):
        # From the list filtered to unmapped events, as staff reach them: the event applied
        # leaves the filter, and is still counted as chosen.
        response = admin_client.post(changelist + "?unmapped__exact=1", action, follow=True)
    assert (
        "1 applied; 0 logged as older than their journey&#x27;s state (on its timeline, "
        "moving nothing); 0 refused (see their rejection); 1 left as they were"
    ) in response.content.decode()
    mapped, unknown = InboundEvent.objects.order_by("event_id")
    assert (mapped.state, unknown.state) == ("applied", "unmapped")
    assert journey.milestones.get(stage__key="stage-3").state == MilestoneState.CURRENT
    told = Notification.objects.filter(recipient=journey.owner, channel="email")
    assert told.count() == 1
    # The partner reads it back applied; applying again changes nothing.
    read = api.get(
        reverse("api:journey-event", kwargs={"reference": journey.reference, "event_id": "u1"})
    )
    assert read.json()["state"] == "applied"
    response = admin_client.post(changelist, action, follow=True)
    assert (
        "0 applied; 0 logged as older than their journey&#x27;s state (on its timeline, "
        "moving nothing); 0 refused (see their rejection); 2 left as they were"
    ) in response.content.decode()
    assert told.count() == 1


def test_unmapped_events_refused_not_served_or_busy_are_said_so(api, journey, partner, monkeypatch):
    from integrations import services
    from integrations.models import InboundEvent, StatusMapping
    from journey.models import StageDefinition
    from tests.factories import TemplateFactory

    url = reverse("api:journey-events", kwargs={"reference": journey.reference})
    occurred = (timezone.now() - timedelta(minutes=2)).isoformat()
    for event_id in ("a", "b", "c"):
        body = {"event_id": event_id, "code": "ELSEWHERE", "occurred_at": occurred}
        api.post(url, body, format="json")
    # A stage some template has, but not this journey's: the spine refuses it.
    other = TemplateFactory(stages=1)
    StageDefinition.objects.filter(template=other).update(key="only-elsewhere")
    StatusMapping.objects.create(partner=partner, code="ELSEWHERE", stage_key="only-elsewhere")
    first, second, third = InboundEvent.objects.order_by("event_id")

    # The applier's lock held elsewhere (the applier then takes nothing: None): nothing
    # happens, the event is not left queued.
    with monkeypatch.context() as patched:
        patched.setattr(services, "partner_queued_events_apply", lambda **kwargs: None)
        busy = services.partner_unmapped_events_apply(pks=[first.pk])
    assert busy == services.UnmappedApplied(left=1, busy=True)
    first.refresh_from_db()
    assert (first.unmapped, first.queued) == (True, False)

    done = services.partner_unmapped_events_apply(pks=[first.pk])
    assert done == services.UnmappedApplied(refused=1)
    first.refresh_from_db()
    assert first.state == "rejected" and first.rejection["code"] == "unknown_stage"
    # Still mapped there, it is refused again; once staff change the mapping to a stage
    # the journey has, it applies (its rejection gone).
    assert services.partner_unmapped_events_apply(pks=[first.pk]) == (
        services.UnmappedApplied(refused=1)
    )
    StatusMapping.objects.filter(code="ELSEWHERE").update(stage_key="stage-2")
    assert services.partner_unmapped_events_apply(pks=[first.pk]) == (
        services.UnmappedApplied(applied=1)
    )
    first.refresh_from_db()
    assert (first.state, first.rejection) == ("applied", None)
    assert journey.milestones.get(stage__key="stage-2").state == "current"
    # Applied, it is not taken again.
    assert services.partner_unmapped_events_apply(pks=[first.pk]) == (
        services.UnmappedApplied(left=1)
    )
    # The same stage again, now that the journey is there: logged, not counted applied.
    assert services.partner_unmapped_events_apply(pks=[third.pk]) == (
        services.UnmappedApplied(logged=1)
    )
    third.refresh_from_db()
    assert third.state == "logged"

    # The partner no longer serves the journey: left as it was.
    journey.partners.remove(partner)
    assert services.partner_unmapped_events_apply(pks=[second.pk]) == (
        services.UnmappedApplied(left=1)
    )
    second.refresh_from_db()
    assert second.state == "unmapped"
