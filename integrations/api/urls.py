from django.urls import path, re_path

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
        "journeys/<str:reference>/events/<path:event_id>/",
        views.JourneyEventDetail.as_view(),
        name="journey-event",
    ),
    path(
        "journeys/<str:reference>/profile-changes/",
        views.JourneyProfileChangeCreate.as_view(),
        name="journey-profile-changes",
    ),
    path("events/batch/", views.EventBatchCreate.as_view(), name="event-batch"),
    path("journeys/<str:reference>/legs/", views.LegListCreate.as_view(), name="journey-legs"),
    path(
        "journeys/<str:reference>/legs/<int:sequence>/",
        views.LegDetail.as_view(),
        name="journey-leg",
    ),
    path(
        "journeys/<str:reference>/legs/<int:sequence>/checkpoints/",
        views.CheckpointListCreate.as_view(),
        name="leg-checkpoints",
    ),
    path(
        "journeys/<str:reference>/photos/", views.PhotoListCreate.as_view(), name="journey-photos"
    ),
    path("journeys/<str:reference>/tasks/", views.TaskListCreate.as_view(), name="journey-tasks"),
    path(
        "journeys/<str:reference>/tasks/<int:pk>/",
        views.TaskDetail.as_view(),
        name="journey-task",
    ),
    path(
        "journeys/<str:reference>/appointments/",
        views.AppointmentListCreate.as_view(),
        name="journey-appointments",
    ),
    path(
        "journeys/<str:reference>/appointments/<int:pk>/",
        views.AppointmentDetail.as_view(),
        name="journey-appointment",
    ),
    path("webhooks/", views.WebhookEndpointList.as_view(), name="webhook-list"),
    path("webhooks/<int:pk>/", views.WebhookEndpointDetail.as_view(), name="webhook-detail"),
    path(
        "webhooks/<int:pk>/rotate-secret/",
        views.WebhookSecretRotate.as_view(),
        name="webhook-rotate",
    ),
    path("sandbox/journeys/", views.SandboxJourneyCreate.as_view(), name="sandbox-journeys"),
    # Last: anything else under /api/v1/ answers in the API's error shape.
    re_path(r"^[\s\S]*\Z", views.NotFoundView.as_view(), name="not-found"),
]
