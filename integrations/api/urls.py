from django.urls import path

from integrations.api import views

app_name = "api"

urlpatterns = [
    path("journeys/", views.JourneyList.as_view(), name="journey-list"),
    path("journeys/<str:reference>/", views.JourneyDetail.as_view(), name="journey-detail"),
    path(
        "journeys/<str:reference>/events/",
        views.JourneyEventCreate.as_view(),
        name="journey-events",
    ),
    path(
        "journeys/<str:reference>/profile-changes/",
        views.JourneyProfileChangeCreate.as_view(),
        name="journey-profile-changes",
    ),
]
