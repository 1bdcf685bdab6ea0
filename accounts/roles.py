"""Staff roles: the groups "Agents" and "Managers" and the permissions each needs.

Agents do the daily work: read everything about a journey, record milestones, add tasks,
appointments, legs and photos, reply to customers, resend messages and propose changes to
a customer's details. Managers also shape the product: journey templates and their stages,
the jargon list, partners, their status mappings, keys and webhooks, and apply a partner's
events once they have mapped its codes. Neither role deletes a customer or a journey (that
is the customer's own deletion, or a superuser's), nor changes an account: that, staff
status and groups included, is a superuser's (accounts.admin.UserAdmin). Every staff user
also needs two-factor authentication (accounts.middleware).
"""

from django.contrib.auth.models import Group, Permission
from django.db import transaction

AGENTS = "Agents"
MANAGERS = "Managers"

_AGENT_PERMISSIONS = [
    "accounts.view_user",
    # Needed for "Propose a change…" alone: the profile is read-only in the admin, and only
    # a superuser changes an account (UserAdmin.has_change_permission).
    "accounts.change_user",
    "accounts.view_customerprofile",
    "accounts.view_profilechange",
    # The proposals they made, and whether the customer answered (on the customer's page).
    "accounts.view_changeproposal",
    "accounts.view_journeyshare",
    "journey.view_journey",
    "journey.change_journey",
    "journey.view_milestone",
    "journey.change_milestone",
    "journey.view_journeyevent",
    "journey.view_journeytemplate",
    "journey.view_stagedefinition",
    "journey.view_message",
    "journey.view_feedback",
    "journey.view_etaestimate",
    "journey.view_jargonterm",
    "journey.view_reschedulerequest",
    "journey.change_reschedulerequest",
    *[
        f"journey.{action}_{model}"
        for model in ("customertask", "appointment", "shipmentleg", "checkpoint", "photo")
        for action in ("view", "add", "change")
    ],
    "journey.view_promiseditem",
    "journey.add_promiseditem",
    "journey.change_promiseditem",
    "notifications.view_notification",
    "notifications.change_notification",
    "integrations.view_partner",
    "integrations.view_statusmapping",
    "integrations.view_inboundevent",
    "integrations.view_webhookdelivery",
]

_MANAGER_EXTRA = [
    *[
        f"journey.{action}_{model}"
        for model in ("journeytemplate", "stagedefinition", "jargonterm")
        for action in ("add", "change", "delete")
    ],
    "journey.add_journey",
    "journey.delete_customertask",
    "journey.delete_appointment",
    "journey.delete_photo",
    "journey.delete_promiseditem",
    "journey.view_templateetastats",
    *[
        f"integrations.{action}_{model}"
        for model in ("partner", "statusmapping", "partnerapikey", "webhookendpoint")
        for action in ("view", "add", "change")
    ],
    # For "Send again" and for "Apply the events whose codes are mapped now" (they map the
    # codes): both admins keep every field of these records read-only.
    "integrations.change_webhookdelivery",
    "integrations.change_inboundevent",
    "integrations.delete_statusmapping",
]

ROLES: dict[str, list[str]] = {
    AGENTS: [*_AGENT_PERMISSIONS, "journey.add_journey"],
    MANAGERS: [*_AGENT_PERMISSIONS, *_MANAGER_EXTRA],
}


def roles_setup() -> dict[str, int]:
    """Create or update the groups so they hold exactly their role's permissions
    (idempotent). Returns the number of permissions per group."""
    result = {}
    with transaction.atomic():
        for name, codes in ROLES.items():
            wanted = set(codes)
            permissions = []
            for permission in Permission.objects.select_related("content_type"):
                code = f"{permission.content_type.app_label}.{permission.codename}"
                if code in wanted:
                    permissions.append(permission)
            group, _created = Group.objects.get_or_create(name=name)
            group.permissions.set(permissions)
            result[name] = len(permissions)
    return result
