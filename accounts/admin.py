from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.forms import ProposalForm
from accounts.models import (
    Address,
    ChangeProposal,
    CustomerProfile,
    JourneyShare,
    ProfileChange,
    ShareLink,
    Source,
    User,
)
from accounts.services import profile_propose_change
from journey.errors import ApplicationError


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ProfileInline(admin.StackedInline):
    """Read-only, for superusers too: staff never overwrite what the customer entered;
    they propose a change ("Propose a change…"), the customer decides."""

    model = CustomerProfile
    can_delete = False
    fields = [
        "given_name",
        "family_name",
        "phone",
        "language",
        "time_zone",
        "channel_email",
        "channel_sms",
        "channel_push",
        "quiet_hours_start",
        "quiet_hours_end",
        "allowed_at_any_hour",
        "field_sources",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Not a field list to keep in step with the model: nothing here is a form field.
        return False

    @admin.display(description="Allowed at any hour")
    def allowed_at_any_hour(self, profile: CustomerProfile) -> str:
        from notifications.kinds import KINDS

        kinds = profile.anytime_kinds or []
        return ", ".join(str(KINDS[k].label) if k in KINDS else k for k in kinds) or "—"


class AddressInline(ReadOnlyInline):
    model = Address
    fk_name = "profile"


class ProfileChangeInline(ReadOnlyInline):
    model = ProfileChange
    fk_name = "user"
    fields = ["created_at", "field", "old_value", "new_value", "source", "actor_name", "note"]
    readonly_fields = fields
    verbose_name_plural = "Audit trail (every change to the customer's record)"


class ProposalInline(ReadOnlyInline):
    model = ChangeProposal
    fk_name = "user"
    fields = ["created_at", "field", "new_value", "reason", "source", "proposed_by_name", "state"]
    readonly_fields = fields


class UserCreateForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class UserEditForm(UserChangeForm):
    """What a superuser may change on an account (UserAdmin narrows it further): never the
    email address, which the customer changes in the portal (allauth keeps its own record
    of it, confirmed), nor the dates."""

    class Meta:
        model = User
        fields = ["is_active", "is_staff", "is_superuser", "groups"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = UserCreateForm
    form = UserEditForm
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined", "propose"]
    list_select_related = ["profile"]
    search_fields = ["email", "profile__given_name", "profile__family_name", "profile__phone"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    staff_fieldsets = [
        (None, {"fields": ["email", "is_active"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (
            None,
            {"classes": ["wide"], "fields": ["email", "usable_password", "password1", "password2"]},
        )
    ]
    inlines = [ProfileInline, ProposalInline, ProfileChangeInline]

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None) -> list:
        if obj is None:
            return super().get_fieldsets(request, obj)
        # Rights (staff, superuser, groups) are not even shown to other staff.
        fieldsets = self.fieldsets if request.user.is_superuser else self.staff_fieldsets
        if obj.is_staff or obj.is_superuser:
            return fieldsets
        (name, options), *rest = fieldsets
        return [(name, {**options, "fields": [*options["fields"], "propose"]}), *rest]

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> list[str]:
        if obj is None:
            return []  # the add form (superusers: nobody else may add users)
        if not request.user.is_superuser:
            return ["email", "is_active", "last_login", "date_joined", "propose"]
        return ["email", "last_login", "date_joined", "propose"]

    def get_list_display(self, request: HttpRequest) -> list[str]:
        if request.user.is_superuser:
            return self.list_display
        return [name for name in self.list_display if name != "is_staff"]

    def get_list_filter(self, request: HttpRequest) -> list[str]:
        if request.user.is_superuser:
            return ["is_staff", "is_superuser", "is_active", "groups"]
        return ["is_active"]

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        """Only a superuser changes an account (its rights, status or password). Others
        with accounts.change_user (Agents, Managers: for "Propose a change…") see an
        account read-only, whatever they post."""
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or request.user.is_superuser

    def may_propose(self, request: HttpRequest, user: User) -> bool:
        """Staff propose changes to a customer's details; another staff member's or a
        superuser's account is a superuser's business."""
        if not super().has_change_permission(request, user):
            return False
        return request.user.is_superuser or not (user.is_staff or user.is_superuser)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[User], search_term: str
    ) -> tuple[QuerySet[User], bool]:
        queryset, duplicates = super().get_search_results(request, queryset, search_term)
        if (request.GET.get("model_name"), request.GET.get("field_name")) == ("journey", "owner"):
            # Choosing a journey's owner (autocomplete): customers only, not staff nor a
            # partner's sandbox owner (inactive: it cannot log in).
            queryset = queryset.filter(is_staff=False, is_active=True)
        return queryset, duplicates

    @admin.display(description="Name")
    def full_name(self, user: User) -> str:
        profile = getattr(user, "profile", None)
        return profile.full_name if profile else ""

    @admin.display(description="Customer's details")
    def propose(self, user: User) -> str:
        if user.is_staff or user.is_superuser:
            return ""  # customers' details only
        url = reverse("admin:accounts_user_propose", args=[user.pk])
        return format_html('<a href="{}">Propose a change…</a>', url)

    def get_urls(self) -> list:
        return [
            path(
                "<int:user_id>/propose/",
                self.admin_site.admin_view(self.propose_view),
                name="accounts_user_propose",
            ),
            *super().get_urls(),
        ]

    def propose_view(self, request: HttpRequest, user_id: int) -> HttpResponse:
        """Staff propose a change to a customer's details; the customer decides."""
        customer = get_object_or_404(User, pk=user_id)
        if not self.may_propose(request, customer):
            raise PermissionDenied
        form = ProposalForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                proposal = profile_propose_change(
                    user=customer,
                    field=form.cleaned_data["field"],
                    value=form.cleaned_data["value"],
                    reason=form.cleaned_data["reason"],
                    source=Source.STAFF,
                    actor=request.user,
                    # The customer reads "Our staff", not a staff member's address: who
                    # proposed it is kept for staff (actor) in the audit trail.
                    actor_name="",
                )
            except ApplicationError as error:
                form.add_error("value" if "value" in error.fields else None, error.message)
            else:
                messages.success(
                    request,
                    "The field was empty, so it was filled in (and marked as filled by staff)."
                    if proposal is None
                    else "Proposed. The customer has been asked to accept or decline it.",
                )
                return redirect("admin:accounts_user_change", user_id)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Propose a change for {customer}",
            "form": form,
            "customer": customer,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/accounts/propose.html", context)


@admin.register(ProfileChange)
class ProfileChangeAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "field", "old_value", "new_value", "source", "actor_name"]
    list_filter = ["source", "field"]
    search_fields = ["user__email", "field"]
    readonly_fields = [f.name for f in ProfileChange._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(JourneyShare)
class JourneyShareAdmin(admin.ModelAdmin):
    list_display = ["journey", "email", "viewer", "created_at", "accepted_at", "revoked_at"]
    readonly_fields = [f.name for f in JourneyShare._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    list_display = ["journey", "created_by", "created_at", "expires_at", "revoked_at"]
    readonly_fields = [f.name for f in ShareLink._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
