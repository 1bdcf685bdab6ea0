"""Who may change an account in the admin: a superuser only. Agents and Managers hold
accounts.change_user for "Propose a change…" alone; whatever they post, no account's
rights, status, email or password change (a staff review found an Agent could make
themselves superuser)."""

import io

import pytest
from allauth.account.models import EmailAddress
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.urls import reverse

from accounts.mfa import totp_activate
from accounts.models import ChangeProposal, User
from accounts.roles import AGENTS, MANAGERS
from tests.admin_pages import page_data
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

RIGHTS = ("is_staff", "is_superuser", "groups", "user_permissions")


def staff_in(client, group_name: str) -> User:
    call_command("setup_roles", stdout=io.StringIO())
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    totp_activate(user=user)
    client.force_login(user)
    return user


def crafted(data: dict[str, object]) -> dict[str, object]:
    """The page's own data with every right a privilege escalation would post."""
    return {
        **data,
        "email": "taken-over@example.com",
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "groups": [str(group.pk) for group in Group.objects.all()],
        "user_permissions": [str(pk) for pk in Permission.objects.values_list("pk", flat=True)],
    }


def state(user: User) -> tuple:
    user.refresh_from_db()
    return (
        user.email,
        user.is_active,
        user.is_staff,
        user.is_superuser,
        sorted(user.groups.values_list("name", flat=True)),
        user.user_permissions.count(),
        user.password,
    )


@pytest.mark.parametrize("role", [AGENTS, MANAGERS])
def test_staff_cannot_raise_their_own_rights_by_any_post(client, role):
    me = staff_in(client, role)
    url = reverse("admin:accounts_user_change", args=[me.pk])
    page = client.get(url)
    before = state(me)

    response = client.post(url, crafted(page_data(page)))

    assert response.status_code == 403
    assert state(me) == before == (me.email, True, True, False, [role], 0, me.password)
    assert LogEntry.objects.count() == 0


@pytest.mark.parametrize("role", [AGENTS, MANAGERS])
def test_staff_see_a_customers_account_without_rights_fields_and_cannot_change_it(
    client, role, customer
):
    staff_in(client, role)
    url = reverse("admin:accounts_user_change", args=[customer.pk])
    page = client.get(url)
    html = page.content.decode()
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    for name in (*RIGHTS, "email", "is_active", "password"):
        assert f'name="{name}"' not in html, name
    assert "Superuser status" not in html and "Staff status" not in html
    assert customer.email in html  # shown, read-only
    before = state(customer)

    response = client.post(url, crafted(page_data(page)))

    assert response.status_code == 403
    assert state(customer) == before
    # Nor a password set through the admin's password page.
    password = reverse("admin:auth_user_password_change", args=[customer.pk])
    assert client.get(password).status_code == 403
    response = client.post(
        password, {"password1": "Another-pass-123", "password2": "Another-pass-123"}
    )
    assert response.status_code == 403
    assert state(customer) == before


@pytest.mark.parametrize("role", [AGENTS, MANAGERS])
def test_staff_cannot_change_another_staff_members_or_a_superusers_account(client, role):
    staff_in(client, role)
    colleague = UserFactory(is_staff=True)
    boss = UserFactory(is_staff=True, is_superuser=True)
    for other in (colleague, boss):
        url = reverse("admin:accounts_user_change", args=[other.pk])
        page = client.get(url)
        assert page.context["has_change_permission"] is False
        before = state(other)
        data = {**crafted(page_data(page)), "is_superuser": "", "is_active": ""}
        assert client.post(url, data).status_code == 403
        assert state(other) == before
        assert (
            client.get(reverse("admin:auth_user_password_change", args=[other.pk])).status_code
            == 403
        )
        # "Propose a change…" is for customers' details.
        propose = reverse("admin:accounts_user_propose", args=[other.pk])
        response = client.post(propose, {"field": "phone", "value": "+441234567890", "reason": "r"})
        assert response.status_code == 403
    assert ChangeProposal.objects.count() == 0


def test_an_agent_still_proposes_a_change_to_a_customer(client, customer):
    staff_in(client, AGENTS)
    listing = client.get(reverse("admin:accounts_user_changelist")).content.decode()
    propose = reverse("admin:accounts_user_propose", args=[customer.pk])
    assert propose in listing
    response = client.post(
        propose, {"field": "given_name", "value": "Alexandra", "reason": "As on the contract"}
    )
    assert response.status_code == 302
    assert ChangeProposal.objects.get().new_value == "Alexandra"
    # The proposal shows on the customer's page, waiting for their answer.
    page = client.get(response.url).content.decode()
    assert "Alexandra" in page and "As on the contract" in page


def test_a_superuser_grants_rights_but_does_not_change_an_email_address(admin_client, customer):
    """Changing an email needs allauth's own record (and its confirmation) changed with
    it, and an audit entry: the customer does it in the portal."""
    EmailAddress.objects.create(user=customer, email=customer.email, verified=True, primary=True)
    url = reverse("admin:accounts_user_change", args=[customer.pk])
    page = admin_client.get(url)
    html = page.content.decode()
    for name in ("is_staff", "is_superuser", "groups"):
        assert f'name="{name}"' in html, name
    assert 'name="email"' not in html
    old = customer.email
    call_command("setup_roles", stdout=io.StringIO())
    agents = Group.objects.get(name=AGENTS)
    data = {
        **page_data(page),
        "email": "new-unconfirmed@example.com",
        "is_staff": "on",
        "groups": [str(agents.pk)],
    }

    response = admin_client.post(url, data)

    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.email, customer.is_staff) == (old, True)
    assert list(customer.groups.all()) == [agents]
    assert list(EmailAddress.objects.values_list("email", flat=True)) == [old]


def test_the_profile_is_read_only_for_a_superuser_too_allowed_hours_included(
    admin_client, customer
):
    profile = customer.profile
    profile.anytime_kinds = ["staff_reply"]
    profile.save()
    url = reverse("admin:accounts_user_change", args=[customer.pk])
    page = admin_client.get(url)
    html = page.content.decode()
    assert 'name="profile-0-anytime_kinds"' not in html
    assert 'name="profile-0-given_name"' not in html
    assert "A message from us, or our answer to yours" in html  # the kinds, in words
    data = {
        **page_data(page),
        "profile-0-anytime_kinds": '["milestone_reached", "nonsense"]',
        "profile-0-given_name": "Overwritten",
    }

    response = admin_client.post(url, data)

    assert response.status_code == 302
    profile.refresh_from_db()
    assert profile.anytime_kinds == ["staff_reply"]
    assert profile.given_name != "Overwritten"
