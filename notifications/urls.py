from django.urls import path

from notifications import views

app_name = "notifications"

urlpatterns = [
    path("notifications/", views.centre, name="centre"),
    path("notifications/<int:notification_id>/read/", views.mark_read, name="read"),
    path("notifications/<int:notification_id>/open/", views.open_notification, name="open"),
    path("notifications/read-all/", views.mark_read, name="read-all"),
    path("inbound/email/", views.inbound_email, name="inbound-email"),
    path("inbound/bounce/", views.inbound_bounce, name="inbound-bounce"),
]
