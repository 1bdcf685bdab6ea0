from django.urls import path

from journey import views

app_name = "journey"

urlpatterns = [
    path("", views.home, name="home"),
    path("journeys/<str:reference>/", views.detail, name="detail"),
    path(
        "journeys/<str:reference>/photos/<int:photo_id>/<str:variant>/",
        views.photo,
        name="photo",
    ),
    path("journeys/<str:reference>/parts/<str:name>/", views.part, name="part"),
    path("journeys/<str:reference>/tasks/<int:task_id>/done/", views.task_done, name="task_done"),
    path(
        "journeys/<str:reference>/appointments/<int:appointment_id>/reschedule/",
        views.reschedule,
        name="reschedule",
    ),
    path(
        "journeys/<str:reference>/appointments/<int:appointment_id>/calendar.ics",
        views.appointment_calendar,
        name="appointment_calendar",
    ),
    path("journeys/<str:reference>/messages/", views.message, name="message"),
    path(
        "journeys/<str:reference>/milestones/<int:milestone_id>/feedback/",
        views.feedback,
        name="feedback",
    ),
]
