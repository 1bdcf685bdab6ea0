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
]
