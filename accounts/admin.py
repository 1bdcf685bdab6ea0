from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
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
    """Read-only: staff never overwrite what the customer entered; they propose a change."""

    model = CustomerProfile
    can_delete = False
    readonly_fields = [
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
        "field_sources",
    ]
    exclude = ["timeline_newest_first"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


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
    class Meta:
        model = User
        fields = "__all__"


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
    add_fieldsets = [
        (
            None,
            {"classes": ["wide"], "fields": ["email", "usable_password", "password1", "password2"]},
        )
    ]
    inlines = [ProfileInline, ProposalInline, ProfileChangeInline]

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

    @admin.display(description="")
    def propose(self, user: User) -> str:
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
        if not self.has_change_permission(request):
            return redirect("admin:index")
        customer = get_object_or_404(User, pk=user_id)
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
                    actor_name=request.user.get_username(),
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
