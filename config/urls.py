from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from integrations.api.views import NotFoundView
from journey.public import public_journey, public_photo
from journey.staff_views import staff_dashboard
from journey.views import healthz, security_txt

# Staff log in through allauth, so the admin login is rate-limited like any other.
admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = "Milepost control room"
admin.site.site_title = "Milepost"

urlpatterns = [
    # The staff dashboard, in the admin's style and behind its login (and MFA).
    path("admin/dashboard/", admin.site.admin_view(staff_dashboard), name="admin_dashboard"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("integrations.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script from its own URL (?script), as
    # the site's CSP allows no inline script without a nonce.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="api/swagger_ui.html"
        ),
        name="api-docs",
    ),
    # Any other version or path under /api/: JSON, as the API answers, not an HTML page.
    # Not the public docs and schema without their slash: APPEND_SLASH redirects those.
    re_path(r"^api/(?!(?:docs|schema)\Z)", NotFoundView.as_view(), name="api-not-found"),
    path("healthz", healthz, name="healthz"),
    path(".well-known/security.txt", security_txt, name="security-txt"),
    path("s/<str:token>/", public_journey, name="public-journey"),
    path("s/<str:token>/photos/<int:photo_id>/<str:variant>/", public_photo, name="public-photo"),
    path("", include("accounts.urls")),
    path("", include("notifications.urls")),
    path("", include("journey.urls")),
]

# A database that cannot be reached answers 503 with Retry-After (journey.views.server_error).
handler500 = "journey.views.server_error"
