"""Every admin action of ours changes something, so every one asks for a permission
(Django offers an action without ``permissions`` to whoever may view the list: an Agent
could send webhooks again)."""

from django.contrib import admin

OURS = {"accounts", "journey", "notifications", "integrations"}


def test_every_admin_action_asks_for_a_permission():
    checked, unguarded = 0, []
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in OURS:
            continue  # allauth's EmailAddress "make verified": no role may view that list
        for name in model_admin.actions or []:
            function = getattr(model_admin, name, None) or admin.site.get_action(name)
            checked += 1
            if not getattr(function, "allowed_permissions", None):
                unguarded.append(f"{model._meta.label}.{name}")
    assert unguarded == []
    assert checked >= 6
