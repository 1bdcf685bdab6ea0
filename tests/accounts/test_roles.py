import io

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from accounts.mfa import totp_activate
from accounts.roles import AGENTS, MANAGERS, ROLES
from journey.models import JourneyTemplate, Message
from tests.factories import TemplateFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_setup_roles_creates_both_groups_with_every_listed_permission_and_is_idempotent():
    call_command("setup_roles", stdout=io.StringIO())
    call_command("setup_roles", stdout=io.StringIO())
    for name, codes in ROLES.items():
        group = Group.objects.get(name=name)
        granted = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert granted == set(codes), name


def staff_in(client, group_name: str):
    call_command("setup_roles", stdout=io.StringIO())
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    totp_activate(user=user)
    client.force_login(user)
    return user


def test_an_agent_replies_to_customers_but_cannot_edit_templates(client, journey):
    staff_in(client, AGENTS)
    reply = client.post(
        reverse("admin:journey_journey_reply", args=[journey.pk]), {"body": "On its way."}
    )
    assert reply.status_code == 302
    assert Message.objects.filter(from_staff=True).count() == 1
    template = TemplateFactory(stages=1)
    response = client.post(
        reverse("admin:journey_journeytemplate_change", args=[template.pk]),
        {"key": "changed", "name": "Changed"},
    )
    assert response.status_code == 403
    assert JourneyTemplate.objects.get(pk=template.pk).key == template.key
    assert client.get(reverse("admin_dashboard")).status_code == 200


def test_a_manager_edits_templates(client):
    staff_in(client, MANAGERS)
    template = TemplateFactory(stages=1)
    page = client.get(reverse("admin:journey_journeytemplate_change", args=[template.pk]))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is True


def test_staff_without_a_second_factor_do_not_reach_the_admin(client):
    call_command("setup_roles", stdout=io.StringIO())
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=MANAGERS))
    client.force_login(user)
    response = client.get(reverse("admin_dashboard"))
    assert response.status_code == 302
    assert "/admin/" not in response.url or "login" in response.url


def test_an_agent_reads_a_stages_spanish_words_on_the_template_page(client):
    staff_in(client, AGENTS)
    template = TemplateFactory(stages=1)
    template.stages.update(translations={"es": {"label": "Pintura"}})
    page = client.get(reverse("admin:journey_journeytemplate_change", args=[template.pk]))
    html = page.content.decode()
    assert page.context["has_change_permission"] is False
    assert "Label (Spanish)" in html and "Pintura" in html and "None" not in html
